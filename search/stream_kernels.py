"""The numba kernels of ``search.stream``: a counter-based generator, candidate examples (start,
walk, target), the split hash (blake2b, bit-exact ``problems.split_of``) and the exclusion probe.
How an example is drawn, and why each rule is there: ``search/stream.py``'s docstring.

Arithmetic and legality are the labeller's (``labeller_kernels._ops6``: exact rationals as keys
``num * 2**16 + den``, key 0 = no value / dead slot), so a walk plays exactly the moves
``game.step`` allows. numba's disk cache stamps a cached function with its own source file only,
and a cached caller embeds its callees' code: ``_jit`` adds labeller_kernels.py's hash to the
stamp of every kernel here, so an edit there recompiles these too (never a stale ``_ops6``).

Random numbers: draw ``c`` (1, 2, ...) of try ``t`` (0: the example's header) of example ``k``
is ``mix(base(seed, k, t) + c * GAMMA)`` (splitmix64: its state after c steps is that sum, so
any draw is computed directly, no generator object is carried). Example k therefore depends on
(seed, k) alone, whatever batch it is drawn in and whichever other examples precede it.
"""

from __future__ import annotations

import hashlib

import numba
import numpy as np

from search import labeller_kernels
from search.labeller_kernels import _ops6

OK, STUCK, OUT_OF_RANGE = 0, 1, 2  # candidate status (a stuck walk: no legal move left)
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53
with open(labeller_kernels.__file__, "rb") as _f:
    _DEPS = hashlib.sha256(_f.read()).hexdigest()


def _jit(fn):
    """``labeller_kernels._jit`` (njit, disk-cached where writable), with the cache stamp extended
    by labeller_kernels.py's hash (module docstring); compiled per process where numba's cache
    internals differ from 0.6x's (never a cache that could be stale)."""
    disp = labeller_kernels._jit(fn)
    cache_file = getattr(getattr(disp, "_cache", None), "_cache_file", None)
    if cache_file is None:
        return disp
    if not hasattr(cache_file, "_source_stamp"):
        return numba.njit(cache=False, nogil=True)(fn)
    cache_file._source_stamp = (cache_file._source_stamp, _DEPS)
    return disp


# ----------------------------------------------------------------------------- counter RNG


@_jit
def _mix(z):
    """splitmix64's finaliser: a bijection of uint64 with full avalanche."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@_jit
def _base(seed, k, t):
    """Generator key of try ``t`` of example ``k`` of the stream ``seed``."""
    h = _mix(np.uint64(seed) + _GAMMA)
    h = _mix(h ^ np.uint64(k))
    return _mix(h + np.uint64(t) * _M1)


@_jit
def _unit(base, c):
    """Draw ``c`` as a float in [0, 1) (53 bits)."""
    return np.float64(_mix(base + np.uint64(c) * _GAMMA) >> np.uint64(11)) * _TO_UNIT


@_jit
def _int_in(base, c, lo, hi):
    """Draw ``c`` as an integer uniform in lo..hi."""
    return lo + min(np.int64(_unit(base, c) * (hi - lo + 1)), hi - lo)


# ----------------------------------------------------------------------------- walks


@_jit
def _step(keys, base, c, fr, ma, res, ri, rj):
    """Play one uniformly random legal move on ``keys`` in place (``game.step``: the result stays
    in the lower slot, the higher slot dies). Returns the next draw counter, -1 if none is legal."""
    cnt, n = 0, keys.shape[0]
    for i in range(n):
        if keys[i] != 0:
            for j in range(i + 1, n):
                if keys[j] != 0:
                    for e in _ops6(keys[i], keys[j], fr, ma):
                        if e != 0:
                            res[cnt], ri[cnt], rj[cnt] = e, i, j
                            cnt += 1
    if cnt == 0:
        return -1
    p = _int_in(base, c, 0, cnt - 1)
    keys[ri[p]], keys[rj[p]] = res[p], 0
    return c + 1


@_jit
def _candidate(base, n, moves, want, cls, fr, ma, keys, start, donor, res, ri, rj):
    """One try of an example: ``keys`` (the walked state) and ``start`` (its start numbers) are
    filled; returns (status, target). ``cls``: (number lo, hi, target lo, hi)."""
    keys[:] = 0
    c = 1
    for s in range(n):
        start[s] = _int_in(base, c, cls[0], cls[1])
        keys[s] = start[s] * 65536 + 1
        c += 1
    uniform = _unit(base, c) < 0.5
    c += 1
    target = _int_in(base, c, cls[2], cls[3])  # drawn always: the counters stay aligned
    c += 1
    for _ in range(moves):
        c = _step(keys, base, c, fr, ma, res, ri, rj)
        if c < 0:
            return STUCK, target
    if uniform:
        return OK, target
    donor[:] = 0  # a playout value: of this state (reachable), or of an independent start
    if want:
        donor[:] = keys
    else:
        for s in range(n):
            donor[s] = _int_in(base, c, cls[0], cls[1]) * 65536 + 1
            c += 1
    for _ in range(n - moves - 1 if want else n - 1):
        c = _step(donor, base, c, fr, ma, res, ri, rj)
        if c < 0:
            return STUCK, target
    v = 0
    for s in range(donor.shape[0]):
        v += donor[s]  # the one live key
    if v & 0xFFFF != 1 or not cls[2] <= (v >> 16) <= cls[3]:
        return OUT_OF_RANGE, target
    return OK, v >> 16


# ----------------------------------------------------------------------------- split hash

_IV = np.array([0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
                0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179],
               np.uint64)
_SIGMA = np.array([
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
    [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
    [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
    [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
    [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
    [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
    [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
    [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
    [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0]], np.int64)
_ROT = np.array([32, 24, 16, 63], np.uint64)


@_jit
def _g(v, a, b, c, d, x, y):
    """blake2b's mixing function G (RFC 7693 3.1) on the work vector v."""
    v[a] = v[a] + v[b] + x
    v[d] = ((v[d] ^ v[a]) >> _ROT[0]) | ((v[d] ^ v[a]) << (np.uint64(64) - _ROT[0]))
    v[c] = v[c] + v[d]
    v[b] = ((v[b] ^ v[c]) >> _ROT[1]) | ((v[b] ^ v[c]) << (np.uint64(64) - _ROT[1]))
    v[a] = v[a] + v[b] + y
    v[d] = ((v[d] ^ v[a]) >> _ROT[2]) | ((v[d] ^ v[a]) << (np.uint64(64) - _ROT[2]))
    v[c] = v[c] + v[d]
    v[b] = ((v[b] ^ v[c]) >> _ROT[3]) | ((v[b] ^ v[c]) << (np.uint64(64) - _ROT[3]))


