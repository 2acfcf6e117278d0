"""Parameter counts and FLOPs of the ``nnx_models`` networks (exact formulas, conventions stated).

Conventions:
* A multiply-add is 2 FLOPs; a [m, k] x [k, n] matmul costs 2*m*k*n.
* Embedding lookups cost 0 (a gather). Norms, activations, softmax and RoPE are not counted (they
  are
  O(d) per token against O(d^2) for the matmuls); XLA's cost analysis agrees within a few percent.
* Attention scores and the weighted sum cost ``4 * seq_len * d_attn`` per token and layer
  (QK^T and AV, ``d_attn = num_heads * head_dim``), WITHOUT causal halving: the whole L x L score
  matrix is computed and masked, which is what ``jax.nn.dot_product_attention`` does on CPU/XLA.
* N ("params" in run records) is the non-embedding parameter count: everything except the token
  embedding and an untied LM head (so transformer blocks, norms and the policy/value heads).

Per token:   forward = 2*N + 4*depth*seq_len*d_attn*B_n (B_n = 1 or 2 backbones),
             train   = 3 * forward = 6*N + 12*depth*seq_len*d_attn*B_n   (backward = 2x forward).
Per state evaluation (what search spends): the backbone(s) on ``seq_len`` tokens plus the heads
read once per state (pair head on n_max slots and C(n_max, 2) pairs, value head on one position);
see ``forward_flops_per_state``.
"""

from __future__ import annotations

from nnx_models.config import ModelConfig, extra_param_count
from nnx_models.heads import head_param_counts
from search import game


def _block_params(cfg: ModelConfig) -> int:
    d, hd = cfg.d_model, cfg.head_dim
    attn = d * cfg.num_heads * hd * 2 + d * cfg.num_kv_heads * hd * 2  # q, o + k, v
    mlp = (3 if cfg.mlp == "swiglu" else 2) * d * cfg.mlp_dim
    return attn + mlp + 2 * d  # two RMSNorm scales


def param_counts(cfg: ModelConfig, heads: bool = True, tok_cfg=None) -> dict[str, int]:
    """Exact parameter counts of ``PolicyValueNet(cfg)`` (``heads=False``: of one ``Transformer``).

    Returns dict(total, embedding, non_embedding); embedding = token table (+ untied LM head).
    ``tok_cfg``: the encoding the model reads; a numeric one adds the value-feature embedding
    (``nnx_models.config.extra_param_count``, non-embedding like the qk-norm scales).
    """
    nb = cfg.num_backbones if heads else 1
    emb = cfg.vocab_size * cfg.d_model * (1 if cfg.tie_embeddings else 2)
    backbone = cfg.depth * _block_params(cfg) + cfg.d_model  # + final norm
    non_emb = nb * backbone + (sum(head_param_counts(cfg).values()) if heads else 0)
    non_emb += extra_param_count(cfg, tok_cfg, heads=heads)["non_embedding"]
    return {"total": nb * emb + non_emb, "embedding": nb * emb, "non_embedding": non_emb}


def _attn_flops_per_token(cfg: ModelConfig, seq_len: int) -> int:
    return 4 * cfg.depth * seq_len * cfg.num_heads * cfg.head_dim


def forward_flops_per_token(cfg: ModelConfig, seq_len: int, lm_head: bool = False) -> int:
    """2*N + 4*depth*seq_len*d_attn per backbone (module docstring); ``lm_head`` adds 2*d*V."""
    if seq_len < 1:
        raise ValueError(f"seq_len={seq_len} must be >= 1.")
    n = param_counts(cfg)["non_embedding"]
    fl = 2 * n + cfg.num_backbones * _attn_flops_per_token(cfg, seq_len)
    return fl + (2 * cfg.d_model * cfg.vocab_size if lm_head else 0)


def train_flops_per_token(cfg: ModelConfig, seq_len: int, lm_head: bool = False) -> int:
    """6*N + 12*depth*seq_len*d_attn (backward = 2 x forward)."""
    return 3 * forward_flops_per_token(cfg, seq_len, lm_head)


def forward_flops_per_state(cfg: ModelConfig, seq_len: int, n_max: int | None = None) -> int:
    """FLOPs of one ``evaluate`` of one state: backbone(s) on seq_len tokens + heads once.

    Backbone: seq_len * (2*N_backbone + 4*depth*seq_len*d_attn) per backbone, N_backbone the
    non-embedding params of one transformer. Pair head: 2*D*H*(2*n_max + 1) for the slot and summary
    projections + 2*P*H*6 for the pair outputs (P = C(n_max, 2)); value head 2*(D*H + H).
    """
    n_max = n_max or cfg.n_max
    if not 2 <= n_max <= 16:
        raise ValueError(f"n_max={n_max} out of range; allowed 2..16.")
    backbone = param_counts(cfg, heads=False)["non_embedding"]
    per_token = 2 * backbone + _attn_flops_per_token(cfg, seq_len)
    d, h = cfg.d_model, cfg.head_width
    pairs = n_max * (n_max - 1) // 2
    heads = 2 * d * h * (2 * n_max + 1) + 2 * pairs * h * game.NUM_OPS + 2 * (d * h + h)
    return cfg.num_backbones * seq_len * per_token + heads
