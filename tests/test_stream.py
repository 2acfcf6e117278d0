"""The labelled stream: determinism, balance, exact labels, exclusion, mixture errors, loader."""

from fractions import Fraction

import numpy as np
import pytest

from search import game, problems, solver, stream

MIX = stream.parse_mixture("n2:1,n3:1,g4_t100:2")


def _cfg(**kw):
    return stream.StreamConfig(mixture=kw.pop("mixture", MIX), n_max=kw.pop("n_max", 4), **kw)


def test_example_k_is_a_pure_function_of_seed_and_k():
    cfg = _cfg(seed=3)
    a, b = stream.draw_range(cfg, 0, 40), stream.draw_range(cfg, 0, 40)
    part = stream.draw_range(cfg, 25, 30)
    for f in stream.FIELDS:
        np.testing.assert_array_equal(a[f], b[f])
        np.testing.assert_array_equal(a[f][25:30], part[f])
    other = stream.draw_range(cfg.replace(seed=4), 0, 40)
    assert not all(np.array_equal(a[f], other[f]) for f in ("num", "target_num"))


def test_labels_are_exact_and_balanced_at_every_n():
    cfg = _cfg(mixture=stream.parse_mixture("n3:1,g4_t100:1,n5:1"), n_max=5)
    d = stream.draw_range(cfg, 0, 600)
    rules = cfg.rules
    for k in range(0, 600, 4):  # independent check against the reference solver
        vals = [Fraction(int(n), int(q)) if alive else None
                for n, q, alive in zip(d["num"][k], d["den"][k], d["live"][k], strict=True)]
        value, good = solver.state_labels(vals, int(d["target_num"][k]), rules)
        assert value == bool(d["value"][k])
        np.testing.assert_array_equal(good, d["policy"][k] > 0)
        assert d["n"][k] == d["live"][k].sum()
    # legal = the game's own legal mask
    state = game.State(num=d["num"], den=d["den"], live=d["live"], target_num=d["target_num"],
                       target_den=d["target_den"], moves=d["moves"],
                       failed=np.zeros(600, bool))
    np.testing.assert_array_equal(np.asarray(game.legal_mask(state, rules)), d["legal"])
    for n in (2, 3, 4, 5):
        m = d["n"] == n
        assert m.sum() > 30
        assert 0.35 < d["value"][m].mean() < 0.65, (n, d["value"][m].mean())
    solvable = d["value"] > 0
    np.testing.assert_allclose(d["policy"][solvable].sum(-1), 1.0, rtol=1e-6)
    assert (d["policy"][~solvable] == 0).all()
    assert (~d["live"][:, :2]).any()  # dead slots appear where game.step leaves them


def test_start_only_gives_start_states_of_the_split():
    cfg = _cfg(start_only=True, split="test")
    d = stream.draw_range(cfg, 0, 60)
    assert (d["moves"] == 0).all() and (d["den"] == 1).all()
    for k in range(60):
        nums = tuple(int(x) for x, alive in zip(d["num"][k], d["live"][k], strict=True) if alive)
        assert problems.split_of(problems.Problem(nums, int(d["target_num"][k]))) == "test"


@pytest.mark.slow
def test_exclusion_holds_on_100k_streamed_examples():
    # Exclude a third of all 4-number problems with small targets so that the walk keeps
    # running into them; without the exclusion the same stream does emit such states.
    rng = np.random.default_rng(0)
    banned = [problems.Problem(tuple(sorted(rng.integers(1, 14, 4).tolist())), int(t))
              for t in range(1, 25) for _ in range(200)]
    banned += [problems.Problem(tuple(sorted(rng.integers(1, 14, 3).tolist())), int(t))
               for t in range(1, 25) for _ in range(60)]
    keys = stream.exclusion_keys([banned])
    mix = stream.parse_mixture("n3:1,g4_t100:2")
    free, kept = _cfg(mixture=mix), _cfg(mixture=mix, exclude=keys)

    def hits(cfg, count):
        d = stream.draw_range(cfg, 0, count)
        out = 0
        for k in range(count):
            live = d["live"][k]
            if (d["den"][k][live] == 1).all():
                key = (tuple(sorted(int(x) for x in d["num"][k][live])), int(d["target_num"][k]))
                out += key in keys
        return out

    assert hits(free, 3000) > 50  # the exclusion set is really in the stream's way
    assert hits(kept, 100_000) == 0


