"""Near-duplicate detection with MinHash LSH over word shingles, vectorised over the batch.

Exact duplicates are caught by content hashes elsewhere; this step catches the copies that
differ by a word or two (a regenerated session, a retried upload with an edit), which would
otherwise be over-weighted in fine-tuning data.

How it works, per batch:

1-2. Texts become 64-bit word-shingle hashes (``shingles.py``: Arrow normalisation, a
   vectorised polynomial hash, character shingles for texts shorter than a shingle).
3. The MinHash signature of every text and its LSH band keys, blocks of 10k texts on the
   shared pool's two threads, shingles to keys in one task (numpy and Arrow release the GIL
   on those blocks: two threads ran as fast as two processes), by one of two schemes
   (``NearDupParams.scheme``):
   ``"affine32"``, exactly datasketch's default arithmetic (a text's signature is bit for bit
   ``datasketch.MinHash(num_perm, seed)`` updated with the same 32-bit shingle hashes), one
   pass per permutation (the default, and what the clean step uses); or ``"oph"``,
   one-permutation hashing densified by rotation, one pass over the shingles
   (``oph_signatures``: ~1.5x faster to sign, but on 20-49-word texts its densified bins
   found 2,552 of 2,559 near copies where the permutations found all).
   ``benchmarks/bench_curation.py`` prints both beside rensa and datasketch.
4. LSH candidates come from the band buckets in numpy (``_bucket_edges``): each text is paired
   with its neighbour in each of its buckets and with the bucket's first text, at most two
   pairs per text and band, so a bucket of 10^5 copies costs 2 x 10^5 pairs. Pairs are
   screened by the signatures' own Jaccard estimate, and every remaining pair is verified with
   the *exact* Jaccard similarity of the two shingle-hash sets (32-bit), so LSH false
   positives never drop a text. Verified pairs are merged into clusters with union-find
   (connected components, as in NeMo Curator and DataTrove); the first text of each cluster
   in input order is kept, the others are its duplicates. Keep-first in input order means
   the caller decides which copy survives (sort by time: the original wins). Clusters are
   transitive: if B is near A and C near B, C goes with A's cluster even when it is further
   from A itself, so chains of small edits cannot slip through one at a time.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.transforms.minhash import (
    _THREADS,
    _bucket_edges,
    _unique,
    band_keys,
    folded_band_keys,
    minhash_signatures,
    oph_signatures,
    signature_agreement,
)
from llm_data_platform.transforms.shingles import (
    SHINGLE_BLOCK,
    normalize_for_matching,
    shingle_hashes,
)
from llm_data_platform.transforms.threads import pool_map

__all__ = [
    "Clusters",
    "NearDupParams",
    "NearDupResult",
    "band_keys",
    "cluster_texts",
    "conversation_texts",
    "exact_jaccard",
    "folded_band_keys",
    "lsh_params",
    "minhash_signatures",
    "near_duplicate_mask",
    "normalize_for_matching",
    "oph_signatures",
    "shingle_hashes",
    "signature_agreement",
]

_U64 = np.uint64

# Recall of the LSH banding at the threshold itself.
_LSH_RECALL = 0.99


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


# Shingle hashes (4 bytes each) a batch keeps for the exact check instead of hashing its
# candidates' texts again; a bigger batch (a day of long conversations) re-hashes them.
_KEEP_SHINGLES = 50_000_000
_SIG_BLOCK = SHINGLE_BLOCK // 2


@dataclass
class _Signed:
    """What a block of texts gives the batch (``_sign_block``, on a pool thread)."""

    signatures: np.ndarray  # uint32 (n, num_perm)
    n_shingles: np.ndarray  # int64 per text
    shingles: np.ndarray  # uint32: the top 32 bits of every text's shingle hashes
    keys: np.ndarray  # uint32 (bands, n): ``folded_band_keys``


def _sign_block(texts: pa.Array | pa.ChunkedArray, params: NearDupParams) -> _Signed:
    """Everything per text of a block at once, on the worker's thread: shingles, signature,
    band keys (none of it waits for the main thread, which only copies the results)."""
    offsets, hashes = shingle_hashes(texts, params.shingle)
    top = (hashes >> _U64(32)).astype(np.uint32)
    if params.scheme == "oph":
        sig = oph_signatures(offsets, hashes, params.num_perm, params.seed)
    else:
        sig = minhash_signatures(offsets, top, params.num_perm, params.seed)
    return _Signed(sig, np.diff(offsets), top, folded_band_keys(sig, *params.banding))


def _signatures(
    texts: pa.Array | pa.ChunkedArray, params: NearDupParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, list[np.ndarray]] | None]:
    """(MinHash signatures, shingle count, folded band keys, kept shingles) of every text,
    blocks of texts on ``_THREADS`` threads (Arrow and numpy release the GIL): the shingle
    hashes of the whole input are kept (their top 32 bits, as (offsets, one array per block
    of ``_SIG_BLOCK`` texts): never copied into one) only up to ``_KEEP_SHINGLES``."""
    n = len(texts)
    sig = np.empty((n, params.num_perm), dtype=np.uint32)
    counts = np.zeros(n, dtype=np.int64)
    keys = np.empty((params.banding[0], n), dtype=np.uint32)
    kept: list[np.ndarray] | None = []
    total = 0
    starts = range(0, n, _SIG_BLOCK)
    # the shared pool: threads that live, so their malloc arenas are reused
    blocks = pool_map(lambda st: _sign_block(texts.slice(st, _SIG_BLOCK), params), starts, _THREADS)
    for start, block in zip(starts, blocks, strict=True):
        stop = start + len(block.n_shingles)
        sig[start:stop] = block.signatures
        counts[start:stop] = block.n_shingles
        keys[:, start:stop] = block.keys
        total += len(block.shingles)
        if kept is not None and total <= _KEEP_SHINGLES:
            kept.append(block.shingles)
        else:
            kept = None
    if kept is None:
        return sig, counts, keys, None
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return sig, counts, keys, (offsets, kept)


def _member_shingles(
    texts: pa.Array | pa.ChunkedArray, members: np.ndarray, shingle: int
) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes (top 32 bits) of the ``members`` (sorted indices) only, for the exact
    check: the texts that can have a near-duplicate, a block at a time (no copy of the
    input). 32 bits: two different shingles of a pair collide with probability ~1e-5."""
    offsets, hashes = [np.zeros(1, np.int64)], []
    for start in range(0, len(texts), SHINGLE_BLOCK):
        lo, hi = np.searchsorted(members, [start, start + SHINGLE_BLOCK])
        if lo == hi:
            continue
        local = pa.array(members[lo:hi] - start, pa.int64())
        o, h = shingle_hashes(texts.slice(start, SHINGLE_BLOCK).take(local), shingle)
        offsets.append(o[1:] + offsets[-1][-1])
        hashes.append((h >> _U64(32)).astype(np.uint32))
    if not hashes:
        return np.zeros(1, np.int64), np.zeros(0, np.uint32)
    return np.concatenate(offsets), np.concatenate(hashes)


