"""TFDS datasets (array_record, no TensorFlow needed): problem sets and solver-labelled states.

Layout: ``<data_dir>/zero24_supervised/<name>/1.0.0/`` (and ``zero24_problems``), read back with
``tfds.data_source("zero24_supervised/<name>", data_dir=...)``. Each dataset holds one split, the
problem split it was drawn from (train / val / test: disjoint by canonical problem).

Supervised states: solver-labelled random walks of problems (``search.examples``, whose names
``supervised_examples`` and ``examples_to_state`` are re-exported here), stored with the features
``Zero24Supervised.FEATURES``.

Builds are idempotent (an existing dataset with the same parameters is kept; different parameters
under the same name are an error) and atomic: TFDS writes into ``<data_dir>/.incomplete-*`` and the
finished dataset folder is renamed into place, so an interrupted build leaves no dataset behind.
The ``.incomplete-*`` folders a kill leaves are removed by the next build when they are older than
the newest finished dataset and their builder is gone (a dead PID on this host; for another host's
build, a day old), so a concurrent build is never pulled from under its writer.
Offline: GCS lookups are disabled (``NO_GCE_CHECK``, ``try_download_gcs=False``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Mapping, Sequence

os.environ.setdefault("NO_GCE_CHECK", "true")  # before tfds: no metadata-server probe

import numpy as np  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402
from etils import epath  # noqa: E402
from tensorflow_datasets.core.utils import gcs_utils  # noqa: E402

from scaling import workdir as workdir_lib  # noqa: E402
from search import game, problems  # noqa: E402
from search.examples import examples_to_state, supervised_examples  # noqa: E402, F401

gcs_utils._is_gcs_disabled = True  # never reach for GCS metadata (offline machines, tests)
VERSION = "1.0.0"
PARAMS_FILE = "zero24_params.json"
OWNER_FILE = ".owner.json"  # {host, pid, time} of an .incomplete-* build folder
_FOREIGN_BUILD_MAX_AGE_S = 86400.0


@dataclasses.dataclass(eq=False)
class _Config(tfds.core.BuilderConfig):
    n_max: int = 8
    make: object = None  # () -> {split: iterable of example dicts}


class _Builder(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version(VERSION)
    FEATURES: dict = {}

    # tfds 4.9's default code_path lazily imports the ``importlib_resources`` backport (only
    # installed on Python < 3.9) for builders defined inside a package; this file is the answer.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        n = self.builder_config.n_max
        features = {
            k: tfds.features.Text()
            if dt is None
            else tfds.features.Tensor(shape=shape(n), dtype=dt)
            for k, (shape, dt) in self.FEATURES.items()
        }
        # Generation order is kept (problem sets are ranked; loaders shuffle themselves).
        return tfds.core.DatasetInfo(
            builder=self, features=tfds.features.FeaturesDict(features), disable_shuffling=True
        )

    def _split_generators(self, dl_manager):
        return {
            split: self._generate_examples(rows)
            for split, rows in self.builder_config.make().items()
        }

    def _generate_examples(self, rows):
        yield from enumerate(rows)


_A = lambda n: (n * (n - 1) // 2 * game.NUM_OPS,)
_N = lambda n: (n,)
_S = lambda n: ()


class Zero24Supervised(_Builder):
    """Solver-labelled states: feature name -> (shape of n_max, dtype; None = str). Each row is a
    ``search.examples.supervised_examples`` row; ``examples_to_state`` turns rows into a State."""

    FEATURES = {
        "num": (_N, np.int32),
        "den": (_N, np.int32),
        "live": (_N, np.bool_),
        "target_num": (_S, np.int32),
        "target_den": (_S, np.int32),
        "moves": (_S, np.int32),
        "policy": (_A, np.float32),
        "legal": (_A, np.bool_),
        "value": (_S, np.float32),
        "n": (_S, np.int32),
        "class_name": (_S, None),
    }


class Zero24Problems(_Builder):
    """Problem sets: ``numbers`` zero-padded to n_max, ``n`` of them used."""

    FEATURES = {
        "numbers": (_N, np.int32),
        "n": (_S, np.int32),
        "target": (_S, np.int32),
        "class_name": (_S, None),
    }


# ----------------------------------------------------------------------------- build / load


def _class_params(cls: problems.ProblemClass) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cls)))


def _build(builder_cls, data_dir, name: str, params: dict, n_max: int, make) -> pathlib.Path:
    """Idempotent, atomic TFDS build of ``builder_cls`` config ``name`` (module docstring)."""
    if not name or not all(c.isalnum() or c in "_-." for c in name) or name.startswith("."):
        raise ValueError(f"name={name!r} invalid; use letters, digits, '_', '-', '.'.")
    data_dir = pathlib.Path(data_dir).expanduser().resolve()
    builder_name = builder_cls.name
    final = data_dir / builder_name / name / VERSION
    if (final / PARAMS_FILE).is_file():
        old = json.loads((final / PARAMS_FILE).read_text())
        if old != params:
            raise ValueError(
                f"dataset {name!r} in {data_dir} was built with other parameters "
                f"({old}); use another name or delete {final}."
            )
        return final
    _clean_incomplete(data_dir)
    tmp = data_dir / f".incomplete-{builder_name}-{name}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir(parents=True)
        (tmp / OWNER_FILE).write_text(json.dumps({"host": socket.gethostname(),
                                                  "pid": os.getpid(), "time": time.time()}))
        builder = builder_cls(
            data_dir=str(tmp),
            config=_Config(name=name, n_max=n_max, make=make),
            file_format="array_record",
        )
        builder.download_and_prepare(
            download_dir=str(tmp / "downloads"),
            download_config=tfds.download.DownloadConfig(try_download_gcs=False),
        )
        built = tmp / builder_name / name / VERSION
        (built / PARAMS_FILE).write_text(json.dumps(params, indent=1, sort_keys=True))
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(built, final)  # atomic: the dataset appears complete or not at all
        except OSError:
            if not (final / PARAMS_FILE).is_file():
                raise
            return _build(
                builder_cls, data_dir, name, params, n_max, make
            )  # a concurrent build won
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _clean_incomplete(data_dir: pathlib.Path) -> None:
    """Removes abandoned ``.incomplete-*`` build folders (module docstring)."""
    finished = [p.stat().st_mtime for p in data_dir.glob(f"*/*/*/{PARAMS_FILE}")]
    if not finished:
        return
    newest, host = max(finished), socket.gethostname()
    for tmp in data_dir.glob(".incomplete-*"):
        try:
            if tmp.stat().st_mtime >= newest:
                continue  # may have started after the newest build finished: maybe live
            owner = json.loads((tmp / OWNER_FILE).read_text())
        except FileNotFoundError:
            owner = {}  # killed before it wrote its owner (or vanished meanwhile)
        except (OSError, ValueError):
            continue
        if owner.get("host") == host:
            if workdir_lib.pid_alive(int(owner.get("pid", -1))):
                continue
        elif owner and time.time() - float(owner.get("time", 0)) < _FOREIGN_BUILD_MAX_AGE_S:
            continue  # another host's build: its PID cannot be checked from here
        shutil.rmtree(tmp, ignore_errors=True)


def build_supervised(
    data_dir,
    name: str,
    problem_class: problems.ProblemClass | str,
    num_problems: int,
    seed: int = 0,
    split: str = "train",
    off_path: float = 1.0,
    progress: bool = True,
) -> pathlib.Path:
    """Build (or keep) supervised dataset ``name`` from ``num_problems`` problems of ``split``."""
    cls = problems.get_class(problem_class) if isinstance(problem_class, str) else problem_class
    if num_problems < 1:
        raise ValueError(f"num_problems={num_problems} is out of range; allowed >= 1.")
    params = {
        "kind": "supervised",
        "class": _class_params(cls),
        "num_problems": num_problems,
        "n_max": cls.rules.n_max,
        "seed": seed,
        "split": split,
        "off_path": off_path,
        "version": VERSION,
    }

    def make():
        plist = problems.generate(cls, num_problems, seed, split)
        ex = supervised_examples(plist, cls.rules, seed, off_path, cls.name, progress)
        rows = ({k: v[i] for k, v in ex.items()} for i in range(len(ex["value"])))
        return {split: rows}

    return _build(Zero24Supervised, data_dir, name, params, cls.rules.n_max, make)


def build_stream_snapshot(data_dir, name: str, cfg, start: int, count: int) -> pathlib.Path:
    """Build (or keep) examples ``start..start+count-1`` of the labelled stream ``cfg``
    (``search.stream.StreamConfig``) as a supervised dataset with split ``cfg.split``: a fixed
    snapshot of exactly what a stream run trains on (same features as ``build_supervised``)."""
    from search import stream  # the stream is the generator; this only stores a slice of it

    if count < 1 or start < 0:
        raise ValueError(f"count={count}, start={start} out of range; allowed count >= 1, "
                         "start >= 0.")
    params = {"kind": "stream", "stream": stream.as_mapping(cfg), "n_max": cfg.n_max,
              "start": start, "count": count,
              "excluded": sorted([list(k[0]), k[1]] for k in cfg.exclude), "version": VERSION}

    def make():
        ex = stream.draw_range(cfg, start, start + count)
        rows = ({**{k: v[i] for k, v in ex.items()}, "class_name": "stream"}
                for i in range(count))
        return {cfg.split: rows}

    return _build(Zero24Supervised, data_dir, name, params, cfg.n_max, make)


def build_problem_set(
    data_dir,
    name: str,
    splits: Mapping[str, Sequence[problems.Problem]],
    class_name: str = "",
    n_max: int = 8,
) -> pathlib.Path:
    """Build (or keep) a problem-set dataset with the given splits (e.g. ToT-100 from 24.csv)."""
    for split, plist in splits.items():
        for p in plist:
            if len(p.numbers) > n_max:
                raise ValueError(
                    f"split {split!r}: problem {p} has {len(p.numbers)} numbers; "
                    f"allowed <= n_max={n_max}."
                )
    params = {
        "kind": "problems",
        "class_name": class_name,
        "n_max": n_max,
        "version": VERSION,
        "splits": {s: [[list(p.numbers), p.target] for p in ps] for s, ps in splits.items()},
    }

    def rows(plist):
        for p in plist:
            nums = np.zeros(n_max, np.int32)
            nums[: len(p.numbers)] = p.numbers
            yield {
                "numbers": nums,
                "n": np.int32(len(p.numbers)),
                "target": np.int32(p.target),
                "class_name": class_name,
            }

    return _build(
        Zero24Problems,
        data_dir,
        name,
        params,
        n_max,
        lambda: {s: rows(ps) for s, ps in splits.items()},
    )


def _read(builder_cls, data_dir, name: str, split: str | None) -> dict[str, np.ndarray]:
    root = pathlib.Path(data_dir).expanduser().resolve()
    path = root / builder_cls.name / name / VERSION
    if not (path / PARAMS_FILE).is_file():
        raise FileNotFoundError(
            f"no dataset {name!r} under {root} (expected {path}); build it with "
            "`python -m search.datasets --data_dir=... --name=...`."
        )
    info = json.loads((path / "dataset_info.json").read_text())
    available = [sp["name"] for sp in info.get("splits", [])]
    split = split or (available[0] if len(available) == 1 else "train")
    if split not in available:
        raise ValueError(f"split={split!r} not in dataset {name!r}; available {available}.")
    source = tfds.data_source(
        f"{builder_cls.name}/{name}:{VERSION}",
        data_dir=str(root),
        split=split,
        download=False,
        try_gcs=False,
    )
    records = source.__getitems__(list(range(len(source)))) if len(source) else []
    n_max = int(json.loads((path / PARAMS_FILE).read_text())["n_max"])
    out = {}
    for k, (shape, dt) in builder_cls.FEATURES.items():
        if dt is None:
            out[k] = np.array(
                [r[k].decode() if isinstance(r[k], bytes) else r[k] for r in records], dtype=object
            )
        else:
            out[k] = np.array([r[k] for r in records], dt).reshape((len(records),) + shape(n_max))
    return out


def load_supervised(data_dir, name: str, split: str | None = None) -> dict[str, np.ndarray]:
    """The whole split (default: the dataset's only split) as numpy arrays
    (``Zero24Supervised.FEATURES``)."""
    return _read(Zero24Supervised, data_dir, name, split)


def load_problem_set(data_dir, name: str, split: str) -> list[problems.Problem]:
    """A split of a problem-set dataset as ``Problem``s."""
    d = _read(Zero24Problems, data_dir, name, split)
    return [
        problems.Problem(tuple(int(x) for x in nums[:n]), int(t))
        for nums, n, t in zip(d["numbers"], d["n"], d["target"], strict=True)
    ]


# ----------------------------------------------------------------------------- command line


def cli(argv: Sequence[str]) -> int:
    """``python -m search.datasets --class=g24 --num_problems=1000 --data_dir=data [--tot_csv=..]``.

    Returns the exit code; bad input prints the error (naming the flag) and returns 2.
    """
    from absl import flags

    f = flags.FlagValues()
    flags.DEFINE_string("class", "g24", f"problem class: {problems.class_names()}", flag_values=f)
    flags.DEFINE_integer("num_problems", 1000, "problems to label (>= 1)", flag_values=f)
    flags.DEFINE_string("data_dir", "data", "TFDS data dir", flag_values=f)
    flags.DEFINE_string(
        "name", "", "dataset name (default <class>_p<num>_s<seed>_<split>)", flag_values=f
    )
    flags.DEFINE_integer("seed", 0, "problem / walk seed", flag_values=f)
    flags.DEFINE_enum("split", "train", list(problems.SPLITS), "problem split", flag_values=f)
    flags.DEFINE_float(
        "off_path", 1.0, "chance of an off-path state per on-path one", flag_values=f
    )
    flags.DEFINE_string(
        "tot_csv", "", "a ToT 24.csv: also build its standard problem sets", flag_values=f
    )
    try:
        f(list(argv))
        cls = problems.get_class(f["class"].value)
        name = f.name or f"{cls.name}_p{f.num_problems}_s{f.seed}_{f.split}"
        splits = {}
        if f.tot_csv:  # read (and so checked) before anything is built
            workdir_lib.check_input_file(f.tot_csv, "--tot_csv")
            splits = {
                s: problems.load_24csv(f.tot_csv, s) for s in ("tot100", "tsllm362", "all1362")
            }
        # One build per data dir at a time; the lock also proves it writable before labelling.
        with workdir_lib.hold(f.data_dir, flag="--data_dir"):
            path = build_supervised(f.data_dir, name, cls, f.num_problems, f.seed, f.split,
                                    f.off_path)
            count = len(load_supervised(f.data_dir, name)["value"])
            print(f"supervised dataset {name!r}: {count} labelled states at {path}")
            if splits:
                path = build_problem_set(f.data_dir, "game24_csv", splits, "g24")
                print(f"problem sets {sorted(splits)} at {path}")
    except (ValueError, flags.Error) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv))
