"""Solver-labelled training states drawn from problems: the rows of a supervised dataset.

Per problem, a random walk along solver paths (at every step a uniformly chosen move that keeps
the state solvable) and, at every on-path state, with probability ``off_path`` one child reached
by a random legal move that does NOT keep it solvable (value 0) or, when every legal move keeps
it solvable, a random legal move. The engine (``search.game``) plays the moves; ``search.solver``
labels every non-terminal state: ``value`` = solvable, ``policy`` = uniform over moves that keep
it solvable (zero if unsolvable). ``search.datasets`` stores these rows as TFDS datasets
(``Zero24Supervised.FEATURES``); ``examples_to_state`` turns rows back into a ``State``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from search import game, problems, solver

_CHUNK = 256  # problems per batched engine call (bounds the number of jit shapes)


@functools.cache
def _engine(rules: game.Rules):
    """Jitted (views, step) for one rule variant: views(s) = (legal_mask, is_terminal)."""
    views = jax.jit(lambda s: (game.legal_mask(s, rules), game.is_terminal(s, rules)))
    return views, jax.jit(lambda s, a: game.step(s, a, rules))


def _pick(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random True column per row (0 where a row has none)."""
    return np.argmax(np.where(mask, rng.random(mask.shape), -1.0), axis=-1).astype(np.int32)


def supervised_examples(
    plist: Sequence[problems.Problem],
    rules: game.Rules,
    seed: int,
    off_path: float = 1.0,
    class_name: str = "",
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Labelled states of ``plist`` (module docstring) as arrays with the dataset's features."""
    if not plist:
        raise ValueError("plist is empty; need at least one problem.")
    if not 0.0 <= off_path <= 1.0:
        raise ValueError(f"off_path={off_path} is out of range; allowed 0..1.")
    views, step = _engine(rules)
    rng = np.random.default_rng(seed)
    rows: list[dict[str, np.ndarray]] = []

    def emit(state, legal, keep):
        value, good = solver.labels_for_states(state, rules)
        policy = good / np.maximum(good.sum(-1, keepdims=True), 1)
        arrays = {
            k: np.asarray(getattr(state, k))
            for k in ("num", "den", "live", "target_num", "target_den", "moves")
        }
        arrays.update(policy=policy.astype(np.float32), legal=legal, value=value.astype(np.float32))
        rows.append({k: v[keep] for k, v in arrays.items()} | {"n": n0[keep]})
        return good

    bar = tqdm(total=len(plist), desc=f"labelling {class_name or 'states'}", disable=not progress)
    for lo in range(0, len(plist), _CHUNK):
        chunk = plist[lo : lo + _CHUNK]
        state = problems.problems_to_state(chunk, rules)
        n0 = np.array([len(p.numbers) for p in chunk], np.int32)
        for _ in range(rules.n_max - 1):
            legal, term = (np.asarray(x) for x in views(state))
            good = emit(state, legal, ~term)
            if term.all():
                break
            bad = legal & ~good
            off = np.where(bad.any(-1, keepdims=True), bad, legal)  # a wrong move if one exists
            child = step(state, jnp.asarray(_pick(off, rng)))
            c_legal, c_term = (np.asarray(x) for x in views(child))
            emit(child, c_legal, ~term & ~c_term & (rng.random(len(chunk)) < off_path))
            on = np.where(good.any(-1, keepdims=True), good, legal)
            state = step(state, jnp.asarray(_pick(on, rng)))
        bar.update(len(chunk))
    bar.close()
    out = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    out["class_name"] = np.array([class_name] * len(out["value"]), dtype=object)
    return out


def examples_to_state(batch: Mapping[str, np.ndarray]) -> game.State:
    """Dataset rows (dict of arrays with a leading batch axis) -> game.State."""
    get = lambda k, dt: jnp.asarray(np.asarray(batch[k]), dt)
    return game.State(
        num=get("num", jnp.int32),
        den=get("den", jnp.int32),
        live=get("live", bool),
        target_num=get("target_num", jnp.int32),
        target_den=get("target_den", jnp.int32),
        moves=get("moves", jnp.int32),
        failed=jnp.zeros(np.asarray(batch["value"]).shape, bool),
    )