@dataclass(frozen=True)
class NearDupParams:
    """What makes two texts near-duplicates, and how hard LSH looks for them."""

    threshold: float = 0.8  # exact Jaccard of the shingle sets that links two texts
    num_perm: int = 128  # MinHash permutations
    shingle: int = 5  # words per shingle (character shingles for shorter texts)
    seed: int = 1
    bands: int = 0  # LSH bands; 0: chosen from threshold and num_perm (``lsh_params``)
    scheme: str = "affine32"  # "affine32" (datasketch's, num_perm passes) or "oph" (one pass)

    def __post_init__(self) -> None:
        if self.scheme not in {"affine32", "oph"}:
            raise ValueError("scheme must be 'affine32' or 'oph'")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        if self.num_perm < 2:
            raise ValueError("num_perm must be >= 2")
        if self.bands < 0 or self.bands > self.num_perm:
            raise ValueError("bands must be in [0, num_perm]")

    @property
    def banding(self) -> tuple[int, int]:
        """(bands, rows per band)."""
        if self.bands:
            return self.bands, self.num_perm // self.bands
        return lsh_params(self.threshold, self.num_perm)


@dataclass
class Clusters:
    """Near-duplicate clusters of a batch, keep-first in input order (``cluster_texts``)."""

    root: np.ndarray  # int64 per text: the first text of its cluster (itself when kept)
    similarity: np.ndarray  # float32: exact Jaccard with ``root`` (nan when kept)
    signatures: np.ndarray  # uint32 (n, num_perm), for an index of representatives
    n_shingles: np.ndarray  # int64 shingles per text (0: nothing to compare)
    candidates: int  # pairs proposed by the LSH buckets
    pairs_checked: int  # pairs whose exact Jaccard was computed


