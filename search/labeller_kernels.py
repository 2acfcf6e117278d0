"""The numba kernels of ``search.labeller``: arithmetic on keys, hash sets, R and Need sets, the
batch driver. The algorithm and the numba notes are ``search/labeller.py``'s docstring.

All compiled code lives in this one file: numba's disk cache checks the source file of a cached
function only, so a kernel in another file could change under a stale cached caller.
"""

from __future__ import annotations

import os

import numba
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros

MAX_LIVE = 6  # compiled path: states of up to this many live numbers
_ZERO = 1  # key of 0/1
_PLAIN, _ALL = 1, 2  # set status (0: not built)
_NEED = 64  # set s = m is R[m]; s = _NEED + u is Need[u]
# mem layout: set s has fields mem[5 s + f]; then the free pointers, canonical masks, values.
_OFF, _CNT, _HOFF, _BITS, _ST = 0, 1, 2, 3, 4  # dense offset, count, hash offset / bits, status
_PTR = 5 * 2 * _NEED  # mem[_PTR], mem[_PTR + 1]: next free dense / hash index
_CANON = _PTR + 8  # mem[_CANON + m]: canonical mask of m (the same multiset of values)
_SV = _CANON + (1 << MAX_LIVE)  # mem[_SV + i]: the state's values, sorted
_POP = _SV + 8  # mem[_POP + m]: popcount of m (filled once per call)
_VALS = 1024
_HTAB = _VALS + (1 << 18)  # dense members, then hash tables: worst-case sizes for k <= 6
_MEM = _HTAB + (1 << 19)
_ONE, _ZERO_I, _PLAIN_I = np.int64(1), np.int64(_ZERO), np.int64(_PLAIN)  # non-literal args
_CACHE = os.environ.get("ZERO24_NUMBA_CACHE", "1") != "0"


def _jit(fn):
    """numba.njit, cached on disk when a cache folder is writable. numba refuses cache=True at
    decoration when neither ``__pycache__`` here nor its user-wide folder is writable (read-only
    CI): compile per process then. ``ZERO24_NUMBA_CACHE=0`` turns caching off."""
    if _CACHE:
        try:
            return numba.njit(cache=True, nogil=True)(fn)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            pass
    return numba.njit(cache=False, nogil=True)(fn)


# ----------------------------------------------------------------------------- arithmetic


@_jit
def _gcd(a, b):
    """gcd of a, b >= 0, binary: a 64-bit division costs more than the loop; most exit at 1."""
    if a == 1 or b == 1:
        return 1
    if a == 0 or b == 0:
        return a + b
    za, zb = trailing_zeros(a), trailing_zeros(b)
    a, b = a >> za, b >> zb
    while a != b:
        if a > b:
            a, b = b, a
        b -= a
        b >>= trailing_zeros(b)
    return a << min(za, zb)


@_jit
def _fin(num, den, fr, ma):
    """Key of num/den (no common factor, den != 0), or 0 where out of range / not allowed."""
    if den < 0:
        num, den = -num, -den
    if den > ma or num > ma or num < -ma or (not fr and (den != 1 or num <= 0)):
        return 0
    return num * 65536 + den


