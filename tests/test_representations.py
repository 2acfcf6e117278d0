"""Representation variants: numeric and packed numbers, shared slot markers, field positions,
bidirectional attention, value pooling, qk-norm, the symmetric pair head; slot-permutation
equivariance."""

import itertools
from fractions import Fraction

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import random_states

from nnx_models import (
    ModelConfig,
    PolicyValueNet,
    TokenizerConfig,
    extra_param_count,
    heads,
    hf,
    lm_loss,
    make_evaluate,
    numeric,
    transformer,
)
from nnx_models import (
    tokenizer as T,
)
from nnx_models.heads import MIRROR
from scaling import flops
from search import game, solver

fwd = jax.jit(lambda model, tokens, tok_cfg: model(tokens, tok_cfg), static_argnums=2)


def _tiny(tok: TokenizerConfig, **kw) -> ModelConfig:
    base = dict(
        depth=1,
        d_model=32,
        num_heads=2,
        num_kv_heads=2,
        head_dim=16,
        mlp_dim=64,
        vocab_size=tok.vocab_size,
        n_max=tok.n_max,
    )
    return ModelConfig(**{**base, **kw})


# ----------------------------------------------------------------------------- tokenizer


@pytest.mark.parametrize("markers", ["indexed", "shared"])
def test_numeric_round_trip(markers):
    cfg = TokenizerConfig(n_max=5, number_encoding="numeric", slot_markers=markers)
    state = random_states(np.random.default_rng(0), 200, 5, game.INT32_SAFE_MAX_ABS,
                          first_live=True)
    tokens = np.asarray(T.encode(state, cfg))
    assert tokens.shape == (200, T.seq_len(cfg)) and tokens.dtype == np.int32
    n_frac = n_neg = n_dead = 0
    for k in range(200):
        values, target = T.decode(tokens[k])
        want = game.values(state, k)
        assert values == want  # exact: numeric never overflows
        assert target == Fraction(int(state.target_num[k]), int(state.target_den[k]))
        n_frac += sum(v.denominator > 1 for v in want)
        n_neg += sum(v < 0 for v in want)
        n_dead += 5 - len(want)
    assert n_frac > 50 and n_neg > 50 and n_dead > 50
    markers_at = tokens[:, T.field_starts(cfg)[1:] - 1]  # the token before each slot field
    if markers == "indexed":
        assert (markers_at == T.SLOT0 + np.arange(5)).all()
    else:
        assert (markers_at == T.SLOT0).all()


def test_token_encodings_round_trip_with_shared_markers():
    for cfg in (
        TokenizerConfig(n_max=4, slot_markers="shared"),
        TokenizerConfig(n_max=4, number_encoding="whole", whole_max=2048, slot_markers="shared"),
    ):
        state = random_states(np.random.default_rng(1), 50, 4, 999, first_live=True)
        tokens = np.asarray(T.encode(state, cfg))
        for k in range(50):
            assert T.decode(tokens[k])[0] == game.values(state, k)


def test_numeric_layout_by_hand():
    cfg = TokenizerConfig(n_max=2, number_encoding="numeric", slot_markers="shared")
    state = game.new_state([[8, 3]], [24], game.Rules(n_max=2))
    rules = game.Rules(n_max=2)
    state = game.step(state, jnp.array([game.encode_action(0, 1, 4, 2)]), rules)  # 8 / 3
    state = state.replace(num=-state.num)  # -8/3 (a negative fraction) and a dead slot
    tokens = np.asarray(T.encode(state, cfg))[0]
    S0, P, M, D = T.SLOT0, T.PLUS, T.MINUS, T.DEAD
    want = [T.BOS, T.TGT, P, 24, 1, S0, M, 8, 3, S0, D, 0, 0, T.SUM]
    assert tokens.tolist() == want and T.seq_len(cfg) == 14 and cfg.field_width == 3
    assert T.position_ids(cfg).tolist() == [0, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0]
    assert T.numeric_positions(cfg).tolist() == [[3, 4], [7, 8], [11, 12]]
    assert T.slot_positions(cfg).tolist() == [8, 12] and T.summary_position(cfg) == 13
    assert T.field_ids(cfg).tolist() == [0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4]
    assert T.hub_positions(cfg).tolist() == [0, 1, 5, 9, 13]
    assert T.decode(tokens) == ([Fraction(-8, 3)], Fraction(24))
    assert cfg.vocab_size == T.WHOLE0  # no token added: existing ids are unchanged
    # indexed markers for the same state, and field positions of a digits layout
    indexed = np.asarray(T.encode(state, TokenizerConfig(n_max=2, number_encoding="numeric")))[0]
    assert indexed[9] == T.SLOT0 + 1
    digits = TokenizerConfig(n_max=2, max_digits=1)
    assert T.position_ids(digits).tolist() == [0] + [0, 1, 2, 3, 4] * 3 + [0]


def test_numeric_hf_tokenizer_and_config(tmp_path):
    from transformers import AutoTokenizer

    cfg = TokenizerConfig(n_max=4, number_encoding="numeric", slot_markers="shared")
    path = T.save_hf_tokenizer(cfg, str(tmp_path / "tok"))
    assert T.load_config(path) == cfg
    hf_tok = AutoTokenizer.from_pretrained(path)
    assert len(hf_tok) == cfg.vocab_size == len(T.vocab(cfg))


def _packed_np(num, den, live):
    """Reference packing in numpy (the task's formula)."""
    num, den = np.asarray(num, np.int64), np.asarray(den, np.int64)
    entry = ((num < 0).astype(np.int64) << 30) | (np.abs(num) << 15) | den
    return np.where(live, entry, -1)