class _ExactSets:
    """The members' sorted distinct shingle hashes, made on first use, and the exact Jaccard
    of the pairs asked for, remembered: a copy linked straight to its cluster's first text
    (most of them) gets its similarity column from the check that linked it. Text ``q``'s
    hashes are ``blocks[q // per_block]`` from ``offsets[q]`` (less the block's first)."""

    def __init__(
        self, offsets: np.ndarray, blocks: list[np.ndarray], per_block: int, slot: np.ndarray
    ) -> None:
        self.offsets, self.blocks, self.per_block, self.slot = offsets, blocks, per_block, slot
        self.sets: dict[int, np.ndarray] = {}
        self.known: dict[tuple[int, int], float] = {}

    def shingles(self, p: int) -> np.ndarray:  # p: a member position
        found = self.sets.get(p)
        if found is None:
            q = int(self.slot[p])
            b = q // self.per_block
            base = int(self.offsets[b * self.per_block])
            here = self.blocks[b][self.offsets[q] - base : self.offsets[q + 1] - base]
            found = self.sets[p] = _unique(here)
        return found

    def jaccard(self, i: int, j: int) -> float:
        key = (i, j) if i < j else (j, i)
        found = self.known.get(key)
        if found is None:
            found = self.known[key] = exact_jaccard(self.shingles(i), self.shingles(j))
        return found


def _union_verified(
    a: np.ndarray, b: np.ndarray, n: int, verify: Callable[[int, int], bool]
) -> tuple[np.ndarray, int]:
    """Components of the pairs that ``verify`` accepts, rooted at their smallest index; a pair
    already in one component is not verified again (a cluster of k copies costs ~k checks)."""
    parent = np.arange(n)

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    checked = 0
    for i, j in zip(a.tolist(), b.tolist(), strict=True):
        ri, rj = find(i), find(j)
        if ri == rj:
            continue
        checked += 1
        if verify(i, j):
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([find(i) for i in range(n)], dtype=np.int64), checked


def cluster_texts(
    texts: Sequence[str | None] | pa.Array | pa.ChunkedArray,
    params: NearDupParams = NearDupParams(),
    eligible: np.ndarray | None = None,
) -> Clusters:
    """Near-duplicate clusters of ``texts`` (see the module doc): LSH candidates from band
    buckets, screened by the signatures' estimate, verified by exact Jaccard, merged into
    components whose first text is kept. Texts outside ``eligible`` (and empty ones) are
    always kept and never linked."""
    texts = _as_arrow_texts(texts)
    n = len(texts)
    sig, n_shingles, keys, kept = _signatures(texts, params)
    in_play = n_shingles > 0 if eligible is None else (n_shingles > 0) & eligible
    members = np.flatnonzero(in_play)
    a, b = _bucket_edges(keys if len(members) == n else keys[:, members])
    candidates = len(a)
    estimate = signature_agreement(sig, members[a], members[b])
    screened = estimate >= params.threshold - ESTIMATE_MARGIN
    a, b = a[screened], b[screened]
    involved = _unique(np.concatenate([a, b]))
    if kept is not None:  # the batch's own shingles, indexed by text
        exact = _ExactSets(kept[0], kept[1], _SIG_BLOCK, members)
    else:
        m_offsets, m_hashes = _member_shingles(texts, members[involved], params.shingle)
        slot = np.full(len(members), -1, np.int64)
        slot[involved] = np.arange(len(involved))
        exact = _ExactSets(m_offsets, [m_hashes], len(m_offsets), slot)
    member_root, checked = _union_verified(
        a, b, len(members), lambda i, j: exact.jaccard(i, j) >= params.threshold
    )
    root = np.arange(n, dtype=np.int64)
    root[members] = members[member_root]
    similarity = np.full(n, np.nan, np.float32)
    for p in np.flatnonzero(member_root != np.arange(len(members))).tolist():
        similarity[members[p]] = exact.jaccard(p, int(member_root[p]))
    return Clusters(root, similarity, sig, n_shingles, candidates, checked)


def near_duplicate_mask(
    texts: Sequence[str | None] | pa.Array | pa.ChunkedArray,
    ids: Sequence[str],
    threshold: float = 0.8,
    num_perm: int = 128,
    shingle: int = 5,
    seed: int = 1,
    scheme: str = "affine32",
) -> NearDupResult:
    """Find near-duplicate clusters; keep the first text of each cluster in input order.

    Two texts are linked when the exact Jaccard similarity of their shingle sets is >=
    `threshold`; a cluster is a connected group of links. `duplicate_of[i]` is the id of the
    first text of i's cluster. Candidate pairs come from MinHash LSH (see the module
    docstring). Deterministic: the same input and parameters always give the same result.
    """
    params = NearDupParams(threshold, num_perm, shingle, seed, scheme=scheme)
    ids = list(ids)
    texts = _as_arrow_texts(texts)
    if len(ids) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(ids)} ids")
    found = cluster_texts(texts, params)
    n = len(ids)
    dropped = found.root != np.arange(n)
    keep = (~dropped).tolist()
    roots = found.root.tolist()
    duplicate_of = [ids[r] if d else None for r, d in zip(roots, dropped.tolist(), strict=True)]
    similarity = [None if k else x for x, k in zip(found.similarity.tolist(), keep, strict=True)]
    return NearDupResult(keep, duplicate_of, found.pairs_checked, found.candidates, similarity)


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
