"""What the search loops learn from: curriculum problem pools, self-play rows, the replay
buffer's batches and the labelled-stream mixer (``train.search_and_learn``, ``train.grpo``)."""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from search import game, mcts, problems
from train import data as data_lib
from train import mesh as mesh_lib
from train import relabel, replay_buffer, stream_data
from train.setup import RunSetup


def check_class(name: str, rules: game.Rules, field: str) -> problems.ProblemClass:
    """Class ``name``, refused when its states do not fit the run's ``rules``."""
    cls = problems.get_class(name)
    if cls.n_range[1] > rules.n_max:
        raise ValueError(f"config.{field}: class {name!r} has up to {cls.n_range[1]} numbers but "
                         f"states have n_max={rules.n_max}; raise config.data.n_max.")
    if dataclasses.replace(cls.rules, n_max=rules.n_max) != rules:
        raise ValueError(f"config.{field}: class {name!r} has rules {cls.rules}, different from "
                         f"the run's {rules} (config.data.problem_class); use one rule variant.")
    return cls


@functools.lru_cache(maxsize=64)
def cached_runner(evaluate, rules: game.Rules, search_cfg: mcts.SearchConfig, mesh):
    """The jitted self-play episode runner, shared by equal runs in one process."""
    return mcts.make_episode_runner(evaluate, rules, search_cfg, mesh)


class Curriculum:
    """Training-problem pools of the curriculum classes, generated lazily when a class opens."""

    def __init__(self, cfg: dict, rules: game.Rules, exclude: frozenset = frozenset()):
        sl = cfg["sl"]
        self.exclude = exclude  # canonical keys of evaluation problems: never trained on
        self.names = list(sl["curriculum"])
        self.classes = [check_class(n, rules, "sl.curriculum") for n in self.names]
        self.rules, self.count, self.seed = rules, sl["train_problems"], cfg["data"]["seed"]
        self.threshold, self._pools = sl["curriculum_threshold"], {}

    def pool(self, k: int) -> list[problems.Problem]:
        if k not in self._pools:
            pool = problems.generate(self.classes[k], self.count, self.seed, "train")
            self._pools[k] = [p for p in pool if p.canonical not in self.exclude]
            if not self._pools[k]:
                raise ValueError(f"config.sl.curriculum: every training problem of "
                                 f"{self.names[k]!r} is an evaluation problem; use another class.")
        return self._pools[k]

    def batch(self, level: int, size: int, seed: int, it: int):
        """(problems, class index per row): classes uniform over the open ones, then problems."""
        rng = np.random.default_rng([seed, 1, it])
        cls = rng.integers(0, level, size=size)
        probs = [self.pool(c)[int(rng.integers(len(self.pool(c))))] for c in cls]
        return probs, cls


def self_play_rows(s: RunSetup, ep: mcts.Episode, seed: int, it: int) -> tuple[dict, dict]:
    """Buffer rows of one self-play batch (``train.search_and_learn``) and counts for the log."""
    cfg, rules = s.cfg, s.rules
    ep = jax.device_get(ep)
    sl = cfg["sl"]
    if sl["value_targets"] == "exact":
        parts = [relabel.exact_rows(ep, s.tokens(ep.states), rules, sl["policy_targets"])]
    else:
        parts = [relabel.episode_rows(ep, s.tokens(ep.states), sl["policy_targets"])]
    sols = mcts.solutions(ep, rules)
    counts = {"played": sum(x.played for x in sols), "found": sum(x.found for x in sols)}
    if sl["tree_solutions"]:
        traj = jax.device_get(relabel.solution_trajectories(ep, sols, rules))
        parts.append(relabel.trajectory_rows(traj, s.tokens(traj.states)))
    if cfg["relabel"]["enabled"]:
        max_value = cfg["relabel"]["max_value"] or s.tok_cfg.max_value
        mask = relabel.hindsight_mask(ep, cfg["relabel"]["ratio"], max_value, seed, 2, it)
        traj = jax.device_get(relabel.hindsight(ep, rules, mask))
        parts.append(relabel.trajectory_rows(traj, s.tokens(traj.states)))
        counts["relabelled"] = int(mask.sum())
    rows = relabel.concat_rows(*parts)
    counts["rows"] = len(rows["value"])
    return rows, counts


def make_buffer(s: RunSetup) -> replay_buffer.ReplayBuffer:
    a = s.rules.num_actions
    return replay_buffer.ReplayBuffer(s.cfg["sl"]["buffer_capacity"], {
        "tokens": ((s.seq_len,), np.int32), "policy": ((a,), np.float32),
        "legal": ((a,), bool), "value": ((), np.float32)})


def buffer_batch(buf: replay_buffer.ReplayBuffer, batch_size: int, mesh, seed: int, *key: int):
    idx = data_lib.local_slice(buf.indices(batch_size, seed, *key))
    rows = {k: v[idx] for k, v in buf.data.items()}
    rows["weight"] = np.ones((len(idx),), np.float32)
    return data_lib.to_global(rows, batch_size, mesh_lib.batch_sharding(mesh))


class StreamMixer:
    """``sl.stream_share`` of the train steps take a batch of the labelled stream
    (``train.stream_data``, the run's ``data.mixture`` and exclusion) instead of the replay
    buffer, evenly spaced: fresh exact labels on every n keep a warm-started network from
    forgetting what the buffer's few thousand on-policy states do not cover. Stream position
    ``OFFSET + it * m + j`` (m stream steps per iteration) is a function of the iteration, so a
    resumed run draws the same batches; the offset keeps clear of a warm start's positions."""

    OFFSET = 1 << 40

    def __init__(self, s: RunSetup, exclude: frozenset):
        cfg, sl = s.cfg, s.cfg["sl"]
        share, k = sl.get("stream_share", 0.0), sl["train_steps"]
        self.per_it, self.k, self.loader = round(share * k), k, None
        if self.per_it:  # configs.common.check_values: share in [0, 1], with a data.mixture
            self.loader = stream_data.StreamLoader(
                stream_data.stream_config(cfg, s.rules, exclude), cfg["train"]["batch_size"],
                s.mesh, s.tok_cfg, workers=cfg["data"]["workers"])

    def batch(self, it: int, k: int):
        """The stream batch of step ``k`` of iteration ``it``, or None (take the buffer's)."""
        j0, j1 = k * self.per_it // self.k, (k + 1) * self.per_it // self.k
        if self.loader is None or j0 == j1:
            return None
        return self.loader.batch(self.OFFSET + it * self.per_it + j0)

    def close(self) -> None:
        if self.loader is not None:
            self.loader.close()
