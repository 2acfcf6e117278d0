"""The contracts between the search and everything around it, as code (mctx's ``base.py`` style).

- ``Evaluate``: what search calls for priors and values. ``evaluate(params, state)`` takes a
  1-D batch of game states ``State[B]`` and returns ``(logits_BxA float32[B, A], value_B
  float32[B])``: logits over the fixed action space (``Rules.num_actions``; illegal actions may
  already be ``game.ILLEGAL_LOGIT``, search masks them again) and a value in [0, 1], the chance
  of solving from the state. ``nnx_models.make_evaluate`` builds one from a network (it encodes
  the states to tokens); ``search.baselines.uniform_evaluate`` / ``oracle_evaluate`` are
  network-free ones. Search never sees a model, only this callable and its ``params`` pytree.
- ``MakeEvaluate``: ``Rules -> Evaluate`` (one per slot count: a network's tokenizer is re-sized
  to ``rules.n_max``).
- ``Network``: what ``search.sweep`` searches with: a name, a ``MakeEvaluate``, the parameters
  and the forward FLOPs per evaluated state. ``train.run_model.load_network`` /
  ``model_network`` build them from checkpoints and HF exports; ``search.sweep.BASELINES`` are
  the network-free ones.
- ``RunRecord`` / ``SearchEval``: ``run.json`` and one of its ``search_evals`` entries
  (owned by ``scaling.run_json``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax

from scaling.run_json import RunRecord, SearchEval  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from search.game import Rules, State

Params = Any  # a pytree of arrays (an nnx.State for networks, None for network-free evaluators)
Evaluate = Callable[[Params, "State"], tuple[jax.Array, jax.Array]]
MakeEvaluate = Callable[["Rules"], Evaluate]


def _no_flops(rules: Rules) -> float:
    return 0.0


@dataclasses.dataclass(frozen=True)
class Network:
    """What is searched with: ``make_evaluate(rules)`` (an ``Evaluate`` for that slot count),
    its ``params`` and ``flops_per_eval(rules)``, the forward FLOPs of one evaluated state."""

    name: str
    make_evaluate: MakeEvaluate
    params: Params = None
    flops_per_eval: Callable[[Rules], float] = _no_flops
