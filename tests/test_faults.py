"""Faults and recovery (issue 16): corrupt checkpoints, shared workdirs, read-only outputs,
kill-and-resume metrics, one-line config errors. Tiny CPU runs; ``scripts/chaos.py`` is the soak
test (random kills and corruptions, not part of ``make test``)."""

import glob
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import corrupt_checkpoint as corrupt
from helpers import final_params

from scaling import workdir as workdir_lib
from search import datasets, sweep
from train import checkpoint as ckpt_lib
from train import metrics, modes
from train.configs import common, g24_supervised

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tiny supervised run: d1 model, 4-slot whole-number states, 60 updates, checkpoints at
# 20, 40, 60, a metrics row every update (so a kill leaves rows after the last checkpoint).
TINY = {"data.n_max": 4, "data.num_problems": 60, "data.eval_num_problems": 20,
        "data.eval_batches": 0, "data.generate_if_missing": False,
        "tokenizer.number_encoding": "whole", "tokenizer.whole_max": 40, "model.depth": 1,
        "train.batch_size": 16, "train.learning_rate": 3e-3, "train.warmup_steps": 2,
        "train.steps": 60, "train.log_every": 1, "train.eval_every": 30,
        "checkpoint.every": 20, "checkpoint.keep": 10,
        "search_eval.splits": ("g24:test:4",), "search_eval.budgets": (1,)}
CORRUPTIONS = ("truncate_data", "zero_data", "meta", "state_metadata")


def tiny_config(data_dir: str, **overrides):
    c = g24_supervised.get_config("runlocal")
    for key, value in {**TINY, "data.data_dir": data_dir, **overrides}.items():
        section, field = key.split(".")
        c[section][field] = value
    return c


def _cli(c, workdir: str) -> list[str]:
    """``python -m train.main`` with the same config as ``c`` (a None field is left at the
    config file's None: the command line gives fields values, never None)."""
    return [sys.executable, "-m", "train.main", "--config=train/configs/g24_supervised.py:runlocal",
            f"--workdir={workdir}"] + [f"--config.{s}.{k}={v}" for s in (
                "data", "tokenizer", "model", "train", "checkpoint", "search_eval")
                for k, v in c[s].items() if v is not None]


@pytest.fixture(scope="module")
def env():
    return {**os.environ, "PYTHONPATH": REPO}  # the session's compilation cache (conftest.py)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from train import data

    path = str(tmp_path_factory.mktemp("data"))
    data.generate(tiny_config(path), path)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir):
    """An uninterrupted run in this process: (workdir, returned metrics)."""
    work = str(tmp_path_factory.mktemp("ref") / "run")
    return work, modes.run("supervised", tiny_config(data_dir), work)


def _digest(root: str) -> dict[str, str]:
    return {os.path.relpath(p, root): hashlib.sha256(open(p, "rb").read()).hexdigest()
            for p in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True))
            if os.path.isfile(p)}


def _train_rows(work: str) -> list[tuple[int, float]]:
    """(step, train/loss) of every raw metrics.jsonl row that has one (not merged per step; a
    row being written right now is skipped)."""
    out = []
    for line in open(os.path.join(work, "metrics.jsonl")):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if "train/loss" in row:
            out.append((row["step"], row["train/loss"]))
    return out


