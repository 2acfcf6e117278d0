"""Unit tests of train/: configs, mesh, optimizer, metrics, run record, checkpoint wrapper."""

import glob
import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from nnx_models import tokenizer
from train import checkpoint, metrics, optim, run_record, steps
from train import mesh as mesh_lib
from train.configs import common

CONFIG_FILES = sorted(p for p in glob.glob(os.path.join(os.path.dirname(__file__), "..", "train",
                                                       "configs", "*.py"))
                      if os.path.basename(p) not in ("__init__.py", "common.py"))


# ----------------------------------------------------------------------------- configs


def _parse(argv: list[str]):
    """What train/main.py's absl flag parsing does with these arguments."""
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True,
                                    sys_argv=argv)
    fv(argv)
    return fv.config


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_config_files_locked_and_documented(path):
    name = os.path.basename(path)
    c = _parse(["prog", f"--config={path}:runlocal", "--config.train.steps=7"])
    assert c.train.steps == 7 and c.is_locked
    doc = open(path).read().split('"""')[1].strip().splitlines()
    commands = [line.strip() for line in doc[1:6] if line.strip().startswith(("python", "bash"))]
    assert any(c.startswith(f"python -m train.main --config=train/configs/{name}")
               for c in commands), commands  # the docstring opens with how to run it
    with pytest.raises(AttributeError):
        c.train.stpes = 3  # locked: a typo is an error, not a new field


def test_config_override_typo_fails_parsing():
    with pytest.raises((flags.Error, AttributeError), match="Did you mean \"steps\""):
        _parse(["prog", f"--config={CONFIG_FILES[0]}", "--config.train.stpes=3"])


def test_config_string_arguments():
    from train.configs import g24_supervised

    c = g24_supervised.get_config("size=d3,runlocal")
    assert (c.model.depth, c.train.steps) == (3, 10)
    assert common.parse_arg("a=2,b", {"a": 1, "b": False}) == {"a": 2, "b": True}
    with pytest.raises(ValueError, match="'sise' .* allowed keys"):
        g24_supervised.get_config("sise=d2")
    with pytest.raises(ValueError, match="size='x2' is invalid"):
        g24_supervised.get_config("size=x2")
    assert common.parse_size("smollm2_135m") == {"preset": "smollm2_135m"}


def test_typed_config_values_from_the_command_line_and_old_run_dirs():
    """Tuples from comma lists, None fields overridable, one-line range errors naming the field,
    and an old ``config.json`` (comma strings, 0 sentinels) read as today's types."""
    c = _parse(["prog", "--config=train/configs/search.py:runlocal",
                "--config.search_eval.budgets=8,32",
                "--config.search_eval.splits=g4_t100:test:100,n5:test:100",
                "--config.eval.simulations=4", "--config.sl.curriculum=g24,n5",
                "--config.relabel.max_value=50", "--config.train.time_limit_s=60"])
    assert c.search_eval.budgets == (8, 32) and c.eval.simulations == (4,)
    assert c.search_eval.splits == ("g4_t100:test:100", "n5:test:100")
    assert c.sl.curriculum == ("g24", "n5") and c.ttt.targets == ("wq", "wv", "w_up")
    assert (c.relabel.max_value, c.train.time_limit_s, c.ttt.source) == (50, 60.0, None)
    assert _parse(["prog", "--config=train/configs/g24_supervised.py",
                   "--config.search_eval.splits="]).search_eval.splits == ()
    common.check_values(c)
    for key, value, message in [
            ("eval.simulations", (0, 8), r"config.eval.simulations=\(0, 8\) is out of range; "
             r"allowed a non-empty tuple of integers >= 1"),
            ("eval.sets", (), r"config.eval.sets=\(\) is out of range"),
            ("sl.eval_every", 0, r"config.sl.eval_every=0 is out of range; allowed an integer "
             r">= 1, or None for never"),
            ("train.time_limit_s", 0.0, r"config.train.time_limit_s=0.0 .* or None for no limit"),
            ("search_eval.batch_size", 0, r"config.search_eval.batch_size=0 is out of range"),
            ("train.value_loss", "l1", r"config.train.value_loss='l1'; allowed bce, mse")]:
        d = _parse(["prog", "--config=train/configs/search.py:runlocal"])
        section, field = key.split(".")
        with d.unlocked():
            d[section][field] = value
        with pytest.raises(ValueError, match=message):
            common.check_values(d)
    d = _parse(["prog", "--config=train/configs/search.py:runlocal"])
    d.sl.eval_every, d.checkpoint.every = None, None  # never (and still overridable)
    common.validate(d)
    assert not common.due(4, None) and common.due(4, 2) and not common.due(3, 2)
    old = {"eval": {"sets": "g24:test:8,n5:test:4", "simulations": "2,4"},
           "search_eval": {"splits": ["g24:test:32"], "budgets": "1,8", "methods": "mcts"},
           "relabel": {"max_value": 0}, "train": {"time_limit_s": 0.0, "eval_every": 5}}
    assert common.from_json(old) == {
        "eval": {"sets": ("g24:test:8", "n5:test:4"), "simulations": (2, 4)},
        "search_eval": {"splits": ("g24:test:32",), "budgets": (1, 8), "methods": ("mcts",)},
        "relabel": {"max_value": None}, "train": {"time_limit_s": None, "eval_every": 5}}


