r"""Solve one puzzle from the command line with the shipped model (or any export).

    python -m search.solve 3 3 8 8
    python -m search.solve 1 5 7 11 13 --target 937 --simulations 64 --json
    python -m search.solve 4 6 --model solver

The exact solver decides first: when it proves there is no solution the command prints
``no solution`` and exits 1. Otherwise the network's Gumbel MCTS (deterministic, ``--simulations``
per move, as ``search.sweep``'s ``mcts``) plays the puzzle; the printed expression is re-checked
with exact arithmetic (``game.replay``) whichever way it was found:

- ``played``: the moves the search chose solve it;
- ``tree``: a solution found anywhere in the search trees (the played line missed);
- ``solver``: the search found none at this budget; the solver's expression is shown instead.

``evaluations`` counts network calls; ``wall_s`` is the search's wall time, compilation included
(a first call on CPU compiles for seconds). Bad input exits 2 with a message naming the field.
Rules: rational intermediates, every number used once (``game.Rules()``, the Game-of-24 rule),
on the slots and with the search settings the model carries (``search/play.py``): the shipped
model reads 6-slot states, so a 4-number puzzle is padded to 6 slots as in its training.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import time
from fractions import Fraction

from search import game, problems, solver

DEFAULT_MODEL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             "models", "flagship")
N_RANGE = (2, 8)  # numbers per puzzle: the exact solver answers 8 in well under a second
NUMBER_RANGE = (1, 999)
TARGET_RANGE = (-9999, 9999)


@dataclasses.dataclass(frozen=True)
class Answer:
    numbers: tuple[int, ...]
    target: int
    solvable: bool
    expression: str | None  # infix, verified exactly; None when unsolvable
    found_by: str | None  # played | tree | solver (module docstring); None when unsolvable
    model: str
    simulations: int
    evaluations: int  # network evaluations the search spent
    wall_s: float  # search wall time, compilation included


def _int(text: str, field: str, lo: int, hi: int) -> int:
    try:
        x = int(text)
    except ValueError:
        raise ValueError(f"{field}={text!r} is not an integer; allowed integers "
                         f"{lo}..{hi}.") from None
    if not lo <= x <= hi:
        raise ValueError(f"{field}={x} is out of range; allowed {lo}..{hi}.")
    return x


def parse(numbers: list[str], target: str) -> tuple[tuple[int, ...], int]:
    """Validated (numbers, target); ValueError naming the field otherwise."""
    if not N_RANGE[0] <= len(numbers) <= N_RANGE[1]:
        raise ValueError(f"numbers has {len(numbers)} values; allowed {N_RANGE[0]}..{N_RANGE[1]}.")
    nums = tuple(_int(x, f"numbers[{k}]", *NUMBER_RANGE) for k, x in enumerate(numbers))
    return nums, _int(target, "--target", *TARGET_RANGE)


def _verified(numbers, target, expression: str) -> str:
    """The expression, after checking that it uses exactly ``numbers`` and equals ``target``."""
    import ast

    tree = ast.parse(expression, mode="eval")
    leaves = sorted(int(n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant))

    def ev(node):
        if isinstance(node, ast.Constant):
            return Fraction(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        ops = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
               ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}
        return ops[type(node.op)](ev(node.left), ev(node.right))

    if leaves != sorted(numbers) or ev(tree.body) != Fraction(target):
        raise RuntimeError(f"bug: {expression} does not solve {list(numbers)} -> {target}.")
    return expression


@functools.lru_cache(maxsize=4)
def _network(spec: str):
    """One load per model in a process, so repeated solves reuse the compiled search. Networks
    are built in ``train/`` (``train.run_model.load_network``): this module is a program entry
    point, which may sit at the top layer; no library module imports it (docs/architecture.md)."""
    from train.run_model import load_network

    return load_network(spec)


def _spec(model: str) -> str:
    """The ``train.run_model.load_network`` spec of ``--model``, checked."""
    spec = model if model in ("uniform",) or model.startswith("hf:") else f"hf:{model}"
    if spec.startswith("hf:") and not os.path.isdir(spec[3:]):
        raise ValueError(f"--model={model!r}: {spec[3:]} is not a directory; allowed an HF export "
                         "(nnx_models.hf), 'uniform' or 'solver'.")
    return spec


def rules_for(numbers, model: str) -> game.Rules:
    """Game-of-24 rules on the slots the model is played with (``search.play.slot_count``: its
    own, or more for a longer puzzle); the puzzle's own count for ``solver`` and ``uniform``."""
    from search import play as play_lib
    from train.run_model import conditions

    play = None if model == "solver" else conditions(_spec(model))[0]
    n = play_lib.slot_count(play, "numbers", len(numbers), max(len(numbers), 2))
    return dataclasses.replace(game.Rules(), n_max=n)


