"""Fixed-length token encoding of game states (jittable) and solution traces, plus HF export.

Layout of a state with ``N = n_max`` slots (every field has the same width ``W``)::

    [BOS] [TGT] <target field> [S0] <field 0> [S1] <field 1> ... [S{N-1}] <field N-1> [SUM]

A number field is ``sign, numerator part, slash-or-PAD, denominator part`` with the numerator and
denominator right-aligned (left-padded with PAD) so that place values sit at fixed positions:

* ``digits`` (default): each part is ``max_digits`` digit tokens, e.g. -8/3 ->
  ``- . . . 8 / . . . 3``.
* ``whole``: each part is one whole-number token ``W0 .. W{whole_max}`` (the seed's domain tokens).
* ``numeric``: the field is 3 int32 entries ``[sign token, |numerator|, denominator]`` whose last
  two are RAW integers, not vocabulary ids (e.g. -8/3 -> ``- 8 3`` with 8 and 3 the ints; a dead
  slot is ``DEAD 0 0``). Every legal value fits (``|x| <= game.INT32_SAFE_MAX_ABS``), so there is
  no OVF. The model must not look the raw entries up in its embedding table: it gathers them at
  ``numeric_positions(cfg)`` and embeds the rational from its value (``nnx_models.numeric``).
  Numeric sequences have no next-token (trace) form and no HF word form for the raw entries.
* ``packed``: ONE int32 entry per number and no markers at all (``L = N + 3``)::

      [BOS] [target] [slot 0] ... [slot N-1] [SUM]

  A live number ``x = s * m / d`` is ``(s_bit << 30) | (m << 15) | d`` (``pack``; s_bit = 1 for
  negative, ``m = |num| <= game.INT32_SAFE_MAX_ABS = 2**15 - 1``, ``1 <= d <= 2**15 - 1``), a
  non-negative int32; a dead slot is ``PACKED_DEAD = -1``. BOS and SUM (positions 0 and L-1) are
  the only vocabulary tokens. Like numeric, the model embeds each entry from its value
  (``nnx_models.numeric``) plus a learned target / slot / dead type row, never through the token
  table. ``numeric_positions`` is then int32[1 + N] (the entries' positions, target first),
  ``position_ids`` is all zeros (every token is its own field, so with ``positions="field"`` there
  is no order at all), ``field_ids`` = 0..L-1 and ``hub_positions`` = every position, so
  ``ModelConfig.field_attention`` is a no-op (an all-True mask; the backbone skips it).
  ``slot_markers`` is accepted and ignored (there are none). No next-token form; ``decode`` tells
  packed sequences apart by position 1 (``_is_packed_layout``).

An integer has PAD in place of the slash and denominator (digits / whole). A dead slot is
``DEAD`` + PADs. A value that does not fit the field is ``OVF`` + PADs (lossy; only reachable for
|x| > 10**max_digits - 1).

Slot markers: ``slot_markers="indexed"`` writes S0..S{N-1}; ``"shared"`` writes S0 before every
slot, so nothing but the values tells slots apart (with per-field positions, bidirectional
attention and a symmetric pair head the network is then exactly slot-permutation equivariant;
see ``nnx_models.config``). ``position_ids(cfg)`` gives the per-field RoPE positions for
``ModelConfig.positions="field"``; ``field_ids`` / ``hub_positions`` the groups of
``ModelConfig.field_attention``.

Slot markers and ops exist for 16 slots whatever ``n_max`` is, so the vocabulary (and therefore a
model's embedding table) does not depend on ``n_max``: a model built for n_max=4 reads n_max=6
states.

``slot_positions(cfg)[k]`` is the last token of slot k's field (it has seen the target and slots
0..k under the causal mask); ``summary_position(cfg)`` is the final SUM token, which sees
everything.
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

from search import game

MAX_SLOTS = 16  # == the largest Rules.n_max

# Special tokens (fixed ids; digits, markers, ops and whole numbers follow).
PAD, BOS, SUM, TGT, DEAD, OVF, PLUS, MINUS, SLASH, EQ, SEP, EOS = range(12)
SPECIALS = ("<pad>", "<bos>", "<sum>", "<tgt>", "<dead>", "<ovf>", "+", "-", "/", "=", ";", "<eos>")
DIGIT0 = len(SPECIALS)  # tokens DIGIT0 .. DIGIT0+9 are '0'..'9'
SLOT0 = DIGIT0 + 10  # slot markers S0..S15
OP0 = SLOT0 + MAX_SLOTS  # op tokens, in game.OPS order
WHOLE0 = OP0 + game.NUM_OPS  # whole-number tokens W0.. (only with number_encoding="whole")
NUMBER_ENCODINGS = ("digits", "whole", "numeric", "packed")
RAW_ENCODINGS = ("numeric", "packed")  # numbers held as raw ints, embedded from their value
PACKED_DEAD = -1  # the packed entry of a dead slot
PACK_SIGN_SHIFT, PACK_NUM_SHIFT = 30, 15
PACK_MASK = (1 << PACK_NUM_SHIFT) - 1  # 32767 == game.INT32_SAFE_MAX_ABS
SLOT_MARKERS = ("indexed", "shared")
OP_NAMES = ("<add>", "<mul>", "<sub>", "<rsub>", "<div>", "<rdiv>")


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
    """State encoding. Hashable: pass it as a static argument.

    n_max: slots in the encoded state (must equal the game's Rules.n_max).
    number_encoding: "digits" (right-aligned digit tokens), "whole" (one token per integer),
      "numeric" (sign token + raw |numerator| and denominator ints) or "packed" (one int32 per
      number, no markers); module docstring.
    max_digits: digits per numerator / denominator with "digits" (values up to 10**max_digits - 1).
    whole_max: largest integer with its own token with "whole".
    slot_markers: "indexed" (S0..S{N-1} before the slots) or "shared" (S0 before every slot);
      ignored by "packed" (no markers), which accepts either.
    """

    n_max: int = 4
    number_encoding: str = "digits"
    max_digits: int = 4
    whole_max: int = 100
    slot_markers: str = "indexed"

    def __post_init__(self):
        if not 2 <= self.n_max <= MAX_SLOTS:
            raise ValueError(f"TokenizerConfig.n_max={self.n_max} out of range; allowed 2..16.")
        if self.number_encoding not in NUMBER_ENCODINGS:
            raise ValueError(
                f"TokenizerConfig.number_encoding={self.number_encoding!r}; "
                f"allowed {', '.join(map(repr, NUMBER_ENCODINGS))}."
            )
        if self.slot_markers not in SLOT_MARKERS:
            raise ValueError(
                f"TokenizerConfig.slot_markers={self.slot_markers!r}; "
                f"allowed {', '.join(map(repr, SLOT_MARKERS))}."
            )
        if not 1 <= self.max_digits <= 5:
            raise ValueError(
                f"TokenizerConfig.max_digits={self.max_digits} out of range; allowed 1..5."
            )
        if not 1 <= self.whole_max <= 2048:
            raise ValueError(
                f"TokenizerConfig.whole_max={self.whole_max} out of range; allowed 1..2048."
            )

    @property
    def packed(self) -> bool:
        return self.number_encoding == "packed"

    @property
    def part_width(self) -> int:
        return self.max_digits if self.number_encoding == "digits" else 1

    @property
    def field_width(self) -> int:
        if self.number_encoding == "numeric":
            return 3  # sign, raw |numerator|, raw denominator (no slash: den is always written)
        if self.packed:
            return 1  # the packed entry itself (no marker before it)
        return 2 + 2 * self.part_width  # sign, numerator, slash, denominator

    @property
    def vocab_size(self) -> int:
        """Embedding rows the encoding needs (numeric / packed: the raw ints are not vocabulary
        ids, so only the specials, digits, markers and ops exist; packed uses BOS and SUM)."""
        return WHOLE0 + (self.whole_max + 1 if self.number_encoding == "whole" else 0)

    @property
    def max_value(self) -> int:
        """Largest |numerator| / denominator that the field represents exactly."""
        if self.number_encoding in RAW_ENCODINGS:
            return game.INT32_SAFE_MAX_ABS
        return 10**self.max_digits - 1 if self.number_encoding == "digits" else self.whole_max


def _stride(cfg: TokenizerConfig) -> int:
    """Tokens per number: marker + field, or the one packed entry."""
    return 1 if cfg.packed else 1 + cfg.field_width


def seq_len(cfg: TokenizerConfig) -> int:
    """L: BOS + (target and n_max slots, each marker + field, or one packed entry) + SUM."""
    return 2 + (cfg.n_max + 1) * _stride(cfg)


def slot_positions(cfg: TokenizerConfig) -> np.ndarray:
    """int32[N]: the position of the last token of each slot's field (packed: its entry)."""
    return (_stride(cfg) * np.arange(2, cfg.n_max + 2)).astype(np.int32)


def summary_position(cfg: TokenizerConfig) -> int:
    return seq_len(cfg) - 1


def field_starts(cfg: TokenizerConfig) -> np.ndarray:
    """int32[1 + N]: the first token (sign / DEAD / OVF) of each field, target first (packed:
    the entries, positions 1..N+1)."""
    if cfg.packed:
        return np.arange(1, cfg.n_max + 2, dtype=np.int32)
    return (2 + (1 + cfg.field_width) * np.arange(cfg.n_max + 1)).astype(np.int32)


def field_ids(cfg: TokenizerConfig) -> np.ndarray:
    """int32[L]: which group each position belongs to: 0 BOS, 1 the target (TGT + its field),
    2 + k slot k (its marker + field), N + 2 SUM. Used by ``ModelConfig.field_attention``.
    Packed: every position is its own group (0..L-1)."""
    if cfg.packed:
        return np.arange(seq_len(cfg), dtype=np.int32)
    field = np.repeat(np.arange(1, cfg.n_max + 2), 1 + cfg.field_width)
    return np.concatenate([[0], field, [cfg.n_max + 2]]).astype(np.int32)


def hub_positions(cfg: TokenizerConfig) -> np.ndarray:
    """int32[N + 3]: BOS, the TGT and slot markers, SUM (the tokens every position may attend to
    under ``ModelConfig.field_attention``). Packed: every position (each entry stands in for
    its own marker), so the field-attention mask is all True: a no-op."""
    if cfg.packed:
        return np.arange(seq_len(cfg), dtype=np.int32)
    return np.concatenate([[0], field_starts(cfg) - 1, [summary_position(cfg)]]).astype(np.int32)


def position_ids(cfg: TokenizerConfig) -> np.ndarray:
    """int32[L] RoPE positions for ``ModelConfig.positions="field"``: restart at every field.

    BOS, TGT, SUM and every slot marker get 0, the tokens of the field after a marker 1..W. With
    ``slot_markers="shared"`` every slot then looks the same up to its values, which is what makes
    the bidirectional network permutation-equivariant over slots. Packed: all zeros (every
    token is its own field, so nothing carries an order; the target is told apart from the slots
    by the model's type embedding).
    """
    if cfg.packed:
        return np.zeros(seq_len(cfg), np.int32)
    field = np.concatenate([[0], np.arange(1, cfg.field_width + 1)])  # marker + its field
    return np.concatenate([[0], np.tile(field, cfg.n_max + 1), [0]]).astype(np.int32)


def numeric_positions(cfg: TokenizerConfig) -> np.ndarray:
    """Positions of the raw entries of each number, target first, then the slots.

    numeric: int32[1 + N, 2], each field's raw |numerator| and denominator (the field's sign
    token sits just before the numerator). packed: int32[1 + N], the one packed entry of each
    number (positions 1..N+1). Only defined for these two (the others have no raw entries).
    """
    if cfg.number_encoding not in RAW_ENCODINGS:
        raise ValueError(
            f"numeric_positions needs TokenizerConfig.number_encoding='numeric' or 'packed'; got "
            f"{cfg.number_encoding!r} (allowed here: 'numeric', 'packed')."
        )
    if cfg.packed:
        return field_starts(cfg)
    starts = field_starts(cfg)
    return np.stack([starts + 1, starts + 2], axis=-1).astype(np.int32)


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
