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
- ``State``: a batch of game states (``search.game`` plays them). ``Episode`` (``search.mcts``
  self-play / evaluation episodes), ``Result`` and ``Rollouts`` (``search.baselines``) and
  ``Solution`` (an exactly verified outcome) are what searches return. Shapes are in the field
  comments: B problems, N = ``Rules.n_max`` slots, A = ``Rules.num_actions``, T = D = N - 1
  moves; the jax dataclasses are frozen ``chex.dataclass`` pytrees.
- ``RunRecord`` / ``SearchEval``: ``run.json`` and one of its ``search_evals`` entries
  (owned by ``scaling.run_json``).

Imports nothing of ours but ``scaling.run_json`` (no JAX code of ours): ``search.game`` itself
takes ``State`` from here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import chex
import jax

from scaling.run_json import RunRecord, SearchEval  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from search.game import Rules

Params = Any  # a pytree of arrays (an nnx.State for networks, None for network-free evaluators)
Evaluate = Callable[[Params, "State"], tuple[jax.Array, jax.Array]]  # -> (logits_BxA, value_B)
MakeEvaluate = Callable[["Rules"], Evaluate]


def _no_flops(rules: Rules) -> float:
    return 0.0


@dataclasses.dataclass(frozen=True)
class Play:
    """How a trained network is played (``search.play``): the slot count of the states it was
    trained on, the most slots its layout reads, its rules and its search settings (names of
    ``search.sweep.SweepOptions`` fields). Written into every export and run record."""

    n_max: int  # slots of the training states; fewer is refused (another function)
    max_slots: int  # the most slots the token layout reads
    fractions: bool = True
    use_all: bool = True
    search: dict = dataclasses.field(default_factory=dict)  # e.g. max_num_considered_actions

    def __post_init__(self):
        if not 2 <= self.n_max <= self.max_slots <= 16:
            raise ValueError(f"Play: n_max={self.n_max}, max_slots={self.max_slots}; need "
                             "2 <= n_max <= max_slots <= 16.")


@dataclasses.dataclass(frozen=True)
class Provenance:
    """What a network trained on, for the leak check of an eval (``search.play.leaked``)."""

    classes: tuple[str, ...] | None = None  # classes whose train split it drew; None: unknown
    excluded: frozenset | None = None  # canonical keys its run excluded; None: no record


@dataclasses.dataclass(frozen=True)
class Network:
    """What is searched with: ``make_evaluate(rules)`` (an ``Evaluate`` for that slot count),
    its ``params`` and ``flops_per_eval(rules)``, the forward FLOPs of one evaluated state;
    ``play`` and ``provenance`` for trained networks (None for network-free baselines)."""

    name: str
    make_evaluate: MakeEvaluate
    params: Params = None
    flops_per_eval: Callable[[Rules], float] = _no_flops
    play: Play | None = None
    provenance: Provenance | None = None


# ----------------------------------------------------------------------------- states


@chex.dataclass(frozen=True)
class State:
    """A batch of game states; leading axes are batch axes, the last axis of slot arrays is N."""

    num: jax.Array  # int32[..., N]; 0 in dead slots
    den: jax.Array  # int32[..., N]; > 0, 1 in dead slots
    live: jax.Array  # bool[..., N]
    target_num: jax.Array  # int32[...]; targets may be rational (hindsight relabels)
    target_den: jax.Array  # int32[...]
    moves: jax.Array  # int32[...]; moves played so far
    failed: jax.Array  # bool[...]; an illegal action was played: terminal, unsolved


# ----------------------------------------------------------------------------- search results


@chex.dataclass(frozen=True)
class Episode:
    """Batch-major record of searched episodes (T = n_max - 1 moves, D = n_max - 1)."""

    states: State  # [B, T, ...] state before move t
    actions: jax.Array  # int32[B, T]; -1 where the state was already terminal (passed through)
    action_weights: jax.Array  # float32[B, T, A]; search policy targets, 0 where inactive
    legal: jax.Array  # bool[B, T, A]
    active: jax.Array  # bool[B, T]; a search ran on a live state and its move was played
    root_values: jax.Array  # float32[B, T]; search value of the root
    tree_found: jax.Array  # bool[B, T]; a solved node was in the search tree of move t
    tree_actions: jax.Array  # int32[B, T, D]; that node's path from states[:, t], -1 padded
    final_state: State  # [B, ...]
    solved: jax.Array  # bool[B]; by the played trajectory
    final_num: jax.Array  # int32[B]; value of the first live slot at the end (hindsight target)
    final_den: jax.Array  # int32[B]
    num_evals: jax.Array  # int32[B]; network evaluations spent on this problem's live moves


@chex.dataclass(frozen=True)
class Result:
    """Batch-major outcome of a baseline search (D = n_max - 1)."""

    solved: jax.Array  # bool[B]; a solution was found (sampling: pass@k)
    actions: jax.Array  # int32[B, D]; that solution from the initial state, -1 padded
    evals: jax.Array  # int32[B]; network evaluations (states examined) spent on the problem
    majority: jax.Array  # bool[B]; sampling: the majority final value is the target; else solved


@chex.dataclass(frozen=True)
class Rollouts:
    """k policy rollouts per problem (batch-major [B, k])."""

    actions: jax.Array  # int32[B, k, D]; -1 after the end
    solved: jax.Array  # bool[B, k]
    complete: jax.Array  # bool[B, k]; ended with one number left (a final answer to vote on)
    final_num: jax.Array  # int32[B, k]; value of the first live slot at the end
    final_den: jax.Array  # int32[B, k]
    evals: jax.Array  # int32[B, k]; network calls (one per move played)


@dataclasses.dataclass(frozen=True)
class Solution:
    """Host-side, exactly verified outcome of one problem (``search.mcts.solutions``)."""

    played: bool  # the played trajectory solves it (verified by game.replay)
    found: bool  # a verified solution exists: played, or anywhere in a search tree
    actions: tuple[int, ...] | None  # the solution's actions from the initial state
    expression: str | None  # its infix expression
