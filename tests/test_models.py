"""PolicyValueNet: sizing, evaluate contract, n_max transfer, scan/bf16/sharding equivalences."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from nnx_models import (
    ModelConfig,
    PolicyValueNet,
    TokenizerConfig,
    lm_loss,
    make_evaluate,
    sharding,
    tokenizer,
)
from search import game

TINY = ModelConfig.from_depth(1, n_max=4)  # d_model 64, one head of dim 64, relu2 256
fwd = jax.jit(lambda model, tokens: model(tokens))  # eager op-by-op forwards compile far more


@pytest.fixture(scope="module")
def tiny():
    model = PolicyValueNet(TINY, rngs=nnx.Rngs(0))
    return model, *nnx.split(model)


def _states(n_max: int) -> game.State:
    rules = game.Rules(n_max=n_max)
    s = game.new_state([[8, 3, 8, 3], [1, 1, 1, 1], [6, 4], [13, 2, 5]], [24, 24, 10, 999], rules)
    return game.step(s, jnp.array([0, 0, 0, 5]), rules)  # one move each (8+3, 1+1, 6+4 solves, ...)


def test_from_depth_sizing_rule():
    c1, c4, c3 = ModelConfig.from_depth(1), ModelConfig.from_depth(4), ModelConfig.from_depth(3)
    assert (c1.d_model, c1.num_heads, c1.head_dim, c1.mlp_dim) == (64, 1, 64, 256)
    assert (c4.depth, c4.d_model, c4.num_heads, c4.head_dim) == (4, 256, 2, 128)
    assert (c3.d_model, c3.num_heads) == (192, 2)  # ceil(192 / 128)
    assert ModelConfig.from_depth(3, mlp="swiglu").mlp_dim == 512  # 8/3 * 192 rounded up to 64
    with pytest.raises(ValueError, match="num_kv_heads"):
        ModelConfig(num_heads=3, num_kv_heads=2)
    with pytest.raises(ValueError, match="mlp"):
        ModelConfig(mlp="gelu")


@pytest.mark.parametrize("n_max", [4, 6])
def test_evaluate_contract_and_n_transfer(tiny, n_max):
    """A model built for n_max=4 runs unchanged on n_max=6 states: shapes, masking, finiteness."""
    _, graphdef, params = tiny
    rules, tok_cfg = game.Rules(n_max=n_max), TokenizerConfig(n_max=n_max)
    chex.clear_trace_counter()
    evaluate = jax.jit(chex.assert_max_traces(make_evaluate(graphdef, tok_cfg, rules), n=1))
    state = _states(n_max)
    logits, value = evaluate(params, state)
    evaluate(params, state)  # no retrace on a second call
    chex.assert_shape((logits, value), ((4, rules.num_actions), (4,)))
    assert logits.dtype == value.dtype == jnp.float32
    legal = np.asarray(game.legal_mask(state, rules))
    logits = np.asarray(logits)
    assert np.all(logits[~legal] == -1e9) and np.all(np.isfinite(logits[legal]))
    assert np.all(np.abs(logits[legal]) < 1e3)
    assert legal[2].sum() == 0  # the solved state has no legal move
    assert np.all((np.asarray(value) > 0) & (np.asarray(value) < 1))


def test_shared_vs_separate_backbones():
    sep = PolicyValueNet(TINY.replace(shared_backbone=False), rngs=nnx.Rngs(0))
    tokens = tokenizer.encode(_states(4), sep.tok_cfg)
    logits, value = fwd(sep, tokens)
    # the policy depends only on the policy backbone: perturbing the value network leaves it alone
    sep.value_backbone.embed[...] = sep.value_backbone.embed[...] + 1.0
    logits2, value2 = fwd(sep, tokens)
    np.testing.assert_array_equal(logits, logits2)
    assert not np.allclose(value, value2)


def test_scan_layers_equals_unrolled():
    cfg = TINY.replace(depth=3)
    loop = PolicyValueNet(cfg, rngs=nnx.Rngs(1))
    scan = PolicyValueNet(cfg.replace(scan_layers=True), rngs=nnx.Rngs(2))
    # copy the unrolled weights into the stacked layout (values only; metadata stays per layout)
    pure = nnx.to_pure_dict(nnx.state(loop))
    pure["backbone"]["blocks"] = jax.tree.map(
        lambda *xs: jnp.stack(xs), *[pure["backbone"]["blocks"][k] for k in range(3)]
    )
    state = nnx.state(scan)
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(scan, state)
    tokens = tokenizer.encode(_states(4), loop.tok_cfg)
    for a, b in zip(fwd(loop, tokens), fwd(scan, tokens), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    specs = sharding.logical_specs(scan)
    assert tuple(specs["backbone"]["blocks"]["mlp"]["w_up"].get_value()) == (
        "layers",
        "embed",
        "mlp",
    )


def test_bf16_compute_close_to_fp32(tiny):
    model, graphdef, params = tiny
    bf16 = PolicyValueNet(TINY.replace(dtype="bfloat16"), rngs=nnx.Rngs(0))
    tokens = tokenizer.encode(_states(4), model.tok_cfg)
    (l32, v32), (l16, v16) = fwd(model, tokens), fwd(bf16, tokens)
    assert l16.dtype == jnp.float32 and bf16.backbone.embed[...].dtype == jnp.float32  # fp32 master
    np.testing.assert_allclose(l16, l32, atol=0.05)
    np.testing.assert_allclose(v16, v32, atol=0.05)


def test_lm_loss_matches_reference_and_trains(tiny):
    model, _, _ = tiny
    cfg, rules = model.tok_cfg, game.Rules(n_max=4)
    a = lambda i, j, op: game.encode_action(i, j, op, 4)
    tokens, mask = tokenizer.encode_trace(
        game.new_state([[8, 3, 8, 3]], [24], rules),
        jnp.array([[a(2, 3, 4), a(1, 2, 2), a(0, 1, 4)]]),
        cfg,
        rules,
    )
    loss, count = jax.jit(lm_loss)(model, tokens, mask)
    logits = np.asarray(jax.jit(lambda m, t: m.lm_logits(t))(model, tokens), np.float64)[0, :-1]
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -logp[np.arange(len(logp)), np.asarray(tokens)[0, 1:]]
    m = np.asarray(mask)[0, 1:]
    assert count == m.sum() and np.isclose(loss, nll[m].mean(), rtol=1e-5)
    model = PolicyValueNet(TINY, rngs=nnx.Rngs(0))  # fresh copy: training mutates it
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt):
        loss, grads = nnx.value_and_grad(lambda m: lm_loss(m, tokens, mask)[0])(model)
        opt.update(model, grads)
        return loss

    losses = [float(step(model, opt)) for _ in range(12)]
    assert losses[-1] < 0.5 * losses[0]  # memorises one trace


def test_sharded_init_matches_single_device():
    mesh = jax.make_mesh(
        (2, 2, 2), ("data", "fsdp", "tensor"), axis_types=(jax.sharding.AxisType.Auto,) * 3
    )
    cfg = TINY.replace(num_heads=2, num_kv_heads=2, head_dim=32)
    make = lambda: PolicyValueNet(cfg, rngs=nnx.Rngs(3))
    sharded = sharding.init_sharded(make, mesh)
    w_up = sharded.backbone.blocks[0].mlp.w_up[...]
    assert w_up.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
    assert sharded.backbone.blocks[0].attn.wq[...].sharding.spec == jax.sharding.PartitionSpec(
        "fsdp", "tensor", None
    )
    tokens = tokenizer.encode(_states(4), sharded.tok_cfg)
    for a, b in zip(fwd(make(), tokens), fwd(sharded, tokens), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="no rule"):
        sharding.logical_to_mesh({"w": jax.sharding.PartitionSpec("embd")})


def test_bad_inputs_raise(tiny):
    model, _, _ = tiny
    with pytest.raises(ValueError, match=r"expected \[B, 57\]"):
        model(jnp.zeros((2, 40), jnp.int32))
    with pytest.raises(ValueError, match="vocab_size"):
        PolicyValueNet(TINY.replace(vocab_size=10))
    whole = TokenizerConfig(n_max=4, number_encoding="whole")
    with pytest.raises(ValueError, match="exceeds ModelConfig.vocab_size=44"):
        model(jnp.zeros((2, tokenizer.seq_len(whole)), jnp.int32), whole)
    with pytest.raises(ValueError, match="n_max"):
        make_evaluate(nnx.graphdef(model), TokenizerConfig(n_max=4), game.Rules(n_max=5))
