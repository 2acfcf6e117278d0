"""Fixed-length token encoding of game states (jittable) and solution traces, plus HF export.

The state layout (vocabulary ids, ``TokenizerConfig``, the positions of fields, markers and raw
entries) is described and defined in ``nnx_models.token_layout``; every name there is
re-exported here, so ``tokenizer.TokenizerConfig``, ``tokenizer.seq_len``, ``tokenizer.BOS``
... keep working.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np

from nnx_models.token_layout import (  # noqa: F401  (re-exported: tokenizer.<layout name>)
    BOS,
    DEAD,
    DIGIT0,
    EOS,
    EQ,
    MAX_SLOTS,
    MINUS,
    NUMBER_ENCODINGS,
    OP0,
    OP_NAMES,
    OVF,
    PACK_MASK,
    PACK_NUM_SHIFT,
    PACK_SIGN_SHIFT,
    PACKED_DEAD,
    PAD,
    PLUS,
    RAW_ENCODINGS,
    SEP,
    SLASH,
    SLOT0,
    SLOT_MARKERS,
    SPECIALS,
    SUM,
    TGT,
    WHOLE0,
    TokenizerConfig,
    field_ids,
    field_starts,
    hub_positions,
    numeric_positions,
    position_ids,
    seq_len,
    slot_positions,
    summary_position,
)
from search import game


def pack(num, den, live) -> jax.Array:
    """int32[...] packed entries of ``num/den`` (den > 0), PACKED_DEAD where not ``live``.

    |num| and den are clipped to 1..32767 / 0..32767 so that the fields never bleed into each
    other; every legal game value fits (``|x|, den <= game.INT32_SAFE_MAX_ABS``), so the clip
    only guards the bit layout. Jittable.
    """
    num, den = jnp.asarray(num, jnp.int32), jnp.asarray(den, jnp.int32)
    s_bit = (num < 0).astype(jnp.int32)
    mag = jnp.clip(jnp.abs(num), 0, PACK_MASK)
    den = jnp.clip(den, 1, PACK_MASK)
    entry = (s_bit << PACK_SIGN_SHIFT) | (mag << PACK_NUM_SHIFT) | den
    return jnp.where(jnp.asarray(live), entry, PACKED_DEAD).astype(jnp.int32)


def unpack(entry) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Packed entries -> (sign token PLUS / MINUS, or DEAD for PACKED_DEAD; |num|; den), int32.

    Dead entries give (DEAD, 0, 0), the numeric layout's dead field. Jittable.
    """
    entry = jnp.asarray(entry, jnp.int32)
    live = entry >= 0
    neg = ((entry >> PACK_SIGN_SHIFT) & 1) == 1
    sign = jnp.where(live, jnp.where(neg, MINUS, PLUS), DEAD).astype(jnp.int32)
    mag = jnp.where(live, (entry >> PACK_NUM_SHIFT) & PACK_MASK, 0).astype(jnp.int32)
    den = jnp.where(live, entry & PACK_MASK, 0).astype(jnp.int32)
    return sign, mag, den


def live_slots(tokens_BxL, cfg: TokenizerConfig) -> jax.Array:
    """bool[B, N]: which slots hold a number (field's first token != DEAD; packed: entry >= 0)."""
    first = tokens_BxL[:, field_starts(cfg)[1:]]
    return first >= 0 if cfg.packed else first != DEAD


