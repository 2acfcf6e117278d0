"""Helpers shared by several test modules (imported as a plain module, like fraction_ref)."""

import ast
import glob
import os
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np

from search import game


def random_states(rng: np.random.Generator, b: int, n: int, max_abs: int,
                  first_live: bool = False) -> game.State:
    """Random reduced rationals (negatives and fractions included), random dead slots
    (``first_live``: slot 0 is always live, so no state is empty)."""
    num = rng.integers(-max_abs, max_abs + 1, size=(b, n))
    den = rng.integers(1, max_abs + 1, size=(b, n))
    den = np.where(rng.random((b, n)) < 0.5, 1, den)  # half integers
    g = np.gcd(num, den)
    num, den = num // g, den // g
    live = rng.random((b, n)) < 0.75
    if first_live:
        live[:, 0] = True
    num, den = np.where(live, num, 0), np.where(live, den, 1)
    tn = rng.integers(-max_abs, max_abs + 1, size=b)
    td = np.where(rng.random(b) < 0.3, rng.integers(1, 50, size=b), 1)
    g = np.gcd(tn, td)
    i32 = lambda x: jnp.asarray(x, jnp.int32)
    return game.State(num=i32(num), den=i32(den), live=jnp.asarray(live),
                      target_num=i32(tn // g), target_den=i32(td // g),
                      moves=i32(np.zeros(b)), failed=jnp.zeros(b, bool))


def final_params(work: str, step: int) -> list:
    """Parameter leaves of checkpoint ``step`` of the run in ``work`` (numpy)."""
    from train import checkpoint

    ck = checkpoint.Checkpointer(os.path.join(work, "checkpoints"), every=1, keep=10)
    state = ck.load_numpy(step)
    ck.close()
    return jax.tree.leaves(state["params"])


def corrupt_checkpoint(step_dir: str, how: str) -> None:
    """Damages a committed checkpoint the way a full disk or a bad copy does: the OCDBT data
    files truncated or zeroed, or the JSON ``meta/metadata`` or ``state/_METADATA`` cut in half.
    Data files: all of ``state/ocdbt.process_0/d/`` and ``state/d/`` (with one device the
    arrays are read from the first; with several, as here, orbax merges them into the second
    and the first is no longer read)."""
    if how in ("truncate_data", "zero_data"):
        paths = glob.glob(os.path.join(step_dir, "state", "ocdbt.process_0", "d", "*")) + \
            glob.glob(os.path.join(step_dir, "state", "d", "*"))
    else:
        paths = [os.path.join(step_dir, "meta/metadata" if how == "meta" else "state/_METADATA")]
    for path in paths:
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            if how == "zero_data":
                f.write(b"\0" * size)
            else:
                f.truncate(size // 2)


def expression_value(expr: str) -> tuple[Fraction | None, list[int]]:
    """Exact value (None on a division by zero) and sorted leaf numbers of an infix expression,
    computed independently of the package."""
    tree = ast.parse(expr, mode="eval")

    def ev(n):
        if isinstance(n, ast.Constant):
            return Fraction(n.value)
        if isinstance(n, ast.UnaryOp):
            return -ev(n.operand)
        a, b = ev(n.left), ev(n.right)
        return {ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b,
                ast.Div: a / b if b else None}[type(n.op)]

    leaves = sorted(int(n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant))
    return ev(tree.body), leaves
