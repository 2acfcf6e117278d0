"""Token layout of an encoded game state: vocabulary ids, ``TokenizerConfig`` and positions.

The encoders and decoders are in ``nnx_models.tokenizer``, which re-exports every public name here.

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