def test_model_config_from_config():
    from train.configs import g24_supervised

    tok = tokenizer.TokenizerConfig(n_max=4)
    c = g24_supervised.get_config("size=d2").to_dict()
    mc = steps.model_config(c["model"], tok)
    assert (mc.depth, mc.d_model, mc.vocab_size, mc.n_max) == (2, 128, tok.vocab_size, 4)
    c["model"]["depth"] = 0
    with pytest.raises(ValueError, match=r"config.model.depth=0 is out of range; allowed an int"):
        steps.model_config(c["model"], tok)
    c["model"].update(depth=2, preset="smollm2_135m")
    mc = steps.model_config(c["model"], tok)
    assert (mc.depth, mc.d_model, mc.num_kv_heads, mc.vocab_size) == (30, 576, 3, tok.vocab_size)


# ----------------------------------------------------------------------------- mesh


def test_mesh_shapes_and_errors():
    assert mesh_lib.mesh_shape({"data": -1, "fsdp": 2, "tensor": 2}, 8) == (2, 2, 2)
    assert mesh_lib.mesh_shape({"data": 8, "fsdp": 1, "tensor": 1}, 8) == (8, 1, 1)
    with pytest.raises(ValueError, match="needs 4 devices but 8"):
        mesh_lib.mesh_shape({"data": 2, "fsdp": 2, "tensor": 1}, 8)
    with pytest.raises(ValueError, match="at most one axis"):
        mesh_lib.mesh_shape({"data": -1, "fsdp": -1, "tensor": 1}, 8)
    with pytest.raises(ValueError, match=r"config.mesh.tensor=0 is invalid"):
        mesh_lib.mesh_shape({"data": -1, "fsdp": 1, "tensor": 0}, 8)
    with pytest.raises(ValueError, match="not divisible by the fixed axes' product 3"):
        mesh_lib.mesh_shape({"data": -1, "fsdp": 3, "tensor": 1}, 8)
    mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert mesh_lib.data_parallel_size(mesh) == 4
    with pytest.raises(ValueError, match=r"config.train.batch_size=6 is not divisible by the "
                                         r"data-parallel size 4"):
        mesh_lib.check_batch_size(6, mesh)
    mesh_lib.check_batch_size(8, mesh)


# ----------------------------------------------------------------------------- optimizer

TRAIN = dict(steps=10, learning_rate=0.1, warmup_steps=2, min_lr_ratio=0.1, weight_decay=0.5,
             b1=0.9, b2=0.95, eps=1e-8, grad_clip_norm=0.0, grad_accum_steps=1)


def test_schedule_warmup_cosine():
    sched = optim.make_schedule(TRAIN)
    np.testing.assert_allclose([sched(0), sched(1), sched(2), sched(10)], [0.0, 0.05, 0.1, 0.01],
                               rtol=1e-6, atol=1e-9)
    assert sched(2) > sched(6) > sched(10)


def test_optimizer_validation():
    with pytest.raises(ValueError, match=r"config.train.learning_rate=-1.0 is out of range"):
        optim.make_optimizer({**TRAIN, "learning_rate": -1.0})
    with pytest.raises(ValueError, match=r"config.train.grad_accum_steps=0"):
        optim.make_optimizer({**TRAIN, "grad_accum_steps": 0})
    with pytest.raises(ValueError, match="warmup_steps=20 exceeds"):
        optim.make_optimizer({**TRAIN, "warmup_steps": 20})


