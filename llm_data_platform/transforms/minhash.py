"""MinHash signatures of shingle-hash sets, vectorised over a batch (no Dagster, no loop per
text): datasketch's ``"affine32"`` scheme bit for bit, and one-permutation hashing.

Both take ``shingle_hashes`` output (offsets, 64-bit hashes) and return one uint32 row per
text. ``affine32`` costs a pass over the shingles per permutation; ``oph`` one pass in all
(``benchmarks/bench_curation.py`` prints them beside rensa and datasketch).
"""

from __future__ import annotations

import functools

import numpy as np

from llm_data_platform.transforms.shingles import _fmix64, _row_blocks

__all__ = ["minhash_signatures", "oph_signatures"]

_U64 = np.uint64
_MASK32 = np.uint64(0xFFFFFFFF)
# Work sizes: shingles x permutations per MinHash block, 1 MB of uint32 (a core's L2 cache
# here: 2^13 x 32 measured 2.2x faster than 2^17 x 32 on 10k support messages).
_SIG_BLOCK_SHINGLES = 1 << 13
_SIG_PERM_CHUNK = 32
_SCHEME = "affine32"  # datasketch's default permutation scheme since 2.0


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, as datasketch applies it before its permutations."""
    h = h ^ (h >> np.uint32(16))  # a new array: the rest works in place
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


@functools.lru_cache(maxsize=8)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 parameters (``MinHash(num_perm, seed).permutations``): odd
    multipliers and offsets drawn from ``RandomState(seed)`` exactly as datasketch 2.0 draws
    them, without importing datasketch (~0.7 s and scipy, once per process: inside the first
    chunk's dedup step). ``test_near_dedup`` checks them against datasketch's own."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def _block_minima(
    seg: np.ndarray, rel: np.ndarray, a: np.ndarray, b: np.ndarray, buf: np.ndarray, out: np.ndarray
) -> None:
    """``out[d, p] = min(a[p] * seg + b[p])`` over doc d's shingles (``seg[rel[d]:rel[d+1]]``),
    ``_SIG_PERM_CHUNK`` permutations at a time through ``buf``: a block that stays in the
    core's L2 cache and is never allocated again (a fresh 16 MB temporary per step cost
    more in page faults than the arithmetic)."""
    length = len(seg)
    for p0 in range(0, len(a), _SIG_PERM_CHUNK):
        p1 = min(p0 + _SIG_PERM_CHUNK, len(a))
        size = (p1 - p0) * length
        work = buf[:size] if size <= len(buf) else np.empty(size, np.uint32)
        work = work.reshape(p1 - p0, length)
        np.multiply(seg[None, :], a[p0:p1, None], out=work)
        work += b[p0:p1, None]
        out[:, p0:p1] = np.minimum.reduceat(work, rel, axis=1).T


def minhash_signatures(
    offsets: np.ndarray, hashes: np.ndarray, num_perm: int = 128, seed: int = 1
) -> np.ndarray:
    """MinHash signatures (uint32, one row per text) from `shingle_hashes` output.

    Row i equals ``datasketch.MinHash(num_perm, seed, hashfunc=lambda h: h)`` updated with
    ``hashes[offsets[i]:offsets[i+1]] >> 32``; a text without shingles gets the empty sketch
    (all 2^32-1). ``hashes`` may also be those top 32 bits already, as uint32.
    """
    n = len(offsets) - 1
    a, b = _permutations(num_perm, seed)
    sig = np.full((n, num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    counts = np.diff(offsets)
    docs = np.flatnonzero(counts > 0)
    if len(docs) == 0:
        return sig
    top = hashes if hashes.dtype == np.uint32 else (hashes >> _U64(32)).astype(np.uint32)
    hv = _fmix32(top)
    starts, ends = offsets[docs], offsets[docs + 1]
    every = len(docs) == n  # then rows are written in place, not through docs
    buf = np.empty(_SIG_PERM_CHUNK * _SIG_BLOCK_SHINGLES, np.uint32)
    for d0, d1 in _row_blocks(starts, ends, _SIG_BLOCK_SHINGLES):
        s0, s1 = int(starts[d0]), int(ends[d1 - 1])
        # shingles of the non-empty docs d0..d1 are contiguous: empty docs own no range
        out = sig[d0:d1] if every else np.empty((d1 - d0, num_perm), np.uint32)
        _block_minima(hv[s0:s1], starts[d0:d1] - s0, a, b, buf, out)
        if not every:
            sig[docs[d0:d1]] = out
    return sig


_EMPTY = np.uint32(0xFFFFFFFF)
_ROTATION = np.uint32(0x9E3779B1)  # offset per bin of distance of a borrowed value


def oph_signatures(
    offsets: np.ndarray, hashes: np.ndarray, num_perm: int = 128, seed: int = 1
) -> np.ndarray:
    """One-permutation MinHash densified by rotation (Shrivastava and Li, ICML 2014): every
    shingle hash goes to one of ``num_perm`` bins and each bin keeps its smallest value, one
    pass over the shingles instead of one per permutation; an empty bin takes the value of
    the next filled bin to its right (circularly) plus ``_ROTATION`` times the distance,
    which keeps the collision probability of every position equal to the Jaccard similarity.
    Rows of texts without shingles stay all 2^32-1."""
    n = len(offsets) - 1
    sig = np.full(n * num_perm, _EMPTY, dtype=np.uint32)
    counts = np.diff(offsets)
    if len(hashes):
        h = _fmix64(hashes ^ _U64((seed * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF))
        bins = (((h >> _U64(32)) * _U64(num_perm)) >> _U64(32)).astype(np.int64)
        rows = np.repeat(np.arange(n, dtype=np.int64), counts)
        np.minimum.at(sig, rows * num_perm + bins, (h & _MASK32).astype(np.uint32))
    sig = sig.reshape(n, num_perm)
    empty = sig == _EMPTY
    empty[counts == 0] = False  # nothing to borrow from
    if not empty.any():
        return sig
    cols = np.arange(num_perm, dtype=np.int32)
    for r0 in range(0, n, 8192):  # blocks: the (rows, 2 x bins) index stays small
        block = slice(r0, r0 + 8192)
        here = np.where(empty[block] | (sig[block] == _EMPTY), 2 * num_perm, cols)
        both = np.concatenate([here, here + num_perm], axis=1)
        nxt = np.minimum.accumulate(both[:, ::-1], axis=1)[:, ::-1][:, :num_perm]
        r, c = np.nonzero(empty[block])
        source = nxt[r, c]
        distance = (source - c).astype(np.uint32)
        part = sig[block]
        part[r, c] = part[r, source % num_perm] + distance * _ROTATION
    return sig
