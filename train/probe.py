"""Probes of what the network learned: per-n value accuracy / AUC / spread and policy top-1.

Why these and not the eval loss alone: a value head that outputs one constant scores an accuracy
equal to the share of solvable states and a BCE not far from the entropy of that share, so the
loss hides a collapse. Here the value is scored per number of live slots n on held-out states:
- ``value_acc``: sigmoid(logit) > 0.5 agrees with the solver;
- ``value_auc``: ranking quality (Mann-Whitney; 0.5 = chance, < 0.5 = ranked backwards);
- ``value_distinct``: distinct value outputs (rounded to 1e-4) per 1,000 states;
- ``value_spread``: standard deviation of the value logit across states (0 = collapsed);
- ``policy_top1``: on solvable states, the arg-max legal move keeps the state solvable.
A run is flagged ``collapsed`` when every n has value_spread < 1e-3 or < 10 distinct outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from nnx_models.evaluate import ILLEGAL_LOGIT

COLLAPSE_SPREAD, COLLAPSE_DISTINCT = 1e-3, 10


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of ``scores`` for binary ``labels`` (NaN when one class is absent)."""
    labels = np.asarray(labels, bool)
    pos, neg = int(labels.sum()), int((~labels).sum())
    if not pos or not neg:
        return float("nan")
    ranks = stats.rankdata(scores)
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def outputs(apply: Callable, params, tokens: np.ndarray, batch: int = 512):
    """(logits f32[E, A], value_logit f32[E]) of the network on ``tokens`` in fixed-size chunks."""
    fn = jax.jit(apply)
    logits, values = [], []
    for lo in range(0, len(tokens), batch):
        chunk = tokens[lo:lo + batch]
        pad = batch - len(chunk)
        padded = np.pad(chunk, ((0, pad), (0, 0)), mode="edge") if pad else chunk
        lg, v = jax.device_get(fn(params, jnp.asarray(padded)))
        logits.append(np.asarray(lg)[:len(chunk)])
        values.append(np.asarray(v)[:len(chunk)])
    return np.concatenate(logits), np.concatenate(values)


def probe(apply: Callable, params, arrays: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Metrics ``{f"n{n}/{name}": x}`` per live-slot count plus ``all/...`` (module docstring)."""
    logits, vlogit = outputs(apply, params, np.asarray(arrays["tokens"]))
    return summarize(logits, vlogit, arrays)


def summarize(logits: np.ndarray, vlogit: np.ndarray,
              arrays: Mapping[str, np.ndarray]) -> dict[str, float]:
    value = np.asarray(arrays["value"]) > 0.5
    policy, legal = np.asarray(arrays["policy"]), np.asarray(arrays["legal"])
    n_of = np.asarray(arrays["n"])
    masked = np.where(legal, logits, ILLEGAL_LOGIT)
    top1_good = np.take_along_axis(policy, masked.argmax(-1)[:, None], -1)[:, 0] > 0
    out: dict[str, float] = {}
    groups = [(f"n{n}", n_of == n) for n in np.unique(n_of)] + [("all", np.ones_like(value))]
    for name, m in groups:
        if not m.any():
            continue
        v, lab = vlogit[m], value[m]
        sol = m & value
        out[f"{name}/value_acc"] = float(((v > 0) == lab).mean())
        out[f"{name}/value_auc"] = auc(v, lab)
        out[f"{name}/value_base_rate"] = float(max(lab.mean(), 1 - lab.mean()))
        probs = 1 / (1 + np.exp(-v.astype(np.float64)))
        out[f"{name}/value_distinct"] = float(len(np.unique(np.round(probs, 4)))
                                              * 1000 / len(v))
        out[f"{name}/value_spread"] = float(v.std())
        out[f"{name}/policy_top1"] = float(top1_good[sol].mean()) if sol.any() else float("nan")
        out[f"{name}/count"] = float(m.sum())
    return out


def collapsed(metrics: Mapping[str, float]) -> bool:
    """True when the value ignores its input at every n (module docstring)."""
    per_n = [k.split("/")[0] for k in metrics if k.endswith("/value_spread") and
             not k.startswith("all/")]
    if not per_n:
        return False
    return all(metrics[f"{n}/value_spread"] < COLLAPSE_SPREAD or
               metrics[f"{n}/value_distinct"] < COLLAPSE_DISTINCT for n in per_n)
