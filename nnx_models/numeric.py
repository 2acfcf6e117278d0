"""Value embedding of a rational: ``number_encoding="numeric"`` fields and ``"packed"`` entries.

A numeric field is ``[sign token, |numerator|, denominator]`` with raw ints (``tokenizer``); the
backbone must not look the raw ints up in its token table. Instead each field's rational
``x = s * m / d`` (s = +-1, m = |numerator| >= 0, d >= 1) is embedded as

    e(x) = features(x) @ W_feat  +  T_num[min(m, 127)]  +  T_den[min(d, 127)]         # [D]

with ``features`` (float32, all within [-1, 1]; ``LOG_SCALE = log(INT32_SAFE_MAX_ABS + 1)``):

  0  s                               sign, +1 for zero
  1  log1p(m) / LOG_SCALE            magnitude of the numerator
  2  log(d) / LOG_SCALE              magnitude of the denominator
  3  (log m - log d) / LOG_SCALE     log|x| (0 when m = 0; see feature 6)
  4  s * log1p(m / d) / LOG_SCALE    signed, compressed value (orders values, compares to target)
  5  d == 1                          is an integer
  6  m == 0                          is zero
  7+ sin, cos(2 pi m / P), then sin, cos(2 pi d / P) for each P in ``PERIODS`` (4 per period):
     residues mod P, i.e. divisibility and last digits, which exact arithmetic depends on. The
     residue ``m mod P`` is taken in int32 first, so the angle is exact for every legal value;
     the sines are read from a table of every residue (``_fourier_tables``).

``T_num`` / ``T_den`` are learned 128-row tables (row 127 = "127 or more"): exact small integers
matter for the arithmetic (24 = 3 * 8, 1/3 vs 1/4) and smooth features alone blur them. Dead
slots (``DEAD 0 0``) embed as zero. The backbone adds ``e(x)`` at all three positions of the field
(the sign position, and the numerator / denominator positions whose token rows are fixed learned
"raw" fillers, see ``Transformer.hidden``): the pair head reads the field's LAST position, and
under causal attention the sign position cannot pass anything forward before layer one.

Packed entries (``number_encoding="packed"``, one int32 per number, ``tokenizer.pack``) are
unpacked to the same (sign, m, d) and embedded by the same ``NumericEmbedding``; ``PackedEmbedding``
adds a learned type table ``types[3, D]``: row ``TYPE_TARGET`` at the target entry, ``TYPE_SLOT``
at every slot entry, and ``TYPE_DEAD`` on top of it where the slot is dead (e(x) = 0 there). The
type rows are what lets a bidirectional, position-free network tell the target from a slot; all
slots share a row, so slot-permutation equivariance is kept.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnx_models import tokenizer
from nnx_models.config import ModelConfig
from nnx_models.layers import make_param
from search import game

PERIODS = (2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 25, 32, 64, 100, 128, 256, 1000)
SMALL_INTS = 128  # rows of the exact small-integer tables (clip to 127)
NUM_SCALAR = 7
NUM_FEATURES = NUM_SCALAR + 4 * len(PERIODS)  # 87
LOG_SCALE = math.log(game.INT32_SAFE_MAX_ABS + 1)


def _fourier_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row offset of each period, sin, cos) of every angle 2 pi r / P, r < P, as float32.

    Why a table: the features are pure functions of (m mod P, P), and a table gather costs a
    third of evaluating sin and cos (XLA:CPU computes them per element); the pair head of
    ``pair_results`` evaluates them for every (pair, op) result: its result features took
    2.6 of the 3.3 ms of a d1w8 train step (batch 64) on 2 CPU cores. The angle is formed in
    float32 exactly as before (f32(2 pi) / P * r), its sine rounded once from float64."""
    p = np.array(PERIODS, np.int64)
    ang = np.concatenate([np.float32(2 * np.pi) / np.float32(q) * np.arange(q, dtype=np.float32)
                          for q in p]).astype(np.float64)
    offsets = np.concatenate([[0], np.cumsum(p)[:-1]]).astype(np.int32)
    return offsets, np.sin(ang).astype(np.float32), np.cos(ang).astype(np.float32)


_FOURIER_TABLES = _fourier_tables()


TYPE_TARGET, TYPE_SLOT, TYPE_DEAD = range(3)  # rows of PackedEmbedding.types
NUM_TYPES = 3
INPUT_KINDS = ("tokens", "numeric", "packed")  # what a backbone's input embedding reads


def input_kind(tok_cfg: tokenizer.TokenizerConfig | None) -> str:
    """The input kind: "tokens" (digits / whole / plain sequences: the token table only),
    "numeric" or "packed".

    Backbones built for different kinds have different input weights, so a model reads only
    encodings of the kind it was built for."""
    if tok_cfg is None or tok_cfg.number_encoding not in tokenizer.RAW_ENCODINGS:
        return "tokens"
    return tok_cfg.number_encoding


def reads_numeric(tok_cfg: tokenizer.TokenizerConfig | None) -> bool:
    """Whether the encoding holds raw numbers embedded by value (numeric or packed)."""
    return input_kind(tok_cfg) != "tokens"


