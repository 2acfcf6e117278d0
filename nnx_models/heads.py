"""Policy (pair) head and value head on top of the backbone's hidden states.

Pair head: for action (i, j, op), ``logit = W_o relu(A h_i + B h_j + C h_sum + b) + b_o`` where
``h_k`` is the hidden state at ``slot_positions[k]`` and ``h_sum`` the one at the summary position.
No weight depends on the slot count, so a model trained with n_max = 4 scores n_max = 6 states:
only the gathered positions and the pair table change. Cost: 3 projections of D x H per state
(A, B on N slots, C once) plus a H x 6 output per pair (two with ``pair_symmetric``: the logit of
(i, j, op) is then the mean of the ordered logits of (i, j, op) and (j, i, mirror(op)), so the
head is exactly equivariant to swapping two slots' contents).

Pair results (``ModelConfig.pair_results``): the head also sees the EXACT result of every move.
From the raw numbers of the state (``state_values``: numeric fields or packed entries) it computes
``r = s_i op s_j`` for every pair and op with ``search.game._op_results`` (int32, legality of
``game.Rules(n_max=N)``: both slots live, |num|, den <= 32767) and

    z(i, j, op) = relu(A h_i + B h_j + C h_sum + b + R[op] + ok(i, j, op) * F(x(r, t)))   # [H]
    logit(i, j, op) = w_out . z(i, j, op) + b_out[op]

with ``R[6, H]`` a learned per-op row, ``F`` a linear map ``W_res[RESULT_FEATURES, H]`` (no bias:
an illegal result, ok = 0, embeds as exactly zero) and ``x(r, t)`` (``result_features``, all in
[-1, 1]) = ``numeric.features(r)`` ++ ``numeric.features(t - r)`` ++ ``numeric.features(t / r)``
(exact, reduced; zero where out of range or t / 0) ++ [r == t, sign(r - t),
(log|r| - log|t|) / (2 LOG_SCALE) (0 if r or t is 0)]. (r is an integer is feature 5 of
``features(r)``.) The hidden state is per (pair, op), so the output is ONE vector ``w_out[H, 1]``
plus a per-op bias ``b_out[6]`` (instead of ``W_out[H, 6]``). With ``pair_symmetric`` the reversed
branch reads ``a_j + b_i + c + R[mirror(op)]`` and the same result (r(j, i, mirror(op)) ==
r(i, j, op)) with bias ``b_out[mirror(op)]``, so slot-permutation equivariance stays exact.
Extra cost: P * 6 result embeddings of width H per state (one RESULT_FEATURES x H matmul each, one
or two H-dots for the outputs).

Value head "children" (``value_pool="children"``, needs pair_results): the pair head emits a second
channel ``c(i, j, op) = w_child . z(i, j, op) + b_child[op]`` (symmetrised like the logits) and

    value_logit = logsumexp over legal (i, j, op) of c(i, j, op)      (a soft OR: some child wins)

where legal = both slots live and the result legal; a state with no legal move gets the learned
constant ``none_logit``. No ``- log(#legal)`` term: at init (c ~ 0) the value logit is
~ log(#legal), and the per-op bias ``b_child`` learns the offset. The value MLP is not created in
this mode.

Value head: a two-layer MLP on one pooled vector, chosen by ``ModelConfig.value_pool``: the summary
hidden state ("summary"), the mean of the live slots' and the summary's hidden states ("mean"), or
an attention pool over them with one learned query ("attn"). The pools read every live slot
directly, so the value cannot collapse because the summary token attends to nothing useful.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnx_models import numeric, tokenizer
from nnx_models.config import ModelConfig
from nnx_models.layers import make_param
from search import game

# op on (b, a) that equals op on (a, b), in game.OPS order (+, *, -, r-, /, r/); == solver._MIRROR
MIRROR = (0, 1, 3, 2, 5, 4)
NUM_RELATION = 3  # r == t, sign(r - t), scaled log|r| - log|t|
RESULT_FEATURES = 3 * numeric.NUM_FEATURES + NUM_RELATION  # features of r, t - r, t / r + relation


def check_pair_results(cfg: ModelConfig, tok_cfg: tokenizer.TokenizerConfig) -> None:
    """``pair_results`` reads raw numbers: only numeric / packed encodings hold them."""
    if cfg.pair_results and tok_cfg.number_encoding not in tokenizer.RAW_ENCODINGS:
        raise ValueError(
            f"ModelConfig.pair_results=True reads the raw numbers of the state, but "
            f"TokenizerConfig.number_encoding={tok_cfg.number_encoding!r} holds vocabulary "
            f"tokens; allowed number_encoding 'numeric', 'packed' (or pair_results=False)."
        )


def state_values(tokens_BxL: jax.Array, tok_cfg: tokenizer.TokenizerConfig):
    """Raw numbers of encoded states: (num, den, live), each [B, 1 + N], target first.

    numeric: each field's (sign token, |num|, den); packed: ``tokenizer.unpack`` of each entry.
    Dead slots give (0, 1, False)."""
    if tok_cfg.number_encoding not in tokenizer.RAW_ENCODINGS:
        raise ValueError(
            f"state_values reads raw numbers: TokenizerConfig.number_encoding="
            f"{tok_cfg.number_encoding!r}; allowed 'numeric', 'packed'."
        )
    if tok_cfg.packed:
        sign, mag, den = tokenizer.unpack(tokens_BxL[:, tokenizer.numeric_positions(tok_cfg)])
    else:
        starts = tokenizer.field_starts(tok_cfg)
        sign, mag, den = (tokens_BxL[:, starts + k] for k in range(3))
    live = (sign == tokenizer.PLUS) | (sign == tokenizer.MINUS)
    num = jnp.where(live, jnp.where(sign == tokenizer.MINUS, -mag, mag), 0).astype(jnp.int32)
    return num, jnp.where(live, den, 1).astype(jnp.int32), live


def _features_of(num, den, ok) -> jax.Array:
    sign = jnp.where(ok, jnp.where(num < 0, tokenizer.MINUS, tokenizer.PLUS), tokenizer.DEAD)
    return numeric.features(sign, jnp.abs(num), den)  # zero where not ok


def pair_results(num_BxN, den_BxN, live_BxN, rules: game.Rules):
    """Exact results of every (pair, op): (num, den, ok), each int32 / bool [B, P, 6]."""
    pairs = game.pair_table(num_BxN.shape[1])
    i, j = pairs[:, 0], pairs[:, 1]
    both = (live_BxN[:, i] & live_BxN[:, j])[..., None]
    return game._op_results(num_BxN[:, i], den_BxN[:, i], num_BxN[:, j], den_BxN[:, j], rules, both)


def result_features(rn, rd, ok, tn, td, rules: game.Rules) -> jax.Array:
    """float32[..., RESULT_FEATURES] of results r = rn / rd (legal where ``ok``) against the
    target t = tn / td (broadcast to r's shape); zero wherever not ok (module docstring)."""
    tn, td = jnp.broadcast_to(tn, rn.shape), jnp.broadcast_to(td, rn.shape)
    cross_t, cross_r = tn * rd, rn * td  # |.| <= 32767**2 < 2**30: exact int32
    # t - r and t / r, reduced exactly (out of range / division by zero -> not ok, zero features)
    dn, dd, dok = game._reduce(
        jnp.stack([cross_t - cross_r, cross_t], -1),
        jnp.stack([td * rd, td * rn], -1),
        rules,
        ok[..., None],
    )
    eq = ok & (rn == tn) & (rd == td)
    sgn = jnp.sign(cross_r - cross_t).astype(jnp.float32)  # |difference| < 2**31: exact
    log_abs = lambda n, d: (
        jnp.log(jnp.maximum(jnp.abs(n), 1).astype(jnp.float32)) - jnp.log(d.astype(jnp.float32))
    )
    both_nonzero = (rn != 0) & (tn != 0)
    log_ratio = jnp.where(both_nonzero, log_abs(rn, rd) - log_abs(tn, td), 0.0) / (
        2 * numeric.LOG_SCALE
    )
    relation = jnp.stack([eq.astype(jnp.float32), sgn, log_ratio], -1)
    out = jnp.concatenate(
        [
            _features_of(rn, rd, ok),
            _features_of(dn[..., 0], dd[..., 0], dok[..., 0]),
            _features_of(dn[..., 1], dd[..., 1], dok[..., 1]),
            relation,
        ],
        -1,
    )
    return jnp.where(ok[..., None], out, 0.0).astype(jnp.float32)


class PairHead(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d, h = cfg.d_model, cfg.head_width
        self.w_i = make_param(rngs, (d, h), ("embed", "mlp"), cfg)
        self.w_j = make_param(rngs, (d, h), ("embed", "mlp"), cfg)
        self.w_sum = make_param(rngs, (d, h), ("embed", "mlp"), cfg)
        self.b_hid = make_param(None, (h,), ("mlp",), cfg, value=0.0)
        # pair_results: the hidden state is per (pair, op): one output vector + a per-op bias
        self.w_out = make_param(
            rngs, (h, 1 if cfg.pair_results else game.NUM_OPS), ("mlp", None), cfg
        )
        self.b_out = make_param(None, (game.NUM_OPS,), (None,), cfg, value=0.0)
        if cfg.pair_results:  # created last: the default head draws the same keys as before
            self.op_embed = make_param(rngs, (game.NUM_OPS, h), (None, "mlp"), cfg)
            self.w_res = make_param(rngs, (RESULT_FEATURES, h), (None, "mlp"), cfg)
            if cfg.value_pool == "children":  # the child-solvable channel
                self.w_child = make_param(rngs, (h, 1), ("mlp", None), cfg)
                self.b_child = make_param(None, (game.NUM_OPS,), (None,), cfg, value=0.0)

    def with_results(self, slots_BxNxD, summary_BxD, values, rules: game.Rules | None = None):
        """``pair_results`` head: (logits, child logits or None, legal), [B, A] each (float32,
        float32, bool); ``values`` = ``state_values(tokens, tok_cfg)`` (target first)."""
        cfg, dt = self.cfg, self.cfg.compute_dtype
        num, den, live = values
        n = slots_BxNxD.shape[1]
        rules = rules or game.Rules(n_max=n)
        pairs = game.pair_table(n)  # [P, 2] static
        rn, rd, ok = pair_results(num[:, 1:], den[:, 1:], live[:, 1:], rules)  # [B, P, 6]
        tn, td = num[:, :1, None], den[:, :1, None]
        feats = result_features(rn, rd, ok, tn, td, rules)  # [B, P, 6, F], zero where illegal
        res = feats.astype(dt) @ self.w_res[...].astype(dt)  # [B, P, 6, H]
        a = slots_BxNxD @ self.w_i[...].astype(dt)  # [B, N, H]
        b = slots_BxNxD @ self.w_j[...].astype(dt)
        c = summary_BxD @ self.w_sum[...].astype(dt) + self.b_hid[...].astype(dt)  # [B, H]
        r_op = self.op_embed[...].astype(dt)  # [6, H]
        mirror = np.array(MIRROR)

        def hidden(first, second, ops):  # [B, P, 6, H]
            base = (a[:, first] + b[:, second] + c[:, None, :])[:, :, None, :]
            return jax.nn.relu(base + r_op[ops] + res)

        heads = [(self.w_out, self.b_out)]
        if cfg.value_pool == "children":
            heads.append((self.w_child, self.b_child))
        z = hidden(pairs[:, 0], pairs[:, 1], np.arange(game.NUM_OPS))
        z_rev = hidden(pairs[:, 1], pairs[:, 0], mirror) if cfg.pair_symmetric else None
        outs = []
        for w, bias in heads:
            w, bias = w[...].astype(dt)[:, 0], bias[...].astype(dt)
            out = z @ w + bias  # [B, P, 6]
            if z_rev is not None:  # the reversed operands' logit of the mirrored op
                out = 0.5 * (out + (z_rev @ w + bias[mirror]))
            outs.append(out.reshape(out.shape[0], -1).astype(jnp.float32))
        child = outs[1] if len(outs) > 1 else None
        return outs[0], child, ok.reshape(ok.shape[0], -1)

    def __call__(self, slots_BxNxD: jax.Array, summary_BxD: jax.Array, values=None) -> jax.Array:
        """float32 logits [B, C(N,2) * 6] in the game's action order (pair * 6 + op).

        ``values``: the raw state numbers (``state_values``), needed with ``pair_results``."""
        if self.cfg.pair_results:
            if values is None:
                raise ValueError(
                    "ModelConfig.pair_results=True needs the raw state numbers: pass "
                    "values=heads.state_values(tokens, tok_cfg)."
                )
            return self.with_results(slots_BxNxD, summary_BxD, values)[0]
        dt = self.cfg.compute_dtype
        n = slots_BxNxD.shape[1]
        pairs = game.pair_table(n)  # [P, 2] static
        a = slots_BxNxD @ self.w_i[...].astype(dt)  # [B, N, H]
        b = slots_BxNxD @ self.w_j[...].astype(dt)
        c = summary_BxD @ self.w_sum[...].astype(dt) + self.b_hid[...].astype(dt)  # [B, H]
        w_out, b_out = self.w_out[...].astype(dt), self.b_out[...].astype(dt)
        z = jax.nn.relu(a[:, pairs[:, 0]] + b[:, pairs[:, 1]] + c[:, None, :])  # [B, P, H]
        out = z @ w_out + b_out  # [B, P, 6]
        if self.cfg.pair_symmetric:  # the same head on the swapped operands, ops mirrored
            z_rev = jax.nn.relu(a[:, pairs[:, 1]] + b[:, pairs[:, 0]] + c[:, None, :])
            out = 0.5 * (out + (z_rev @ w_out + b_out)[..., np.array(MIRROR)])
        return out.reshape(out.shape[0], -1).astype(jnp.float32)


class ValueHead(nnx.Module):
    """Two-layer MLP on the pooled hidden state -> one logit (probability = sigmoid)."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d, h = cfg.d_model, cfg.head_width
        if cfg.value_pool == "children":  # the value is a soft OR of the pair head's children
            self.none_logit = make_param(None, (1,), (None,), cfg, value=0.0)
            return
        self.w_hid = make_param(rngs, (d, h), ("embed", "mlp"), cfg)
        self.b_hid = make_param(None, (h,), ("mlp",), cfg, value=0.0)
        self.w_out = make_param(rngs, (h, 1), ("mlp", None), cfg)
        self.b_out = make_param(None, (1,), (None,), cfg, value=0.0)
        if cfg.value_pool == "attn":  # created last: the MLP draws the same keys as before
            # Small init: scores ~ 0, so the pool starts as the mean pool and learns to focus.
            self.pool_query = make_param(rngs, (d,), ("embed",), cfg)

    def pool(self, summary_BxD, slots_BxNxD=None, live_BxN=None) -> jax.Array:
        """The vector the MLP reads [B, D]: summary, or mean / attention over live slots + SUM."""
        if self.cfg.value_pool == "summary":
            return summary_BxD
        if slots_BxNxD is None or live_BxN is None:
            raise ValueError(
                f"ModelConfig.value_pool={self.cfg.value_pool!r} needs the slot hidden states "
                "and the live mask; pass slots_BxNxD and live_BxN."
            )
        dt = summary_BxD.dtype
        items = jnp.concatenate([slots_BxNxD, summary_BxD[:, None]], axis=1)  # [B, N+1, D]
        keep = jnp.concatenate([live_BxN, jnp.ones_like(live_BxN[:, :1])], axis=1)  # SUM always
        if self.cfg.value_pool == "mean":
            w = keep.astype(jnp.float32) / keep.sum(-1, keepdims=True)
        else:
            scores = items.astype(jnp.float32) @ self.pool_query[...].astype(jnp.float32)
            w = jax.nn.softmax(jnp.where(keep, scores, -jnp.inf), axis=-1)  # [B, N+1]
        return jnp.einsum("bn,bnd->bd", w, items.astype(jnp.float32)).astype(dt)

    def from_children(self, child_BxA: jax.Array, legal_BxA: jax.Array) -> jax.Array:
        """``value_pool="children"``: logsumexp of the legal moves' child logits, float32[B]
        (``none_logit`` where no move is legal)."""
        c = jnp.where(legal_BxA, child_BxA.astype(jnp.float32), -jnp.inf)
        lse = jax.nn.logsumexp(jnp.where(legal_BxA.any(-1, keepdims=True), c, 0.0), axis=-1)
        none = self.none_logit[...].astype(jnp.float32)[0]
        return jnp.where(legal_BxA.any(-1), lse, none).astype(jnp.float32)

    def __call__(self, summary_BxD: jax.Array, slots_BxNxD=None, live_BxN=None) -> jax.Array:
        if self.cfg.value_pool == "children":
            raise ValueError(
                "ModelConfig.value_pool='children' computes the value from the pair head's child "
                "logits: call from_children(child_BxA, legal_BxA) (PolicyValueNet does)."
            )
        dt = self.cfg.compute_dtype
        x_BxD = self.pool(summary_BxD, slots_BxNxD, live_BxN)
        z = jax.nn.relu(x_BxD @ self.w_hid[...].astype(dt) + self.b_hid[...].astype(dt))
        return (z @ self.w_out[...].astype(dt) + self.b_out[...].astype(dt))[:, 0].astype(
            jnp.float32
        )


def head_param_counts(cfg: ModelConfig) -> dict[str, int]:
    """Exact parameter counts of the two heads (used by ``scaling.flops.param_counts``)."""
    d, h, ops = cfg.d_model, cfg.head_width, game.NUM_OPS
    pool = d if cfg.value_pool == "attn" else 0  # the learned pool query
    if not cfg.pair_results:
        return {"pair": 3 * d * h + h + h * ops + ops, "value": d * h + h + h + 1 + pool}
    # w_i, w_j, w_sum, b_hid, w_out [H, 1], b_out [6], op_embed [6, H], w_res [F, H]
    pair = 3 * d * h + h + h + ops + ops * h + RESULT_FEATURES * h
    if cfg.value_pool == "children":  # w_child [H, 1], b_child [6]; the value head: none_logit
        return {"pair": pair + h + ops, "value": 1}
    return {"pair": pair, "value": d * h + h + h + 1 + pool}


def gather_positions(hidden_BxLxD: jax.Array, positions: np.ndarray) -> jax.Array:
    return jnp.take(hidden_BxLxD, jnp.asarray(positions), axis=1)
