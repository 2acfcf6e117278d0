"""HF Llama checkpoint interop: round trips, game-vocabulary resize, errors, torch parity."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file
from transformers import LlamaConfig

from nnx_models import ModelConfig, PolicyValueNet, TokenizerConfig, hf, lora, tokenizer
from search import game

V = 100


def _llama_config(**kw) -> LlamaConfig:
    base = dict(
        vocab_size=V,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        rope_theta=5000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    )
    return LlamaConfig(**{**base, **kw})


def _write_checkpoint(path, cfg: LlamaConfig, seed=0) -> dict:
    """A random checkpoint in HF layout written without torch (safetensors.numpy)."""
    rng = np.random.default_rng(seed)
    d, f, hd = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    h, kv = cfg.num_attention_heads, cfg.num_key_value_heads
    w = lambda *s: (0.1 * rng.standard_normal(s)).astype(np.float32)
    t = {"model.embed_tokens.weight": w(V, d), "model.norm.weight": 1 + w(d)}
    if not cfg.tie_word_embeddings:
        t["lm_head.weight"] = w(V, d)
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        t |= {
            p + "self_attn.q_proj.weight": w(h * hd, d),
            p + "self_attn.k_proj.weight": w(kv * hd, d),
            p + "self_attn.v_proj.weight": w(kv * hd, d),
            p + "self_attn.o_proj.weight": w(d, h * hd),
            p + "mlp.gate_proj.weight": w(f, d),
            p + "mlp.up_proj.weight": w(f, d),
            p + "mlp.down_proj.weight": w(d, f),
            p + "input_layernorm.weight": 1 + w(d),
            p + "post_attention_layernorm.weight": 1 + w(d),
        }
    os.makedirs(path, exist_ok=True)
    save_file(t, os.path.join(path, "model.safetensors"))
    with open(os.path.join(path, "config.json"), "w") as fh:
        fh.write(cfg.to_json_string())
    return t


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("llama"))
    return path, _write_checkpoint(path, _llama_config())


def _flat(module):
    return {k: np.asarray(v[...]) for k, v in nnx.to_flat_state(nnx.state(module, nnx.Param))}


@pytest.mark.parametrize("scan", [False, True])
def test_transformer_round_trip(ckpt, tmp_path, scan):
    path, tensors = ckpt
    tr = hf.load_transformer(path, scan_layers=scan)
    assert tr.cfg.num_kv_heads == 2 and tr.cfg.head_dim == 16 and tr.cfg.rope_theta == 5000.0
    out = hf.save_pretrained(tr, str(tmp_path / "out"))
    back = {k: np.asarray(v) for k, v in hf._read_tensors(out).items()}
    assert back.keys() == tensors.keys()
    for k in tensors:
        np.testing.assert_array_equal(back[k], tensors[k], err_msg=k)
    again = hf.load_transformer(out, scan_layers=scan)
    for (k, a), b in zip(_flat(tr).items(), _flat(again).values(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=str(k))
    assert LlamaConfig.from_pretrained(out).num_key_value_heads == 2  # transformers reads it


@pytest.mark.parametrize("shared,scan", [(True, False), (False, True)])
def test_policy_value_round_trip(tmp_path, shared, scan):
    cfg = ModelConfig.from_depth(1, mlp="swiglu", shared_backbone=shared, scan_layers=scan)
    model = PolicyValueNet(cfg, rngs=nnx.Rngs(4))
    path = hf.save_pretrained(model, str(tmp_path / "pv"))
    again = hf.load_policy_value(path)
    assert again.cfg == cfg and again.tok_cfg == model.tok_cfg
    tokens = tokenizer.encode(
        game.new_state([[8, 3, 8, 3]], [24], game.Rules(n_max=4)), model.tok_cfg
    )
    fwd = jax.jit(lambda m, t: m(t))
    for a, b in zip(fwd(model, tokens), fwd(again, tokens), strict=True):
        np.testing.assert_array_equal(a, b)


def test_policy_value_from_plain_llama_resizes_embedding(ckpt, tmp_path):
    """Game-token rows come from the checkpoint rows of the same text under its tokenizer.json."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    path, tensors = ckpt
    tok_cfg = TokenizerConfig(n_max=5)
    words = tokenizer.vocab(tok_cfg)
    ids = np.random.default_rng(1).permutation(V)[: len(words)]  # game word k has HF id ids[k]
    tk = Tokenizer(
        models.WordLevel({w: int(i) for w, i in zip(words, ids, strict=True)}, unk_token="<pad>")
    )
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.save(os.path.join(path, "tokenizer.json"))
    try:
        model = hf.load_policy_value(path, tok_cfg)
    finally:
        os.remove(os.path.join(path, "tokenizer.json"))
    assert model.cfg.vocab_size == tok_cfg.vocab_size and model.cfg.n_max == 5
    np.testing.assert_array_equal(
        model.backbone.embed[...], tensors["model.embed_tokens.weight"][ids]
    )
    np.testing.assert_array_equal(model.backbone.lm_head[...].T, tensors["lm_head.weight"][ids])
    np.testing.assert_array_equal(
        model.backbone.blocks[1].mlp.w_down[...], tensors["model.layers.1.mlp.down_proj.weight"].T
    )
    state = game.new_state([[8, 3, 8, 3, 1]], [24], game.Rules(n_max=5))
    logits, value = jax.jit(lambda m, t: m(t))(model, tokenizer.encode(state, tok_cfg))
    assert logits.shape == (1, 60) and np.all(np.isfinite(logits)) and np.isfinite(value).all()


def test_clear_errors(ckpt, tmp_path):
    path, tensors = ckpt
    with pytest.raises(FileNotFoundError, match="config.json"):
        hf.load_transformer(str(tmp_path / "nowhere"))
    bad = tmp_path / "gpt2"
    bad.mkdir()
    (bad / "config.json").write_text(
        json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]})
    )
    with pytest.raises(ValueError, match="only Llama-architecture"):
        hf.load_transformer(str(bad))
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text(_llama_config().to_json_string())
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        hf.load_transformer(str(no_weights))
    with pytest.raises(
        ValueError, match=r"q_proj.weight has shape \(64, 64\) but the model expects"
    ):
        hf.load_transformer(path, head_dim=8)
    with pytest.raises(ValueError, match="lacks tensor 'model.layers.2"):
        hf.load_transformer(path, depth=3)
    with_lora = lora.attach(PolicyValueNet(ModelConfig.from_depth(1, mlp="swiglu")))
    with pytest.raises(ValueError, match="LoRA adapters attached"):
        hf.save_pretrained(with_lora, str(tmp_path / "lora"))
    with pytest.raises(ValueError, match="export needs 'swiglu'"):
        hf.save_pretrained(PolicyValueNet(ModelConfig.from_depth(1)), str(tmp_path / "relu2"))


def test_logits_match_transformers_llama(ckpt):
    torch = pytest.importorskip("torch", reason="torch extra not installed")
    from transformers import LlamaForCausalLM

    path, _ = ckpt
    ref = LlamaForCausalLM.from_pretrained(path, torch_dtype=torch.float32).eval()
    tokens = np.random.default_rng(0).integers(0, V, (3, 21))
    with torch.no_grad():
        want = ref(torch.tensor(tokens)).logits.numpy()
    got = np.asarray(hf.load_transformer(path)(jnp.asarray(tokens)))
    assert np.abs(got - want).max() < 1e-4
