"""Local Hugging Face Llama / SmolLM2 checkpoints (config.json + safetensors) <-> NNX models.

No download and no torch: tensors are read and written with ``safetensors.flax`` (bf16 included).

* ``config_from_hf(path)``: the ``ModelConfig`` of a Llama checkpoint directory.
* ``load_transformer(path)``: the checkpoint as an NNX ``Transformer`` (its own vocabulary).
* ``load_policy_value(path, tok_cfg)``: a ``PolicyValueNet`` for the game. A directory written by
  ``save_pretrained(PolicyValueNet)`` is restored exactly (heads included). A plain Llama checkpoint
  gives the backbone; the embedding is resized to the game vocabulary, each game token's row being
  the mean pretrained embedding of that token's text under the checkpoint's ``tokenizer.json``
  (``"7" -> "7"``, ``"<s3>" -> "<", "s", "3", ">"``), or the mean embedding row without one; the
  heads are freshly initialised.
* ``save_pretrained(model, path)``: HF layout (loads in ``transformers.LlamaForCausalLM``); for a
  ``PolicyValueNet`` the heads (and a separate value network) go to ``zero24_extra.safetensors``,
  together with every backbone weight that has no Llama tensor (the qk-norm scales, the numeric
  embedding, the packed embedding with its type table), and ``zero24_model.json`` holds the full
  ModelConfig and TokenizerConfig (every representation option round-trips).
  ``model.safetensors`` + ``config.json`` stay a valid Llama checkpoint, but only the default
  options (causal, sequence positions, no qk-norm, token encodings) compute the same function
  there; the others need ``load_policy_value``.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnx_models import numeric, tokenizer
from nnx_models.config import ModelConfig
from nnx_models.policy_value import PolicyValueNet
from nnx_models.transformer import Transformer

_EXTRA, _META = "zero24_extra.safetensors", "zero24_model.json"


def _read_config(path: str) -> dict:
    file = os.path.join(path, "config.json")
    if not os.path.isfile(file):
        raise FileNotFoundError(f"{file} is missing; expected a HF checkpoint directory.")
    with open(file) as f:
        hf = json.load(f)
    arch = hf.get("architectures") or ["LlamaForCausalLM"]
    if hf.get("model_type") != "llama" or not any("Llama" in a for a in arch):
        raise ValueError(
            f"{file}: model_type={hf.get('model_type')!r}, architectures={arch}; only "
            "Llama-architecture checkpoints (model_type 'llama', e.g. SmolLM2) load."
        )
    for key, ok in (("attention_bias", False), ("mlp_bias", False), ("hidden_act", "silu")):
        if hf.get(key, ok) != ok:
            raise ValueError(f"{file}: {key}={hf[key]!r} is unsupported; allowed {ok!r}.")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise ValueError(
            f"{file}: rope type {rope.get('rope_type')!r} is unsupported; allowed 'default'."
        )
    return hf


def config_from_hf(path: str, **overrides) -> ModelConfig:
    hf = _read_config(path)
    rope = hf.get("rope_parameters") or {}
    heads = hf["num_attention_heads"]
    cfg = dict(
        depth=hf["num_hidden_layers"],
        d_model=hf["hidden_size"],
        num_heads=heads,
        num_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
        mlp_dim=hf["intermediate_size"],
        mlp="swiglu",
        vocab_size=hf["vocab_size"],
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
    )
    cfg.update(overrides)
    return ModelConfig(**cfg)


def _hf_config(cfg: ModelConfig) -> dict:
    if cfg.mlp != "swiglu":
        raise ValueError(
            f"ModelConfig.mlp={cfg.mlp!r} has no Llama equivalent; export needs 'swiglu'."
        )
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.mlp_dim,
        "num_hidden_layers": cfg.depth,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "vocab_size": cfg.vocab_size,
        "tie_word_embeddings": cfg.tie_embeddings,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "max_position_embeddings": 2048,
        "torch_dtype": cfg.param_dtype,
        "bos_token_id": tokenizer.BOS,
        "eos_token_id": tokenizer.EOS,
        "pad_token_id": tokenizer.PAD,
    }


def _read_tensors(path: str) -> dict:
    from safetensors.flax import load_file

    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    elif os.path.isfile(os.path.join(path, "model.safetensors")):
        files = ["model.safetensors"]
    else:
        raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {path}.")
    out = {}
    for name in files:
        out.update(load_file(os.path.join(path, name)))
    return out


# Per-layer HF tensor name -> (our module path, to-HF transform, from-HF transform). HF stores
# Linear weights as [out, in]; ours are [in, out] with heads split out.
def _layer_map(cfg: ModelConfig):
    d, h, kv, hd = cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    qkv = lambda n: (lambda w: w.reshape(d, n * hd).T, lambda t: t.T.reshape(d, n, hd))
    plain = (lambda w: w.T, lambda t: t.T)
    same = (lambda w: w, lambda t: t)
    return {
        "self_attn.q_proj.weight": (("attn", "wq"), *qkv(h)),
        "self_attn.k_proj.weight": (("attn", "wk"), *qkv(kv)),
        "self_attn.v_proj.weight": (("attn", "wv"), *qkv(kv)),
        "self_attn.o_proj.weight": (
            ("attn", "wo"),
            lambda w: w.reshape(h * hd, d).T,
            lambda t: t.T.reshape(h, hd, d),
        ),
        "mlp.gate_proj.weight": (("mlp", "w_gate"), *plain),
        "mlp.up_proj.weight": (("mlp", "w_up"), *plain),
        "mlp.down_proj.weight": (("mlp", "w_down"), *plain),
        "input_layernorm.weight": (("attn_norm", "scale"), *same),
        "post_attention_layernorm.weight": (("mlp_norm", "scale"), *same),
    }


def _get(module, path):
    for p in path:
        module = getattr(module, p)
    return module


def _block_params(tr: Transformer):
    """Yields (layer index, getter(path) -> Param, index into the param) for both layer layouts."""
    for i in range(tr.cfg.depth):
        if tr.cfg.scan_layers:
            yield i, (lambda path: _get(tr.blocks, path)), i
        else:
            yield i, (lambda path, i=i: _get(tr.blocks[i], path)), None


def to_hf_tensors(tr: Transformer) -> dict:
    cfg = tr.cfg
    out = {
        "model.embed_tokens.weight": tr.embed[...],
        "model.norm.weight": tr.final_norm.scale[...],
    }
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = tr.lm_head[...].T
    for i, get, idx in _block_params(tr):
        for name, (path, to_hf, _) in _layer_map(cfg).items():
            w = get(path)[...]
            out[f"model.layers.{i}.{name}"] = to_hf(w[idx] if idx is not None else w)
    return {k: jnp.asarray(v) for k, v in out.items()}


def _assign(param: nnx.Param, value, name: str, idx=None):
    want = param[...].shape[1:] if idx is not None else param[...].shape
    if tuple(value.shape) != tuple(want):
        raise ValueError(
            f"tensor {name} has shape {tuple(value.shape)} but the model expects "
            f"{tuple(want)}; the config and the checkpoint disagree."
        )
    value = jnp.asarray(value, param[...].dtype)
    param[...] = param[...].at[idx].set(value) if idx is not None else value


def from_hf_tensors(tr: Transformer, tensors: dict, skip_embedding: bool = False) -> None:
    """Write HF tensors into ``tr`` in place (shape-checked, every expected tensor required)."""
    cfg, used = tr.cfg, set()

    def take(name):
        if name not in tensors:
            raise ValueError(f"checkpoint lacks tensor {name!r} (has {len(tensors)} tensors).")
        used.add(name)
        return tensors[name]

    if not skip_embedding:
        _assign(tr.embed, take("model.embed_tokens.weight"), "model.embed_tokens.weight")
        if not cfg.tie_embeddings:
            _assign(tr.lm_head, take("lm_head.weight").T, "lm_head.weight")
    _assign(tr.final_norm.scale, take("model.norm.weight"), "model.norm.weight")
    for i, get, idx in _block_params(tr):
        for name, (path, to_hf, from_hf) in _layer_map(cfg).items():
            full, param = f"model.layers.{i}.{name}", get(path)
            want = to_hf(param[...][idx] if idx is not None else param[...]).shape
            value = take(full)
            if tuple(value.shape) != tuple(want):  # check in HF layout, before reshaping
                raise ValueError(
                    f"tensor {full} has shape {tuple(value.shape)} but the model "
                    f"expects {tuple(want)}; the config and the checkpoint disagree."
                )
            _assign(param, from_hf(value), full, idx)
    extra = sorted(
        k
        for k in tensors
        if k not in used
        and "embed_tokens" not in k
        and k != "lm_head.weight"
        and "rotary_emb" not in k
    )
    if extra:
        raise ValueError(
            f"checkpoint has tensors this config does not use: {extra[:5]} ...; "
            "check num_hidden_layers / architecture."
        )


def load_transformer(path: str, **overrides) -> Transformer:
    cfg = config_from_hf(path, **overrides)
    tr = nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0)))
    graphdef, state = _zeros(tr)
    # Weights a Llama checkpoint lacks keep their init: the qk-norm scales (ones = identity).
    flat = [
        (k, v.replace(jnp.ones(v.shape, v.dtype)))
        if not _in_llama_layout(tuple(k), cfg) and k[-1] == "scale"
        else (k, v)
        for k, v in nnx.to_flat_state(state)
    ]
    tr = nnx.merge(graphdef, nnx.from_flat_state(flat))
    from_hf_tensors(tr, _read_tensors(path))
    return tr


def _zeros(abstract):
    graphdef, state = nnx.split(abstract)
    return graphdef, nnx.from_flat_state(
        [(k, v.replace(jnp.zeros(v.shape, v.dtype))) for k, v in nnx.to_flat_state(state)]
    )


def _game_embedding(path: str, table, tok_cfg: tokenizer.TokenizerConfig):
    """Rows for the game vocabulary from a pretrained table (module docstring)."""
    table = np.asarray(table, np.float32)
    rows = np.repeat(table.mean(0, keepdims=True), tok_cfg.vocab_size, axis=0)
    tok_file = os.path.join(path, "tokenizer.json")
    if os.path.isfile(tok_file):
        from tokenizers import Tokenizer

        hf_tok = Tokenizer.from_file(tok_file)
        for k, word in enumerate(tokenizer.vocab(tok_cfg)):
            ids = [i for i in hf_tok.encode(word, add_special_tokens=False).ids if i < len(table)]
            if ids:
                rows[k] = table[ids].mean(0)
    return rows


def load_policy_value(
    path: str, tok_cfg: tokenizer.TokenizerConfig | None = None, seed: int = 0, **overrides
) -> PolicyValueNet:
    """A PolicyValueNet from ``path`` (module docstring); ``overrides`` edit the ModelConfig."""
    meta = os.path.join(path, _META)
    if os.path.isfile(meta):  # our own export: exact restore
        with open(meta) as f:
            saved = json.load(f)
        cfg = ModelConfig(**{**saved["model"], **overrides})
        saved_tok = tokenizer.TokenizerConfig(**saved["tokenizer"])
        tok_cfg = tok_cfg or saved_tok
        saved_kind = numeric.input_kind(saved_tok)
        if numeric.input_kind(tok_cfg) != saved_kind:
            raise ValueError(
                f"{path} was saved for number_encoding={saved_tok.number_encoding!r}; "
                f"tok_cfg.number_encoding={tok_cfg.number_encoding!r} needs other weights "
                "(token, numeric and packed encodings do not share the input embedding; allowed "
                f"{numeric.kind_encodings(saved_kind)})."
            )
        model = PolicyValueNet(cfg, tok_cfg, rngs=nnx.Rngs(seed))
        from_hf_tensors(model.backbone, _read_tensors(path))
        _load_extra(model, os.path.join(path, _EXTRA))
        return model
    tok_cfg = tok_cfg or tokenizer.TokenizerConfig()
    cfg = config_from_hf(path, vocab_size=tok_cfg.vocab_size, n_max=tok_cfg.n_max, **overrides)
    model = PolicyValueNet(cfg, tok_cfg, rngs=nnx.Rngs(seed))
    tensors = _read_tensors(path)
    for tr in [model.backbone] + ([] if cfg.shared_backbone else [model.value_backbone]):
        from_hf_tensors(tr, tensors, skip_embedding=True)
        tr.embed[...] = jnp.asarray(
            _game_embedding(path, tensors["model.embed_tokens.weight"], tok_cfg),
            tr.embed[...].dtype,
        )
        if not cfg.tie_embeddings:
            head = tensors.get("lm_head.weight", tensors["model.embed_tokens.weight"])
            tr.lm_head[...] = jnp.asarray(
                _game_embedding(path, head, tok_cfg).T, tr.lm_head[...].dtype
            )
    return model


def _in_llama_layout(key: tuple, cfg: ModelConfig) -> bool:
    """Whether the backbone param at flat ``key`` (relative to the Transformer) is a Llama tensor
    written by ``to_hf_tensors``; everything else of the backbone goes to the extras file."""
    if key in (("embed",), ("lm_head",), ("final_norm", "scale")):
        return True
    if key[0] != "blocks":
        return False
    rest = key[1:] if cfg.scan_layers else key[2:]  # drop the layer index of unrolled blocks
    return rest in {path for path, _, _ in _layer_map(cfg).values()}


def _extra_state(model: PolicyValueNet):
    state = nnx.state(model, nnx.Param)
    return {
        "/".join(map(str, k)): v[...]
        for k, v in nnx.to_flat_state(state)
        if k[0] != "backbone" or not _in_llama_layout(tuple(k[1:]), model.cfg)
    }


def _load_extra(model: PolicyValueNet, file: str):
    from safetensors.flax import load_file

    if not os.path.isfile(file):
        raise FileNotFoundError(f"{file} is missing (written by save_pretrained with the heads).")
    tensors = load_file(file)
    for key, _ in _extra_state(model).items():
        if key not in tensors:
            raise ValueError(f"{file} lacks tensor {key!r}; it was saved from a different config.")
        parts = [int(p) if p.isdigit() else p for p in key.split("/")]
        param = model
        for p in parts:
            param = param[p] if isinstance(p, int) else getattr(param, p)
        _assign(param, tensors[key], key)


def save_pretrained(model: Transformer | PolicyValueNet, path: str,
                    meta: dict | None = None) -> str:
    """Write ``config.json`` + ``model.safetensors`` (+ zero24 extras for a PolicyValueNet).
    ``meta``: more entries of ``zero24_model.json``, e.g. the playing conditions (``play``) and
    ``training_classes`` that ``train.run_model.export_conditions`` reads back."""
    from safetensors.flax import save_file

    tr = model.backbone if isinstance(model, PolicyValueNet) else model
    if jax.tree.leaves(nnx.state(model, nnx.LoRAParam)):
        raise ValueError(
            "the model has LoRA adapters attached; lora.merge(model) (or detach) first."
        )
    hf_cfg = _hf_config(tr.cfg)
    os.makedirs(path, exist_ok=True)
    save_file(to_hf_tensors(tr), os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    if isinstance(model, PolicyValueNet):
        save_file(_extra_state(model), os.path.join(path, _EXTRA))
        with open(os.path.join(path, _META), "w") as f:
            json.dump(
                {
                    "model": dataclasses.asdict(model.cfg),
                    "tokenizer": dataclasses.asdict(model.tok_cfg),
                    **(meta or {}),
                },
                f,
                indent=2,
            )
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(hf_cfg, f, indent=2)
    return path
