"""A per-problem Python-tree MCTS in the TS-LLM / AlphaZero style: the comparison point for
``search.mcts`` in ``bench_search``.

One problem at a time, a tree of Python ``Node`` objects, PUCT selection, and ONE network call per
simulation at batch size 1 (the same jitted ``mcts.Evaluate`` the batched search uses).
The game is stepped on the host with exact Fractions. A simulation that ends on a terminal node
still makes its network call (the batched search evaluates every expanded child too).
"""

from __future__ import annotations

import math
from fractions import Fraction

import jax
import numpy as np

from search import game


class Node:
    __slots__ = ("values", "prior", "children", "visits", "value_sum", "terminal", "reward")

    def __init__(self, values: tuple, prior: float, terminal: bool, reward: float):
        self.values, self.prior, self.terminal, self.reward = values, prior, terminal, reward
        self.children: dict[int, Node] | None = None  # None: not expanded
        self.visits, self.value_sum = 0, 0.0

    def q(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0


class PythonMCTS:
    """``run(numbers, target, num_simulations) -> (root visit counts, network calls)``."""

    def __init__(self, evaluate, params, rules: game.Rules, pb_c: float = 1.25):
        self.rules, self.params, self.pb_c = rules, params, pb_c
        self.evaluate = jax.jit(evaluate)
        self.calls = 0

    def _state(self, values: tuple, target: Fraction) -> game.State:
        n = self.rules.n_max
        num, den = np.zeros((1, n), np.int32), np.ones((1, n), np.int32)
        live = np.zeros((1, n), bool)
        for s, v in enumerate(values):
            if v is not None:
                num[0, s], den[0, s], live[0, s] = v.numerator, v.denominator, True
        return game.State(num=num, den=den, live=live,
                          target_num=np.array([target.numerator], np.int32),
                          target_den=np.array([target.denominator], np.int32),
                          moves=np.zeros((1,), np.int32), failed=np.zeros((1,), bool))

    def _expand(self, node: Node, target: Fraction) -> float:
        """One network call: children with priors (legal actions only); returns the leaf value."""
        logits, value = self.evaluate(self.params, self._state(node.values, target))
        self.calls += 1
        logits = np.asarray(logits[0], np.float64)
        legal = np.flatnonzero(logits > -1e8)
        p = np.exp(logits[legal] - logits[legal].max())
        p /= p.sum()
        node.children = {}
        node.terminal = not len(legal)
        live = sum(v is not None for v in node.values)
        for a, prior in zip(legal.tolist(), p.tolist(), strict=True):
            i, j, op = game.decode_action(a, self.rules.n_max)
            x, y = node.values[i], node.values[j]
            r = (x + y, x * y, x - y, y - x, x / y if y else 0, y / x if x else 0)[op]
            vals = list(node.values)
            vals[i], vals[j] = r, None
            solved = live == 2 and r == target
            node.children[a] = Node(tuple(vals), prior, live == 2, 1.0 if solved else 0.0)
        return float(value[0])

    def _select(self, node: Node) -> int:
        sq = math.sqrt(node.visits)
        return max(node.children, key=lambda a: (
            node.children[a].reward + node.children[a].q()
            + self.pb_c * node.children[a].prior * sq / (1 + node.children[a].visits)))

    def run(self, numbers, target, num_simulations: int) -> dict[int, int]:
        target = Fraction(target)
        values = tuple(Fraction(x) for x in numbers) + (None,) * (self.rules.n_max - len(numbers))
        root = Node(values, 1.0, False, 0.0)
        self._expand(root, target)
        for _ in range(num_simulations):
            node, path = root, [root]
            while node.children and not node.terminal:
                node = node.children[self._select(node)]
                path.append(node)
            if node.terminal:  # still one network call, as the batched search makes
                self.evaluate(self.params, self._state(node.values, target))[1].block_until_ready()
                self.calls, value = self.calls + 1, 0.0
            else:
                value = self._expand(node, target)
            for n in reversed(path):  # value of a node = reward into it + value below it
                n.visits += 1
                n.value_sum += value
                value = n.reward + value
        return {a: c.visits for a, c in root.children.items()}