@pytest.mark.parametrize("spec, match", [
    ("nope:1", "unknown"), ("n2:-1", "out of range"), ("", "empty"), ("n2:0", "no positive"),
    ("n2:x", "not a number"),
])
def test_bad_mixture_specs_raise_clear_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        stream.parse_mixture(spec)


def test_bad_stream_configs_raise():
    with pytest.raises(ValueError, match="n_max"):
        _cfg(mixture=stream.parse_mixture("n5:1"), n_max=4)
    with pytest.raises(ValueError, match="solvable_share"):
        _cfg(solvable_share=1.5)
    with pytest.raises(ValueError, match="split"):
        _cfg(split="dev")
    with pytest.raises(ValueError, match="use_all"):
        stream.parse_mixture("countdown6:1")


def test_loader_batches_are_positions_and_resume_exactly():
    import jax

    from nnx_models import tokenizer
    from train import mesh as mesh_lib
    from train import stream_data

    mesh = mesh_lib.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
    tok = tokenizer.TokenizerConfig(n_max=4, number_encoding="whole", whole_max=200)
    loader = stream_data.StreamLoader(_cfg(), 8, mesh, tok)
    seq = [jax.device_get(loader.batch(p)) for p in range(3)]
    again = stream_data.StreamLoader(_cfg(), 8, mesh, tok)
    resumed = jax.device_get(again.batch(2))  # a resume at position 2 rebuilds the pipeline
    for f in seq[2]:
        np.testing.assert_array_equal(seq[2][f], resumed[f])
    rows = stream.draw_range(_cfg(), 16, 24)
    np.testing.assert_array_equal(seq[2]["value"], rows["value"])


def test_exclusion_record_round_trips(tmp_path):
    test = problems.generate("g24", 6, seed=0, split="test")
    counts = stream.write_exclusion(str(tmp_path), {"g24:test:6": test})
    assert counts == {"g24:test:6": 6}
    assert stream.read_exclusion(str(tmp_path)) == stream.exclusion_keys([test])
    assert stream.read_exclusion(str(tmp_path / "none")) is None  # leak check: test_play.py


def test_generate_data_writes_a_snapshot_of_the_same_stream(tmp_path):
    from search import datasets
    from train import data, modes, stream_data
    from train.configs import supervised

    c = supervised.get_config("runlocal,n_max=4,mixture=n2:1+n3:1")
    c.unlock()
    c.data.num_problems, c.data.eval_examples = 24, 8
    c.data.data_dir, c.search_eval.csv, c.search_eval.splits = str(tmp_path), "", ("g24:test:4",)
    c.lock()
    paths = modes.run("generate_data", c, str(tmp_path / "run"))
    assert len(paths) == 2
    train_name, _ = data.dataset_names(c)
    stored = datasets.load_supervised(str(tmp_path), train_name)
    cfg = c.to_dict()
    rules = data.problem_class(cfg).rules
    exclude = stream.exclusion_keys(stream_data.exclusion_sets(cfg).values())
    want = stream.draw_range(stream_data.stream_config(cfg, rules, exclude), 0, 24)
    fields = ("num", "den", "live", "target_num", "policy", "legal", "value", "n")
    rows = lambda d: sorted(b"".join(np.ascontiguousarray(np.asarray(d[f])[i]).tobytes()
                                     for f in fields) for i in range(24))
    assert rows(stored) == rows(want)  # the same examples (TFDS may store them in any order)