def _same_params(work: str, ref: str, step: int) -> None:
    for a, b in zip(final_params(work, step), final_params(ref, step), strict=True):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- corrupt checkpoints


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_corrupt_step_is_moved_aside_and_the_previous_one_restored(tmp_path, how, caplog):
    """Each way of damaging a step: one warning naming it and why, ``corrupt-<step>`` beside
    the others, the previous step restored; none restoring is one error listing every step."""
    d = str(tmp_path / "run" / "checkpoints")
    ck = ckpt_lib.Checkpointer(d, every=1, keep=5, async_save=False)
    state = {"params": {"w": jnp.arange(400.0), "b": {"c": jnp.ones((8, 8))}},
             "opt": [jnp.zeros(3), {"m": jnp.ones(4)}]}
    for s in (1, 2, 3):
        ck.save(s, jax.tree.map(lambda x, s=s: x + s, state), {"s": s})
    ck.close()
    corrupt(os.path.join(d, "3"), how)
    why = {"truncate_data": "state data does not read back", "zero_data":
           "state data does not read back", "meta": "meta/metadata is not valid JSON",
           "state_metadata": "state/_METADATA is not valid JSON"}[how]
    # A reader (--mode=eval of someone else's run) falls back without moving anything.
    with caplog.at_level(logging.WARNING):
        assert ckpt_lib.restorable_step(d) == 2
    assert sorted(os.listdir(d)) == ["1", "2", "3"]
    caplog.clear()
    ck = ckpt_lib.Checkpointer(d, every=1, keep=5)
    with caplog.at_level(logging.WARNING):
        assert ck.latest_step() == 2
    warnings = [r.getMessage() for r in caplog.records if "does not restore" in r.getMessage()]
    assert len(warnings) == 1 and f"step 3 does not restore: {why}" in warnings[0]
    assert "moved to corrupt-3" in warnings[0] and "using step 2" in warnings[0]
    assert sorted(os.listdir(d)) == ["1", "2", "corrupt-3"] and ck.all_steps() == [1, 2]
    out, meta = ck.restore(2, ckpt_lib.abstract_like(state))
    assert meta == {"s": 2} and float(out["params"]["w"][0]) == 2.0
    ck.save(3, state, {"s": 3})  # the run goes on and saves step 3 again
    ck.close()
    assert sorted(os.listdir(d)) == ["1", "2", "3", "corrupt-3"]
    for s in (1, 2, 3):
        corrupt(os.path.join(d, str(s)), how)
    ck = ckpt_lib.Checkpointer(d, every=1, keep=5)
    with pytest.raises(ckpt_lib.CheckpointError) as e:
        ck.latest_step()
    ck.close()
    msg = str(e.value)
    assert f"no checkpoint in {d} restores (tried 3:" in msg and "Nothing was moved" in msg
    assert all(f"step {s}: {why}" in msg for s in (3, 2, 1))
    assert sorted(os.listdir(d)) == ["1", "2", "3", "corrupt-3"]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["zero_data", "meta", "state_metadata"])
def test_corrupt_newest_checkpoint_resume_matches_uninterrupted(tmp_path, data_dir, reference,
                                                                how, caplog):
    """The run resumes from the previous checkpoint and ends identical to the uninterrupted one
    (parameters, final metrics, metrics.jsonl rows); ``--mode=eval`` also uses that one."""
    ref, ref_out = reference
    work = str(tmp_path / "run")
    shutil.copytree(ref, work)
    corrupt(os.path.join(work, "checkpoints", "60"), how)
    c = tiny_config(data_dir)
    if how == "meta":  # --mode=eval on the damaged run: step 40, the bad one moved aside
        with caplog.at_level(logging.WARNING):
            ev = modes.run("eval", c, work)
        assert ev["update"] == 40
        assert any("step 60 does not restore: meta/metadata" in r.getMessage()
                   for r in caplog.records)
    with caplog.at_level(logging.WARNING):
        out = modes.run("supervised", c, work)
    assert os.path.isdir(os.path.join(work, "checkpoints", "corrupt-60"))
    if how != "meta":
        assert any("step 60 does not restore" in r.getMessage() and "using step 40" in
                   r.getMessage() for r in caplog.records)
    assert out["update"] == 60 and out["eval/loss"] == ref_out["eval/loss"]
    _same_params(work, ref, 60)
    assert _train_rows(work) == _train_rows(ref)  # rows 41..60 once, not twice
    rec, ref_rec = (json.load(open(os.path.join(w, "run.json"))) for w in (work, ref))
    assert rec["final_metrics"] == ref_rec["final_metrics"] and rec["steps"] == 60


# ----------------------------------------------------------------------------- shared workdirs


def _tb_purge_steps(tb_dir: str) -> list[int]:
    """Steps of the SessionLog.START events (TensorBoard's purge marks) in the event files."""
    from tensorboardX.proto import event_pb2

    out = []
    for path in glob.glob(os.path.join(tb_dir, "events.out.tfevents.*")):
        data = open(path, "rb").read()
        i = 0
        while i + 12 <= len(data):  # TFRecord: u64 length, u32 crc, payload, u32 crc
            (n,) = struct.unpack("<Q", data[i:i + 8])
            ev = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
            if ev.HasField("session_log") and ev.session_log.status == ev.session_log.START:
                out.append(ev.step)
            i += 16 + n
    return sorted(out)