@_jit
def _put(m, pos, x):
    """Write ``str(x)`` (ASCII) into the little-endian message words m at byte ``pos``."""
    if x < 0:
        m[pos >> 3] |= np.uint64(45) << np.uint64(8 * (pos & 7))  # '-'
        pos += 1
        x = -x
    digits, y = 1, x
    while y >= 10:
        digits, y = digits + 1, y // 10
    for q in range(digits - 1, -1, -1):
        m[(pos + q) >> 3] |= np.uint64(48 + x % 10) << np.uint64(8 * ((pos + q) & 7))
        x //= 10
    return pos + digits


@_jit
def split_bucket(nums, n, target, m, v):
    """``problems.split_of``'s bucket (0..99): blake2b, 8-byte digest, of
    ``f"{','.join(map(str, sorted nums[:n]))}|{target}"`` little-endian, mod 100. One 128-byte
    block holds the message (n <= 16 numbers of |x| <= 32767). m, v: uint64[16] scratch."""
    m[:] = 0
    pos = 0
    for i in range(n):
        if i > 0:
            m[pos >> 3] |= np.uint64(44) << np.uint64(8 * (pos & 7))  # ','
            pos += 1
        pos = _put(m, pos, nums[i])
    m[pos >> 3] |= np.uint64(124) << np.uint64(8 * (pos & 7))  # '|'
    pos = _put(m, pos + 1, target)
    v[:8] = _IV
    v[0] ^= np.uint64(0x01010008)  # parameter block: digest 8 bytes, no key, fanout = depth = 1
    v[8:] = _IV
    v[12] ^= np.uint64(pos)  # bytes hashed; v[13] ^= 0 (high word)
    v[14] = ~v[14]  # the last block
    for r in range(12):
        s = _SIGMA[r % 10]
        _g(v, 0, 4, 8, 12, m[s[0]], m[s[1]])
        _g(v, 1, 5, 9, 13, m[s[2]], m[s[3]])
        _g(v, 2, 6, 10, 14, m[s[4]], m[s[5]])
        _g(v, 3, 7, 11, 15, m[s[6]], m[s[7]])
        _g(v, 0, 5, 10, 15, m[s[8]], m[s[9]])
        _g(v, 1, 6, 11, 12, m[s[10]], m[s[11]])
        _g(v, 2, 7, 8, 13, m[s[12]], m[s[13]])
        _g(v, 3, 4, 9, 14, m[s[14]], m[s[15]])
    return np.int64((_IV[0] ^ np.uint64(0x01010008) ^ v[0] ^ v[8]) % np.uint64(100))


# ----------------------------------------------------------------------------- exclusion


@_jit
def row_hash(row):
    """64-bit hash of an exclusion row (count, target, sorted numbers, zero padding)."""
    h = _GAMMA
    for x in row:
        h = _mix(h ^ np.uint64(x))
    return h


