"""A model is played as it was trained (search/play.py): slot counts from its record, refused
slot counts, the leak warning, every check before any compilation, and a golden evaluation of
the shipped model through the CLI."""

import json
import os
import subprocess
import sys

import pytest
from jax import monitoring

from search import play, problems, stream, sweep
from search.types import Network, Play, Provenance

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(REPO, "models", "flagship")
SIX = Play(n_max=6, max_slots=16)


def test_slot_count_is_the_models_own_or_refused():
    assert play.slot_count(SIX, "g24", needed=4, default=8) == 6  # padded to its 6 slots
    assert play.slot_count(SIX, "n7", needed=7, default=8) == 7  # longer problems: more slots
    assert play.slot_count(SIX, "g24", needed=4, default=8, n_max=8) == 8
    assert play.slot_count(None, "g24", needed=4, default=8) == 8  # baselines: the split's own
    assert play.slot_count(None, "g24", needed=4, default=8, n_max=4) == 4
    with pytest.raises(ValueError, match="--n_max=4 cannot play this model: it was trained on 6 "
                                         "slots and its layout reads at most 16"):
        play.slot_count(SIX, "g24", needed=4, default=8, n_max=4)
    with pytest.raises(ValueError, match="--n_max=17 cannot play"):
        play.slot_count(SIX, "g24", needed=4, default=8, n_max=17)
    with pytest.raises(ValueError, match="7 numbers but n_max=6"):
        play.slot_count(SIX, "n7", needed=7, default=8, n_max=6)
    with pytest.raises(ValueError, match="reads at most 6 slots"):
        play.slot_count(Play(n_max=4, max_slots=6), "n7", needed=7, default=8)
    _, probs, rules = sweep.load_split("g24:test:3", play=SIX)
    assert rules.n_max == 6 and len(probs) == 3


def test_the_shipped_model_carries_its_conditions():
    from train import run_model

    p, prov = run_model.conditions(f"hf:{SHIPPED}")
    assert p.n_max == 6 and p.search["max_num_considered_actions"] == 16
    assert "n5" in prov.classes and prov.excluded is not None
    assert run_model.load_network(f"hf:{SHIPPED}").play == p


def _net(prov):
    return Network("hf:model", None, play=SIX, provenance=prov)


def test_leak_warning_counts_what_was_really_in_the_training_data(tmp_path, capsys):
    test = problems.generate("g4_t100", 5, seed=0, split="test")
    train = problems.generate("g4_t100", 5, seed=0, split="train")
    stream.write_exclusion(str(tmp_path), {"g4_t100:test:5": test})
    prov = Provenance(classes=("g4_t100",), excluded=stream.read_exclusion(str(tmp_path)))
    rules = problems.get_class("g4_t100").rules
    excluded, trained = ("x", test, rules), ("y", train, rules)
    assert play.leak_messages(_net(prov), [excluded]) == []  # every problem excluded: silent
    assert play.leaked(test, prov) == 0 and play.leaked(train, prov) == 5
    msgs = play.leak_messages(_net(prov), [excluded, trained])
    assert len(msgs) == 1 and "split 'y': 5 of 5 problems are in the train split" in msgs[0]
    # a test-split problem that was not excluded is not a training start problem either
    other = problems.generate("g4_t100", 3, seed=1, split="val")
    assert play.leaked(other, prov) == 0
    # excluded known, classes unknown: whatever was not excluded may have been trained on
    assert play.leaked(other, Provenance(excluded=prov.excluded)) == 3
    # no record: one "unknown" line for the whole eval, not one per split
    msgs = play.leak_messages(_net(Provenance()), [excluded, trained])
    assert len(msgs) == 1 and "unknown" in msgs[0]
    assert play.leak_messages(Network("uniform", None), [excluded]) == []  # baselines never
    assert capsys.readouterr().out.count("WARNING") == 2


def test_training_classes_of_a_config():
    cfg = {"mode": "search_and_learn", "data": {"source": "stream", "mixture": "n2:1,n5:3"},
           "sl": {"curriculum": ("g4_t100", "n5")}}
    assert play.training_classes(cfg) == ("n2", "n5", "g4_t100")
    assert play.training_classes({"data": {"source": "tfds", "problem_class": "g24"}}) == ("g24",)


class Compiles:
    """Counts XLA backend compilations while it is open."""

    def __enter__(self):
        self.count, self.on = 0, True

        def listen(event, duration, **kw):
            if self.on and event == "/jax/core/compile/backend_compile_duration":
                self.count += 1
        monitoring.register_event_duration_secs_listener(listen)
        return self

    def __exit__(self, *exc):
        self.on = False


def test_make_run_exclusion_error_comes_before_any_compilation(tmp_path, shared_bench):
    from train import modes
    from train.configs import default

    config = default.get_config()
    config.eval.csv = str(shared_bench / "24.csv")
    with Compiles() as c, pytest.raises(ValueError, match="every training problem of 'g24'"):
        modes.run("search_and_learn", config, str(tmp_path / "w"))
    assert c.count == 0
    assert not os.path.exists(tmp_path / "w" / "config.json")


