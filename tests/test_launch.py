"""Multi-host launch: 2 local processes x 4 CPU devices == 1 process x 8, resume, clear failures."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest

from launch import local, multihost
from train.metrics import read_jsonl

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Tiny supervised job (d1 model, 4 slots, 27 tokens). min_lr_ratio=1 makes the learning rate
# constant after warmup, so a 2-update run extended to 4 updates follows the 4-update schedule.
TINY = {"data.n_max": 4, "data.num_problems": 40, "data.eval_num_problems": 10,
        "data.generate_if_missing": False, "tokenizer.number_encoding": "whole",
        "tokenizer.whole_max": 40, "model.depth": 1, "train.batch_size": 16,
        "train.warmup_steps": 2, "train.min_lr_ratio": 1.0, "train.log_every": 1,
        "train.eval_every": 2, "checkpoint.every": 2}
CONFIG = "--config=train/configs/default.py:runlocal"


def _overrides(data_dir: str, steps: int) -> dict:
    return {**TINY, "data.data_dir": data_dir, "train.steps": steps}


def _cli(data_dir: str, steps: int, workdir: str) -> list[str]:
    return [CONFIG, f"--workdir={workdir}",
            *(f"--config.{k}={v}" for k, v in _overrides(data_dir, steps).items())]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from train import data
    from train.configs import default

    path = str(tmp_path_factory.mktemp("data"))
    c = default.get_config("runlocal")
    for key, value in _overrides(path, 4).items():
        section, field = key.split(".")
        c[section][field] = value
    data.generate(c, path)
    return path, c


def _launch(args, num=2, devices=4, **kw) -> tuple[int, str]:
    out = io.StringIO()
    code = local.launch(args, num, devices, out=out, timeout_s=kw.pop("timeout_s", 400), **kw)
    return code, out.getvalue()


def _trajectory(workdir: str) -> dict[int, dict]:
    keys = ("train/loss", "train/grad_norm", "eval/loss", "eval/policy_acc")
    return {r["step"]: {k: r[k] for k in keys if k in r}
            for r in read_jsonl(os.path.join(workdir, "metrics.jsonl"))}


def test_two_processes_equal_one_process_and_resume(tmp_path, data_dir):
    """2 x 4 devices (run to update 2, then resumed to 4 in a new launch) == 1 x 8 devices."""
    from train import supervised

    path, config = data_dir
    ref_dir = str(tmp_path / "ref")
    supervised.train_and_evaluate(config, ref_dir)  # this process: 8 fake devices
    work = str(tmp_path / "mh")
    cache = str(tmp_path / "jax_cache")  # the relaunch reuses the first launch's executables
    code, log1 = _launch(_cli(path, 2, work), compilation_cache_dir=cache)
    assert code == 0, log1[-3000:]
    assert "process 1 of 2, 4 local / 8 global devices" in log1
    code, log2 = _launch(_cli(path, 4, work), compilation_cache_dir=cache)
    assert code == 0, log2[-3000:]
    for p in ("[p0]", "[p1]"):  # both processes restored update 2 from the shared checkpoint
        assert any(p in line and "resumed from" in line and "at update 2" in line
                   for line in log2.splitlines()), log2[-3000:]
    ref, got = _trajectory(ref_dir), _trajectory(work)
    assert sorted(got) == sorted(ref) == [0, 1, 2, 3, 4]
    for step, row in ref.items():
        assert set(got[step]) == set(row), step
        for k, v in row.items():  # cross-process all-reduce order: float32 rounding only
            np.testing.assert_allclose(got[step][k], v, rtol=2e-6, err_msg=f"{k} @ {step}")
    # Checkpoints are written by every process (one OCDBT shard each), run.json by process 0.
    state = os.path.join(work, "checkpoints", "4", "state")
    assert {"ocdbt.process_0", "ocdbt.process_1"} <= set(os.listdir(state))
    rec = __import__("json").load(open(os.path.join(work, "run.json")))
    assert rec["device_count"] == 8 and rec["steps"] == 4


def _main(*args: str, timeout: float = 120, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "train.main", CONFIG, "--workdir=/nonexistent/x",
                           *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=env)


def test_unreachable_coordinator_times_out_with_clear_message():
    addr = f"127.0.0.1:{local.free_port()}"  # nobody listens there
    r = _main("--multihost", f"--coordinator_address={addr}", "--num_processes=2",
              "--process_id=1", "--multihost_timeout=3")
    assert r.returncode == multihost.EXIT_TIMEOUT, r.stderr[-2000:]
    assert f"multihost start timed out after 3 s: process 1 waited for 2 processes to connect " \
           f"to {addr}" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--multihost", "--coordinator_address=127.0.0.1:1234", "--num_processes=2",
      "--process_id=2"], "--process_id=2 is out of range; allowed 0..1."),
    (["--multihost", "--coordinator_address=127.0.0.1:1234", "--num_processes=2",
      "--process_id=-1"], "--process_id=-1 is out of range; allowed 0..1."),
    (["--process_id=0"], "--process_id given without --multihost"),
])
def test_bad_process_ids_exit_2_before_connecting(args, message):
    r = _main(*args)
    assert r.returncode == 2, r.stderr[-2000:]
    assert message in r.stderr


def _start(i: int, num_env: int, devices: int, port: int, *extra: str) -> subprocess.Popen:
    env = local.process_env(os.environ, i, num_env, devices, f"127.0.0.1:{port}", 60)
    return subprocess.Popen([sys.executable, "-m", "train.main", CONFIG,
                             "--workdir=/nonexistent/x", *extra], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.parametrize("case", ["process_count", "local_devices"])
def test_disagreeing_processes_all_fail_clearly(case):
    """Process 1 was told another --num_processes, or has other local devices: both exit 2."""
    port = local.free_port()
    procs = [_start(0, 2, 4, port),
             _start(1, 2, 4, port, "--num_processes=3") if case == "process_count"
             else _start(1, 2, 2, port)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    want = ("mismatched process counts: the coordinator runs 2 processes but they were told "
            "--num_processes=[2, 3]" if case == "process_count" else
            "processes have different local device counts [4, 2]")
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 2 and want in out, out[-2000:]


def test_mesh_not_dividing_devices_fails_on_all_processes(data_dir):
    """2 processes x 3 devices = 6 devices cannot hold a data=4 mesh: exit 2, clear message."""
    code, log = _launch([*_cli(data_dir[0], 4, "/nonexistent/x"), "--config.mesh.data=4"],
                        num=2, devices=3)
    assert code == 2, log[-2000:]
    assert "config.mesh={'data': 4, 'fsdp': 1, 'tensor': 1} needs 4 devices but 6 are available" \
        in log


def test_launcher_propagates_failure_and_stops_the_rest():
    code = ("import os, sys, time\n"
            "if os.environ['ZERO24_PROCESS_ID'] == '1':\n"
            "    print('boom from', os.environ['ZERO24_PROCESS_ID'], flush=True); sys.exit(7)\n"
            "time.sleep(300)\n")
    status, log = _launch(["-c", code], num=3, devices=1, module=None, kill_grace_s=1)
    assert status == 7
    assert "[p1] boom from 1" in log and "process 1 exited with status 7" in log
    status, log = _launch(["-c", "import time; time.sleep(300)"], num=2, devices=1, module=None,
                          timeout_s=1, kill_grace_s=1)
    assert status == local.EXIT_TIMEOUT and "timeout: still running after 1 s" in log


def test_process_env_sets_devices_and_multihost_vars():
    base = {"XLA_FLAGS": "--xla_foo=1 --xla_force_host_platform_device_count=8", "PATH": "/bin"}
    env = local.process_env(base, 1, 2, 4, "127.0.0.1:5", 30)
    assert env["XLA_FLAGS"] == "--xla_foo=1 --xla_force_host_platform_device_count=4"
    plan = multihost.resolve(env=env)
    assert plan == multihost.Plan("explicit", "127.0.0.1:5", 2, 1, 30)


SLURM = {"SLURM_JOB_ID": "17", "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_NTASKS": "2",
         "SLURM_PROCID": "1", "SLURM_LOCALID": "0"}


def test_resolve_modes_and_misconfigurations():
    r = multihost.resolve
    assert r(env={}) is None
    assert r(env={"ZERO24_MULTIHOST": "0"}) is None
    assert r(True, env=SLURM) == multihost.Plan("slurm", None, None, None, 300)
    assert r(True, "n1:999", env=SLURM).coordinator_address == "n1:999"  # override on a cluster
    assert r(True, env={"TPU_WORKER_HOSTNAMES": "a,b"}).method == "tpu"
    assert r(env={**SLURM, "SLURM_NTASKS": "1"}) is None  # a 1-task srun is one process
    bad = [
        (dict(env=SLURM), "this is one of 2 slurm processes but --multihost is off"),
        (dict(multihost=True, env={}), "--multihost needs --coordinator_address, "
         "--num_processes, --process_id: no SLURM job step or Cloud TPU VM was detected"),
        (dict(multihost=True, num_processes=2, process_id=0, env={}),
         "--multihost needs --coordinator_address:"),
        (dict(multihost=True, coordinator_address="localhost", num_processes=2, process_id=0,
              env={}), "--coordinator_address='localhost' is invalid; allowed host:port"),
        (dict(multihost=True, coordinator_address="h:1", num_processes=0, process_id=0, env={}),
         "--num_processes=0 is out of range; allowed >= 1."),
        (dict(multihost=True, timeout_s=0, env=SLURM), "--multihost_timeout=0 is out of range"),
        (dict(env={"ZERO24_MULTIHOST": "yes"}), "ZERO24_MULTIHOST='yes'; allowed 0/1/true/false"),
        (dict(env={"ZERO24_MULTIHOST": "1", "ZERO24_NUM_PROCESSES": "two"}),
         "ZERO24_NUM_PROCESSES='two' is not an integer."),
        (dict(coordinator_address="h:1", env={}), "--coordinator_address given without "
         "--multihost"),
    ]
    for kw, message in bad:
        with pytest.raises(multihost.MultihostError) as e:
            r(**kw)
        assert message in str(e.value), (kw, str(e.value))