def solve(numbers, target: int, model: str = DEFAULT_MODEL, simulations: int = 32) -> Answer:
    """Solver verdict, then the network's search (module docstring). ``model``: an export
    directory, ``hf:<dir>``, ``uniform`` (uniform-prior MCTS) or ``solver`` (no search)."""
    from search import sweep

    if simulations < 1:
        raise ValueError(f"--simulations={simulations} is out of range; allowed >= 1.")
    rules = rules_for(numbers, model)  # checks the model and the slots before any work
    exact = solver.solve(list(numbers), target, rules)
    base = dict(numbers=tuple(numbers), target=target, model=model, simulations=simulations)
    if not exact.solvable:
        return Answer(**base, solvable=False, expression=None, found_by=None, evaluations=0,
                      wall_s=0.0)
    if model == "solver":
        return Answer(**base, solvable=True, expression=_verified(numbers, target,
                      exact.expression), found_by="solver", evaluations=0, wall_s=0.0)
    spec = _spec(model)
    net = _network(spec)
    t0 = time.perf_counter()
    opts = sweep.SweepOptions.played(net.play, batch_size=1)
    out, _ = sweep.run_method("mcts" if spec != "uniform" else "uniform_mcts", simulations,
                              [problems.Problem(tuple(numbers), target)], rules, net, opts,
                              progress=False)
    wall = time.perf_counter() - t0
    played, tree = (out[k][0] for k in sorted(out))  # (mcts, mcts_tree) / (uniform_mcts, ..._tree)
    evals = played[2]
    for name, (ok, expr, _) in (("played", played), ("tree", tree)):
        if ok and expr:
            return Answer(**base, solvable=True, expression=_verified(numbers, target, expr),
                          found_by=name, evaluations=evals, wall_s=wall)
    return Answer(**base, solvable=True, expression=_verified(numbers, target, exact.expression),
                  found_by="solver", evaluations=evals, wall_s=wall)


def _text(a: Answer) -> str:
    head = " ".join(map(str, a.numbers)) + f" -> {a.target}"
    if not a.solvable:
        return f"{head}: no solution (proved by the exact solver)"
    how = {"played": f"found by {a.model} MCTS, {a.simulations} simulations per move",
           "tree": f"found in the search tree of {a.model}, {a.simulations} simulations per move",
           "solver": (f"the exact solver's; {a.model} MCTS at {a.simulations} simulations found "
                      "none" if a.evaluations else "the exact solver's")}[a.found_by]
    cost = (f"; {a.evaluations} network evaluations, {a.wall_s:.2f} s (compilation included)"
            if a.evaluations else "")
    return f"{a.expression} = {a.target}\n  {how}{cost}; verified with exact arithmetic"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m search.solve", description=__doc__.split("\n")[0])
    p.add_argument("numbers", nargs="+", help=f"{N_RANGE[0]}..{N_RANGE[1]} integers")
    p.add_argument("--target", default="24")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="HF export directory (default models/flagship), uniform or solver")
    p.add_argument("--simulations", type=int, default=32)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    try:
        numbers, target = parse(args.numbers, args.target)
        answer = solve(numbers, target, args.model, args.simulations)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(dataclasses.asdict(answer)) if args.json else _text(answer))
    return 0 if answer.solvable else 1


if __name__ == "__main__":
    sys.exit(main())