@_jit
def _sum_fin(t, g, dd, fr, ma):
    """Key of t / dd where only factors of g can be common to t and dd."""
    h = _gcd(t if t > 0 else -t, g) if t != 0 else dd  # 0 / dd = 0 / 1
    return _fin(t // h, dd // h, fr, ma) if h > 1 else _fin(t, dd, fr, ma)


@_jit
def _ops6(x, y, fr, ma):
    """The six results (game.OPS order) of keys x op y as keys; 0 where illegal."""
    an, ad, bn, bd = x >> 16, x & 0xFFFF, y >> 16, y & 0xFFFF
    if ad == 1 and bd == 1:  # integers (most values): no cross products
        lo = -ma if fr else 1
        s, p, d = an + bn, an * bn, an - bn
        r0 = s * 65536 + 1 if lo <= s <= ma else 0
        r1 = p * 65536 + 1 if lo <= p <= ma else 0
        r2 = d * 65536 + 1 if lo <= d <= ma else 0
        r3 = -d * 65536 + 1 if lo <= -d <= ma else 0
        g = _gcd(an if an > 0 else -an, bn if bn > 0 else -bn)
        g = g if g > 0 else 1
        if g > 1:  # (0 / b: g = |b| gives 0 / +-1)
            an, bn = an // g, bn // g
        r4 = _fin(an, bn, fr, ma) if bn != 0 else 0
        r5 = _fin(bn, an, fr, ma) if an != 0 else 0
        return r0, r1, r2, r3, r4, r5
    g = _gcd(ad, bd)  # x + y = (an bd/g + bn ad/g) / (ad bd/g): common factors divide g
    adg, bdg = (ad // g, bd // g) if g > 1 else (ad, bd)
    p, q, dd = an * bdg, bn * adg, adg * bd
    r0, r2, r3 = _sum_fin(p + q, g, dd, fr, ma), _sum_fin(p - q, g, dd, fr, ma), \
        _sum_fin(q - p, g, dd, fr, ma)
    if an == 0 or bn == 0:
        z = _ZERO if fr else 0
        return r0, z, r2, r3, (z if bn != 0 else 0), (z if an != 0 else 0)
    aa, ba = (an if an > 0 else -an), (bn if bn > 0 else -bn)
    g1, g2 = _gcd(aa, bd), _gcd(ba, ad)  # x * y: cross-cancel numerators with dens
    r1 = _fin((an // g1) * (bn // g2), (ad // g2) * (bd // g1), fr, ma)
    h = _gcd(aa, ba)  # x / y = (an bd) / (ad bn): cancel gcd(an, bn) and gcd(ad, bd)
    an, bn = an // h, bn // h
    r4, r5 = _fin(an * bdg, adg * bn, fr, ma), _fin(bn * adg, bdg * an, fr, ma)
    return r0, r1, r2, r3, r4, r5


# ----------------------------------------------------------------------------- hash sets
# Set s: members in mem[off:off + count] (iteration) and in the open-addressing table
# mem[hoff:hoff + 2**bits] (membership, key 0 = empty). Avoid abs() / max() in hot numba code:
# the builtins cost ~1.5x here.


@_jit
def _slot(mem, s, key):  # (table offset, bits, first probe): Fibonacci hashing
    bits = mem[5 * s + _BITS]
    h = (np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits)
    return mem[5 * s + _HOFF], bits, np.int64(h)


@_jit
def _has(mem, s, key):
    hoff, bits, i = _slot(mem, s, key)
    while True:
        v = mem[hoff + i]
        if v == key or v == 0:
            return v == key
        i = (i + 1) & ((1 << bits) - 1)


@_jit
def _add(mem, s, key):
    """Insert key into set s (separate from _has: one function with an insert flag is 2x)."""
    hoff, bits, i = _slot(mem, s, key)
    while True:
        v = mem[hoff + i]
        if v == key:
            return
        if v == 0:
            n = mem[5 * s + _CNT]
            mem[hoff + i], mem[mem[5 * s + _OFF] + n], mem[5 * s + _CNT] = key, key, n + 1
            return
        i = (i + 1) & ((1 << bits) - 1)


@_jit
def _open(mem, s, bound):
    """Start set s with room for ``bound`` members; _close returns the unused dense tail."""
    bits = 3
    while (1 << bits) < 2 * bound:
        bits += 1
    off, hoff = mem[_PTR], mem[_PTR + 1]
    if off + bound > _HTAB or hoff + (1 << bits) > _MEM:
        raise RuntimeError("labeller workspace exhausted")  # impossible for k <= 6
    mem[5 * s + _OFF], mem[5 * s + _CNT] = off, 0
    mem[5 * s + _HOFF], mem[5 * s + _BITS] = hoff, bits
    mem[hoff:hoff + (1 << bits)] = 0
    mem[_PTR], mem[_PTR + 1] = off + bound, hoff + (1 << bits)


@_jit
def _close(mem, s, status):
    mem[_PTR], mem[5 * s + _ST] = mem[5 * s + _OFF] + mem[5 * s + _CNT], status


@_jit
def _zero_meets(mem, s, c):
    """Whether 0 op y = c for some y in the non-empty set s: y = +-c, or c = 0 (0 * y)."""
    if c == _ZERO:
        return True
    if _has(mem, s, c):
        return True
    return _has(mem, s, -(c >> 16) * 65536 + (c & 0xFFFF))  # -c


@_jit
def _sup(mem, u, d, full):
    """Canonical (by complement: Need depends on S - u) mask of u + d."""
    return full ^ mem[_CANON + (full ^ (u | d))]


# ----------------------------------------------------------------------------- R and Need sets


@_jit
def _build_r(mem, m, fr, ma):
    """R[m] (canonical m): values reachable from all numbers of m; R of sub-masks is built."""
    if m & (m - 1) == 0:
        _open(mem, m, _ONE)
        _add(mem, m, mem[_SV + trailing_zeros(m)])
        _close(mem, m, _PLAIN_I)
        return
    for fill in range(2):  # pass 0 sizes the set, pass 1 fills it
        bound, sub = 0, (m - 1) & m
        while sub > 0:
            if sub & m & -m:  # each unordered split once
                a, b = mem[_CANON + sub], mem[_CANON + (m ^ sub)]
                na, nb, oa, ob = mem[5 * a + _CNT], mem[5 * b + _CNT], mem[5 * a], mem[5 * b]
                bound += 6 * na * nb
                for i in range(na if fill else 0):
                    for j in range(nb):
                        for e in _ops6(mem[oa + i], mem[ob + j], fr, ma):
                            if e != 0:
                                _add(mem, m, e)
            sub = (sub - 1) & m
        if not fill:
            _open(mem, m, bound)
    _close(mem, m, _PLAIN_I)


@_jit
def _build_need(mem, u, t, full, fr, ma):
    """Need[u] (canonical by complement, u != full) from its built supersets Need[u + d]."""
    s, comp, bound, every = _NEED + u, full ^ u, 0, False
    d = comp
    while d > 0:  # pass 1: size, and the ALL flag (module docstring)
        w, rd = _sup(mem, u, d, full), mem[_CANON + d]
        if w != full and mem[5 * (_NEED + w) + _ST] == _ALL:
            every = True  # ALL passes down
        else:
            bound += 6 * (1 if w == full else mem[5 * (_NEED + w) + _CNT]) * mem[5 * rd + _CNT]
            if _has(mem, rd, _ZERO_I):  # 0 in R[d] and in Need[w]: v * 0 = 0
                if w == full:
                    every |= t == _ZERO
                elif _has(mem, _NEED + w, _ZERO_I):
                    every = True
        d = (d - 1) & comp
    if every:
        mem[5 * s + _OFF], mem[5 * s + _CNT], mem[5 * s + _ST] = mem[_PTR], 0, _ALL
        return
    _open(mem, s, bound)
    d = comp
    while d > 0:  # pass 2: Need[u] += cand(Need[w], R[d])
        w, rd = _sup(mem, u, d, full), mem[_CANON + d]
        nt, ot = (1, -1) if w == full else (mem[5 * (_NEED + w) + _CNT], mem[5 * (_NEED + w)])
        for i in range(nt):
            c = t if ot < 0 else mem[ot + i]
            for j in range(mem[5 * rd + _CNT]):
                x = mem[mem[5 * rd] + j]
                if x == _ZERO:  # 0 + v = c, v - 0 = c, 0 - v = c
                    _add(mem, s, c)
                    _add(mem, s, -(c >> 16) * 65536 + (c & 0xFFFF))
                else:
                    for e in _ops6(c, x, fr, ma):
                        if e != 0:
                            _add(mem, s, e)
        d = (d - 1) & comp
    _close(mem, s, _PLAIN_I)


@_jit
def _prepare_pair(mem, m, t, full, fr, ma):
    """Build what the children of pair mask m read: Need[m + d] of 3 numbers, R[S - m]."""
    comp = full ^ m
    d = comp
    while d > 0:
        w = _sup(mem, m, d, full)
        if w != full and mem[5 * (_NEED + w) + _ST] == 0:
            _build_need(mem, w, t, full, fr, ma)
        d = (d - 1) & comp
    if comp != 0 and mem[5 * mem[_CANON + comp] + _ST] == 0:
        _build_r(mem, mem[_CANON + comp], fr, ma)


@_jit
def _child_good(mem, m, r, t, k, full, fr, ma):
    """Whether the child replacing pair mask m by the legal value r can still reach t (the hot
    loop: only calls that LLVM inlines, nested ifs, module docstring)."""
    if m == full:
        return r == t
    comp = full ^ m
    for step in range(k - 2):  # sizes of d: k-3 .. 1 (built sets), then k-2 (R of S - m)
        size = k - 3 - step if step < k - 3 else k - 2
        d = comp
        while d > 0:
            if mem[_POP + d] == size:
                rd, w = mem[_CANON + d], _sup(mem, m, d, full)
                nr, orr, nw = mem[5 * rd + _CNT], mem[5 * rd], _NEED + w
                if w != full and mem[5 * nw + _ST] == _ALL:  # Need[m] is ALL too
                    return True
                if w == full or mem[5 * nw + _CNT] < nr:  # inverse: cand(Need[w], r) meets R[d]
                    for i in range(1 if w == full else mem[5 * nw + _CNT]):  # Need[S] = {t}
                        c = t if w == full else mem[mem[5 * nw] + i]
                        if r == _ZERO:
                            if _zero_meets(mem, rd, c):
                                return True
                        else:
                            for e in _ops6(c, r, fr, ma):
                                if e != 0:
                                    if _has(mem, rd, e):
                                        return True
                else:  # forward: r op y in Need[w]
                    for i in range(nr):
                        for e in _ops6(r, mem[orr + i], fr, ma):
                            if e != 0:
                                if _has(mem, nw, e):
                                    return True
            d = (d - 1) & comp
    return False


# ----------------------------------------------------------------------------- batch driver


@_jit
def label_rows(keys, live, tkey, fast, n_max, fr, ma, values_only, value, good):
    """Fill value[b] / good[b] for every row with fast[b] (keys int64[B, N] packed values)."""
    mem = np.empty(_MEM, np.int64)
    S, slot = np.zeros(MAX_LIVE, np.int64), np.zeros(MAX_LIVE, np.int64)
    pos = np.zeros(n_max, np.int64)
    # Labels by canonical pair mask, shared by equal pairs: cache[m, 0] = count (-1: the pair's
    # sets are not built yet), then up to 6 results r and their labels.
    cache = np.zeros((1 << MAX_LIVE, 13), np.int64)
    for m in range(1 << MAX_LIVE):
        mem[_POP + m] = (m & 1) + (mem[_POP + (m >> 1)] if m > 1 else 0)
    for b in range(keys.shape[0]):
        if not fast[b]:
            continue
        k = np.int64(0)  # not the literal 0: numba would compile callees for that type too
        for s in range(n_max):
            if live[b, s]:
                S[k], slot[k] = keys[b, s], s
                k += 1
        t, full = tkey[b], (1 << k) - 1
        if k == 1:
            value[b] = S[0] == t
            continue
        for i in range(1, k):  # sort by key: equal values form runs (canonical masks)
            for j in range(i, 0, -1):
                if S[j - 1] <= S[j]:
                    break
                S[j - 1], S[j], slot[j - 1], slot[j] = S[j], S[j - 1], slot[j], slot[j - 1]
        mem[:_CANON] = 0  # statuses, pointers
        mem[_PTR], mem[_PTR + 1] = _VALS, _HTAB
        for i in range(k):
            pos[slot[i]], mem[_SV + i] = i, S[i]
        for m in range(full + 1):  # canonical mask: the last c indices of each run of values
            c, cm = 0, 0
            for i in range(k):
                c += (m >> i) & 1
                if i == k - 1 or S[i + 1] != S[i]:
                    for j in range(c):
                        cm |= 1 << (i - j)
                    c = 0
            mem[_CANON + m] = cm
        cache[:, 0] = -1
        for size in range(1, min(3, k - 2) + 1):  # R of <= 3 numbers: cheap, always used
            for m in range(1, full + 1):
                if mem[_POP + m] == size and mem[_CANON + m] == m:
                    _build_r(mem, m, fr, ma)
        for size in range(k - 1, 3, -1):  # Need of >= 4 numbers: small (of 3: per pair)
            for u in range(1, full):
                if mem[_POP + u] == size and full ^ mem[_CANON + (full ^ u)] == u:
                    _build_need(mem, u, t, full, fr, ma)
        solved = False
        for si in range(n_max):
            for sj in range(si + 1, n_max):
                if not (live[b, si] and live[b, sj]) or (values_only and solved):
                    continue
                cm = mem[_CANON + ((1 << pos[si]) | (1 << pos[sj]))]
                if cache[cm, 0] < 0:
                    _prepare_pair(mem, cm, t, full, fr, ma)
                    cache[cm, 0] = 0
                base = (si * n_max - si * (si + 1) // 2 + (sj - si - 1)) * 6
                res = _ops6(keys[b, si], keys[b, sj], fr, ma)
                for op in range(6):
                    r, g, q = res[op], -1, 1
                    if r == 0:
                        continue
                    while q <= cache[cm, 0] and g < 0:
                        g = cache[cm, q + 6] if cache[cm, q] == r else -1
                        q += 1
                    if g < 0:
                        g = 1 if _child_good(mem, cm, r, t, k, full, fr, ma) else 0
                        cache[cm, q], cache[cm, q + 6], cache[cm, 0] = r, g, q
                    if g == 1:
                        good[b, base + op] = solved = True
                        if values_only:
                            break
        value[b] = solved
