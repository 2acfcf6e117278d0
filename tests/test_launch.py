"""Multi-host launch: 2 local processes x 4 CPU devices == 1 process x 8, resume, clear failures."""

import io
import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from launch import local, multihost
from train.metrics import read_jsonl

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Tiny supervised job (d1 model, 4 slots, 27 tokens), 4 updates, checkpoints at 2 and 4.
TINY = {"data.n_max": 4, "data.num_problems": 40, "data.eval_num_problems": 10,
        "data.generate_if_missing": False, "tokenizer.number_encoding": "whole",
        "tokenizer.whole_max": 40, "model.depth": 1, "train.batch_size": 16, "train.steps": 4,
        "train.warmup_steps": 2, "train.log_every": 1, "train.eval_every": 2,
        "checkpoint.every": 2}
CONFIG = "--config=train/configs/g24_supervised.py:runlocal"


def _cli(data_dir: str, workdir: str) -> list[str]:
    return [CONFIG, f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
            *(f"--config.{k}={v}" for k, v in TINY.items())]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from train import data
    from train.configs import g24_supervised

    path = str(tmp_path_factory.mktemp("data"))
    c = g24_supervised.get_config("runlocal")
    for key, value in {**TINY, "data.data_dir": path}.items():
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


class _PreemptProcess1(io.StringIO):
    """Launcher output stream that sends SIGTERM to process 1 once it has connected, i.e. a
    preemption notice that reaches one host only, before training starts."""

    def write(self, text: str) -> int:
        m = re.search(r"^\[p1\] .*multihost \(explicit\): process 1 of 2 \(pid (\d+)\)", text)
        if m:
            os.kill(int(m.group(1)), signal.SIGTERM)
        return super().write(text)


def test_two_processes_equal_one_process_preempt_and_resume(tmp_path, data_dir):
    """2 x 4 devices == 1 x 8 devices. SIGTERM to process 1 alone stops BOTH at the same update
    with a checkpoint (JAX's preemption sync); the relaunch resumes there on both processes and
    reproduces the uninterrupted trajectory."""
    from train import supervised

    path, config = data_dir
    ref_dir = str(tmp_path / "ref")
    supervised.train_and_evaluate(config, ref_dir)  # this process: 8 fake devices
    ref = _trajectory(ref_dir)
    assert sorted(ref) == [0, 1, 2, 3, 4]
    work = str(tmp_path / "mh")
    cache = str(tmp_path / "jax_cache")  # the relaunch loads the first launch's executables
    out = _PreemptProcess1()
    code = local.launch(_cli(path, work), 2, 4, out=out, timeout_s=400, compilation_cache_dir=cache)
    log = out.getvalue()
    assert code == 0, log[-3000:]
    assert "process 0 of 2" in log and "4 local / 8 global devices" in log
    rec = json.load(open(os.path.join(work, "run.json")))
    stopped = rec["steps"]
    assert rec["status"] == "preempted" and 1 <= stopped < 4 and rec["device_count"] == 8, rec
    for p in ("[p0]", "[p1]"):
        assert any(line.startswith(p) and f"saved update {stopped}; exiting cleanly" in line
                   for line in log.splitlines()), log[-3000:]
    # Checkpoints are written by every process (one OCDBT shard each), run.json by process 0.
    state = os.path.join(work, "checkpoints", str(stopped), "state")
    assert {"ocdbt.process_0", "ocdbt.process_1"} <= set(os.listdir(state))

    code, log = _launch(_cli(path, work), compilation_cache_dir=cache)
    assert code == 0, log[-3000:]
    for p in ("[p0]", "[p1]"):  # both processes restored the same update
        assert any(line.startswith(p) and "resumed from" in line and f"at update {stopped}"
                   in line for line in log.splitlines()), log[-3000:]
    _assert_same(_trajectory(work), ref)
    assert json.load(open(os.path.join(work, "run.json")))["status"] == "completed"