@_jit
def _excluded(row, ex_hash, ex_rows):
    """Whether ``row`` is one of ``ex_rows`` (sorted by their hashes ``ex_hash``): exact."""
    h = row_hash(row)
    i = np.searchsorted(ex_hash, h)
    while i < ex_hash.shape[0] and ex_hash[i] == h:
        same = True
        for q in range(row.shape[0]):
            if ex_rows[i, q] != row[q]:
                same = False
        if same:
            return True
        i += 1
    return False


@_jit
def _key_row(row, vals, n, target):
    """Exclusion row of the problem (vals[:n], target): (n, target, sorted values, 0, ...)."""
    row[:] = 0
    row[0], row[1] = n, target
    for i in range(n):
        x, j = vals[i], i
        while j > 0 and row[1 + j] > x:
            row[2 + j] = row[1 + j]
            j -= 1
        row[2 + j] = x


# ----------------------------------------------------------------------------- drivers


@_jit
def headers(seed, ks, cum, n_range, start_only, share, comp, n, moves, want):
    """Per example k: mixture component (by the cumulative weights ``cum``), n, moves played
    (uniform 0..n-2; 0 for start_only) and the wanted label (solvable w.p. ``share``)."""
    for b in range(ks.shape[0]):
        base = _base(seed, ks[b], 0)
        u, i = _unit(base, 1), 0
        while u >= cum[i]:
            i += 1
        comp[b] = i
        n[b] = _int_in(base, 2, n_range[i, 0], n_range[i, 1])
        moves[b] = 0 if start_only else _int_in(base, 3, 0, n[b] - 2)
        want[b] = _unit(base, 4) < share


@_jit
def _next_candidate(seed, k, t0, n, moves, want, cls, max_tries, fr, ma, split_lo, split_hi,
                    ex_hash, ex_rows, keys, w):
    """(t, target) of the first try t >= t0 of example k that passes every check but the label
    (target in range, start problem in the split, neither it nor the walked state excluded), with
    ``keys`` its state; t = -1 when none does by ``max_tries``. w: the scratch of ``propose``."""
    start, donor, live_vals, row, res, ri, rj, m, v = w
    n_max = keys.shape[0]
    for t in range(t0, max_tries + 1):
        status, target = _candidate(_base(seed, k, t), n, moves, want, cls, fr, ma, keys, start,
                                    donor, res, ri, rj)
        if status != OK:
            continue
        _key_row(row, start, n, target)
        bucket = split_bucket(row[2:], n, target, m, v)
        if bucket < split_lo or bucket >= split_hi:
            continue
        if ex_hash.shape[0] > 0:
            if _excluded(row, ex_hash, ex_rows):
                continue
            q, integer = 0, True
            for s in range(n_max):
                if keys[s] != 0:
                    integer &= (keys[s] & 0xFFFF) == 1
                    live_vals[q] = keys[s] >> 16
                    q += 1
            if integer:
                _key_row(row, live_vals, q, target)
                if _excluded(row, ex_hash, ex_rows):
                    continue
        return t, target
    return -1, 0


@_jit
def propose(seed, ks, first_try, n, moves, want, cls, max_tries, fr, ma, split_lo, split_hi,
            ex_hash, ex_rows, out_keys, out_target, out_try):
    """The next ``per`` candidates of each pending example b (``_next_candidate`` in try order
    from first_try[b]) in rows b * per + j, per = len(out_try) // len(ks): out_keys (int64[N]
    keys), out_target, out_try (-1: none left by max_tries). cls: int64[B, 4] per example."""
    n_max, per = out_keys.shape[1], out_try.shape[0] // ks.shape[0]
    moves_max = n_max * (n_max - 1) * 3
    w = (np.zeros(n_max, np.int64), np.zeros(n_max, np.int64), np.zeros(n_max, np.int64),
         np.zeros(n_max + 2, np.int64), np.zeros(moves_max, np.int64),
         np.zeros(moves_max, np.int64), np.zeros(moves_max, np.int64), np.zeros(16, np.uint64),
         np.zeros(16, np.uint64))
    for b in range(ks.shape[0]):
        t = first_try[b]
        for j in range(per):
            r = b * per + j
            t, out_target[r] = _next_candidate(seed, ks[b], t, n[b], moves[b], want[b], cls[b],
                                               max_tries, fr, ma, split_lo, split_hi, ex_hash,
                                               ex_rows, out_keys[r], w)
            out_try[r] = t
            if t < 0:
                for q in range(j + 1, per):
                    out_try[b * per + q] = -1
                break
            t += 1


@_jit
def legal_masks(keys, fr, ma, out):
    """out[b]: the game's legal mask of the state keys[b] (two live slots, a legal result)."""
    n_max = keys.shape[1]
    for b in range(keys.shape[0]):
        a = 0
        for i in range(n_max):
            for j in range(i + 1, n_max):
                if keys[b, i] != 0 and keys[b, j] != 0:
                    q = 0
                    for e in _ops6(keys[b, i], keys[b, j], fr, ma):
                        out[b, a + q] = e != 0
                        q += 1
                a += 6