@pytest.mark.slow
def test_second_run_refused_stale_lock_taken_over_metrics_not_duplicated(tmp_path, data_dir,
                                                                        reference, env):
    """Run A trains; while it holds the workdir, run B is refused at once (exit 2, naming A's
    host, PID and start time) and changes nothing. A is then SIGKILLed after a checkpoint, with
    rows logged past it; the rerun takes over the stale lock, resumes, and ends with the
    uninterrupted run's parameters and metrics rows, each step once; TensorBoard is told to
    purge the steps after the restored one."""
    ref = reference[0]
    c = tiny_config(data_dir)
    work, log = str(tmp_path / "run"), str(tmp_path / "a.log")
    a = subprocess.Popen(_cli(c, work), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                         stderr=open(log, "w"))
    ckdir, jsonl = os.path.join(work, "checkpoints"), os.path.join(work, "metrics.jsonl")
    t0 = time.time()
    while not (os.path.isdir(os.path.join(ckdir, "20")) and os.path.isfile(jsonl)
               and max([s for s, _ in _train_rows(work)] or [0]) >= 22):
        assert a.poll() is None, open(log).read()[-3000:]
        assert time.time() - t0 < 240, "run A did not reach its first checkpoint"
        time.sleep(0.01)
    a.send_signal(signal.SIGSTOP)  # frozen while it holds the lock: nothing of it changes
    try:
        lock = json.load(open(os.path.join(work, workdir_lib.LOCK_NAME)))
        assert lock["pid"] == a.pid
        before = _digest(work)
        b = subprocess.run(_cli(c, work), cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=120)
        assert b.returncode == 2, b.stderr[-2000:]
        err = b.stderr.strip().splitlines()
        assert len([x for x in err if x.startswith("error:")]) == 1
        assert f"--workdir={work} is in use by another run: host {socket.gethostname()}, " \
               f"PID {a.pid}, started {lock['start']}" in b.stderr
        assert "Traceback" not in b.stderr
        assert _digest(work) == before
    finally:
        a.send_signal(signal.SIGKILL)
        a.wait()
    killed = max(s for s, _ in _train_rows(work))
    restored = max(int(s) for s in os.listdir(ckdir) if s.isdigit())
    assert 22 <= killed < 60 and restored <= killed  # rows after the last checkpoint, mostly
    r = subprocess.run(_cli(c, work), cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"took over the stale lock {os.path.join(work, workdir_lib.LOCK_NAME)} (PID {a.pid}" \
           in r.stderr and "is dead" in r.stderr
    assert not os.path.exists(os.path.join(work, workdir_lib.LOCK_NAME))  # released at the end
    steps = [s for s, _ in _train_rows(work)]
    assert len(steps) == len(set(steps)) == 60 and steps == sorted(steps)
    np.testing.assert_allclose([x for _, x in _train_rows(work)],
                               [x for _, x in _train_rows(ref)], rtol=0, atol=1e-6)
    for x, y in zip(final_params(work, 60), final_params(ref, 60), strict=True):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)
    assert restored + 1 in _tb_purge_steps(os.path.join(work, "tb"))


def test_lock_reentrant_nested_stale_and_refusal_messages(tmp_path):
    work = str(tmp_path / "a" / "run")
    path = os.path.join(work, workdir_lib.LOCK_NAME)
    with workdir_lib.hold(work):  # flagship: <workdir>, again <workdir>, then <workdir>/warm
        with workdir_lib.hold(work), workdir_lib.hold(os.path.join(work, "warm")):
            assert workdir_lib.held(work) and workdir_lib.held(os.path.join(work, "warm"))
            assert os.path.isfile(os.path.join(work, "warm", workdir_lib.LOCK_NAME))
        assert os.path.isfile(path) and not os.path.exists(os.path.join(work, "warm"))
        code = ("import sys; from scaling import workdir as w; "
                f"w.WorkdirLock({work!r}, flag='--data_dir').acquire()")
        r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                           text=True, timeout=60)
        holder = json.load(open(path))
        assert r.returncode == 1 and f"--data_dir={work} is in use by another run: host " \
            f"{holder['host']}, PID {os.getpid()}, started {holder['start']}" in r.stderr
    assert not os.path.exists(tmp_path / "a")  # the lock created the directories: removed
    # A live holder on this host (a sleeping child) is refused; a dead one is taken over.
    child = subprocess.Popen(["sleep", "30"])
    try:
        os.makedirs(work)
        info = {"host": socket.gethostname(), "pid": child.pid, "start_time": time.time(),
                "start": "then", "command": "train"}
        json.dump(info, open(path, "w"))
        with pytest.raises(ValueError, match=rf"PID {child.pid}, started then \(train\)"):
            workdir_lib.WorkdirLock(work).acquire()
    finally:
        child.kill()
        child.wait()
    with workdir_lib.hold(work):
        assert json.load(open(path))["pid"] == os.getpid()
    # Our own PID in a lock we do not hold: an earlier process (a restarted container).
    json.dump({**info, "pid": os.getpid()}, open(path, "w"))
    with workdir_lib.hold(work):
        assert json.load(open(path))["pid"] == os.getpid()
    # Another host cannot be checked: refused, naming the file to delete.
    json.dump({**info, "host": "elsewhere"}, open(path, "w"))
    with pytest.raises(ValueError, match=rf"host elsewhere, .*delete {re.escape(path)}"):
        workdir_lib.WorkdirLock(work).acquire()
    os.remove(path)
    with workdir_lib.hold(work, primary=False):  # multi-process: process 0 locks, others not
        assert not os.path.exists(path)