def test_check_mode_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    from train import modes
    from train.configs import default

    with Compiles() as c:
        plan = modes.run("check", default.get_config(), str(tmp_path / "w"))
    assert c.count == 0 and not os.path.exists(tmp_path / "w")
    assert plan["excluded"]["g24:test:100"] == 100 and plan["curriculum"] == {"g24": "ok"}
    assert "check passed" in capsys.readouterr().out
    config = default.get_config()
    config.eval.sets = ("g24:test:3", "n5:test:3")  # 5 numbers on the run's 4 slots
    with Compiles() as c, pytest.raises(ValueError, match="'n5:test:3' has problems with 5"):
        modes.run("check", config, str(tmp_path / "w"))
    assert c.count == 0


def _eval_cli(*args, timeout=600):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = ""  # one device, as a user has
    return subprocess.run([sys.executable, "-m", "search.eval", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_eval_cli_refuses_slots_the_model_cannot_play(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("numbers,target\n4 9 10 13,24\n")
    out = _eval_cli(f"--workdir={tmp_path / 'w'}", f"--model=hf:{SHIPPED}", f"--problems={f}",
                    "--n_max=4", "--methods=mcts", "--budgets=1")
    assert out.returncode == 2, out.stderr[-2000:]
    assert "--n_max=4 cannot play this model: it was trained on 6 slots" in out.stderr
    assert "Traceback" not in out.stderr and not os.path.exists(tmp_path / "w")


# The golden subsets: what docs/search.md quotes ("golden evaluation"), searched at 8
# simulations per move, played trajectory, through the CLI with no flag beyond the subset.
GOLDEN = {"file:g4_t100_test32.csv": ("g4_t100", 32), "file:n5_test32.csv": ("n5", 32)}
GOLDEN_SOLVED = {"file:g4_t100_test32.csv": 28, "file:n5_test32.csv": 16, "tot100": 91}
TOLERANCE = 2  # solved problems either way: float reassociation across jax versions and CPUs


def test_golden_evaluation_of_the_shipped_model(tmp_path, request):
    splits = []
    for name, (cls, count) in GOLDEN.items():
        path = tmp_path / name[len("file:"):]
        rows = problems.generate(cls, count, seed=0, split="test")
        path.write_text("numbers,target\n" + "".join(
            " ".join(map(str, p.numbers)) + f",{p.target}\n" for p in rows))
        splits.append(f"file:{path}")
    csv = os.path.join(os.path.dirname(REPO), "shared", "benchmarks", "24.csv")
    extra = [f"--csv={csv}"] if os.path.isfile(csv) else []
    splits += ["tot100"] if extra else []
    out = _eval_cli(f"--workdir={tmp_path / 'w'}", f"--model=hf:{SHIPPED}",
                    f"--splits={','.join(splits)}", "--methods=mcts", "--budgets=8",
                    "--batch_size=32", *extra)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "WARNING" not in out.stdout  # every subset is held out (the model's exclusion.json)
    with open(tmp_path / "w" / "search_eval" / "results.json") as f:
        entries = [e for e in json.load(f)["entries"] if e["method"] == "mcts"]
    got = {e["split"]: round(e["solve_rate"] * e["num_problems"]) for e in entries}
    assert {e["slots"] for e in entries} == {6}  # played on the model's own slots
    for split, solved in got.items():
        assert abs(solved - GOLDEN_SOLVED[split]) <= TOLERANCE, (split, solved, got)
    assert len(got) == len(splits)


@pytest.mark.parametrize("edit,message", [
    (lambda c: setattr(c.eval, "sets", ("g24:tset:5",)), "g24:tset:5"),  # a split name
    (lambda c: setattr(c.eval, "sets", ("n5:test:3",)), "has problems with 5 numbers"),  # slots
    (lambda c: setattr(c.sl, "curriculum", ("n6",)), "class 'n6' has up to 6 numbers"),
])
def test_every_config_error_comes_before_any_compilation(tmp_path, edit, message):
    from train import modes
    from train.configs import default

    config = default.get_config()
    edit(config)
    with Compiles() as c, pytest.raises(ValueError, match=message):
        modes.run("search_and_learn", config, str(tmp_path / "w"))
    assert c.count == 0 and not os.path.exists(tmp_path / "w" / "config.json")


def test_csv_contents_and_an_unwritable_workdir_fail_before_any_compilation(tmp_path):
    from train import modes
    from train.configs import default

    bad = tmp_path / "24.csv"
    bad.write_text("Rank,Puzzles\n1,1 2 3\n")
    config = default.get_config()
    config.eval.csv = str(bad)
    with Compiles() as c, pytest.raises(ValueError, match="is not 4 space-separated integers"):
        modes.run("check", config, str(tmp_path / "w"))
    blocked = tmp_path / "a_file"  # chmod does not stop root: a workdir below a file
    blocked.write_text("x")
    with Compiles() as c2, pytest.raises(ValueError, match="not writable"):
        modes.run("search_and_learn", default.get_config(), str(blocked / "w"))
    assert c.count == 0 and c2.count == 0
