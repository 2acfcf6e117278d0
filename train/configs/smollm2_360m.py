r"""SmolLM2-360M shapes (32 layers, width 960, GQA 15/5 heads): 318M non-embedding parameters.

    python -m train.main --config=train/configs/smollm2_360m.py --workdir=runs/smollm2_360m

Batch 256, 20k updates at 1.9e9 training FLOPs per token position (~8.2e17 in all, 83-token
states); parameters, gradients and Adam moments (~5 GB in fp32) shard over ``fsdp``, so one
80 GB GPU or a few smaller ones fit. ``common.smollm2_config`` holds the shared settings.
"""

import ml_collections

from train.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return common.smollm2_config("smollm2_360m", arg, batch_size=256, learning_rate=3e-4,
                                 steps=20000)