@pytest.mark.parametrize("n", [4, 6])
def test_packed_round_trip(n):
    cfg = TokenizerConfig(n_max=n, number_encoding="packed")
    state = random_states(np.random.default_rng(10 + n), 300, n, game.INT32_SAFE_MAX_ABS,
                          first_live=True)
    live = np.random.default_rng(20 + n).random((300, n)) < 0.7  # dead slots anywhere, slot 0 too
    live[:, 1] |= ~live.any(-1)
    state = state.replace(
        live=jnp.asarray(live),
        num=jnp.where(live, state.num, 0),
        den=jnp.where(live, state.den, 1),
    )
    tokens = np.asarray(T.encode(state, cfg))
    assert tokens.shape == (300, n + 3) == (300, T.seq_len(cfg)) and tokens.dtype == np.int32
    assert (tokens[:, 0] == T.BOS).all() and (tokens[:, -1] == T.SUM).all()
    want_entries = _packed_np(state.num, state.den, live)
    np.testing.assert_array_equal(tokens[:, 2:-1], want_entries)
    np.testing.assert_array_equal(
        tokens[:, 1], _packed_np(state.target_num, state.target_den, True)
    )
    assert tokens.min() >= -1 and (tokens[:, 1] >= 0).all()
    n_frac = n_neg = 0
    for k in range(300):
        values, target = T.decode(tokens[k])
        want = game.values(state, k)
        assert values == want  # exact: every legal value fits the 15-bit fields
        assert target == Fraction(int(state.target_num[k]), int(state.target_den[k]))
        n_frac += sum(v.denominator > 1 for v in want)
        n_neg += sum(v < 0 for v in want)
    assert n_frac > 100 and n_neg > 100
    assert (~live).sum(0).min() > 30  # every slot position was dead in many states
    assert (np.abs(np.asarray(state.num)) > 10000).sum() > 100  # large values exercised
    np.testing.assert_array_equal(np.asarray(T.live_slots(jnp.asarray(tokens), cfg)), live)
    sign, mag, den = (np.asarray(x) for x in T.unpack(tokens[:, 2:-1]))
    np.testing.assert_array_equal(
        np.where(live, np.where(sign == T.MINUS, -mag, mag), 0), state.num
    )
    np.testing.assert_array_equal(np.where(live, den, 1), state.den)
    assert (sign[~live] == T.DEAD).all() and (mag[~live] == 0).all() and (den[~live] == 0).all()
    # slot_markers is irrelevant for packed: the same tokens either way
    shared = TokenizerConfig(n_max=n, number_encoding="packed", slot_markers="shared")
    np.testing.assert_array_equal(np.asarray(T.encode(state, shared)), tokens)


def test_packed_layout_by_hand():
    cfg = TokenizerConfig(n_max=4, number_encoding="packed")
    i32 = lambda x: jnp.asarray(x, jnp.int32)
    # target 24; slots -8/3, dead, 0, 32767/2
    state = game.State(
        num=i32([[-8, 0, 0, 32767]]),
        den=i32([[3, 1, 1, 2]]),
        live=jnp.asarray([[True, False, True, True]]),
        target_num=i32([24]),
        target_den=i32([1]),
        moves=i32([0]),
        failed=jnp.zeros(1, bool),
    )
    tokens = np.asarray(T.encode(state, cfg))[0]
    want = [T.BOS, 786433, 1074003971, -1, 1, 1073709058, T.SUM]
    assert tokens.tolist() == want
    assert 786433 == (24 << 15) | 1 and 1074003971 == (1 << 30) | (8 << 15) | 3
    assert 1073709058 == (32767 << 15) | 2
    assert T.seq_len(cfg) == 7 and cfg.vocab_size == T.WHOLE0 and cfg.max_value == 32767
    assert T.slot_positions(cfg).tolist() == [2, 3, 4, 5] and T.summary_position(cfg) == 6
    assert T.field_starts(cfg).tolist() == [1, 2, 3, 4, 5]
    assert T.numeric_positions(cfg).tolist() == [1, 2, 3, 4, 5]  # 1-D: one entry per number
    assert T.position_ids(cfg).tolist() == [0] * 7
    assert T.field_ids(cfg).tolist() == list(range(7))
    assert T.hub_positions(cfg).tolist() == list(range(7))
    assert transformer.field_mask(cfg).all()  # field attention is a no-op
    assert T.decode(tokens) == ([Fraction(-8, 3), Fraction(0), Fraction(32767, 2)], Fraction(24))
    assert T.seq_len(TokenizerConfig(n_max=6, number_encoding="packed")) == 9
    # a packed target never collides with TGT, so decode needs no config
    rules = game.Rules(n_max=2)
    zero_state = game.new_state([[3, 5]], [0], rules)
    zero = np.asarray(T.encode(zero_state, TokenizerConfig(2, "packed")))[0]
    assert zero.tolist() == [T.BOS, 1, (3 << 15) | 1, (5 << 15) | 1, T.SUM]
    assert T.decode(zero) == ([Fraction(3), Fraction(5)], Fraction(0))


def test_packed_bad_inputs_raise():
    with pytest.raises(ValueError, match="malformed packed entry -5"):
        T.decode([T.BOS, 786433, -5, 1, T.SUM])
    with pytest.raises(ValueError, match=r"malformed packed entry 32768 .*1 <= den"):
        T.decode([T.BOS, 786433, 1 << 15, 1, T.SUM])  # 1/0
    with pytest.raises(ValueError, match="not BOS"):
        T.decode([T.BOS, 786433, 1, 1, 7])
    with pytest.raises(ValueError, match=r"'digits'.*allowed here: 'numeric', 'packed'"):
        T.numeric_positions(TokenizerConfig())
    rules = game.Rules(n_max=4)
    state = game.new_state([[1, 2, 3, 4]], [24], rules)
    with pytest.raises(ValueError, match=r"number_encoding='packed' has no next-token.*'whole'"):
        T.encode_trace(
            state, jnp.zeros((1, 3), jnp.int32), TokenizerConfig(number_encoding="packed"), rules
        )