def _part_tokens(x, cfg: TokenizerConfig) -> jax.Array:
    """Tokens of a non-negative integer part: int32[..., part_width]."""
    if cfg.number_encoding == "whole":
        return (WHOLE0 + x)[..., None]
    p = cfg.max_digits
    powers = 10 ** jnp.arange(p - 1, -1, -1, dtype=jnp.int32)  # [p], most significant first
    digits = (x[..., None] // powers) % 10
    shown = (x[..., None] >= powers) | (jnp.arange(p) == p - 1)  # no leading zeros
    return jnp.where(shown, DIGIT0 + digits, PAD).astype(jnp.int32)


def encode_values(num, den, live, cfg: TokenizerConfig) -> jax.Array:
    """Fields of rationals ``num/den`` (den > 0): int32[..., field_width]. Jittable."""
    num, den = jnp.asarray(num, jnp.int32), jnp.asarray(den, jnp.int32)
    mag = jnp.abs(num)
    sign = jnp.where(num < 0, MINUS, PLUS)[..., None]
    if cfg.number_encoding == "numeric":  # raw ints; every legal value fits, so no OVF
        field = jnp.concatenate([sign, mag[..., None], den[..., None]], axis=-1)
        dead = jnp.array([DEAD, 0, 0], jnp.int32)
        return jnp.where(jnp.asarray(live)[..., None], field, dead).astype(jnp.int32)
    is_int = (den == 1)[..., None]
    slash = jnp.where(is_int, PAD, SLASH)
    den_part = jnp.where(is_int, PAD, _part_tokens(den, cfg))
    field = jnp.concatenate([sign, _part_tokens(mag, cfg), slash, den_part], axis=-1)
    fits = (mag <= cfg.max_value) & (den <= cfg.max_value)
    filler = jnp.full((cfg.field_width,), PAD, jnp.int32)
    ovf, dead = filler.at[0].set(OVF), filler.at[0].set(DEAD)
    field = jnp.where(fits[..., None], field, ovf)
    return jnp.where(jnp.asarray(live)[..., None], field, dead).astype(jnp.int32)


@functools.partial(jax.jit, static_argnums=1)
def encode(state: game.State, cfg: TokenizerConfig) -> jax.Array:
    """int32[..., L] tokens of a batch of states (any leading axes). Jitted (static cfg)."""
    n = state.num.shape[-1]
    if n != cfg.n_max:
        raise ValueError(
            f"state has {n} slots but TokenizerConfig.n_max={cfg.n_max}; they must match."
        )
    batch = state.num.shape[:-1]
    full = lambda tok: jnp.full(batch + (1,), tok, jnp.int32)
    if cfg.packed:
        tgt = pack(state.target_num, state.target_den, True)
        entries = jnp.concatenate(
            [jnp.broadcast_to(tgt, batch)[..., None], pack(state.num, state.den, state.live)], -1
        )
        return jnp.concatenate([full(BOS), entries, full(SUM)], axis=-1)
    tgt = encode_values(state.target_num, state.target_den, jnp.ones(batch, bool), cfg)
    slots = encode_values(state.num, state.den, state.live, cfg)  # [..., N, W]
    index = jnp.arange(n, dtype=jnp.int32) if cfg.slot_markers == "indexed" else jnp.zeros(n, int)
    markers = jnp.broadcast_to((SLOT0 + index).astype(jnp.int32)[:, None], batch + (n, 1))
    body = jnp.concatenate([markers, slots], axis=-1).reshape(batch + (n * (1 + cfg.field_width),))
    return jnp.concatenate([full(BOS), full(TGT), tgt, body, full(SUM)], axis=-1)


def trace_len(cfg: TokenizerConfig) -> int:
    """Length of an encoded solution trace: state, n_max-1 moves (Si op Sj = field ;), EOS."""
    return seq_len(cfg) + (cfg.n_max - 1) * (5 + cfg.field_width) + 1


def encode_trace(state: game.State, actions, cfg: TokenizerConfig, rules: game.Rules):
    """Serialize trajectories for the next-token LM path. Jittable.

    state: batch [B] of initial states; actions: int32[B, T] (T <= n_max - 1), -1 = no move.
    Returns (tokens int32[B, trace_len], loss_mask bool[B, trace_len]); the mask is True on tokens
    that are predicted (the moves, their results and EOS), False on the prompt and the padding.
    """
    if rules.n_max != cfg.n_max:
        raise ValueError(f"rules.n_max={rules.n_max} != TokenizerConfig.n_max={cfg.n_max}.")
    if cfg.number_encoding in RAW_ENCODINGS:
        raise ValueError(
            f"encode_trace: TokenizerConfig.number_encoding={cfg.number_encoding!r} has no "
            "next-token form (raw ints are not vocabulary ids); allowed 'digits', 'whole'."
        )
    if cfg.slot_markers != "indexed":
        raise ValueError(
            f"encode_trace names slots by their markers; TokenizerConfig.slot_markers="
            f"{cfg.slot_markers!r} gives the prompt no slot index; allowed 'indexed'."
        )
    actions = jnp.asarray(actions, jnp.int32)
    b, t = actions.shape
    if t > cfg.n_max - 1:
        raise ValueError(f"actions has {t} moves; allowed at most n_max-1={cfg.n_max - 1}.")
    actions = jnp.pad(actions, ((0, 0), (0, cfg.n_max - 1 - t)), constant_values=-1)
    pairs = jnp.asarray(game.pair_table(cfg.n_max))

    def move(st, a):
        played = a >= 0
        a_safe = jnp.maximum(a, 0)
        nxt = game.step(st, a_safe, rules)
        nxt = jax.tree.map(
            lambda x, y: jnp.where(played.reshape(played.shape + (1,) * (x.ndim - 1)), x, y),
            nxt,
            st,
        )
        i, j = pairs[a_safe // game.NUM_OPS, 0], pairs[a_safe // game.NUM_OPS, 1]
        take = lambda x: jnp.take_along_axis(x, i[:, None], axis=-1)[:, 0]
        res = encode_values(take(nxt.num), take(nxt.den), jnp.ones_like(played), cfg)
        col = lambda x: x.astype(jnp.int32)[:, None]
        toks = jnp.concatenate(
            [
                col(SLOT0 + i),
                col(OP0 + a_safe % game.NUM_OPS),
                col(SLOT0 + j),
                col(jnp.full_like(i, EQ)),
                res,
                col(jnp.full_like(i, SEP)),
            ],
            axis=-1,
        )
        toks = jnp.where(played[:, None], toks, PAD)
        return nxt, (toks, jnp.broadcast_to(played[:, None], toks.shape))

    _, (mv, mask) = jax.lax.scan(move, state, actions.T)  # [T, B, 5+W]
    mv = jnp.moveaxis(mv, 0, 1).reshape(b, -1)
    mask = jnp.moveaxis(mask, 0, 1).reshape(b, -1)
    n_played = (actions >= 0).sum(-1)
    # EOS goes right after the last played move; padding stays PAD and unmasked.
    eos_pos = n_played * (5 + cfg.field_width)
    tail = jnp.arange(mv.shape[1] + 1)[None, :] == eos_pos[:, None]  # [B, moves + 1]
    mv = jnp.where(tail, EOS, jnp.pad(mv, ((0, 0), (0, 1))))
    mask = tail | jnp.pad(mask, ((0, 0), (0, 1)))
    tokens = jnp.concatenate([encode(state, cfg), mv], axis=-1)
    loss_mask = jnp.concatenate([jnp.zeros((b, seq_len(cfg)), bool), mask], axis=-1)
    return tokens, loss_mask


# ----------------------------------------------------------------------------- host side


def vocab(cfg: TokenizerConfig) -> list[str]:
    """Token strings by id (numeric / packed: the vocabulary tokens; raw ints have no string)."""
    words = list(SPECIALS) + [str(d) for d in range(10)]
    words += [f"<s{k}>" for k in range(MAX_SLOTS)] + list(OP_NAMES)
    if cfg.number_encoding == "whole":
        words += [f"<w{k}>" for k in range(cfg.whole_max + 1)]
    assert len(words) == cfg.vocab_size
    return words


def _parse_part(toks: list[int]) -> int:
    vals = [t for t in toks if t != PAD]
    if len(vals) == 1 and vals[0] >= WHOLE0:
        return vals[0] - WHOLE0
    if not vals or any(not DIGIT0 <= t < DIGIT0 + 10 for t in vals):
        raise ValueError(f"malformed number tokens {toks}.")
    return int("".join(str(t - DIGIT0) for t in vals))


def _parse_field(toks: list[int]) -> Fraction | None:
    """A field's tokens -> Fraction; None for OVF. Width is implied by the token types."""
    if toks[0] == OVF:
        return None
    if toks[0] not in (PLUS, MINUS):
        raise ValueError(f"field {toks} does not start with a sign token.")
    body = toks[1:]
    if SLASH in body:
        k = body.index(SLASH)
        value = Fraction(_parse_part(body[:k]), _parse_part(body[k + 1 :]))
    else:
        value = Fraction(_parse_part(body))
    return -value if toks[0] == MINUS else value


def _is_numeric_layout(toks: list[int]) -> bool:
    """Numeric fields are 3 wide, so the first slot marker (S0 in both slot_markers modes) is at
    position 5; the digits / whole fields are >= 4 wide and hold a number token or PAD there."""
    return len(toks) > 5 and toks[5] == SLOT0 and toks[2] in (PLUS, MINUS)


def _decode_numeric(toks: list[int]) -> tuple[list[Fraction], Fraction]:
    # Positional parse: raw ints may equal any token id (SUM, S3, ...), so never search for tokens.
    stride = 4  # marker + sign + |num| + den
    if len(toks) < 2 + 3 * stride or (len(toks) - 2) % stride or toks[-1] != SUM:
        raise ValueError(
            f"numeric tokens of length {len(toks)} are not BOS + (1 + n_max) * 4 + SUM."
        )
    values, target = [], None
    for f in range((len(toks) - 2) // stride):
        marker, sign, mag, den = toks[1 + f * stride : 1 + (f + 1) * stride]
        if (f == 0 and marker != TGT) or (f > 0 and not SLOT0 <= marker < SLOT0 + MAX_SLOTS):
            raise ValueError(f"numeric field {f} starts with token {marker}, not a field marker.")
        if sign == DEAD and f > 0:
            continue
        if sign not in (PLUS, MINUS) or den < 1 or mag < 0:
            raise ValueError(f"malformed numeric field {[sign, mag, den]} (field {f}).")
        x = Fraction(-mag if sign == MINUS else mag, den)
        if f == 0:
            target = x
        else:
            values.append(x)
    return values, target


def _is_packed_layout(toks: list[int]) -> bool:
    """Every other layout has TGT at position 1; a packed target entry never equals TGT (= 3): a
    reduced rational packs to 1 (zero, 0/1) or to >= 2**15 (|num| >= 1), and -1 is a dead slot."""
    return len(toks) > 1 and toks[0] == BOS and toks[1] != TGT


def _decode_packed(toks: list[int]) -> tuple[list[Fraction], Fraction]:
    # Positional parse: BOS, target entry, N slot entries, SUM.
    if len(toks) < 5 or toks[-1] != SUM:
        raise ValueError(
            f"packed tokens of length {len(toks)} are not BOS + (1 + n_max) entries + SUM "
            "(n_max >= 2)."
        )
    values, target = [], None
    for f, e in enumerate(toks[1:-1]):
        if e == PACKED_DEAD and f > 0:
            continue
        mag, den = (e >> PACK_NUM_SHIFT) & PACK_MASK, e & PACK_MASK
        if not 0 <= e < 1 << (PACK_SIGN_SHIFT + 1) or den < 1:
            raise ValueError(
                f"malformed packed entry {e} (field {f}); allowed -1 (dead slot) or "
                "(s << 30) | (|num| << 15) | den with 1 <= den <= 32767."
            )
        x = Fraction(-mag if (e >> PACK_SIGN_SHIFT) & 1 else mag, den)
        if f == 0:
            target = x
        else:
            values.append(x)
    return values, target


def decode(tokens) -> tuple[list[Fraction | None], Fraction | None]:
    """Host-side inverse of ``encode`` for one sequence: (live values in slot order, target).

    Works for every number encoding and both slot-marker modes without the config: digits / whole
    fields are delimited by token types; numeric sequences are recognised by their layout (the
    first slot marker at position 5, see ``_is_numeric_layout``; no vocabulary id is added, so
    existing ids and checkpoints are untouched) and parsed by position; packed sequences by
    position 1 not holding TGT (``_is_packed_layout``) and parsed by position too. A value that
    overflowed its field decodes as None.
    """
    toks = [int(t) for t in np.asarray(tokens).reshape(-1)]
    if _is_packed_layout(toks):
        return _decode_packed(toks)
    if len(toks) < 3 or toks[0] != BOS or toks[1] != TGT:
        raise ValueError("tokens do not start with <bos> <tgt>; not an encoded state.")
    if _is_numeric_layout(toks):
        return _decode_numeric(toks)
    end = toks.index(SUM) if SUM in toks else len(toks)
    bounds = [1] + [k for k in range(2, end) if SLOT0 <= toks[k] < SLOT0 + MAX_SLOTS] + [end]
    fields = [toks[a + 1 : b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    target = _parse_field(fields[0])
    values = [_parse_field(f) for f in fields[1:] if f[0] != DEAD]
    return values, target


def save_hf_tokenizer(cfg: TokenizerConfig, path: str) -> str:
    """Export as a ``transformers.PreTrainedTokenizerFast`` (for ``AutoTokenizer.from_pretrained``).

    The HF tokenizer is a whitespace-split word-level vocabulary over the token strings of ``vocab``
    (``" ".join(vocab(cfg)[t] for t in ids)`` round-trips); the config is saved next to it as
    ``zero24_tokenizer.json`` so ``load_config(path)`` restores the exact encoding. With
    ``number_encoding="numeric"`` / ``"packed"`` the word-level tokenizer covers the vocabulary
    tokens only: the raw ints have no word form (encode such states with ``encode``).
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = vocab(cfg)
    tk = Tokenizer(models.WordLevel({w: k for k, w in enumerate(words)}, unk_token="<ovf>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<ovf>",
    )
    os.makedirs(path, exist_ok=True)
    fast.save_pretrained(path)
    with open(os.path.join(path, "zero24_tokenizer.json"), "w") as f:
        json.dump(dataclasses.asdict(cfg), f, indent=2)
    return path


def load_config(path: str) -> TokenizerConfig:
    """The TokenizerConfig saved by ``save_hf_tokenizer``."""
    file = os.path.join(path, "zero24_tokenizer.json")
    if not os.path.exists(file):
        raise FileNotFoundError(
            f"{file} is missing; export with nnx_models.tokenizer.save_hf_tokenizer."
        )
    with open(file) as f:
        return TokenizerConfig(**json.load(f))


def encode_problems(numbers, targets, cfg: TokenizerConfig, rules: game.Rules) -> np.ndarray:
    """Host convenience: tokens of initial states built by ``game.new_state``."""
    return np.asarray(encode(game.new_state(numbers, targets, rules), cfg))
