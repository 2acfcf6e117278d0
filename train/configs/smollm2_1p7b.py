r"""SmolLM2-1.7B shapes (24 layers, width 2048, 32 heads): 1.63B non-embedding parameters.

    python -m train.main --config=train/configs/smollm2_1p7b.py --workdir=runs/smollm2_1p7b
    python -m train.main --config=train/configs/smollm2_1p7b.py --workdir=runs/s1p7b \
        --config.mesh.fsdp=4 --config.mesh.data=-1  # e.g. 8 GPUs: 4-way ZeRO-3 x 2 replicas

Multi-device run: fp32 weights, gradients and Adam moments are ~26 GB, sharded over ``fsdp`` (all
devices by default); batch 512, lr 2e-4, 20k updates at 9.8e9 training FLOPs per token position
(~8.3e18 in all). Settings
shared with the smaller presets: ``common.smollm2_config``.
"""

import ml_collections

from train.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return common.smollm2_config("smollm2_1p7b", arg, batch_size=512, learning_rate=2e-4,
                                 steps=20000)
