"""Fixed-length token encoding of game states (jittable) and solution traces, plus HF export.

Layout of a state with ``N = n_max`` slots (every field has the same width ``W``)::

    [BOS] [TGT] <target field> [S0] <field 0> [S1] <field 1> ... [S{N-1}] <field N-1> [SUM]

A number field is ``sign, numerator part, slash-or-PAD, denominator part`` with the numerator and
denominator right-aligned (left-padded with PAD) so that place values sit at fixed positions:

* ``digits`` (default): each part is ``max_digits`` digit tokens, e.g. -8/3 ->
  ``- . . . 8 / . . . 3``.
* ``whole``: each part is one whole-number token ``W0 .. W{whole_max}`` (the seed's domain tokens).

An integer has PAD in place of the slash and denominator. A dead slot is ``DEAD`` + PADs. A value
that does not fit the field is ``OVF`` + PADs (lossy; only reachable for |x| > 10**max_digits - 1).
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
OP_NAMES = ("<add>", "<mul>", "<sub>", "<rsub>", "<div>", "<rdiv>")


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
    """State encoding. Hashable: pass it as a static argument.

    n_max: slots in the encoded state (must equal the game's Rules.n_max).
    number_encoding: "digits" (right-aligned digit tokens) or "whole" (one token per integer).
    max_digits: digits per numerator / denominator with "digits" (values up to 10**max_digits - 1).
    whole_max: largest integer with its own token with "whole".
    """

    n_max: int = 4
    number_encoding: str = "digits"
    max_digits: int = 4
    whole_max: int = 100

    def __post_init__(self):
        if not 2 <= self.n_max <= MAX_SLOTS:
            raise ValueError(f"TokenizerConfig.n_max={self.n_max} out of range; allowed 2..16.")
        if self.number_encoding not in ("digits", "whole"):
            raise ValueError(
                f"TokenizerConfig.number_encoding={self.number_encoding!r}; "
                "allowed 'digits', 'whole'."
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
    def part_width(self) -> int:
        return self.max_digits if self.number_encoding == "digits" else 1

    @property
    def field_width(self) -> int:
        return 2 + 2 * self.part_width  # sign, numerator, slash, denominator

    @property
    def vocab_size(self) -> int:
        return WHOLE0 + (self.whole_max + 1 if self.number_encoding == "whole" else 0)

    @property
    def max_value(self) -> int:
        """Largest |numerator| / denominator that the field represents exactly."""
        return 10**self.max_digits - 1 if self.number_encoding == "digits" else self.whole_max


def seq_len(cfg: TokenizerConfig) -> int:
    """L: BOS + (target and n_max slots, each marker + field) + SUM."""
    return 2 + (cfg.n_max + 1) * (1 + cfg.field_width)


def slot_positions(cfg: TokenizerConfig) -> np.ndarray:
    """int32[N]: the position of the last token of each slot's field."""
    stride = 1 + cfg.field_width
    return (1 + stride * np.arange(2, cfg.n_max + 2) - 1).astype(np.int32)


def summary_position(cfg: TokenizerConfig) -> int:
    return seq_len(cfg) - 1


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
    tgt = encode_values(state.target_num, state.target_den, jnp.ones(batch, bool), cfg)
    slots = encode_values(state.num, state.den, state.live, cfg)  # [..., N, W]
    markers = jnp.broadcast_to(SLOT0 + jnp.arange(n, dtype=jnp.int32)[:, None], batch + (n, 1))
    body = jnp.concatenate([markers, slots], axis=-1).reshape(batch + (n * (1 + cfg.field_width),))
    full = lambda tok: jnp.full(batch + (1,), tok, jnp.int32)
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
    """Token strings by id."""
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


def decode(tokens) -> tuple[list[Fraction | None], Fraction | None]:
    """Host-side inverse of ``encode`` for one sequence: (live values in slot order, target).

    Works for either number encoding without the config (token types delimit the fields). A value
    that overflowed its field decodes as None.
    """
    toks = [int(t) for t in np.asarray(tokens).reshape(-1)]
    if len(toks) < 3 or toks[0] != BOS or toks[1] != TGT:
        raise ValueError("tokens do not start with <bos> <tgt>; not an encoded state.")
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
    ``zero24_tokenizer.json`` so ``load_config(path)`` restores the exact encoding.
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
