"""LoRA adapters: attach is a no-op on outputs, a step trains only adapters, merge and reset."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from nnx_models import ModelConfig, PolicyValueNet, lora, tokenizer
from search import game

fwd = jax.jit(lambda model, tokens: model(tokens))


def _tokens(tok_cfg):
    rules = game.Rules(n_max=tok_cfg.n_max)
    return tokenizer.encode(game.new_state([[8, 3, 8, 3], [1, 2, 3, 4]], [24, 24], rules), tok_cfg)


def _flat(model, kind):
    return {k: np.asarray(v[...]) for k, v in nnx.to_flat_state(nnx.state(model, kind))}


@pytest.mark.parametrize("scan", [False, True])
def test_lora_train_merge_reset(scan):
    cfg = ModelConfig.from_depth(1, mlp="swiglu", scan_layers=scan).replace(depth=2)
    model = PolicyValueNet(cfg, rngs=nnx.Rngs(0))
    tokens = _tokens(model.tok_cfg)
    base_out = fwd(model, tokens)
    lora.attach(model, rank=4, alpha=8.0, targets=("wq", "wv", "wo", "w_down"), rngs=nnx.Rngs(1))
    d, r = cfg.d_model, 4
    per_layer = (d * r + r * d) * 3 + (cfg.mlp_dim * r + r * d)  # wq, wv, wo (64x64 views), w_down
    assert lora.num_lora_params(model) == 2 * per_layer
    for a, b in zip(base_out, fwd(model, tokens), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)  # B = 0: attaching changes nothing

    base_before = _flat(model, nnx.Not(nnx.LoRAParam))
    lora_before = _flat(model, nnx.LoRAParam)
    opt = nnx.Optimizer(model, optax.sgd(0.05), wrt=nnx.LoRAParam)

    def loss_fn(m):
        logits, value_logit = m(tokens)
        return -jax.nn.log_softmax(logits)[:, 0].mean() + jnp.square(value_logit - 3.0).mean()

    @nnx.jit
    def step(m, o):
        loss, grads = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, nnx.LoRAParam))(m)
        o.update(m, grads)
        return loss

    first = step(model, opt)
    for k, v in _flat(model, nnx.Not(nnx.LoRAParam)).items():
        np.testing.assert_array_equal(v, base_before[k], err_msg=str(k))  # base untouched
    moved = [
        k for k, v in _flat(model, nnx.LoRAParam).items() if not np.array_equal(v, lora_before[k])
    ]
    assert any("lora_b" in str(k) for k in moved)
    assert float(step(model, opt)) < float(first)
    tuned = fwd(model, tokens)
    tuned_adapters = jax.tree.map(jnp.copy, nnx.state(model, nnx.LoRAParam))

    lora.reset(model)
    for a, b in zip(base_out, fwd(model, tokens), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)  # back to the base network

    nnx.update(model, tuned_adapters)
    lora.merge(model)
    assert lora.num_lora_params(model) == 0 and not hasattr(model.backbone, "lora_scale")
    after = _flat(model, nnx.Param)
    assert any(not np.array_equal(after[k], base_before[k]) for k in base_before)  # W absorbed AB
    for a, b in zip(tuned, fwd(model, tokens), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)  # merged weights reproduce the adapted net


def test_lora_errors():
    model = PolicyValueNet(ModelConfig.from_depth(1), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="rank"):
        lora.attach(model, rank=0)
    with pytest.raises(ValueError, match="allowed"):
        lora.attach(model, targets=("q_proj",))
    with pytest.raises(ValueError, match="no module"):
        lora.attach(model, targets=("w_gate",))  # relu2 MLP has no gate
    lora.attach(model, targets=("wq",))
    with pytest.raises(ValueError, match="already has"):
        lora.attach(model, targets=("wq",))
