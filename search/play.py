"""How a network is played and what it trained on: slot counts and the leak check of an eval.

A network is only worth a figure when it is played the way it was trained. A model trained on
6-slot states and searched on 4-slot states computes another function (its attention sees four
dead-slot entries fewer) and solved 0.080 of TS-LLM-362 where it solves 0.837 on its own slots.
So every network carries its playing conditions (``search.types.Play``: the slots it was trained
on, the most its layout reads, its rules and search settings) in its export and run record, and
every consumer resolves the slot count here:

- no ``--n_max``: the model's own slots, or more when a problem has more numbers (up to the
  layout's limit); states with fewer numbers are padded with dead slots;
- an explicit ``--n_max`` the model cannot play (fewer slots than it was trained on, more than
  its layout reads, fewer than a problem's numbers) is refused with both numbers named.

Network-free baselines (``uniform``, ``oracle``) have no playing conditions and play any slots.

The leak check (``leak_messages``) reads the network's ``Provenance``: the canonical problems its
run excluded from training (``exclusion.json``) and the problem classes it trained on. Training
start problems come from the ``train`` hash split (``problems.split_of``) of those classes, minus
the excluded ones; intermediate states of longer walks may also equal a problem that is not
excluded. It says nothing when every problem of a split was excluded, names the count otherwise,
and says "unknown" once when the network has no record at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from search import problems
from search.types import Network, Play, Provenance

# ----------------------------------------------------------------------------- slot counts


def slot_count(play: Play | None, spec: str, needed: int, default: int,
               n_max: int | None = None) -> int:
    """Slots to play split ``spec`` with (module docstring). ``needed``: the most numbers of a
    problem of the split; ``default``: the split's own slot count (its class rules)."""
    if play is None:  # a network-free baseline: the split's slots or the explicit ones
        n = default if n_max is None else n_max
    elif n_max is None:
        n = max(play.n_max, needed)
        if n > play.max_slots:
            raise ValueError(f"split {spec!r} has problems with {needed} numbers, but the model "
                             f"reads at most {play.max_slots} slots.")
    else:
        if not play.n_max <= n_max <= play.max_slots:
            raise ValueError(f"--n_max={n_max} cannot play this model: it was trained on "
                             f"{play.n_max} slots and its layout reads at most {play.max_slots}; "
                             f"allowed {play.n_max}..{play.max_slots} (or leave --n_max out).")
        n = n_max
    if needed > n:
        raise ValueError(f"split {spec!r} has problems with {needed} numbers but n_max={n}; "
                         f"pass --n_max={needed} (or larger).")
    return n


# ----------------------------------------------------------------------------- records


def play_to_json(play: Play) -> dict:
    return dataclasses.asdict(play)


def play_from_json(d: Mapping[str, Any]) -> Play:
    """A ``Play`` from its JSON form; unknown keys are an error naming them."""
    fields = {f.name for f in dataclasses.fields(Play)}
    if extra := sorted(set(d) - fields):
        raise ValueError(f"playing conditions: unknown keys {extra}; allowed {sorted(fields)}.")
    return Play(**{**d, "search": dict(d.get("search", {}))})


def training_classes(cfg: Mapping[str, Any]) -> tuple[str, ...]:
    """Problem classes whose train split a run of config ``cfg`` (a plain dict) draws from: the
    stream mixture, the TFDS class, the search-and-learn curriculum."""
    def items(value) -> list[str]:  # a tuple, or a comma list in older records
        value = value.split(",") if isinstance(value, str) else list(value or ())
        return [str(v).split(":")[0].strip() for v in value if str(v).strip()]

    d, names = cfg.get("data", {}), []
    search_mode = cfg.get("mode") in ("search_and_learn", "flagship")
    if d.get("source") == "stream" or search_mode:  # search-and-learn mixes stream batches in
        names += items(d.get("mixture", ""))
    if d.get("source") == "tfds" and d.get("problem_class"):
        names.append(d["problem_class"])
    if search_mode:
        names += items(cfg.get("sl", {}).get("curriculum", ()))
    return tuple(dict.fromkeys(n for n in names if n in problems.class_names()))


# ----------------------------------------------------------------------------- leak check


def leaked(plist: Sequence[problems.Problem], prov: Provenance | None) -> int | None:
    """How many of ``plist`` the network may have trained on (module docstring); None: unknown."""
    if prov is None or (prov.excluded is None and prov.classes is None):
        return None
    classes = None if prov.classes is None else [problems.get_class(c) for c in prov.classes]

    def in_training(p: problems.Problem) -> bool:
        if prov.excluded is not None and p.canonical in prov.excluded:
            return False
        if classes is None:  # excluded set known, classes unknown: anything else may be in
            return True
        return problems.split_of(p) == "train" and any(_covers(c, p) for c in classes)

    return sum(in_training(p) for p in plist)


def _covers(cls: problems.ProblemClass, p: problems.Problem) -> bool:
    try:
        cls.validate(p)
    except ValueError:
        return False
    return True


def leak_messages(net: Network, loaded: Sequence[tuple[str, Sequence, Any]]) -> list[str]:
    """The warnings of an eval of ``net`` on ``loaded`` ((name, problems, rules) per split),
    printed and returned: one per split with problems in the training data, or one "unknown"
    line when the network has no record. Network-free baselines never warn."""
    if net.play is None:
        return []
    if net.provenance is None or (net.provenance.excluded is None
                                  and net.provenance.classes is None):
        out = [f"WARNING: whether {net.name} trained on these problems is unknown (it carries no "
               "exclusion.json and no training classes); its solve rates may not be held-out."]
    else:
        out = []
        how = ("not in its exclusion record" if net.provenance.classes is None else
               f"in the train split of its training classes "
               f"{', '.join(net.provenance.classes)}"
               + ("" if net.provenance.excluded is None else " and not in its exclusion record"))
        for name, plist, _ in loaded:
            if k := leaked(plist, net.provenance):
                out.append(f"WARNING: split {name!r}: {k} of {len(plist)} problems are {how}: "
                           f"{net.name} may have trained on them; that solve rate is not "
                           "held-out.")
    for msg in out:
        print(msg, flush=True)
    return out
