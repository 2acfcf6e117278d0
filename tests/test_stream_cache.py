"""The stream cache is exact: cached and live batches agree, other streams never hit it."""

import numpy as np

from search import stream
from train import stream_cache, stream_data
from train.configs import load_config_file


def _cfg(**kw):
    return stream.StreamConfig(stream.parse_mixture("n2:1,n3:1"), n_max=3, seed=3, **kw)


def test_cached_rows_equal_live_rows_and_the_key_sees_every_field(tmp_path):
    cfg = _cfg()
    path = stream_cache.build(cfg, 40, str(tmp_path), log=lambda *_: None)
    assert stream_cache.lookup(cfg, str(tmp_path)) is not None
    live = stream.draw_range(cfg, 8, 24)
    cached = stream_cache.draw_range(cfg, 8, 24, str(tmp_path))
    for f in stream.FIELDS:
        np.testing.assert_array_equal(cached[f], live[f])
    # past the cached count: drawn live, same rows
    tail = stream_cache.draw_range(cfg, 32, 48, str(tmp_path))
    np.testing.assert_array_equal(tail["num"], stream.draw_range(cfg, 32, 48)["num"])
    # any change of the stream (seed, exclusion set) is another file
    other = [cfg.replace(seed=4), cfg.replace(exclude=frozenset({((1, 2), 3)})),
             cfg.replace(solvable_share=0.25), cfg.replace(split="val")]
    for o in other:
        assert stream_cache.key(o) != stream_cache.key(cfg)
        assert stream_cache.lookup(o, str(tmp_path)) is None
    assert stream_cache.build(cfg, 20, str(tmp_path), log=lambda *_: None) == path  # kept


def test_a_cache_of_another_stream_version_is_never_served(tmp_path, monkeypatch):
    cfg = _cfg()
    stream_cache.build(cfg, 16, str(tmp_path), log=lambda *_: None)
    old_key = stream_cache.key(cfg)
    monkeypatch.setattr(stream, "VERSION", stream.VERSION + 1)  # the generator changed
    assert stream_cache.key(cfg) != old_key
    assert stream_cache.lookup(cfg, str(tmp_path)) is None
    drawn = []
    monkeypatch.setattr(stream, "draw_range", lambda c, a, b: drawn.append((a, b)) or {})
    stream_cache.draw_range(cfg, 0, 8, str(tmp_path))
    assert drawn == [(0, 8)]  # drawn live, not read from the old file


def test_loader_batches_are_identical_with_the_cache(tmp_path, monkeypatch):
    import jax

    from nnx_models import tokenizer
    from train import mesh as mesh_lib

    config = load_config_file("train/configs/sweep_cpu.py:runlocal").to_dict()
    cfg = stream_cache.train_stream(config)
    tok = tokenizer.TokenizerConfig(n_max=cfg.n_max, **config["tokenizer"])
    mesh = mesh_lib.make_mesh(config["mesh"])
    batches = []
    for cache in ("", str(tmp_path)):
        if cache:
            stream_cache.build(cfg, 64, cache, log=lambda *_: None)

            def no_labelling(*_):  # the cached pass must not draw a single live example
                raise AssertionError("the loader drew live rows although they are cached")

            monkeypatch.setattr(stream, "draw_range", no_labelling)
        monkeypatch.setenv(stream_cache.ENV, cache)
        loader = stream_data.StreamLoader(cfg, 8, mesh, tok, prefetch=0)
        batches.append([jax.device_get(loader.batch(p)) for p in (0, 1, 7)])
        loader.close()
    for live, cached in zip(*batches, strict=True):
        for k in live:
            np.testing.assert_array_equal(live[k], cached[k])
