"""Parameter-count formula vs instantiated models, and the FLOPs formula vs XLA's cost analysis."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from nnx_models import ModelConfig, PolicyValueNet, Transformer, tokenizer
from nnx_models.config import smollm2_1p7b, smollm2_135m, smollm2_360m
from scaling import flops


def _count(module) -> tuple[int, int]:
    """(total, embedding) parameters of an abstract module, embedding = token table + LM head."""
    state = nnx.state(module, nnx.Param)
    total = sum(x.size for x in jax.tree.leaves(state))
    emb = sum(
        x.size
        for path, x in jax.tree_util.tree_leaves_with_path(state)
        if any(getattr(k, "key", None) in ("embed", "lm_head") for k in path)
    )
    return total, emb


CONFIGS = [
    ModelConfig.from_depth(1),
    ModelConfig.from_depth(3, mlp="swiglu", tie_embeddings=True),
    ModelConfig.from_depth(4, num_kv_heads=1, shared_backbone=False, head_hidden=96),
    ModelConfig.from_depth(2, scan_layers=True, vocab_size=300),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["d1", "d3-swiglu-tied", "d4-gqa-separate", "d2-scan"])
def test_param_counts_match_instantiated(cfg):
    counts = flops.param_counts(cfg)
    total, emb = _count(nnx.eval_shape(lambda: PolicyValueNet(cfg, rngs=nnx.Rngs(0))))
    assert counts == {"total": total, "embedding": emb, "non_embedding": total - emb}
    lm_total, lm_emb = _count(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))))
    assert flops.param_counts(cfg, heads=False) == {
        "total": lm_total,
        "embedding": lm_emb,
        "non_embedding": lm_total - lm_emb,
    }


def test_smollm2_presets_exact():
    expected = {smollm2_135m: 134_515_008, smollm2_360m: 361_821_120, smollm2_1p7b: 1_711_376_384}
    for preset, n in expected.items():
        cfg = preset()
        assert flops.param_counts(cfg, heads=False)["total"] == n
        assert _count(nnx.eval_shape(lambda c=cfg: Transformer(c, rngs=nnx.Rngs(0))))[0] == n
    c = smollm2_135m()
    assert (c.depth, c.d_model, c.num_heads, c.num_kv_heads, c.mlp_dim, c.vocab_size) == (
        30,
        576,
        9,
        3,
        1536,
        49152,
    )


def test_flops_formulas():
    cfg, L = ModelConfig.from_depth(2), 57
    n = flops.param_counts(cfg)["non_embedding"]
    attn = 4 * 2 * L * cfg.num_heads * cfg.head_dim
    assert flops.forward_flops_per_token(cfg, L) == 2 * n + attn
    assert flops.train_flops_per_token(cfg, L) == 6 * n + 3 * attn
    assert (
        flops.forward_flops_per_token(cfg, L, lm_head=True)
        == 2 * n + attn + 2 * 128 * cfg.vocab_size
    )
    with pytest.raises(ValueError, match="seq_len"):
        flops.forward_flops_per_token(cfg, 0)


@pytest.mark.parametrize("depth,n_max", [(2, 4), (4, 6), (6, 4)])
def test_forward_flops_per_state_vs_xla(depth, n_max):
    """Our formula within 15% of XLA's count of the compiled forward (3 sizes)."""
    cfg = ModelConfig.from_depth(
        depth, mlp="swiglu" if depth == 6 else "relu2", shared_backbone=depth != 4
    )
    tok_cfg = tokenizer.TokenizerConfig(n_max=n_max)
    graphdef, params = nnx.split(nnx.eval_shape(lambda: PolicyValueNet(cfg, tok_cfg)))
    length, batch = tokenizer.seq_len(tok_cfg), 4
    fwd = jax.jit(lambda p, t: nnx.merge(graphdef, p)(t))
    cost = (
        fwd.lower(params, jax.ShapeDtypeStruct((batch, length), jnp.int32))
        .compile()
        .cost_analysis()
    )
    cost = cost[0] if isinstance(cost, list) else cost
    ours = batch * flops.forward_flops_per_state(cfg, length, n_max)
    assert abs(cost["flops"] / ours - 1) < 0.15, (cost["flops"], ours)