def test_accumulation_equals_mean_gradient_and_decay_mask():
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones((2,))}
    g1 = {"w": jnp.full((2, 2), 1.0), "b": jnp.full((2,), 2.0)}
    g2 = {"w": jnp.full((2, 2), 3.0), "b": jnp.full((2,), -1.0)}
    acc = optim.make_optimizer({**TRAIN, "grad_accum_steps": 2, "warmup_steps": 0})
    plain = optim.make_optimizer({**TRAIN, "warmup_steps": 0})
    s = acc.init(params)
    u, s = acc.update(g1, s, params)
    assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(u))  # no update yet
    u, s = acc.update(g2, s, params)
    mean = jax.tree.map(lambda a, b: (a + b) / 2, g1, g2)
    ref, _ = plain.update(mean, plain.init(params), params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), u, ref)
    # Same gradient sign on w and b, but only the matrix w is decayed (vectors are masked out).
    zero = jax.tree.map(jnp.zeros_like, params)
    u0, _ = plain.update(zero, plain.init(params), params)
    assert float(u0["w"][0, 0]) < 0 and float(u0["b"][0]) == 0


# ----------------------------------------------------------------------------- metrics, run record


def test_metric_writer_outputs(tmp_path):
    w = metrics.MetricWriter(str(tmp_path), total_steps=3, enabled=True, progress=False)
    w.write(1, {"train/loss": 2.0})
    w.write(1, {"eval/loss": 3.0})
    w.write(2, {"train/loss": float("nan")})
    w.close()
    rows = metrics.read_jsonl(str(tmp_path / "metrics.jsonl"))
    assert rows[0]["train/loss"] == 2.0 and rows[0]["eval/loss"] == 3.0
    assert rows[1]["train/loss"] == "nan"
    assert glob.glob(str(tmp_path / "tb" / "events.out.tfevents.*"))
    assert metrics.mfu(989e12 * 4, "NVIDIA H100 80GB HBM3", 8) == pytest.approx(0.5)
    assert metrics.peak_flops_per_device("TPU v5 lite") == 197e12
    assert metrics.mfu(1e12, "cpu", 1) is None
    assert metrics.mfu(1e12, "cpu", 1, override=2e12) == pytest.approx(0.5)


def test_run_record_contract(tmp_path):
    counts = {"total": 120, "embedding": 20, "non_embedding": 100}
    kw = dict(name="r", config={"a": 1}, param_counts=counts, flops_per_token=600.0, tokens=1000,
              steps=5, final_metrics={"eval/loss": np.float32(1.5)}, wall_time_s=2.0)
    run_record.write_run_record(str(tmp_path), **kw, search_evals=[{"split": "val"}])
    run_record.write_run_record(str(tmp_path), **kw)  # keeps the search_evals already there
    rec = json.loads((tmp_path / "run.json").read_text())
    assert set(run_record.REQUIRED_KEYS) <= set(rec)
    assert (rec["params"], rec["params_total"], rec["train_flops"]) == (100, 120, 600.0 * 1000)
    assert rec["search_evals"] == [{"split": "val"}] and rec["device_count"] == jax.device_count()
    with pytest.raises(ValueError, match="param_counts lacks .embedding"):
        run_record.write_run_record(str(tmp_path), **{**kw, "param_counts": {"total": 1}})


# ----------------------------------------------------------------------------- checkpoints


def test_checkpointer_roundtrip_sharded_keep_last(tmp_path):
    mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    sh = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("fsdp", "tensor"))
    tree = {"w": jax.device_put(jnp.arange(32.0).reshape(8, 4), sh), "n": jnp.int32(3),
            "rng": checkpoint.rng_to_data(jax.random.key(1))}
    ck = checkpoint.Checkpointer(str(tmp_path / "ck"), every=2, keep=2)
    assert ck.should_save(4) and not ck.should_save(3)
    for step in (2, 4, 6):
        ck.save(step, jax.tree.map(lambda x, s=step: x + s, tree), {"data_position": step})
    assert not ck.save(6, tree, {})  # an existing step is not rewritten
    ck.wait()
    assert ck.all_steps() == [4, 6] and ck.latest_step() == 6
    out, meta = ck.restore(6, checkpoint.abstract_like(tree))
    ck.close()
    assert meta == {"data_position": 6}
    np.testing.assert_array_equal(out["w"], np.arange(32.0).reshape(8, 4) + 6)
    assert out["w"].sharding == sh
    with pytest.raises(ValueError, match="config.checkpoint.keep=0"):
        checkpoint.Checkpointer(str(tmp_path / "x"), every=1, keep=0)


def test_preemption_guard_and_unwritable_workdir(tmp_path):
    with checkpoint.PreemptionGuard() as guard:
        os.kill(os.getpid(), signal.SIGTERM)
        assert guard.requested
    assert signal.getsignal(signal.SIGTERM) is not guard._handler
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="is not writable"):
        checkpoint.ensure_writable(str(blocker / "run"))
    assert checkpoint.rng_from_data(checkpoint.rng_to_data(jax.random.key(3))).dtype == \
        jax.random.key(3).dtype
