"""Shared config pieces and the ``:key=value,flag`` string-argument parser of config files.

Every config file defines ``get_config(arg: str | None = None) -> ml_collections.ConfigDict`` and
returns it LOCKED (``config_flags`` then rejects a typo such as ``--config.train.stpes=3``).
Field meanings ("Config values" in docs/train.md: tuples for lists, None for "derive it" /
"never"; ``model``, ``data`` and ``tokenizer`` keep their ``0`` / ``""`` sentinels, since those
sections must match a workdir's ``config.json`` for a resume):

- ``mode``: generate_data | supervised | eval | search_and_learn | ttt | grpo | compare.
- ``data``: the supervised TFDS dataset (``search.datasets``). ``data_dir=""`` is
  ``<workdir>/../data``; ``name=""`` is derived from class, size and seed; ``n_max=0`` keeps the
  class's slot count (``Rules.n_max``), a smaller value (>= the class's largest n) gives shorter
  token sequences; ``eval_batches=0`` evaluates the whole eval split.
  ``source="stream"`` trains on the labelled stream (``search/stream.py``) instead: ``mixture``
  (``"n2:1,n3:1,g4_t100:2"``; class:weight), ``solvable_share`` (value balance at every n),
  ``eval_examples`` / ``probe_examples`` (held-out walk states / start states scored per n), and
  the exclusion: ``exclude`` (extra eval split specs) and ``exclude_csv`` (a ToT 24.csv whose
  1,362 puzzles are never trained on; "" = the csv of the eval sections); ``workers`` (grain
  worker processes that label the next batches; 0 = one prefetch thread). See
  ``train/stream_data.py``.
- ``tokenizer``: ``nnx_models.tokenizer.TokenizerConfig`` fields except ``n_max`` (taken from the
  problem class's rules so model, tokenizer and game always agree).
- ``model``: ``preset`` (``smollm2_135m`` | ``smollm2_360m`` | ``smollm2_1p7b``) or ``depth`` plus
  optional overrides of ``ModelConfig.from_depth``; zeros keep the depth rule's values.
- ``train``: optimizer (see ``train/optim.py``), batch, loss weights, logging cadence;
  ``eval_every`` (None: only at update 0 and the end), ``time_limit_s`` (None: no limit),
  ``peak_flops_per_device`` (None: from the device kind, ``train/metrics.py``),
  ``steps_per_call`` (updates per jitted call, 0: from the model's FLOPs; ``train/fast_loop.py``).
- ``compile_cache_dir``: JAX's persistent compilation cache ("auto": ``$JAX_COMPILATION_CACHE_DIR``
  or ``~/.cache/zero24/jax``; "": off).
- ``checkpoint``: every K optimizer updates (None: only at the end and on preemption), keep last
  N, async.
- ``mesh``: ``data``, ``fsdp``, ``tensor`` sizes, one may be -1 (see ``train/mesh.py``).
- ``search_eval``: what ``--mode=eval`` searches with the newest checkpoint
  (``train/run_model.py``): tuples of ``splits`` (``search.sweep`` specs such as
  ``g24:test:32``, or ``tot100`` with ``csv`` = the ToT 24.csv), ``methods`` and ``budgets``
  (simulations per move; ``--config.search_eval.budgets=1,8,64`` on the command line), and
  ``batch_size`` (problems per jitted search call).
"""

from __future__ import annotations

import ast
import os
from collections.abc import Mapping
from typing import Any

import ml_collections
from ml_collections.config_flags import config_flags, tuple_parser


class TupleParser(tuple_parser.TupleParser):
    """``--config.<tuple field>=`` overrides: ``(8, 32)`` or ``'("a", "b")'`` as ml_collections
    reads them, and the comma form ``8,32`` / ``g24:test:32,n5:test:50`` (items that read as
    numbers become numbers, the rest stay strings). The one converter of list-valued fields."""

    def parse(self, argument):
        if isinstance(argument, str) and not argument.strip().startswith(("(", "[", "'", '"')):
            return tuple(_item(s) for s in argument.split(",") if s.strip())
        return super().parse(argument)


def _item(text: str):
    text = text.strip()
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return value if isinstance(value, int | float) and not isinstance(value, bool) else text


