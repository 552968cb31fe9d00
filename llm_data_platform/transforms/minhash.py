"""MinHash signatures of shingle-hash sets, vectorised over a batch (no Dagster, no loop per
text): datasketch's ``"affine32"`` scheme bit for bit, and one-permutation hashing.

Both take ``shingle_hashes`` output (offsets, 64-bit hashes) and return one uint32 row per
text. ``affine32`` costs a pass over the shingles per permutation; ``oph`` one pass in all
(``benchmarks/bench_curation.py`` prints them beside rensa and datasketch).

The LSH over those signatures lives here too: band keys, the candidate pairs of the band
buckets, the signatures' estimate of the Jaccard similarity (``near_dedup`` and
``dedup_index`` use them; ``near_dedup`` re-exports the public ones).
"""

from __future__ import annotations

import functools
import os

import numpy as np

from llm_data_platform.transforms.shingles import _fmix64, _row_blocks
from llm_data_platform.transforms.threads import pool_map

__all__ = ["band_keys", "minhash_signatures", "oph_signatures", "signature_agreement"]

_U64 = np.uint64
_MASK32 = np.uint64(0xFFFFFFFF)
# Work sizes: shingles x permutations per MinHash block, 1 MB of uint32 (a core's L2 cache
# here: 2^13 x 32 measured 2.2x faster than 2^17 x 32 on 10k support messages).
_SIG_BLOCK_SHINGLES = 1 << 13
_SIG_PERM_CHUNK = 32
_SCHEME = "affine32"  # datasketch's default permutation scheme since 2.0
# Threads of the shared pool the band buckets and estimates fan out to.
_THREADS = max(1, min(4, os.cpu_count() or 1))


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


# --------------------------------------------------------------------------------------------
# LSH: band keys, bucket pairs, the signatures' estimate

# Signature rows per block of band keys: (rows, bands) uint64 work arrays of ~1 MB.
_KEY_BLOCK = 4096


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per LSH band (``rows`` signature values folded with an avalanching
    mix): two texts share a bucket of a band when their keys are equal. A key collision of
    different values can only add a candidate, which verification then rejects. Band ``i``
    takes columns ``i, i + bands, i + 2 bands, ...``, not neighbours: a densified
    one-permutation signature copies a filled bin into the empty bins before it, and a band
    of neighbours would then hold one value three times (measured: 9x the candidates).
    Every band at once on blocks of rows (``rows`` mixes of a block, not ``bands x rows``
    mixes of whole columns)."""
    keys = np.empty((len(sig), bands), dtype=_U64)
    for r0 in range(0, len(sig), _KEY_BLOCK):
        block = sig[r0 : r0 + _KEY_BLOCK]
        key = np.broadcast_to(np.arange(bands, dtype=_U64), (len(block), bands))
        for row in range(rows):
            key = _fmix64(key ^ block[:, row * bands : (row + 1) * bands])
        keys[r0 : r0 + len(block)] = key
    return keys


def folded_band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Band keys folded to 32 bits, one contiguous row per band (the layout
    ``_bucket_edges`` sorts); a collision only adds a candidate that screening rejects."""
    keys = band_keys(sig, bands, rows)
    return np.ascontiguousarray(((keys >> _U64(32)) ^ keys).astype(np.uint32).T)


def _band_edges(folded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(earlier, later) candidates of one band's folded keys (see ``_bucket_edges``)."""
    order = np.argsort(folded)
    ordered = folded[order]
    same = ordered[1:] == ordered[:-1]
    later = order[1:][same]
    prev = order[:-1][same]
    run_start = np.flatnonzero(np.concatenate([[True], ~same]))
    head = order[run_start][np.cumsum(np.concatenate([[True], ~same])) - 1][1:][same]
    far = head != prev
    return np.concatenate([prev, head[far]]), np.concatenate([later, later[far]])


def _bucket_edges(folded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (earlier, later) from band buckets (``folded``: (bands, n) 32-bit keys,
    a collision only adds a pair to screen), at most two per text and band: each text to its
    neighbour in the bucket and to the bucket's first-sorted text. A bucket of 10^5 copies of
    one text then costs 2 x 10^5 pairs, not 10^10; a true pair lost to a stranger between
    them in one bucket is found in another band (or through the chain). Bands are sorted on
    the shared pool's threads (numpy's sort releases the GIL); the pairs do not depend on it."""
    n = folded.shape[1]
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    per_band = list(pool_map(_band_edges, folded, _THREADS))
    a = np.concatenate([p for p, _ in per_band]).astype(np.int64)
    b = np.concatenate([q for _, q in per_band]).astype(np.int64)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    packed = _unique(lo * (n + 1) + hi)
    return packed // (n + 1), packed % (n + 1)


def signature_agreement(
    sig: np.ndarray, left: np.ndarray, right: np.ndarray | None = None, block: int = 16_384
) -> np.ndarray:
    """Share of equal values of signature pairs: MinHash's estimate of the Jaccard similarity
    (standard deviation sqrt(J(1-J)/num_perm), <= 0.044 at 128). ``sig[left[i]]`` against
    ``sig[right[i]]``, or, without ``right``, row pairs of two arrays ``sig`` and ``left``; a
    block of pairs at a time, so a million candidates never copy their signatures at once."""
    n = len(left) if right is not None else len(sig)
    out = np.empty(n, np.float32)

    def one(start: int) -> None:  # blocks on the pool's threads, each its own slice of out
        end = start + block
        if right is None:
            a, b = sig[start:end], left[start:end]
        else:
            a, b = sig[left[start:end]], sig[right[start:end]]
        out[start:end] = (a == b).mean(axis=1)

    for _ in pool_map(one, range(0, n, block), _THREADS):
        pass
    return out


def _unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (a sort beats ``np.unique``'s hashing on a text's few hundred)."""
    ordered = np.sort(values)
    if len(ordered) < 2:
        return ordered
    return ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])]
