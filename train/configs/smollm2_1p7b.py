r"""SmolLM2-1.7B shapes (Llama architecture) as the policy/value network; a GPU/TPU run.

    python -m train.main --config=train/configs/smollm2_1p7b.py --workdir=runs/smollm2_1p7b
    python -m train.main --config=train/configs/smollm2_1p7b.py:runlocal --workdir=/tmp/s1p7b

Trains on solver labels of 4-number problems (class `g24`, 20k problems) with bf16 compute and
fp32 master weights, parameters sharded over `fsdp` (all devices). It should reach a lower
`eval/loss` than the depth-scaled models of `default.py` at equal tokens. The vocabulary is the
game tokenizer's (tens of tokens), not SmolLM2's 49152, so embedding parameters are small.
Argument: `runlocal` (10 steps, batch 8; slow on CPU at this size, for wiring checks only).
"""

import ml_collections

from train.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return common.smollm2_config("smollm2_1p7b", arg, batch_size=512, learning_rate=2e-4,
                                 steps=20000)