def kind_encodings(kind: str) -> str:
    """The number encodings of an input kind, for error messages."""
    return {"tokens": "'digits', 'whole'", "numeric": "'numeric'", "packed": "'packed'"}[kind]


def param_count(cfg: ModelConfig, tok_cfg: tokenizer.TokenizerConfig | None = None) -> int:
    """Parameters of one ``NumericEmbedding`` (W_feat [F, D] + two [128, D] tables); with a packed
    ``tok_cfg`` of one ``PackedEmbedding`` (that + the [3, D] type table)."""
    n = (NUM_FEATURES + 2 * SMALL_INTS) * cfg.d_model
    return n + (NUM_TYPES * cfg.d_model if input_kind(tok_cfg) == "packed" else 0)


def features(sign, mag, den) -> jax.Array:
    """float32[..., NUM_FEATURES] of the rationals ``sign * mag / den`` (module docstring).

    sign: int32 sign tokens (PLUS / MINUS; DEAD gives all-zero features); mag >= 0, den >= 1 ints.
    """
    live = (sign == tokenizer.PLUS) | (sign == tokenizer.MINUS)
    mag = jnp.where(live, mag, 0).astype(jnp.int32)
    den = jnp.where(live, den, 1).astype(jnp.int32)  # dead slots hold 0/0: keep the logs finite
    s = jnp.where(sign == tokenizer.MINUS, -1.0, 1.0)
    m, d = mag.astype(jnp.float32), den.astype(jnp.float32)
    log_d = jnp.log(d)
    log_abs = jnp.where(mag > 0, jnp.log(jnp.maximum(m, 1.0)) - log_d, 0.0)
    scalars = [
        s,
        jnp.log1p(m) / LOG_SCALE,
        log_d / LOG_SCALE,
        log_abs / LOG_SCALE,
        s * jnp.log1p(m / d) / LOG_SCALE,
        (den == 1).astype(jnp.float32),
        (mag == 0).astype(jnp.float32),
    ]
    periods = jnp.asarray(np.array(PERIODS, np.int32))
    offsets, sin_table, cos_table = (jnp.asarray(t) for t in _FOURIER_TABLES)

    def fourier(x):  # [..., 2 * len(PERIODS)]: residue first, so the angle is exact
        row = offsets + x[..., None] % periods  # one table row per (residue, period)
        return [sin_table[row], cos_table[row]]

    out = jnp.concatenate(
        [jnp.stack(scalars, axis=-1), *fourier(mag), *fourier(den)], axis=-1
    ).astype(jnp.float32)
    return jnp.where(live[..., None], out, 0.0)


class NumericEmbedding(nnx.Module):
    """``(sign, mag, den) int32[B, F] -> [B, F, D]`` embedding of each number field."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d = cfg.d_model
        # std / sqrt(F): the projected features start at the scale of one token-embedding row.
        self.w_feat = make_param(
            rngs,
            (NUM_FEATURES, d),
            (None, "embed"),
            cfg,
            std=cfg.init_std / math.sqrt(NUM_FEATURES),
        )
        self.num_table = make_param(rngs, (SMALL_INTS, d), (None, "embed"), cfg)
        self.den_table = make_param(rngs, (SMALL_INTS, d), (None, "embed"), cfg)

    def __call__(self, sign_BxF, mag_BxF, den_BxF) -> jax.Array:
        dt = self.cfg.compute_dtype
        feats = features(sign_BxF, mag_BxF, den_BxF)  # [B, F, NUM_FEATURES]
        b, f, k = feats.shape
        e = (feats.reshape(b * f, k).astype(dt) @ self.w_feat[...].astype(dt)).reshape(b, f, -1)
        top = SMALL_INTS - 1
        e = e + jnp.take(self.num_table[...], jnp.clip(mag_BxF, 0, top), axis=0).astype(dt)
        e = e + jnp.take(self.den_table[...], jnp.clip(den_BxF, 0, top), axis=0).astype(dt)
        live = (sign_BxF == tokenizer.PLUS) | (sign_BxF == tokenizer.MINUS)
        return jnp.where(live[..., None], e, jnp.zeros((), dt))  # [B, F, D]


class PackedEmbedding(nnx.Module):
    """``entries int32[B, 1 + N]`` (target first, ``tokenizer.pack``) -> ``[B, 1 + N, D]``:
    ``NumericEmbedding`` of the unpacked value + the target / slot type row (+ the dead row)."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.value = NumericEmbedding(cfg, rngs=rngs)
        self.types = make_param(rngs, (NUM_TYPES, cfg.d_model), (None, "embed"), cfg)

    def __call__(self, entries_BxF) -> jax.Array:
        dt = self.cfg.compute_dtype
        sign, mag, den = tokenizer.unpack(entries_BxF)
        e = self.value(sign, mag, den)  # zero at dead entries
        types = self.types[...].astype(dt)
        kind = np.full(entries_BxF.shape[1], TYPE_SLOT, np.int32)
        kind[0] = TYPE_TARGET
        e = e + jnp.take(types, jnp.asarray(kind), axis=0)[None]
        dead = (entries_BxF < 0)[..., None]
        return e + jnp.where(dead, types[TYPE_DEAD], jnp.zeros((), dt))
