"""Sharded training on 8 fake CPU devices equals single-device training; sharded input pipeline."""

import functools

import jax
import numpy as np
import pytest

from nnx_models import tokenizer
from search import game
from train import data, optim, steps
from train import mesh as mesh_lib

RULES = game.Rules(n_max=4)
TOK = tokenizer.TokenizerConfig(n_max=4, number_encoding="whole", whole_max=30)
MODEL = dict(preset="", depth=1, d_model=64, num_heads=2, num_kv_heads=2, head_dim=32, mlp_dim=128,
             mlp="", head_hidden=0, tie_embeddings=False, shared_backbone=True, scan_layers=False,
             dtype="float32", param_dtype="float32")
TRAIN = dict(steps=5, learning_rate=1e-2, warmup_steps=0, min_lr_ratio=0.1, weight_decay=0.01,
             b1=0.9, b2=0.95, eps=1e-4, grad_clip_norm=1.0, grad_accum_steps=1)
LOSS = dict(value_loss="bce", policy_weight=1.0, value_weight=1.0)
MESHES = [(8, 1, 1), (2, 4, 1), (2, 2, 2)]


def _random_batch(size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random tokens and targets of the right shapes (sharding equivalence needs no real labels)."""
    rng = np.random.default_rng(seed)
    legal = rng.random((size, RULES.num_actions)) < 0.5
    legal[:, 0] = True
    good = legal & (rng.random(legal.shape) < 0.3)
    good[: size // 4] = False  # some "unsolvable" rows: no policy target
    tokens = rng.integers(0, TOK.vocab_size, (size, tokenizer.seq_len(TOK)))
    return {"tokens": tokens.astype(np.int32),
            "policy": (good / np.maximum(good.sum(-1, keepdims=True), 1)).astype(np.float32),
            "legal": legal, "value": good.any(-1).astype(np.float32),
            "weight": np.ones(size, np.float32)}


def _run(mesh, state_host, batches):
    tx = optim.make_optimizer(TRAIN)
    mc = steps.model_config(MODEL, TOK)
    graphdef, _, shardings, _ = steps.abstract_train_state(mc, TOK, tx, mesh, seed=0)
    state = jax.device_put(state_host, shardings)
    step = steps.jit_train_step(graphdef, tx, LOSS, shardings, mesh)
    losses = []
    for b in batches:
        state, m = step(state, data.to_global(b, len(b["tokens"]), mesh_lib.batch_sharding(mesh)))
        losses.append(float(m["loss"]))
    assert step._cache_size() == 1  # one compile for all steps (no retrace)
    return losses, state


@pytest.fixture(scope="module")
def reference():
    mesh = mesh_lib.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
    mc = steps.model_config(MODEL, TOK)
    _, state, _ = steps.init_train_state(mc, TOK, optim.make_optimizer(TRAIN), mesh, seed=0)
    state = jax.device_get(state)
    batches = [_random_batch(16, seed) for seed in range(5)]
    losses, final = _run(mesh, state, batches)
    return state, batches, losses, jax.device_get(final)


@pytest.mark.parametrize("shape", MESHES, ids=lambda s: "x".join(map(str, s)))
def test_mesh_matches_single_device(reference, shape):
    init, batches, ref_losses, ref_final = reference
    mesh = mesh_lib.make_mesh(dict(zip(mesh_lib.AXES, shape, strict=True)))
    losses, final = _run(mesh, init, batches)
    assert len(set(np.round(ref_losses, 4))) == 5  # the trajectory really moves
    np.testing.assert_allclose(losses, ref_losses, rtol=2e-5, atol=2e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), b, rtol=1e-4, atol=1e-5),
                 final["params"], ref_final["params"])
    wq = final["params"]["backbone"]["blocks"][0]["attn"]["wq"][...]
    if shape == (2, 2, 2):  # really sharded: embed over fsdp, heads over tensor
        assert wq.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor", None)
        assert wq.addressable_shards[0].data.shape == (32, 1, 32)


def test_sharded_init_equals_single_device(reference):
    init = reference[0]
    mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    mc = steps.model_config(MODEL, TOK)
    _, state, shardings = steps.init_train_state(mc, TOK, optim.make_optimizer(TRAIN), mesh, 0)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), state, init)
    emb = state["params"]["backbone"]["embed"][...]
    # (vocab, embed) -> (tensor, fsdp); the odd vocab size is not split, so it is replicated.
    assert emb.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp")
    assert emb.addressable_shards[0].data.shape == (TOK.vocab_size, 64 // 2)
    assert shardings["step"].spec == jax.sharding.PartitionSpec()


def test_loader_deterministic_sharded_batches():
    mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    arrays = {k: v for k, v in _random_batch(40, 7).items() if k != "weight"}
    loader = data.Loader(arrays, 8, mesh, seed=3)
    assert loader.batches_per_epoch == 5
    epoch0 = np.concatenate([loader.indices(k) for k in range(5)])
    assert sorted(epoch0) == list(range(40))  # an epoch is a permutation
    assert not np.array_equal(loader.indices(5), loader.indices(0))  # new order next epoch
    again = data.Loader(arrays, 8, mesh, seed=3)
    np.testing.assert_array_equal(again.indices(7), loader.indices(7))  # position -> same batch
    b = loader.batch(7)
    np.testing.assert_array_equal(np.asarray(b["tokens"]), arrays["tokens"][loader.indices(7)])
    assert b["tokens"].sharding.spec == jax.sharding.PartitionSpec(("data", "fsdp"))
    assert b["tokens"].addressable_shards[0].data.shape == (2, arrays["tokens"].shape[1])
    with pytest.raises(ValueError, match="batch_size=6 is not divisible"):
        data.Loader(arrays, 6, mesh, seed=0)
    evals = list(data.eval_batches(arrays, 16, mesh))
    assert len(evals) == 3 and float(evals[-1]["weight"].sum()) == 8.0


def test_losses_golden():
    """Hand-computed losses: uniform logits over 2 legal moves, one good; value logit 0."""
    batch = {"policy": np.array([[1.0, 0, 0], [0, 0, 0]], np.float32),
             "legal": np.array([[True, True, False], [True, False, False]]),
             "value": np.array([1.0, 0.0], np.float32), "weight": np.ones(2, np.float32)}
    m = steps.losses(np.zeros((2, 3), np.float32), np.zeros(2, np.float32), batch)
    np.testing.assert_allclose(float(m["policy_loss"]), np.log(2), rtol=1e-6)  # row 2 has no target
    np.testing.assert_allclose(float(m["value_loss"]), np.log(2), rtol=1e-6)
    m = steps.losses(np.array([[0.0, 5, 9], [0, 0, 0]], np.float32), np.array([3.0, 3.0]), batch,
                     "mse")
    assert float(m["policy_acc"]) == 0.0  # argmax over LEGAL moves is action 1, not good
    s = 1 / (1 + np.exp(-3.0))
    np.testing.assert_allclose(float(m["value_loss"]), ((s - 1) ** 2 + s**2) / 2, rtol=1e-6)
    assert float(m["value_acc"]) == 0.5


def test_bf16_compute_fp32_master_and_separate_models(reference):
    """bf16 compute keeps fp32 parameters, tracks the fp32 loss; two backbones both train."""
    batches = reference[1]
    mesh = mesh_lib.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
    tx = optim.make_optimizer(TRAIN)
    mc = steps.model_config({**MODEL, "dtype": "bfloat16", "shared_backbone": False}, TOK)
    graphdef, state, shardings = steps.init_train_state(mc, TOK, tx, mesh, seed=0)
    before = jax.device_get(state["params"])
    step = steps.jit_train_step(graphdef, tx, LOSS, shardings, mesh)
    state, m = step(state, data.to_global(batches[0], 16, mesh_lib.batch_sharding(mesh)))
    after = state["params"]
    assert {x.dtype for x in jax.tree.leaves(after)} == {np.dtype("float32")}
    # Same parameters with fp32 compute: bf16 rounding moves the loss by well under 1%.
    graphdef32 = steps.abstract_train_state(mc.replace(dtype="float32"), TOK, tx, mesh, 0)[0]
    loss32 = jax.jit(functools.partial(steps.loss_fn, graphdef=graphdef32, loss_cfg=LOSS))
    np.testing.assert_allclose(float(m["loss"]), float(loss32(before, batch=batches[0])[0]),
                               rtol=1e-2)
    for net in ("backbone", "value_backbone"):
        changed = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != b)),
                               after[net], before[net])
        assert all(jax.tree.leaves(changed)), net


def test_sharded_padded_eval_equals_full_batch_losses(reference):
    """Eval over padded, sharded batches == the losses of all rows at once on one device."""
    from train import supervised

    params = reference[0]["params"]
    rows = _random_batch(40, seed=11)
    mc = steps.model_config(MODEL, TOK)
    tx = optim.make_optimizer(TRAIN)
    mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    graphdef, _, shardings, _ = steps.abstract_train_state(mc, TOK, tx, mesh, 0)
    eval_step = steps.jit_eval_step(graphdef, LOSS, shardings["params"], mesh)
    out = supervised.evaluate(eval_step, jax.device_put(params, shardings["params"]), rows, 16,
                              mesh, 0, LOSS)
    loss, m = jax.jit(functools.partial(steps.loss_fn, graphdef=graphdef, loss_cfg=LOSS))(
        params, batch=rows)
    np.testing.assert_allclose(out["eval/loss"], float(loss), rtol=1e-5)
    for k in ("policy_loss", "value_loss", "policy_acc", "value_acc"):
        np.testing.assert_allclose(out[f"eval/{k}"], float(m[k]), rtol=1e-5, err_msg=k)
