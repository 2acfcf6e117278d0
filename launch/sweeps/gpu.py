r"""The one-GPU IsoFLOP sweep: the CPU sweep's design (``launch/sweeps/cpu.py``) at ~300x its
budgets, on bigger sizes, ready to run.

    python -m launch.sweep --grid=launch/sweeps/gpu.py --backend=print
    GRID=launch/sweeps/gpu.py ROOT=runs/sweep_gpu RESULTS=results/sweep_gpu PROCS=16 \
        bash scripts/cpu_sweep.sh      # the same pipeline: cache, train, hold out, evals, report

Same train config (``train/configs/sweep_cpu.py``: the labelled stream on 4 slots, one learning
rate, cosine over each run), batch 256 (an H100/H200 is idle at 64 x 7 tokens), 5 budgets from
1.5e13 (x3 each; the largest, ~1.2e15, held out), 6 sizes per budget from depth 2-8 x width
64-512. Budgets are 300-25,000x the CPU sweep's 5e10..1.35e12. Not run yet: the CPU sweep's
figures are in docs/scaling.md.
"""

from launch.sweeps import cpu


def get_config():
    g = cpu.get_config()
    g.overrides = "train.batch_size=256"
    g.sizes = ",".join(f"d{d}w{w}" for d, w in ((2, 64), (3, 96), (4, 128), (4, 192), (6, 256),
                                                 (6, 384), (8, 512)))
    g.num_budgets = 5
    g.total_flops = 6 * 1.5e13 * (1 + 3 + 9 + 27 + 81)
    g.max_steps = 200_000
    g.root = "runs/sweep_gpu"
    return g
