r"""SmolLM2-135M shapes as the policy/value network (107.5M non-embedding parameters here).

    python -m train.main --config=train/configs/smollm2_135m.py --workdir=runs/smollm2_135m

One GPU is enough: batch 256 x 83 tokens, 20k updates (~2.8e17 training FLOPs at 6.6e8 per
token). The game vocabulary (44 tokens) replaces SmolLM2's 49152, which is why the count is below
135M. Shared settings (data, bf16 compute with fp32 master weights, fsdp over all devices,
``runlocal`` smoke test): ``common.smollm2_config``.
"""

import ml_collections

from train.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return common.smollm2_config("smollm2_135m", arg, batch_size=256, learning_rate=3e-4,
                                 steps=20000)
