"""Near-duplicate detection with MinHash LSH over word shingles, vectorised over the batch.

Exact duplicates are caught by content hashes elsewhere; this step catches the copies that
differ by a word or two (a regenerated session, a retried upload with an edit), which would
otherwise be over-weighted in fine-tuning data.

How it works, per batch:

1-2. Texts become 64-bit word-shingle hashes (``shingles.py``: Arrow normalisation, a
   vectorised polynomial hash, character shingles for texts shorter than a shingle).
3. The MinHash signature of every text is computed as one numpy computation, blocked to bound
   memory, with exactly the arithmetic of datasketch's default ``"affine32"`` scheme: a text's
   signature is bit-for-bit what ``datasketch.MinHash(num_perm, seed)`` gives when updated with
   the same 32-bit shingle hashes (``hashfunc=lambda h: h``). On 20k chat sessions this step is
   about 10x faster than sketching one text at a time with ``MinHash.bulk``, and text to
   signatures about 3-5x faster than Python shingles + ``MinHash.bulk``
   (``benchmarks/bench_near_dedup.py``).
4. Signatures are banded into LSH buckets held as numpy arrays (``_BandIndex``: what
   ``datasketch.MinHashLSH`` would hold, without a Python object per text and band). Texts are
   visited in input order; each one's candidates are the texts before it in its buckets,
   screened by the signatures' own Jaccard estimate, and every remaining candidate is
   verified with the *exact* Jaccard similarity of the two shingle-hash sets, so LSH false
   positives never drop a text. Verified pairs are merged into clusters with union-find
   (connected components, as in NeMo Curator and DataTrove); the first text of each cluster in
   input order is kept, the others are its duplicates. Keep-first in input order means the
   caller decides which copy survives (sort by time: the original wins). Clusters are
   transitive: if B is near A and C near B, C goes with A's cluster even when it is further
   from A itself, so chains of small edits cannot slip through one at a time.

Before that, every signature's band keys are computed in numpy and only texts that share a
band bucket with some other text go through the index: the rest cannot have a candidate. On
typical data that leaves the per-text Python work of the LSH for the few texts with a likely
near-duplicate.

The LSH banding is chosen for recall rather than datasketch's default balance: the largest rows
per band for which a pair *at* the threshold still becomes a candidate with probability
>= 0.99 (threshold 0.8, 128 permutations: 21 bands of 6 rows, 0.998; datasketch's default
weights would give 9 x 13, which finds a pair at 0.8 only 40% of the time). The extra
candidates this admits cost one exact Jaccard each.

Texts that are empty after normalisation have nothing to compare: they are always kept (the
quality filters deal with them).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.transforms.shingles import (
    SHINGLE_BLOCK,
    _fmix64,
    _row_blocks,
    normalize_for_matching,
    shingle_hashes,
)

__all__ = [
    "NearDupResult",
    "conversation_texts",
    "exact_jaccard",
    "lsh_params",
    "minhash_signatures",
    "near_duplicate_mask",
    "normalize_for_matching",
    "shingle_hashes",
]

_U64 = np.uint64
_MASK32 = np.uint64(0xFFFFFFFF)
# Work sizes: shingles x permutations per MinHash block.
_SIG_BLOCK_SHINGLES = 1 << 17
_SIG_PERM_CHUNK = 32

# Recall of the LSH banding at the threshold itself.
_LSH_RECALL = 0.99
_SCHEME = "affine32"  # datasketch's default permutation scheme since 2.0


@dataclass
class NearDupResult:
    """Outcome of `near_duplicate_mask`, aligned with the input texts."""

    keep: list[bool]
    duplicate_of: list[str | None]  # id of the kept (first) text of this one's cluster
    pairs_checked: int  # candidate pairs whose exact Jaccard was computed
    candidates: int  # (text, earlier text) pairs proposed by the LSH index
    # exact Jaccard with `duplicate_of`, None when kept; may be below the threshold for a text
    # that joined the cluster through another member
    similarity: list[float | None]

    @property
    def n_duplicates(self) -> int:
        return len(self.keep) - sum(self.keep)


# --------------------------------------------------------------------------------------------
# MinHash and LSH


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, as datasketch applies it before its permutations."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


@functools.lru_cache(maxsize=8)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from datasketch import MinHash  # heavy (pulls scipy); imported where used

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme=_SCHEME).permutations
    return a.astype(np.uint32), b.astype(np.uint32)


def minhash_signatures(
    offsets: np.ndarray, hashes: np.ndarray, num_perm: int = 128, seed: int = 1
) -> np.ndarray:
    """MinHash signatures (uint32, one row per text) from `shingle_hashes` output.

    Row i equals ``datasketch.MinHash(num_perm, seed, hashfunc=lambda h: h)`` updated with
    ``hashes[offsets[i]:offsets[i+1]] >> 32``; a text without shingles gets the empty sketch
    (all 2^32-1).
    """
    n = len(offsets) - 1
    a, b = _permutations(num_perm, seed)
    sig = np.full((n, num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    counts = np.diff(offsets)
    docs = np.flatnonzero(counts > 0)
    if len(docs) == 0:
        return sig
    hv = _fmix32((hashes >> _U64(32)).astype(np.uint32))
    starts, ends = offsets[docs], offsets[docs + 1]
    for d0, d1 in _row_blocks(starts, ends, _SIG_BLOCK_SHINGLES):
        s0, s1 = int(starts[d0]), int(ends[d1 - 1])
        seg = hv[s0:s1]
        # shingles of the non-empty docs d0..d1 are contiguous: empty docs own no range
        rel = starts[d0:d1] - s0
        for p0 in range(0, num_perm, _SIG_PERM_CHUNK):
            p1 = min(p0 + _SIG_PERM_CHUNK, num_perm)
            permuted = seg[None, :] * a[p0:p1, None]
            permuted += b[p0:p1, None]
            sig[docs[d0:d1], p0:p1] = np.minimum.reduceat(permuted, rel, axis=1).T
    return sig


@functools.lru_cache(maxsize=32)
def lsh_params(threshold: float, num_perm: int, recall: float = _LSH_RECALL) -> tuple[int, int]:
    """(bands, rows): the most selective banding for which a pair with Jaccard == threshold
    becomes a candidate with probability >= recall (bands >= 2, as datasketch requires)."""
    best = (num_perm, 1)
    for r in range(1, num_perm // 2 + 1):
        b = num_perm // r
        if 1.0 - (1.0 - threshold**r) ** b >= recall:
            best = (b, r)
    return best


def _in_shared_buckets(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """True for every signature that shares at least one LSH band bucket with another.

    The LSH index can only return a candidate for such a text, so the others need not visit
    it at all. Band values are folded to 64-bit keys; a key collision can only add a text.
    """
    n = len(sig)
    shared = np.zeros(n, dtype=bool)
    if n < 2:
        return shared
    for band in range(bands):
        key = np.zeros(n, dtype=_U64)
        for col in range(band * rows, (band + 1) * rows):
            key = _fmix64(key ^ sig[:, col].astype(_U64))
        order = np.argsort(key, kind="stable")
        ordered = key[order]
        same = ordered[1:] == ordered[:-1]
        shared[order[1:][same]] = True
        shared[order[:-1][same]] = True
    return shared


class _BandIndex:
    """Every LSH band's buckets as member lists sorted by text: the members of a text's
    buckets that come before it are exactly what an LSH index holding the earlier texts
    returns for it (bucket = exact equality of the band's values), in arrays, not dicts."""

    def __init__(self, sig: np.ndarray, members: np.ndarray, bands: int, rows: int) -> None:
        self.parts = []
        for band in range(bands):
            block = np.ascontiguousarray(sig[members, band * rows : (band + 1) * rows])
            _, bucket = np.unique(block, axis=0, return_inverse=True)
            bucket = bucket.ravel().astype(np.int32)
            order = np.argsort(bucket, kind="stable")  # grouped by bucket, texts in order
            starts = np.concatenate([[0], np.cumsum(np.bincount(bucket))[:-1]]).astype(np.int64)
            rank = np.empty(len(members), np.int32)
            rank[order] = np.arange(len(members)) - starts[bucket[order]]
            self.parts.append((members[order], starts, bucket, rank))

    def earlier(self, position: int) -> np.ndarray:
        """Sorted text indices sharing a bucket with the ``position``-th member, before it."""
        found = [
            grouped[starts[bucket[position]] : starts[bucket[position]] + rank[position]]
            for grouped, starts, bucket, rank in self.parts
            if rank[position]
        ]
        return np.unique(np.concatenate(found)) if found else np.empty(0, np.int64)


def exact_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sorted arrays of unique values."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


# A candidate whose MinHash estimate of Jaccard is this far below the threshold is not
# checked exactly: with 128 permutations the estimate's standard deviation is <= 0.045, so a
# pair at the threshold falls below the margin less than once in 10^5 (at 0.8: 6e-9).
ESTIMATE_MARGIN = 0.2


def _as_arrow_texts(
    texts: Sequence[str | None] | pa.Array | pa.ChunkedArray,
) -> pa.Array | pa.ChunkedArray:
    if isinstance(texts, pa.Array | pa.ChunkedArray):
        return texts  # sliced and taken as it is: a day's texts are not combined into one
    return pa.array(list(texts), pa.string())


def _signatures(
    texts: pa.Array | pa.ChunkedArray, shingle: int, num_perm: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(MinHash signatures, shingle count) of every text, a block of texts at a time: the
    shingle hashes of the whole input (8 bytes per word) are never held at once."""
    n = len(texts)
    sig = np.empty((n, num_perm), dtype=np.uint32)
    counts = np.zeros(n, dtype=np.int64)
    for start in range(0, n, SHINGLE_BLOCK):
        offsets, hashes = shingle_hashes(texts.slice(start, SHINGLE_BLOCK), shingle)
        stop = start + len(offsets) - 1
        sig[start:stop] = minhash_signatures(offsets, hashes, num_perm, seed)
        counts[start:stop] = np.diff(offsets)
    return sig, counts


def _member_shingles(
    texts: pa.Array | pa.ChunkedArray, members: np.ndarray, shingle: int
) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes of the ``members`` (sorted indices) only, for the exact check: the texts
    that can have a near-duplicate, taken a block at a time (no copy of the input)."""
    offsets, hashes = [np.zeros(1, np.int64)], []
    for start in range(0, len(texts), SHINGLE_BLOCK):
        lo, hi = np.searchsorted(members, [start, start + SHINGLE_BLOCK])
        if lo == hi:
            continue
        local = pa.array(members[lo:hi] - start, pa.int64())
        o, h = shingle_hashes(texts.slice(start, SHINGLE_BLOCK).take(local), shingle)
        offsets.append(o[1:] + offsets[-1][-1])
        hashes.append(h)
    if not hashes:
        return np.zeros(1, np.int64), np.zeros(0, _U64)
    return np.concatenate(offsets), np.concatenate(hashes)


def _estimate_screen(
    sig: np.ndarray, members: np.ndarray, earlier: np.ndarray, position: int, floor: float
) -> list[int]:
    """The ``earlier`` texts whose signature agrees with member ``position``'s on at least
    ``floor`` of the permutations; a slice at a time (a crowded bucket can return 10^5)."""
    mine = sig[position]
    found: list[int] = []
    for start in range(0, len(earlier), 8192):
        part = earlier[start : start + 8192]
        estimate = (sig[np.searchsorted(members, part)] == mine).mean(axis=1)
        found += part[estimate >= floor].tolist()
    return found


def near_duplicate_mask(
    texts: Sequence[str | None] | pa.Array | pa.ChunkedArray,
    ids: Sequence[str],
    threshold: float = 0.8,
    num_perm: int = 128,
    shingle: int = 5,
    seed: int = 1,
) -> NearDupResult:
    """Find near-duplicate clusters; keep the first text of each cluster in input order.

    Two texts are linked when the exact Jaccard similarity of their shingle sets is >=
    `threshold`; a cluster is a connected group of links. `duplicate_of[i]` is the id of the
    first text of i's cluster. Candidate pairs come from MinHash LSH (see the module
    docstring). Deterministic: the same input and parameters always give the same result.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError("threshold must be in (0, 1]")
    if num_perm < 2:
        raise ValueError("num_perm must be >= 2")
    ids = list(ids)
    texts = _as_arrow_texts(texts)
    if len(ids) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(ids)} ids")
    n = len(texts)
    sig, n_shingles = _signatures(texts, shingle, num_perm, seed)
    bands, rows = lsh_params(threshold, num_perm)
    in_play = _in_shared_buckets(sig, bands, rows) & (n_shingles > 0)
    members = np.flatnonzero(in_play)
    index = _BandIndex(sig, members, bands, rows)
    sig = sig[members]  # only texts in play are ever compared: the rest is freed
    m_offsets, m_hashes = _member_shingles(texts, members, shingle)
    sets: dict[int, np.ndarray] = {}

    def shingle_set(i: int) -> np.ndarray:
        if i not in sets:
            p = int(np.searchsorted(members, i))
            sets[i] = np.unique(m_hashes[m_offsets[p] : m_offsets[p + 1]])
        return sets[i]

    # union-find whose root is always the smallest (earliest) index of the cluster
    parent = list(range(n))

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    candidates = pairs_checked = 0
    for position, i in enumerate(members.tolist()):
        earlier = index.earlier(position)  # what an LSH index of the texts before i returns
        candidates += len(earlier)
        found: list[int] = []
        if len(earlier):  # the signatures' own estimate first, vectorised: most end here
            found = _estimate_screen(sig, members, earlier, position, threshold - ESTIMATE_MARGIN)
        for j in found:
            ri, rj = find(i), find(j)
            if ri == rj:  # already in one cluster: no need to compare
                continue
            pairs_checked += 1
            if exact_jaccard(shingle_set(i), shingle_set(j)) >= threshold:
                parent[max(ri, rj)] = min(ri, rj)

    keep = [True] * n
    duplicate_of: list[str | None] = [None] * n
    similarity: list[float | None] = [None] * n
    for i in range(n):
        root = find(i)
        if root != i:
            keep[i] = False
            duplicate_of[i] = ids[root]
            similarity[i] = exact_jaccard(shingle_set(i), shingle_set(root))
    return NearDupResult(keep, duplicate_of, pairs_checked, candidates, similarity)


# --------------------------------------------------------------------------------------------
# conversations -> texts


def conversation_texts(clean: pa.Table) -> tuple[list[str], list[str], list]:
    """One text per conversation from a `schemas.CONVERSATIONS_CLEAN` table.

    Message rows only (feedback and null contents are skipped), ordered by turn_index (then
    event_time, event_id), one ``"role: content"`` line each. Returns (conversation_ids, texts,
    first_event_time), sorted by the time of the conversation's first message, then by id.
    """
    content = clean["content"]
    mask = pc.and_(
        pc.and_(pc.equal(clean["event_type"], "message"), pc.is_valid(content)),
        pc.is_valid(clean["conversation_id"]),
    )
    t = clean.filter(pc.fill_null(mask, False))
    if t.num_rows == 0:
        return [], [], []
    line = pc.binary_join_element_wise(
        pc.fill_null(t["role"], "unknown"), pc.cast(t["content"], pa.string()), ": "
    )
    t = pa.table(
        {
            "conversation_id": t["conversation_id"],
            "turn_index": t["turn_index"],
            "event_time": t["event_time"],
            "event_id": t["event_id"],
            "line": line,
        }
    ).sort_by(
        [
            ("conversation_id", "ascending"),
            ("turn_index", "ascending"),
            ("event_time", "ascending"),
            ("event_id", "ascending"),
        ]
    )
    grouped = t.group_by("conversation_id", use_threads=False).aggregate(
        [("line", "list"), ("event_time", "min")]
    )
    grouped = grouped.append_column("text", pc.binary_join(grouped["line_list"], "\n"))
    grouped = grouped.sort_by([("event_time_min", "ascending"), ("conversation_id", "ascending")])
    return (
        grouped["conversation_id"].to_pylist(),
        grouped["text"].to_pylist(),
        grouped["event_time_min"].to_pylist(),
    )