def test_bad_tokenizer_options_raise():
    with pytest.raises(ValueError, match=r"slot_markers='sorted'.*'indexed', 'shared'"):
        TokenizerConfig(slot_markers="sorted")
    with pytest.raises(ValueError, match=r"number_encoding='float'.*'numeric', 'packed'"):
        TokenizerConfig(number_encoding="float")
    with pytest.raises(ValueError, match="number_encoding='numeric'"):
        T.numeric_positions(TokenizerConfig())
    rules = game.Rules(n_max=4)
    state = game.new_state([[1, 2, 3, 4]], [24], rules)
    for cfg, match in (
        (TokenizerConfig(number_encoding="numeric"), "no next-token form"),
        (TokenizerConfig(slot_markers="shared"), "slot_markers='shared'"),
    ):
        with pytest.raises(ValueError, match=match):
            T.encode_trace(state, jnp.zeros((1, 3), jnp.int32), cfg, rules)


# ----------------------------------------------------------------------------- model


def _permute(state: game.State, perm: np.ndarray) -> game.State:
    """New slot k holds old slot perm[k]."""
    return state.replace(num=state.num[:, perm], den=state.den[:, perm], live=state.live[:, perm])


def _action_map(perm: np.ndarray, n: int) -> np.ndarray:
    """new action index of each old action under ``_permute(state, perm)`` (ops mirrored)."""
    where = np.argsort(perm)  # where[i] = new slot of old slot i
    out = np.zeros(n * (n - 1) // 2 * game.NUM_OPS, np.int64)
    for a in range(len(out)):
        i, j, op = game.decode_action(a, n)
        pi, pj = where[i], where[j]
        out[a] = (
            game.encode_action(pi, pj, op, n)
            if pi < pj
            else game.encode_action(pj, pi, MIRROR[op], n)
        )
    return out


def _max_equivariance_error(model, tok, state, perms):
    logits, value = (np.asarray(x) for x in fwd(model, T.encode(state, tok), tok))
    err = 0.0
    for perm in perms:
        pl, pv = (np.asarray(x) for x in fwd(model, T.encode(_permute(state, perm), tok), tok))
        err = max(
            err,
            np.abs(pv - value).max(),
            np.abs(pl[:, _action_map(perm, tok.n_max)] - logits).max(),
        )
    return err


@pytest.mark.parametrize("enc", ["numeric", "digits", "packed"])
def test_slot_permutation_equivariance(enc):
    """shared markers + field positions + bidirectional + symmetric pair head: exact equivariance
    (value invariant, logits permuted with mirrored ops); the default model is not."""
    assert MIRROR == solver._MIRROR
    n = 5
    rng = np.random.default_rng(2)
    state = random_states(rng, 8, n, 60, first_live=True)
    perms = [rng.permutation(n) for _ in range(3)] + [np.arange(n)[::-1]]
    shared = TokenizerConfig(n_max=n, number_encoding=enc, max_digits=2, slot_markers="shared")
    # init_std 0.2: outputs depend strongly on the inputs, so a broken symmetry is visible
    inv = dict(
        causal=False, positions="field", pair_symmetric=True, field_attention=True, init_std=0.2
    )
    for pool in ("summary", "mean", "attn"):
        model = PolicyValueNet(_tiny(shared, value_pool=pool, qk_norm=True, **inv), shared)
        assert _max_equivariance_error(model, shared, state, perms) < 1e-5, pool
    default_tok = TokenizerConfig(n_max=n, number_encoding=enc, max_digits=2)
    default = PolicyValueNet(_tiny(default_tok, init_std=0.2), default_tok)
    assert _max_equivariance_error(default, default_tok, state, perms) > 1e-3
    model = PolicyValueNet(_tiny(default_tok, depth=2, **inv), default_tok)
    if enc == "packed":  # no markers: slot_markers is ignored, field attention is a no-op
        assert _max_equivariance_error(model, default_tok, state, perms) < 1e-5
        plain = dict(causal=False, positions="field", pair_symmetric=True, init_std=0.2)
        model = PolicyValueNet(_tiny(shared, value_pool="attn", **plain), shared)
        assert _max_equivariance_error(model, shared, state, perms) < 1e-5
    else:  # indexed markers break it once field attention has bound each marker to its field
        assert _max_equivariance_error(model, default_tok, state, perms) > 1e-3
    if enc != "digits":  # the exact-result pair head and the children value keep it exact
        for pool in ("summary", "attn", "children"):
            cfg = _tiny(shared, value_pool=pool, pair_results=True, qk_norm=True, **inv)
            model = PolicyValueNet(cfg, shared)
            assert _max_equivariance_error(model, shared, state, perms) < 1e-5, pool
        asym = _tiny(shared, value_pool="children", pair_results=True, **inv)
        asym = asym.replace(pair_symmetric=False)
        assert _max_equivariance_error(PolicyValueNet(asym, shared), shared, state, perms) > 1e-3


def test_packed_model_tells_states_apart():
    """The equivariant packed model is not constant: different values, different numbers in the
    same multiset positions, and a target swapped with a slot all give different outputs."""
    tok = TokenizerConfig(n_max=4, number_encoding="packed")
    inv = dict(causal=False, positions="field", pair_symmetric=True, init_std=0.2)
    rules = game.Rules(n_max=4)
    pairs = [
        ([[12, 34], [14, 32]], [24, 24]),  # same digits, different numbers
        ([[3, 8], [24, 8]], [24, 3]),  # target <-> slot swapped (the type rows)
        ([[3, 8, 2], [3, 8]], [24, 24]),  # a dead slot vs a live one
        ([[3, 8], [3, -8]], [24, 24]),  # sign
        ([[3, 8], [3, 8]], [24, -24]),  # sign of the target
    ]
    numbers = [x for nums, _ in pairs for x in nums]
    targets = [t for _, tg in pairs for t in tg]
    pair_tokens = T.encode(game.new_state(numbers, targets, rules), tok)  # [10, L]
    state = random_states(np.random.default_rng(8), 10, 4, 60, first_live=True)
    for pool in ("summary", "mean", "attn"):
        model = PolicyValueNet(_tiny(tok, value_pool=pool, **inv), tok)
        logits, value = (np.asarray(x) for x in fwd(model, T.encode(state, tok), tok))
        assert len(np.unique(np.round(value, 6))) == 10, pool
        assert np.abs(logits - logits[:1]).max(-1)[1:].min() > 1e-4, pool
        lg, v = (np.asarray(x) for x in fwd(model, pair_tokens, tok))
        for k, (nums, _) in enumerate(pairs):
            a, b = 2 * k, 2 * k + 1
            assert abs(v[a] - v[b]) > 1e-5 and np.abs(lg[a] - lg[b]).max() > 1e-5, (pool, nums)


def test_field_attention_keeps_numbers_apart():
    """Bidirectional + per-field positions sees a bag of (token, in-field position) pairs: the
    digit states {12, 34} and {14, 32} are the same input. Field attention tells them apart."""
    tok = TokenizerConfig(n_max=2, max_digits=2, slot_markers="shared")
    rules = game.Rules(n_max=2)
    a, b = (T.encode(game.new_state([x], [24], rules), tok) for x in ([12, 34], [14, 32]))
    values = {}
    for fa in (False, True):
        cfg = _tiny(tok, depth=2, causal=False, positions="field", field_attention=fa, init_std=0.2)
        model = PolicyValueNet(cfg, tok)
        values[fa] = [float(fwd(model, t, tok)[1][0]) for t in (a, b)]
    assert abs(values[False][0] - values[False][1]) < 1e-5
    assert abs(values[True][0] - values[True][1]) > 1e-3
    mask = transformer.field_mask(tok)
    group = T.field_ids(tok)
    assert not mask[T.slot_positions(tok)[0], T.slot_positions(tok)[1]]  # no cross-field reads
    assert mask[:, T.hub_positions(tok)].all()
    assert all(
        mask[i, j] for i in range(len(group)) for j in range(len(group)) if group[i] == group[j]
    )


def test_forward_shapes_every_combination():
    rules = game.Rules(n_max=4)
    state = random_states(np.random.default_rng(3), 3, 4, 200, first_live=True)
    toks = {
        "digits": TokenizerConfig(n_max=4, max_digits=3),
        "whole": TokenizerConfig(n_max=4, number_encoding="whole", whole_max=40),
        "numeric": TokenizerConfig(n_max=4, number_encoding="numeric"),
        "packed": TokenizerConfig(n_max=4, number_encoding="packed"),
    }
    pools = itertools.cycle(("summary", "mean", "attn"))  # every pool, each layout, every encoding
    for (enc, tok), causal in itertools.product(toks.items(), (True, False)):
        pool = next(pools)
        model = PolicyValueNet(_tiny(tok, causal=causal, value_pool=pool), tok)
        logits, value = fwd(model, T.encode(state, tok), tok)
        chex.assert_shape((logits, value), ((3, rules.num_actions), (3,)))
        assert np.isfinite(logits).all() and np.isfinite(value).all(), (enc, causal, pool)
    # packed: field attention is a no-op (the same weights compute the same function)
    tok = toks["packed"]
    tokens = T.encode(state, tok)
    outs = [
        fwd(PolicyValueNet(_tiny(tok, causal=False, field_attention=fa), tok), tokens, tok)
        for fa in (False, True)
    ]
    for x, y in zip(*outs, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("enc", ["numeric", "packed"])
def test_value_pool_ignores_dead_slots(enc):
    """A dead slot's hidden state never reaches the pooled value (mean and attn)."""
    tok = TokenizerConfig(n_max=4, number_encoding=enc, slot_markers="shared")
    state = game.new_state([[8, 3], [8, 3, 5]], [24, 24], game.Rules(n_max=4))
    tokens = np.asarray(T.encode(state, tok))
    live = T.live_slots(jnp.asarray(tokens), tok)
    assert live.tolist() == [[True, True, False, False], [True, True, True, False]]

    @jax.jit
    def values(model):
        h = model.backbone.hidden(jnp.asarray(tokens), tok)
        slots = h[:, T.slot_positions(tok)]
        junk = slots.at[:, 2:].set(1e3)  # overwrite slots 2, 3 (dead in state 0)
        return model.value_head(h[:, -1], slots, live), model.value_head(h[:, -1], junk, live)

    for pool in ("mean", "attn"):
        a, b = values(PolicyValueNet(_tiny(tok, value_pool=pool, init_std=0.2), tok))
        assert a[0] == b[0] and a[1] != b[1], pool


def test_param_counts_with_extras():
    n_tok = TokenizerConfig(n_max=4, number_encoding="numeric")
    p_tok = TokenizerConfig(n_max=6, number_encoding="packed")
    for cfg, tok in (
        (_tiny(p_tok, qk_norm=True, value_pool="attn"), p_tok),
        (
            _tiny(p_tok, shared_backbone=False, scan_layers=True, depth=2, field_attention=True),
            p_tok,
        ),
        (_tiny(n_tok, qk_norm=True, value_pool="attn"), n_tok),
        (_tiny(n_tok, shared_backbone=False, scan_layers=True, depth=2, qk_norm=True), n_tok),
        (_tiny(TokenizerConfig(), value_pool="mean", pair_symmetric=True), TokenizerConfig()),
        (_tiny(p_tok, pair_results=True, value_pool="children", head_hidden=24), p_tok),
        (_tiny(n_tok, pair_results=True, value_pool="attn", pair_symmetric=True), n_tok),
        (_tiny(p_tok, pair_results=True, shared_backbone=False, qk_norm=True), p_tok),
        (_tiny(n_tok, pair_results=True, value_pool="children", scan_layers=True), n_tok),
    ):
        model = nnx.eval_shape(lambda c=cfg, t=tok: PolicyValueNet(c, t, rngs=nnx.Rngs(0)))
        total = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
        assert flops.param_counts(cfg, tok_cfg=tok)["total"] == total
    cfg = _tiny(n_tok, qk_norm=True, shared_backbone=False)
    d = cfg.d_model
    assert extra_param_count(cfg, n_tok) == {
        "total": 2 * (2 * 16 + (numeric.NUM_FEATURES + 2 * 128) * d),
        "embedding": 0,
        "non_embedding": 2 * (2 * 16 + (numeric.NUM_FEATURES + 2 * 128) * d),
    }
    assert extra_param_count(ModelConfig())["total"] == 0
    # pair_results: w_out [H, 6] -> [H, 1], + op_embed [6, H] + w_res [F, H]; children: + w_child
    # [H, 1] + b_child [6] in the pair head, the value MLP -> one none_logit
    base = _tiny(p_tok, head_hidden=24)
    d, h, f = base.d_model, 24, heads.RESULT_FEATURES
    assert f == 3 * numeric.NUM_FEATURES + 3 == 264
    plain = heads.head_param_counts(base)
    res = heads.head_param_counts(base.replace(pair_results=True))
    kids = heads.head_param_counts(base.replace(pair_results=True, value_pool="children"))
    assert res["pair"] - plain["pair"] == -5 * h + 6 * h + f * h and res["value"] == plain["value"]
    assert kids == {"pair": res["pair"] + h + 6, "value": 1}
    cfg = _tiny(p_tok, shared_backbone=False)
    per = (numeric.NUM_FEATURES + 2 * 128 + numeric.NUM_TYPES) * d
    assert numeric.NUM_TYPES == 3 and extra_param_count(cfg, p_tok)["total"] == 2 * per
    assert extra_param_count(cfg, p_tok, heads=False)["total"] == per
    tr = nnx.eval_shape(lambda: transformer.Transformer(cfg, p_tok, rngs=nnx.Rngs(0)))
    total = sum(x.size for x in jax.tree.leaves(nnx.state(tr, nnx.Param)))
    assert flops.param_counts(cfg, heads=False, tok_cfg=p_tok)["total"] == total


def test_numeric_features_exact():
    f = np.asarray(
        numeric.features(
            jnp.array([T.PLUS, T.MINUS, T.DEAD, T.PLUS]),
            jnp.array([24, 8, 0, 0]),
            jnp.array([1, 3, 0, 1]),
        )
    )
    assert f.shape == (4, numeric.NUM_FEATURES) and np.isfinite(f).all()
    assert np.abs(f).max() <= 1.0 + 1e-6
    assert f[0, 0] == 1 and f[1, 0] == -1 and (f[2] == 0).all()
    assert f[0, 5] == 1 and f[1, 5] == 0 and f[3, 6] == 1  # is_integer, is_zero
    k = numeric.PERIODS.index(12)
    sin24, cos24 = f[0, 7 + k], f[0, 7 + len(numeric.PERIODS) + k]  # 24 = 0 mod 12
    assert abs(sin24) < 1e-6 and abs(cos24 - 1) < 1e-6


def test_bad_model_options_raise():
    with pytest.raises(ValueError, match=r"positions='rope'.*'sequence', 'field'"):
        ModelConfig(positions="rope")
    with pytest.raises(ValueError, match=r"value_pool='max'.*'summary', 'mean', 'attn'"):
        ModelConfig(value_pool="max")
    with pytest.raises(ValueError, match="causal"):
        ModelConfig(causal="False")
    digits, num = TokenizerConfig(n_max=4), TokenizerConfig(n_max=4, number_encoding="numeric")
    model = PolicyValueNet(_tiny(digits), digits)
    with pytest.raises(ValueError, match="built for 'digits'"):
        model(jnp.zeros((1, T.seq_len(num)), jnp.int32), num)
    nmodel = PolicyValueNet(_tiny(num), num)
    with pytest.raises(ValueError, match="built for 'numeric'"):
        nmodel(jnp.zeros((1, T.seq_len(digits)), jnp.int32), digits)
    with pytest.raises(ValueError, match="numeric"):
        nmodel.backbone.hidden(jnp.zeros((1, T.seq_len(num)), jnp.int32))
    tokens = jnp.zeros((1, T.seq_len(digits)), jnp.int32)
    for bad in (_tiny(digits, causal=False), _tiny(digits, positions="field")):
        with pytest.raises(ValueError, match="next-token LM"):
            lm_loss(PolicyValueNet(bad, digits), tokens, jnp.ones_like(tokens, bool))
    with pytest.raises(ValueError, match="next-token LM needs vocabulary tokens"):
        nmodel.lm_logits(tokens)
    packed = TokenizerConfig(n_max=4, number_encoding="packed")
    pmodel = PolicyValueNet(_tiny(packed), packed)
    with pytest.raises(ValueError, match=r"built for packed states.*number_encoding='numeric'"):
        pmodel.backbone.hidden(jnp.zeros((1, T.seq_len(num)), jnp.int32), num)
    with pytest.raises(ValueError, match=r"built for numeric states.*allowed here: 'numeric'"):
        nmodel.backbone.hidden(jnp.zeros((1, T.seq_len(packed)), jnp.int32), packed)
    with pytest.raises(ValueError, match=r"expected \[B, 7\]"):
        pmodel(jnp.zeros((1, T.seq_len(num)), jnp.int32))
    with pytest.raises(ValueError, match=r"number_encoding='packed' holds raw ints"):
        pmodel.lm_logits(jnp.zeros((1, 7), jnp.int32))


@pytest.mark.parametrize("enc", ["numeric", "packed"])
def test_evaluate_no_retrace(enc):
    rules = game.Rules(n_max=4)
    tok = TokenizerConfig(n_max=4, number_encoding=enc, slot_markers="shared")
    cfg = _tiny(tok, causal=False, positions="field", value_pool="attn", qk_norm=True)
    graphdef, params = nnx.split(PolicyValueNet(cfg, tok))
    chex.clear_trace_counter()
    evaluate = jax.jit(chex.assert_max_traces(make_evaluate(graphdef, tok, rules), n=1))
    state = random_states(np.random.default_rng(4), 4, 4, 100, first_live=True)
    logits, value = evaluate(params, state)
    # same shapes, new values: must not retrace
    evaluate(params, random_states(np.random.default_rng(5), 4, 4, 100, first_live=True))
    legal = np.asarray(game.legal_mask(state, rules))
    assert np.all(np.asarray(logits)[~legal] == -1e9) and np.isfinite(np.asarray(logits)).all()
    assert np.all((np.asarray(value) > 0) & (np.asarray(value) < 1))


@pytest.mark.parametrize(
    "shared,scan,enc,results",
    [
        (True, False, "numeric", False),
        (False, True, "numeric", False),
        (False, True, "packed", False),
        (True, True, "packed", True),  # pair_results + value_pool="children"
        (True, False, "numeric", True),
    ],
)
def test_hf_round_trip_new_options(tmp_path, shared, scan, enc, results):
    tok = TokenizerConfig(n_max=4, number_encoding=enc, slot_markers="shared")
    cfg = _tiny(
        tok,
        mlp="swiglu",
        causal=False,
        positions="field",
        value_pool="children" if results else "attn",
        qk_norm=True,
        pair_symmetric=True,
        pair_results=results,
        shared_backbone=shared,
        scan_layers=scan,
        init_std=0.2,
    )
    model = PolicyValueNet(cfg, tok, rngs=nnx.Rngs(7))
    # move every weight off its init so a weight that is not restored shows up in the outputs
    rng = np.random.default_rng(0)
    state = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(lambda x: x + 0.1 * rng.standard_normal(x.shape), state))
    path = hf.save_pretrained(model, str(tmp_path / "pv"))
    again = hf.load_policy_value(path, seed=1)
    assert again.cfg == cfg and again.tok_cfg == tok
    flat = lambda m: {k: np.asarray(v[...]) for k, v in nnx.to_flat_state(nnx.state(m, nnx.Param))}
    a, b = flat(model), flat(again)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=str(k))
    tokens = T.encode(random_states(np.random.default_rng(6), 3, 4, 500, first_live=True), tok)
    for x, y in zip(fwd(model, tokens, tok), fwd(again, tokens, tok), strict=True):
        np.testing.assert_array_equal(x, y)
    if results:  # the result head's weights went to the extras file too
        from safetensors.numpy import load_file

        extra = load_file(f"{path}/{hf._EXTRA}")
        assert extra["policy_head/w_res"].shape == (heads.RESULT_FEATURES, cfg.head_width)
        assert extra["policy_head/w_out"].shape == (cfg.head_width, 1)
        assert {"policy_head/op_embed", "policy_head/w_child", "value_head/none_logit"} <= set(
            extra
        )
        assert "value_head/w_hid" not in extra
        return
    if enc == "packed":  # its input weights went to the extras file, for both backbones
        from safetensors.numpy import load_file

        extra = load_file(f"{path}/{hf._EXTRA}")
        for bb in ("backbone", "value_backbone"):
            assert extra[f"{bb}/packed_embed/types"].shape == (numeric.NUM_TYPES, cfg.d_model)
            assert f"{bb}/packed_embed/value/w_feat" in extra
        with pytest.raises(ValueError, match=r"saved for number_encoding='packed'.*'packed'"):
            hf.load_policy_value(path, TokenizerConfig(n_max=4, number_encoding="numeric"))