# ----------------------------------------------------------------------------- read-only outputs


def _read_only(path: str, cmd: list[str]) -> list[str]:
    """``cmd`` run with ``path`` bind-mounted read-only (a private mount namespace)."""
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs unshare -m (root or user namespaces) for a read-only mount")
    q = lambda s: "'" + s.replace("'", "'\\''") + "'"
    return ["unshare", "-m", "sh", "-c", f"mount --bind -o ro {q(path)} {q(path)} && exec "
            + " ".join(q(a) for a in cmd)]


@pytest.mark.slow
def test_read_only_outputs_exit_before_any_compute(tmp_path, reference, env):
    ro = str(tmp_path / "ro")
    shutil.copytree(reference[0], ro)
    before = _digest(ro)
    cases = [  # (command, exit code, text naming the flag, text only compute prints)
        ([sys.executable, "-m", "train.main", "--mode=eval", f"--workdir={ro}",
          "--config=train/configs/g24_supervised.py:runlocal"], 2,
         f"--workdir={ro!r} is not writable",
         "[train] eval"),
        ([sys.executable, "-m", "search.eval", f"--workdir={ro}", "--model=uniform",
          "--splits=g24:test:4", "--methods=uniform_mcts", "--budgets=1"], 2,
         f"--workdir={ro!r} is not writable", "[search.eval] wrote"),
        ([sys.executable, "-m", "search.datasets", f"--data_dir={ro}", "--num_problems=5"], 2,
         f"--data_dir={ro!r} is not writable", "labelling"),
        ([sys.executable, "-m", "scaling.main", f"--runs={ro}", f"--out={ro}/report"], 1,
         f"--out={ro + '/report'!r} is not writable", "runs ->"),
    ]
    for cmd, code, named, computed in cases:
        r = subprocess.run(_read_only(ro, cmd), cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == code and named in r.stderr, (cmd, r.stderr[-2000:])
        assert computed not in r.stdout + r.stderr and "Traceback" not in r.stderr
    assert _digest(ro) == before


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args, message", [
    (["--config=train/configs/g24_supervised.py:runlocal", "--config.train.stpes=5"],
     "error: --config.train.stpes=5: config.train has no field 'stpes'; did you mean 'steps'?"),
    (["--config=train/configs/nope.py"],
     "error: --config=train/configs/nope.py: no config file 'train/configs/nope.py'"),
    (["--config=train/configs/g24_supervised.py:runlocal,foo=1"],
     "error: --config=train/configs/g24_supervised.py:runlocal,foo=1: config argument 'foo' (in "
     "'runlocal,foo=1') is unknown; allowed keys: ['runlocal', 'size']."),
    (["--config=train/configs/g24_supervised.py:runlocal", "--config.checkpoint.keep=0"],
     "error: config.checkpoint.keep=0 is out of range; allowed an integer >= 1."),
    (["--config=train/configs/g24_supervised.py:runlocal", "--config.search_eval.budgets=0,8"],
     "error: config.search_eval.budgets=(0, 8) is out of range; allowed a tuple of integers >= 1"),
    (["--config=train/configs/g24_supervised.py:runlocal", "--config.search_eval.csv=train"],
     "error: config.search_eval.csv='train' is a directory; pass the path of a csv file."),
])
def test_config_errors_one_line_exit_2_nothing_written(tmp_path, args, message):
    work = tmp_path / "runs" / "run"
    r = subprocess.run([sys.executable, "-m", "train.main", f"--workdir={work}", *args],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith(message), r.stderr
    assert not (tmp_path / "runs").exists()  # neither the workdir nor ../data


def test_bad_csv_split_and_dataset_inputs_named(tmp_path, env, capsys):
    binary, folder = tmp_path / "bad.csv", tmp_path / "csvdir"
    binary.write_bytes(b"Rank,Puzzles\n\xff\xfe\x00garbage")
    folder.mkdir()
    with pytest.raises(ValueError, match=rf"--csv='{binary}' is not a text csv: byte 0xff"):
        workdir_lib.check_input_file(str(binary), "--csv")
    with pytest.raises(ValueError, match=rf"--csv='{folder}' is a directory"):
        workdir_lib.check_input_file(str(folder), "--csv")
    with pytest.raises(ValueError, match=r"--csv='nope.csv' does not exist"):
        workdir_lib.check_input_file("nope.csv", "--csv")
    with pytest.raises(ValueError, match=r"split 'g24:test:0': count='0' is out of range; "
                                         r"allowed an integer >= 1"):
        sweep.load_split("g24:test:0")
    with pytest.raises(ValueError, match=r"config.data.exclude_csv=.* is not a text csv"):
        common.validate(tiny_config("", **{"data.exclude_csv": str(binary)}))
    # search.datasets reads the csv before it labels anything; nothing is built.
    data = tmp_path / "data"
    for csv, named in ((binary, "is not a text csv"), (folder, "is a directory")):
        assert datasets.cli(["datasets", f"--data_dir={data}", "--num_problems=5",
                             f"--tot_csv={csv}"]) == 2
        assert f"error: --tot_csv='{csv}' {named}" in capsys.readouterr().err
    assert not data.exists()
    r = subprocess.run([sys.executable, "-m", "search.eval", f"--workdir={tmp_path / 'ev'}",
                        "--model=uniform", "--splits=g24:test:0", "--methods=uniform_mcts",
                        "--budgets=1"], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "count='0' is out of range" in r.stderr
    assert not (tmp_path / "ev").exists()


def test_incomplete_build_folders_cleaned_when_abandoned(tmp_path):
    root = tmp_path / "data"
    done = root / "zero24_supervised" / "x" / datasets.VERSION
    done.mkdir(parents=True)
    (done / datasets.PARAMS_FILE).write_text("{}")
    dead = subprocess.Popen(["true"])
    dead.wait()
    folders = {"dead_owner": {"host": socket.gethostname(), "pid": dead.pid, "time": 0.0},
               "live_owner": {"host": socket.gethostname(), "pid": os.getpid(), "time": 0.0},
               "no_owner": None, "other_host_old": {"host": "elsewhere", "pid": 1, "time": 0.0},
               "other_host_new": {"host": "elsewhere", "pid": 1, "time": time.time()},
               "newer_than_build": {"host": socket.gethostname(), "pid": dead.pid, "time": 0.0}}
    old = os.path.getmtime(done / datasets.PARAMS_FILE) - 100
    for name, owner in folders.items():
        d = root / f".incomplete-zero24_supervised-{name}-0"
        d.mkdir()
        if owner:
            (d / datasets.OWNER_FILE).write_text(json.dumps(owner))
        if name != "newer_than_build":
            os.utime(d, (old, old))
    datasets._clean_incomplete(root)
    left = sorted(p.name.split("-")[2] for p in root.glob(".incomplete-*"))
    assert left == ["live_owner", "newer_than_build", "other_host_new"]


def test_metrics_cut_back_on_resume_and_torn_rows(tmp_path):
    path = tmp_path / "metrics.jsonl"
    w = metrics.MetricWriter(str(tmp_path), 10, enabled=True, progress=False)
    for s in range(6):
        w.write(s, {"train/loss": float(s)})
    w.close()
    with open(path, "a") as f:
        f.write('{"step": 6, "train/lo')  # a kill in the middle of a write
    w = metrics.MetricWriter(str(tmp_path), 10, initial_step=3, enabled=True, progress=False)
    w.write(4, {"train/loss": 40.0})
    w.close()
    assert [(r["step"], r["train/loss"]) for r in metrics.read_jsonl(str(path))] == [
        (0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]
    assert _tb_purge_steps(str(tmp_path / "tb")) == [4]
    metrics.MetricWriter(str(tmp_path), 10, enabled=True, progress=False).close()
    assert path.read_text() == ""  # a run that starts over starts a new log


def test_multihost_connect_prints_progress_naming_the_coordinator(env):
    from launch import local

    addr = f"127.0.0.1:{local.free_port()}"  # nobody listens there
    r = subprocess.run([sys.executable, "-m", "train.main", "--multihost",
                        f"--coordinator_address={addr}", "--num_processes=2", "--process_id=1",
                        "--multihost_timeout=3",
                        "--config=train/configs/g24_supervised.py:runlocal",
                        "--workdir=/nonexistent/never"], cwd=REPO,
                       env={**env, "ZERO24_MULTIHOST_PROGRESS_S": "1"}, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 3
    assert f"[multihost] process 1: still connecting to {addr} after 1 s" in r.stderr