def _assert_same(got: dict, ref: dict) -> None:
    assert sorted(got) == sorted(ref)
    for step, row in ref.items():
        assert set(got[step]) == set(row), step
        for k, v in row.items():  # cross-process all-reduce order: float32 rounding only
            np.testing.assert_allclose(got[step][k], v, rtol=2e-6, err_msg=f"{k} @ {step}")


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
    code, log = _launch([*_cli(data_dir[0], "/nonexistent/x"), "--config.mesh.data=4"],
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


# ----------------------------------------------------------------------------- scripts and sweeps


def test_gpu_and_cpu_xla_presets_parse_in_this_jaxlib():
    """An XLA flag this jaxlib does not know aborts every run at startup."""
    for preset in ("cpu", "gpu", "gpu_debug"):
        env = dict(os.environ, XLA_FLAGS="")
        probe = f"{sys.executable} -c 'import jax; jax.numpy.ones(1).block_until_ready()'"
        r = subprocess.run(["bash", "-c", f"source launch/xla_flags.sh {preset} && {probe} && "
                            "echo XLA=$XLA_FLAGS"], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, (preset, r.stderr[-2000:])
        assert "--xla_" in r.stdout
    r = subprocess.run(["bash", "launch/xla_flags.sh", "nope"], cwd=REPO, capture_output=True,
                       text=True)
    assert r.returncode == 2 and "usage" in r.stderr


def _grid(root: str, **kw):
    """A depth grid: 2 budgets x 3 depths (the CPU grid's fields, launch/sweeps/cpu.py)."""
    from launch.sweeps import cpu

    g = cpu.get_config()
    g.update(train_config="train/configs/g24_supervised.py", sizes="", depths="1,2,3",
             total_flops=4e12, num_budgets=2, sizes_per_budget=3,
             tokens_per_param=20.0, min_steps=20, max_steps=0)
    g.root = root
    for k, v in kw.items():
        g[k] = v
    return g


# The small g24 supervised config with per-run overrides: exercises the override path of the grid.
_OVERRIDES = dict(train_config="train/configs/g24_supervised.py",
                  overrides="data.n_max=4,tokenizer.number_encoding=whole,tokenizer.whole_max=40,"
                            "train.batch_size=32,train.warmup_steps=5,train.eval_every=50,"
                            "checkpoint.every=50")


def test_sweep_plan_statuses_print_and_slurm(tmp_path, capsys):
    from launch import sweep
    from nnx_models import tokenizer
    from scaling import flops
    from train import steps

    root = str(tmp_path / "sweep")
    plan = sweep.design(_grid(root, **_OVERRIDES))
    assert plan.seq_len == 27 and plan.tokens_per_step == 32 * 27
    tok = tokenizer.TokenizerConfig(n_max=4, number_encoding="whole", max_digits=3, whole_max=40)
    for r in plan.runs:  # N and C are those run.json will record for this config
        cfg = steps.model_config(dict(sweep.load_train_config("train/configs/g24_supervised.py")
                                      .model.to_dict(), depth=int(r.size[1:])), tok)
        assert r.params == flops.param_counts(cfg)["non_embedding"]
        assert r.flops == r.steps * plan.tokens_per_step * flops.train_flops_per_token(cfg, 27)
    done, partial = plan.runs[0], plan.runs[1]
    os.makedirs(os.path.join(root, done.name))
    json.dump({"steps": done.steps, "status": "completed"},
              open(os.path.join(root, done.name, "run.json"), "w"))
    os.makedirs(os.path.join(root, partial.name, "checkpoints", "50"))
    assert sweep.main_run(_grid(root, **_OVERRIDES), "print", ["--config.seed=3"]) == 0
    out = capsys.readouterr().out
    commands = [line for line in out.splitlines() if line.startswith("python -m train.main")]
    assert len(commands) == len(plan.runs) - 1 and done.name not in "".join(commands)
    assert commands[0] == ("python -m train.main --config=train/configs/g24_supervised.py:size="
                           f"{partial.size} --workdir={root}/{partial.name} "
                           f"--config.train.steps={partial.steps} --config.name={partial.name} "
                           "--config.data.n_max=4 "
                           "--config.tokenizer.number_encoding=whole --config.tokenizer.whole_max"
                           "=40 --config.train.batch_size=32 --config.train.warmup_steps=5 "
                           "--config.train.eval_every=50 --config.checkpoint.every=50 "
                           "--config.seed=3")
    assert f"{len(plan.runs)} runs: 1 done, 1 partial, {len(plan.runs) - 2} pending" in out
    saved = json.load(open(os.path.join(root, "sweep.json")))
    assert [r["status"] for r in saved["runs"]][:2] == ["done", "partial"]

    assert sweep.main_run(_grid(root, **_OVERRIDES), "slurm", [], max_parallel=2) == 0
    out = capsys.readouterr().out
    args_file = os.path.join(root, "sweep_args.txt")
    assert f"sbatch --array=0-{len(plan.runs) - 2}%2 --export=ALL,ZERO24_ARGS_FILE={args_file} " \
           "launch/slurm/train.sbatch" in out
    env = dict(os.environ, ZERO24_DRY_RUN="1", SLURM_ARRAY_TASK_ID="0", ZERO24_ARGS_FILE=args_file)
    r = subprocess.run(["bash", "launch/slurm/train.sbatch"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "srun --kill-on-bad-exit=1" in r.stdout and "-m train.main --multihost " \
        f"--config=train/configs/g24_supervised.py:size={partial.size} --workdir={root}/" \
        f"{partial.name} " in r.stdout and "--xla_gpu_enable_latency_hiding_scheduler" in r.stdout


def test_sweep_local_backend_reports_failed_runs_and_bad_grids(tmp_path, capsys):
    from launch import sweep

    grid = _grid(str(tmp_path / "s"), num_budgets=1, sizes_per_budget=1)
    assert sweep.main_run(grid, "local", ["--config.train.learning_rate=-1"]) == 1
    out = capsys.readouterr().out
    assert "1 runs: 0 done, 0 partial, 0 pending, 1 failed" in out
    name = json.load(open(tmp_path / "s" / "sweep.json"))["runs"][0]["name"]
    log = open(tmp_path / "s" / name / "launch.log").read()
    assert "config.train.learning_rate=-1.0 is out of range" in log
    with pytest.raises(ValueError, match="leaves no run with at least min_steps=20 steps"):
        sweep.design(_grid(str(tmp_path / "t"), total_flops=1e3))
    with pytest.raises(ValueError, match="config has no field 'train.stepz'"):
        sweep.design(_grid(str(tmp_path / "t"), overrides="train.stepz=3"))