# ----------------------------------------------------------------------------- pair results


@pytest.mark.parametrize("enc", ["numeric", "packed"])
def test_pair_results_forward_shapes(enc):
    """pair_results (and value_pool="children") on both raw encodings: float32, the usual shapes,
    finite, at the construction n_max and a larger one (no weight depends on the slot count)."""
    tok = TokenizerConfig(n_max=4, number_encoding=enc)
    big = TokenizerConfig(n_max=6, number_encoding=enc)
    for pool, sym in (("summary", False), ("attn", True), ("children", False), ("children", True)):
        model = PolicyValueNet(
            _tiny(tok, pair_results=True, value_pool=pool, pair_symmetric=sym), tok
        )
        for t in (tok, big):
            n = t.n_max
            state = random_states(np.random.default_rng(30 + n), 5, n, 300, first_live=True)
            logits, value = fwd(model, T.encode(state, t), t)
            chex.assert_shape((logits, value), ((5, game.Rules(n_max=n).num_actions), (5,)))
            assert logits.dtype == jnp.float32 and value.dtype == jnp.float32
            assert np.isfinite(logits).all() and np.isfinite(value).all(), (pool, sym, n)
    bf = _tiny(tok, pair_results=True, value_pool="children", dtype="bfloat16")
    state = random_states(np.random.default_rng(1), 2, 4, 50, first_live=True)
    logits, value = fwd(PolicyValueNet(bf, tok), T.encode(state, tok), tok)
    assert logits.dtype == jnp.float32 and value.dtype == jnp.float32


