"""The labelled stream: determinism, balance, exact labels, exclusion, mixture errors, loader."""

from fractions import Fraction

import numpy as np
import pytest

from search import game, problems, solver, stream

MIX = stream.parse_mixture("n2:1,n3:1,g4_t100:2")


def _cfg(**kw):
    return stream.StreamConfig(mixture=kw.pop("mixture", MIX), n_max=kw.pop("n_max", 4), **kw)


def test_example_k_is_a_pure_function_of_seed_and_k(monkeypatch):
    cfg = _cfg(seed=3)
    a, b = stream.draw_range(cfg, 0, 40), stream.draw_range(cfg, 0, 40)
    for f in stream.FIELDS:
        np.testing.assert_array_equal(a[f], b[f])
    rng = np.random.default_rng(0)
    for _ in range(4):  # any split points: the concatenation is the same rows
        cuts = np.sort(rng.choice(np.arange(1, 40), 3, replace=False))
        parts = [stream.draw_range(cfg, lo, hi)
                 for lo, hi in zip([0, *cuts], [*cuts, 40], strict=True)]
        for f in stream.FIELDS:
            np.testing.assert_array_equal(np.concatenate([p[f] for p in parts]), a[f])
    for k in (0, 17, 39):  # one example alone, and an empty range
        one = stream.draw(cfg, k)
        for f in stream.FIELDS:
            np.testing.assert_array_equal(one[f], a[f][k])
    assert len(stream.draw_range(cfg, 5, 5)["value"]) == 0
    monkeypatch.setattr(stream, "_MAX_PER_ROUND", 1)  # one try per example and round
    once = stream.draw_range(cfg, 0, 40)
    for f in stream.FIELDS:
        np.testing.assert_array_equal(once[f], a[f])
    other = stream.draw_range(cfg.replace(seed=4), 0, 40)
    assert not all(np.array_equal(a[f], other[f]) for f in ("num", "target_num"))
    with pytest.raises(ValueError, match="start <= stop"):
        stream.draw_range(cfg, 5, 4)


def test_split_hash_kernel_equals_split_of():
    """The compiled blake2b is bit-exact ``problems.split_of`` (the project's split contract)."""
    import hashlib

    from search import stream_kernels

    rng = np.random.default_rng(1)
    m, v = np.zeros(16, np.uint64), np.zeros(16, np.uint64)
    for trial in range(3000):
        n = int(rng.integers(1, 17))
        big = trial % 2 == 0  # longest messages (16 numbers of 6 characters) and negatives
        nums = np.sort(rng.integers(-32767, 32768, n) if big else rng.integers(1, 14, n))
        t = int(rng.integers(-32767, 32768) if big else rng.integers(1, 1000))
        text = f"{','.join(map(str, nums.tolist()))}|{t}".encode()
        want = int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") % 100
        assert stream_kernels.split_bucket(nums.astype(np.int64), n, t, m, v) == want, text
        if n >= 2 and not big:
            bucket = problems.SPLIT_BUCKETS[problems.split_of(problems.Problem(nums, t))]
            assert bucket[0] <= want < bucket[1]


def test_stream_kernel_caches_are_keyed_by_the_labeller_kernels_too():
    """numba stamps a cached function with its own file only; the stream kernels inline the
    labeller's arithmetic, so an edit of labeller_kernels.py must invalidate their cache."""
    import hashlib

    from search import labeller_kernels, stream_kernels

    cache_file = getattr(getattr(stream_kernels.propose, "_cache", None), "_cache_file", None)
    if cache_file is None:
        pytest.skip("numba's disk cache is off here")
    with open(labeller_kernels.__file__, "rb") as f:
        want = hashlib.sha256(f.read()).hexdigest()
    assert cache_file._source_stamp[1] == want


def test_walks_moves_and_target_sources():
    # n2 only: a state of two numbers 1..13 reaches at most 169, so unsolvable targets above it
    # come from the uniform source and those below it mostly from the donor's playout.
    d = stream.draw_range(_cfg(mixture=stream.parse_mixture("n2:1")), 0, 800)
    t, unsolvable = d["target_num"], d["value"] == 0
    assert ((t >= 1) & (t <= 999)).all() and (d["target_den"] == 1).all()
    low = (t[unsolvable] <= 169).mean()  # uniform alone would give 169/999 = 0.17
    assert 0.3 < low < 0.8, low
    # n5 only: moves uniform in 0..3, n - moves live numbers, values reached by legal moves
    d = stream.draw_range(_cfg(mixture=stream.parse_mixture("n5:1"), n_max=5), 0, 800)
    assert (d["n"] == 5 - d["moves"]).all()
    counts = np.bincount(d["moves"], minlength=4)
    assert len(counts) == 4 and (counts > 150).all(), counts
    assert (d["den"][d["moves"] > 0] != 1).any()  # fractions appear along walks
    assert (d["live"][:, 0]).all()  # the lower slot keeps each result: slot 0 never dies
    start = d["moves"] == 0
    for k in np.flatnonzero(start)[:100]:  # start states come from the requested split
        nums = tuple(int(x) for x in d["num"][k])
        assert problems.split_of(problems.Problem(nums, int(d["target_num"][k]))) == "train"


def test_a_label_that_cannot_be_drawn_raises_a_clear_error(monkeypatch):
    cls = problems.ProblemClass("t_unreachable_999", 2, (1, 13), (999, 999))
    monkeypatch.setitem(problems._REGISTRY, cls.name, cls)
    cfg = _cfg(mixture=((cls.name, 1.0),), solvable_share=1.0)
    with pytest.raises(RuntimeError, match="no solvable state of class 't_unreachable_999'"):
        stream.draw_range(cfg, 0, 4)


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
    for row in d["policy"][solvable]:  # uniform over the moves that keep it solvable
        np.testing.assert_allclose(row[row > 0], 1.0 / (row > 0).sum(), rtol=1e-6)
    assert (d["policy"] > 0).sum() and ((d["policy"] > 0) <= d["legal"]).all()
    assert (d["policy"][~solvable] == 0).all()
    assert (~d["live"][:, :2]).any()  # dead slots appear where game.step leaves them


def test_start_only_gives_start_states_of_the_split():
    cfg = _cfg(start_only=True, split="test")
    d = stream.draw_range(cfg, 0, 60)
    assert (d["moves"] == 0).all() and (d["den"] == 1).all()
    for k in range(60):
        nums = tuple(int(x) for x, alive in zip(d["num"][k], d["live"][k], strict=True) if alive)
        assert problems.split_of(problems.Problem(nums, int(d["target_num"][k]))) == "test"


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
    with pytest.raises(ValueError, match="seed"):
        _cfg(seed=-1)
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