config_flags.register_flag_parser_for_type(tuple, TupleParser())


def optional(value: Any, kind: type) -> ml_collections.FieldReference:
    """A field that may hold None and keeps its type, so ``--config.a.b=5`` still overrides it
    after a config file set it to None."""
    return ml_collections.FieldReference(value, field_type=kind)

MODES = ("generate_data", "supervised", "eval", "search_and_learn", "flagship", "ttt", "grpo",
         "compare")
PRESETS = ("smollm2_135m", "smollm2_360m", "smollm2_1p7b")


def parse_arg(arg: str | None, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``"size=d2,runlocal"`` -> ``{"size": "d2", "runlocal": True, <other defaults>}``.

    A bare key is the boolean True. Values are cast to the type of their default. Unknown keys
    raise ValueError naming the allowed keys.
    """
    out = dict(defaults)
    for item in filter(None, (s.strip() for s in (arg or "").split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if key not in defaults:
            raise ValueError(f"config argument {key!r} (in {arg!r}) is unknown; allowed keys: "
                             f"{sorted(defaults)}.")
        default = defaults[key]
        if not sep:
            if not isinstance(default, bool):
                raise ValueError(f"config argument {key!r} needs a value, e.g. {key}={default}.")
            out[key] = True
        elif isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"config argument {key}={value!r}; allowed true/false.")
            out[key] = value.lower() in ("true", "1")
        else:
            try:
                out[key] = type(default)(value)
            except ValueError as e:
                raise ValueError(f"config argument {key}={value!r} is not a "
                                 f"{type(default).__name__}.") from e
    return out


def parse_size(size: str) -> dict[str, Any]:
    """``"d2"`` -> ``{"depth": 2}``; a preset name -> ``{"preset": name}``."""
    if size in PRESETS:
        return {"preset": size}
    if size.startswith("d") and size[1:].isdigit() and int(size[1:]) >= 1:
        return {"depth": int(size[1:]), "preset": ""}
    raise ValueError(f"config argument size={size!r} is invalid; allowed d<K> with K >= 1 "
                     f"(depth-scaled, d_model = 64*K) or one of {PRESETS}.")


def base_config() -> ml_collections.ConfigDict:
    """All fields every config has (unlocked; config files adjust, then ``lock()``)."""
    c = ml_collections.ConfigDict()
    c.name = "default"
    c.mode = "supervised"
    c.seed = 0
    # jax.profiler trace of `profile_steps` steps starting at step `profile_start` (after compile).
    c.profile_steps = 0
    c.profile_start = 3
    # JAX's persistent compilation cache: "auto" = $JAX_COMPILATION_CACHE_DIR or
    # ~/.cache/zero24/jax; "" = off (launch.host.compile_cache).
    c.compile_cache_dir = "auto"

    c.data = ml_collections.ConfigDict(dict(
        data_dir="", name="", problem_class="g24", n_max=0, num_problems=200,
        eval_num_problems=50, seed=0, shuffle_seed=0, eval_batches=4, generate_if_missing=True,
        source="tfds", mixture="", solvable_share=0.5, eval_examples=1024, probe_examples=1024,
        exclude="", exclude_csv="", workers=0))
    c.tokenizer = ml_collections.ConfigDict(dict(
        number_encoding="digits", max_digits=3, whole_max=100, slot_markers="indexed"))
    c.model = ml_collections.ConfigDict(dict(
        preset="", depth=1, d_model=0, num_heads=0, num_kv_heads=0, head_dim=0, mlp_dim=0,
        mlp="", head_hidden=0, tie_embeddings=False, shared_backbone=True, scan_layers=False,
        dtype="float32", param_dtype="float32", causal=True, positions="sequence",
        value_pool="summary", qk_norm=False, pair_symmetric=False, field_attention=False,
        pair_results=False))
    c.train = ml_collections.ConfigDict(dict(
        steps=200, batch_size=64, grad_accum_steps=1, learning_rate=3e-3, warmup_steps=20,
        min_lr_ratio=0.1, weight_decay=0.01, b1=0.9, b2=0.95, eps=1e-8, grad_clip_norm=1.0,
        policy_weight=1.0, value_weight=1.0, value_loss="bce", log_every=10,
        eval_every=optional(50, int), peak_flops_per_device=optional(None, float),
        time_limit_s=optional(None, float), steps_per_call=0))
    c.checkpoint = ml_collections.ConfigDict(dict(every=optional(100, int), keep=3,
                                                  async_save=True))
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    # Cheap on a CPU (one compile per budget); widen with --config.search_eval.budgets=1,8,64.
    c.search_eval = ml_collections.ConfigDict(dict(
        splits=("g24:test:32",), methods=("mcts",), budgets=(1, 8), batch_size=128, csv=""))
    return c


def default_csv() -> str:
    """The ToT 24.csv beside the checkout (``../shared/benchmarks/24.csv``) when present, else "".

    Configs that name it exclude all 1,362 puzzles from training and can evaluate on its splits;
    on a machine without it they run the same, minus those evaluations.
    """
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(os.path.dirname(root), "shared", "benchmarks", "24.csv")
    return path if os.path.isfile(path) else ""


ENCODINGS = ("packed", "numeric", "whole", "digits")
LAYOUTS = ("set", "causal")
POOLS = ("summary", "mean", "attn")


def apply_representation(c: ml_collections.ConfigDict, encoding: str, layout: str, pool: str,
                         width: int, head_dim: int, results: bool = False) -> None:
    """How states reach the network (docs/learning.md): number encoding, attention layout, value
    pooling, and a width split into heads of ``head_dim`` (4x MLP).

    ``layout="set"``: bidirectional attention, one shared slot marker, per-field positions and the
    symmetrised pair head, so the network is exactly invariant to slot order (token encodings
    also keep attention within each number's field, or {12, 34} and {14, 32} would look alike);
    ``"causal"``: the LM layout (slot markers S0.., positions 0..L-1, causal mask).
    ``results`` (packed / numeric; ignored for token encodings): the pair head also embeds each
    move's exact result and its relation to the target, and the value is a soft-OR over the
    moves ("children" pool, which replaces ``pool``).
    """
    for name, value, allowed in (("encoding", encoding, ENCODINGS), ("layout", layout, LAYOUTS),
                                 ("pool", pool, POOLS)):
        if value not in allowed:
            raise ValueError(f"config argument {name}={value!r}; allowed {allowed}.")
    if width < 1 or head_dim < 1:
        raise ValueError(f"config arguments width={width}, head_dim={head_dim}; allowed >= 1.")
    c.tokenizer.number_encoding = encoding
    c.tokenizer.max_digits, c.tokenizer.whole_max = 4, 1000  # targets up to 999 fit exactly
    c.model.d_model, c.model.mlp_dim, c.model.head_dim = width, 4 * width, min(head_dim, width)
    c.model.num_heads = c.model.num_kv_heads = max(width // head_dim, 1)
    set_layout = layout == "set"
    c.tokenizer.slot_markers = "shared" if set_layout else "indexed"
    c.model.causal = not set_layout
    c.model.positions = "field" if set_layout else "sequence"
    c.model.pair_symmetric = set_layout
    c.model.field_attention = set_layout and encoding in ("whole", "digits")
    c.model.value_pool = pool
    if results and encoding in ("packed", "numeric"):  # token encodings carry no raw values
        c.model.pair_results, c.model.value_pool = True, "children"


def apply_size(c: ml_collections.ConfigDict, size: str) -> None:
    for k, v in parse_size(size).items():
        c.model[k] = v


def runlocal(c: ml_collections.ConfigDict) -> None:
    """Shrinks any config to a CPU smoke test of a few steps (keeps the model family)."""
    c.data.num_problems, c.data.eval_num_problems, c.data.eval_batches = 50, 20, 1
    c.train.steps, c.train.batch_size, c.train.warmup_steps = 10, 8, 2
    c.train.log_every, c.train.eval_every = 2, 5
    c.checkpoint.every = 5
    c.model.dtype = "float32"


def smollm2_config(preset: str, arg: str | None, batch_size: int, learning_rate: float,
                   steps: int) -> ml_collections.ConfigDict:
    """The SmolLM2-shaped GPU/TPU runs (``smollm2_*.py``): 20k problems of ``g4_t100`` (4 numbers,
    targets 1..100; g24's 1112 training problems would be memorised at once at these sizes, and
    the split hash keeps g24's val/test problems out), 8-slot states, bf16 compute with fp32
    master weights, scanned layers, ZeRO-3 over all devices; ``runlocal`` shrinks to a CPU smoke
    test (fp32, few steps)."""
    args = parse_arg(arg, {"runlocal": False})
    c = base_config()
    c.name = preset
    c.model.preset = preset
    c.model.dtype, c.model.param_dtype = "bfloat16", "float32"  # bf16 compute, fp32 master
    c.model.scan_layers = True  # one compiled block for 24-32 layers
    c.data.problem_class = "g4_t100"
    c.data.num_problems, c.data.eval_num_problems, c.data.eval_batches = 20000, 1000, 8
    c.train.steps, c.train.batch_size, c.train.learning_rate = steps, batch_size, learning_rate
    c.train.warmup_steps, c.train.log_every, c.train.eval_every = 500, 50, 1000
    c.checkpoint.every, c.checkpoint.keep = 1000, 3
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, -1, 1  # ZeRO-3 over all devices
    if args["runlocal"]:
        runlocal(c)
        c.mesh.data, c.mesh.fsdp = -1, 1
    c.lock()
    return c


def check_checkpoint(every: int, keep: int) -> None:
    """``config.checkpoint`` cadence and retention (also the ``train.checkpoint.Checkpointer``
    arguments): each >= 1; ``every=None`` saves only at the end (and on preemption)."""
    for name, value in (("every", every), ("keep", keep)):
        if name == "every" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"config.checkpoint.{name}={value!r} is out of range; allowed an "
                             "integer >= 1.")


CSV_FIELDS = (("data", "exclude_csv"), ("search_eval", "csv"), ("eval", "csv"))
# Integers >= 1, per section (a section a config lacks is skipped).
POSITIVE = {"train": ("log_every",),
            "sl": ("iterations", "train_steps", "selfplay_batch", "train_problems"),
            "grpo": ("iterations", "problems", "group", "steps_per_iter"),
            "ttt": ("simulations", "rollouts", "epochs", "lora_steps", "lora_rank", "batch_size"),
            "search_eval": ("batch_size",)}
# Cadences: an integer >= 1, or None for never (1_000_000 still reads as "past the end").
CADENCES = (("train", "eval_every"), ("sl", "eval_every"), ("checkpoint", "every"))
# (item type, may be empty). search_eval's may be empty at load (a training run with nothing to
# exclude); --mode=eval needs one of each (``train.run_model.search_eval_args``).
TUPLES = {("eval", "sets"): (str, False), ("eval", "simulations"): (int, False),
          ("sl", "curriculum"): (str, False), ("ttt", "targets"): (str, False),
          ("search_eval", "splits"): (str, True), ("search_eval", "methods"): (str, True),
          ("search_eval", "budgets"): (int, True), ("compare", "runs"): (str, True)}
# None instead of a 0 / "" sentinel: (type, what None means). Values must be > 0 / non-empty.
OPTIONAL = {("relabel", "max_value"): (int, "what the tokenizer encodes exactly"),
            ("train", "time_limit_s"): (float, "no limit"),
            ("sl", "time_limit_s"): (float, "no limit"),
            ("train", "peak_flops_per_device"): (float, "from the device kind"),
            ("ttt", "source"): (str, "--workdir")}
CHOICES = {("train", "value_loss"): ("bce", "mse"),
           ("init", "source"): ("scratch", "supervised", "hf"),
           ("sl", "value_targets"): ("outcome", "exact")}


def due(step: int, every: int | None) -> bool:
    """A cadence (``CADENCES``): every ``every`` steps; None: never."""
    return every is not None and step % every == 0


def _fail(section: str, field: str, value: Any, allowed: str) -> None:
    raise ValueError(f"config.{section}.{field}={value!r} is out of range; allowed {allowed}.")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _item_ok(x: Any, kind: type) -> bool:
    return _is_int(x) and x >= 1 if kind is int else isinstance(x, str) and bool(x.strip())


def check_values(config: Mapping[str, Any]) -> None:
    """The range, choice and tuple checks of every section the config has, in one place: one
    ValueError naming the field, its value and what is allowed. ``validate`` (``train.main``)
    and ``train.setup.build`` (a mode called from Python) run it before anything is written."""
    c = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
    has = lambda section, field: isinstance(c.get(section), Mapping) and field in c[section]
    for section, fields in POSITIVE.items():
        for field in (f for f in fields if has(section, f)):
            if not _is_int(v := c[section][field]) or v < 1:
                _fail(section, field, v, "an integer >= 1")
    for section, field in (k for k in CADENCES if has(*k)):
        if (v := c[section][field]) is not None and (not _is_int(v) or v < 1):
            _fail(section, field, v, "an integer >= 1, or None for never")
    if has("train", "steps_per_call") and (
            not _is_int(v := c["train"]["steps_per_call"]) or not 0 <= v <= 4096):
        _fail("train", "steps_per_call", v, "an integer in 0..4096 (0 = from the model's "
              "FLOPs per update)")
    if has("grpo", "group") and c["grpo"]["group"] < 2:
        _fail("grpo", "group", c["grpo"]["group"],
              ">= 2 (the advantage is relative to the group mean)")
    for (section, field), (kind, empty_ok) in TUPLES.items():
        if has(section, field) and (not isinstance(v := c[section][field], tuple | list) or (
                not v and not empty_ok) or not all(_item_ok(x, kind) for x in v)):
            what = "integers >= 1" if kind is int else "non-empty strings"
            _fail(section, field, v, f"a {'' if empty_ok else 'non-empty '}tuple of {what}, "
                  f"e.g. --config.{section}.{field}=" + ("8,32" if kind is int else "a,b"))
    for (section, field), (kind, none) in OPTIONAL.items():
        if has(section, field) and (v := c[section][field]) is not None and not (
                (_is_int(v) or kind is float and isinstance(v, float)) and v > 0
                if kind is not str else isinstance(v, str) and v):
            _fail(section, field, v, f"{'a non-empty string' if kind is str else '> 0'}, or "
                  f"None for {none}")
    for (section, field), allowed in CHOICES.items():
        if has(section, field) and c[section][field] not in allowed:
            raise ValueError(f"config.{section}.{field}={c[section][field]!r}; allowed "
                             f"{', '.join(allowed)}.")
    if "sl" in c:
        sl = c["sl"]
        if not 0 < sl["curriculum_threshold"] <= 1:
            _fail("sl", "curriculum_threshold", sl["curriculum_threshold"], "(0, 1]")
        share = sl.get("stream_share", 0.0)
        if not 0 <= share <= 1:
            _fail("sl", "stream_share", share, "[0, 1]")
        if share and not c["data"]["mixture"]:
            raise ValueError(f"config.sl.stream_share={share} needs config.data.mixture "
                             "(the stream's problem classes).")


def from_json(cfg: dict) -> dict:
    """A run's ``config.json`` as today's types: lists become tuples, and runs written before
    the typed values keep working (comma strings of the tuple fields become tuples, the
    ``0`` / ``""`` sentinels of ``OPTIONAL`` become None)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in cfg.items()}
    for section, field in TUPLES:
        if isinstance(sec := out.get(section), dict) and field in sec:
            v = sec[field]
            sec[field] = TupleParser().parse(v) if isinstance(v, str) else tuple(v)
    for section, field in OPTIONAL:
        if isinstance(sec := out.get(section), dict) and sec.get(field, None) in (0, ""):
            sec[field] = None
    return out


def validate(config: Mapping[str, Any]) -> None:
    """Checks that need no data and no devices, run by ``train.modes.run`` before anything is
    written (the modes check the rest, also before writing): ``check_values``, checkpoint
    cadence and retention, and every csv the config names exists, is a file and is text."""
    from scaling.workdir import check_input_file  # ground floor: no jax, no train

    c = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)
    check_values(c)
    if "checkpoint" in c:
        check_checkpoint(c["checkpoint"]["every"], c["checkpoint"]["keep"])
    for section, field in CSV_FIELDS:
        sec = c.get(section)
        path = sec.get(field) if isinstance(sec, dict) else None
        if path:
            check_input_file(path, f"config.{section}.{field}")