@pytest.mark.parametrize("enc", ["numeric", "packed"])
def test_state_values_and_result_features_exact(enc):
    """The head reads the exact state numbers and the exact results (against Fractions)."""
    n = 4
    tok = TokenizerConfig(n_max=n, number_encoding=enc)
    rules = game.Rules(n_max=n)
    state = random_states(np.random.default_rng(40), 60, n, 400, first_live=True)
    num, den, live = (np.asarray(x) for x in heads.state_values(T.encode(state, tok), tok))
    np.testing.assert_array_equal(num[:, 1:], state.num)
    np.testing.assert_array_equal(den[:, 1:], state.den)
    np.testing.assert_array_equal(live[:, 1:], state.live)
    np.testing.assert_array_equal(num[:, 0], state.target_num)
    np.testing.assert_array_equal(den[:, 0], state.target_den)
    assert live[:, 0].all()
    rn, rd, ok = heads.pair_results(*(jnp.asarray(x[:, 1:]) for x in (num, den, live)), rules)
    gn, gd, gok = game.all_results(state, rules)
    np.testing.assert_array_equal(np.asarray(ok).reshape(60, -1), gok)
    np.testing.assert_array_equal(np.asarray(rn).reshape(60, -1), gn)
    np.testing.assert_array_equal(np.asarray(rd).reshape(60, -1), gd)
    feats = np.asarray(
        heads.result_features(rn, rd, ok, num[:, :1, None], den[:, :1, None], rules)
    ).reshape(60, -1, heads.RESULT_FEATURES)
    assert np.isfinite(feats).all() and np.abs(feats).max() <= 1 + 1e-6
    nf = numeric.NUM_FEATURES
    one = lambda x: np.asarray(
        numeric.features(
            jnp.array([T.MINUS if x < 0 else T.PLUS]),
            jnp.array([abs(x.numerator)]),
            jnp.array([x.denominator]),
        )
    )[0]
    gok = np.asarray(gok)
    checked = 0
    for b in range(0, 60, 7):
        t = Fraction(int(state.target_num[b]), int(state.target_den[b]))
        for a in range(gok.shape[1]):
            f = feats[b, a]
            if not gok[b, a]:
                assert (f == 0).all()
                continue
            r = Fraction(int(gn[b, a]), int(gd[b, a]))
            np.testing.assert_allclose(f[:nf], one(r), atol=1e-6)
            for k, x in enumerate((t - r, t / r if r else None)):
                block = f[(k + 1) * nf : (k + 2) * nf]
                fits = x is not None and abs(x.numerator) <= 32767 and x.denominator <= 32767
                if fits:
                    np.testing.assert_allclose(block, one(x), atol=1e-6)
                else:
                    assert (block == 0).all()
            rel = f[3 * nf :]
            assert rel[0] == (r == t) and rel[1] == np.sign(float(r - t))
            checked += 1
    assert checked > 100
    # r == t exactly, sign and log ratio on a hand case: 3 * 8 == 24, 3 + 8 < 24
    s = game.new_state([[3, 8]], [24], game.Rules(n_max=2))
    rn, rd, ok = heads.pair_results(s.num, s.den, s.live, game.Rules(n_max=2))
    f = np.asarray(
        heads.result_features(
            rn,
            rd,
            ok,
            s.target_num[:, None, None],
            s.target_den[:, None, None],
            game.Rules(n_max=2),
        )
    )[0, 0]
    rel = f[:, 3 * nf :]  # ops + * - r- / r/: 11, 24, -5, 5, 3/8, 8/3
    assert rel[:, 0].tolist() == [0, 1, 0, 0, 0, 0] and rel[:, 1].tolist() == [
        -1,
        0,
        -1,
        -1,
        -1,
        -1,
    ]
    np.testing.assert_allclose(rel[1, 2], 0.0, atol=1e-7)
    np.testing.assert_allclose(rel[0, 2], np.log(11 / 24) / (2 * numeric.LOG_SCALE), rtol=1e-5)


def test_pair_results_sees_the_results():
    """With the backbone's hidden states held fixed, only the slot VALUES change: 5 + 7 vs 4 + 20
    (== the target 24). The result head's logits change, and a head that reads only the r == t
    feature moves exactly the actions whose result is the target."""
    tok = TokenizerConfig(n_max=4, number_encoding="packed")
    rules = game.Rules(n_max=4)
    model = PolicyValueNet(_tiny(tok, pair_results=True, value_pool="children", init_std=0.2), tok)
    state = game.new_state([[3, 8, 5, 7], [3, 8, 4, 20]], [24, 24], rules)
    tokens = T.encode(state, tok)
    h = jax.jit(lambda m, t: m.backbone.hidden(t, tok))(model, tokens[:1])
    slots, summary = h[:, T.slot_positions(tok)], h[:, -1]
    head = jax.jit(lambda m, v: m.policy_head.with_results(slots, summary, v))  # one compile
    run = lambda v: head(model, v)
    values = heads.state_values(tokens, tok)
    a, b = (run(tuple(x[k : k + 1] for x in values)) for k in (0, 1))
    assert np.abs(np.asarray(a[0]) - np.asarray(b[0])).max() > 1e-3  # logits
    assert np.abs(np.asarray(a[1]) - np.asarray(b[1])).max() > 1e-3  # child logits
    # only the r == t column of W_res nonzero: the logits move only where r == t
    eq_col = 3 * numeric.NUM_FEATURES
    w = np.zeros(model.policy_head.w_res.shape, np.float32)
    w[eq_col] = 1.0
    model.policy_head.w_res[...] = jnp.asarray(w)
    a, b = (np.asarray(run(tuple(x[k : k + 1] for x in values))[0])[0] for k in (0, 1))
    hit = {game.encode_action(0, 1, 1, 4), game.encode_action(2, 3, 0, 4)}  # 3 * 8, 4 + 20
    moved = set(np.flatnonzero(np.abs(a - b) > 1e-6).tolist())
    assert game.encode_action(2, 3, 0, 4) in moved and moved <= hit
    assert np.all(a[game.encode_action(0, 1, 1, 4)] == b[game.encode_action(0, 1, 1, 4)])


def test_children_value():
    """value = logsumexp of the legal moves' child logits; none_logit with no legal move; grads
    finite everywhere (the -inf mask never makes NaNs)."""
    tok = TokenizerConfig(n_max=4, number_encoding="numeric")
    rules = game.Rules(n_max=4)
    model = PolicyValueNet(_tiny(tok, pair_results=True, value_pool="children", init_std=0.2), tok)
    model.value_head.none_logit[...] = jnp.array([-3.5])
    state = game.new_state([[3, 8, 5, 7], [6, 4]], [24, 24], rules)
    one_left = game.step(state, jnp.array([game.encode_action(0, 1, 1, 4)] * 2), rules)
    one_left = game.step(one_left, jnp.array([game.encode_action(0, 2, 0, 4), 0]), rules)
    tokens = jnp.concatenate([T.encode(state, tok), T.encode(one_left, tok)])

    @jax.jit  # one compile instead of op-by-op dispatch of the whole head
    def parts(m):
        h = m.backbone.hidden(tokens, tok)
        return m.policy_head.with_results(
            h[:, T.slot_positions(tok)], h[:, -1], heads.state_values(tokens, tok)
        )

    _, child, legal = parts(model)
    full = game.State(
        **{
            k: jnp.concatenate([getattr(state, k), getattr(one_left, k)])
            for k in ("num", "den", "live", "target_num", "target_den", "moves", "failed")
        }
    )
    _, _, gok = game.all_results(full, rules)
    np.testing.assert_array_equal(np.asarray(legal), np.asarray(gok))
    _, value = fwd(model, tokens, tok)
    value, child, legal = (np.asarray(x) for x in (value, child, legal))
    assert legal.sum(-1).tolist() == [36, 6, 6, 0]  # the last state holds one number (24)
    assert value[3] == np.float32(-3.5)
    for k in (0, 1, 2):
        c = child[k][legal[k]].astype(np.float64)
        np.testing.assert_allclose(value[k], np.log(np.exp(c).sum()), rtol=1e-5)

    def loss(m):
        logits, v = m(tokens)
        return (v**2).sum() + logits.sum()

    grads = nnx.jit(nnx.grad(loss))(model)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def test_pair_results_bad_options_raise():
    digits = TokenizerConfig(n_max=4)
    with pytest.raises(
        ValueError,
        match=r"pair_results=True.*number_encoding='digits'.*allowed.*'numeric', 'packed'",
    ):
        PolicyValueNet(_tiny(digits, pair_results=True), digits)
    with pytest.raises(ValueError, match=r"value_pool='children'.*pair_results=False.*allowed"):
        ModelConfig(value_pool="children")
    with pytest.raises(ValueError, match=r"value_pool='children'.*shared_backbone=False.*allowed"):
        ModelConfig(value_pool="children", pair_results=True, shared_backbone=False)
    with pytest.raises(ValueError, match=r"pair_results='yes'.*allowed True, False"):
        ModelConfig(pair_results="yes")
    with pytest.raises(ValueError, match=r"'digits'; allowed 'numeric', 'packed'"):
        heads.state_values(jnp.zeros((1, T.seq_len(digits)), jnp.int32), digits)


def test_pair_results_off_is_the_old_model():
    """pair_results=False builds exactly the old parameters (same shapes and values) and draws no
    new keys, so the default outputs are unchanged."""
    tok = TokenizerConfig(n_max=4, number_encoding="packed")
    model = PolicyValueNet(_tiny(tok, init_std=0.2), tok)
    flat = {k: v[...] for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    assert flat[("policy_head", "w_out")].shape == (32, game.NUM_OPS)
    assert not any(k[-1] in ("w_res", "op_embed", "w_child", "none_logit") for k in flat)
    with_res = PolicyValueNet(_tiny(tok, init_std=0.2, pair_results=True), tok)
    flat_res = {k: v[...] for k, v in nnx.to_flat_state(nnx.state(with_res, nnx.Param))}
    for k in flat:  # every parameter drawn before the new ones is the same draw
        if k[0] == "backbone" or k[-1] in ("w_i", "w_j", "w_sum"):
            np.testing.assert_array_equal(flat[k], flat_res[k], err_msg=str(k))
