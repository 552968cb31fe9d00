"""What earlier messages kept: content keys and MinHash signatures, looked up in numpy.

The clean step of a day sees its chunks one after another and every earlier day only through
these indexes: an exact index of content keys (the first 64 bits of ``content_hash``) and a
signature index per scope (messages, conversations). Each ``add`` is a segment (an earlier
day, or an earlier chunk of this day) with its keys sorted once, so a lookup is a
``searchsorted`` per segment and band, never a Python loop per text.

A near-duplicate found in an index is verified by the signatures' estimate of the Jaccard
similarity (``signature_agreement`` >= the threshold), not by the exact Jaccard: the index
holds signatures, not texts (the texts of earlier days are not read again). With 128
permutations the estimate's standard deviation is <= 0.044, so a pair 0.1 below the threshold
passes with probability ~1% and a pair 0.1 above it fails with probability ~1%. Within a
chunk the check is exact (``near_dedup.cluster_texts``).

Memory: a message in the signature index costs ``num_perm`` bytes of signature (the low 8
bits of each value) plus ``bands`` x 8 bytes of sorted 32-bit keys and their order (128
permutations, 42 bands: 464 bytes) plus its id; a content key 8 bytes plus its id. Two
different values agree in their low 8 bits by chance once in 256, so the share ``a`` of equal
bytes overestimates the Jaccard similarity J by (1 - J) / 256 (<= 0.004); the index corrects
it, J = (a - 1/256) / (1 - 1/256), which is unbiased, with a standard deviation 256/255 of
the 32-bit estimate's (<= 0.0444 instead of 0.0442). The whole 32-bit values of what a day
keeps (what the lake's index table holds) are not kept here: the caller writes them out as
they are kept (``table_sink.TableSink``), so a day of 10^6 messages does not hold 0.5 GB of
them until its end.

The arrays a segment keeps live in Arrow's memory pool (jemalloc, ``definitions.py``), not in
the malloc heap where numpy puts them and the chunks' short-lived arrays come and go (300k
messages in chunks of 100k: 242 MB of that heap in use after two chunks, now a flat 75 MB).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.transforms.near_dedup import (
    NearDupParams,
    folded_band_keys,
    signature_agreement,
)

__all__ = ["KeyIndex", "SignatureIndex", "SignatureSegment", "content_keys"]

_NIBBLE = np.full(256, 0, np.uint64)
_NIBBLE[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10, dtype=np.uint64)
_NIBBLE[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16, dtype=np.uint64)
_NIBBLE[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16, dtype=np.uint64)


def _pooled(arr: np.ndarray) -> np.ndarray:
    """A read-only copy of ``arr`` in Arrow's memory pool (see the module doc)."""
    buf = pa.allocate_buffer(max(arr.nbytes, 1))  # a mutable buffer of the default pool
    out = np.frombuffer(buf, arr.dtype, arr.size).reshape(arr.shape)
    out[...] = arr
    out.flags.writeable = False
    return out


def content_keys(hashes: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The first 64 bits of each hex ``content_hash`` (32 hex chars) as uint64, vectorised;
    64 bits collide by chance once in ~10^19 pairs. Nulls give 0."""
    arr = pc.fill_null(hashes, "0" * 32)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = pc.utf8_slice_codeunits(arr, 0, 16).cast(pa.string())
    if len(arr) == 0:
        return np.zeros(0, np.uint64)
    lengths = pc.utf8_length(arr).to_numpy(zero_copy_only=False)
    if (lengths != 16).any():
        raise ValueError("content hashes must be at least 16 hex characters")
    offsets = np.frombuffer(arr.buffers()[1], np.int32, len(arr) + 1, arr.offset)
    data = np.frombuffer(arr.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    nibbles = _NIBBLE[data.reshape(len(arr), 16)]
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    return np.bitwise_or.reduce(nibbles << shifts, axis=1)


@dataclass
class _KeySegment:
    keys: np.ndarray  # uint64, sorted
    ids: pa.Array  # id of each key, in the same order
    history: bool  # from an earlier day


@dataclass
class KeyIndex:
    """Exact content keys of earlier kept messages, first id per key."""

    segments: list[_KeySegment] = field(default_factory=list)

    def add(self, keys: np.ndarray, ids: pa.Array, history: bool) -> None:
        if len(keys) == 0:
            return
        order = np.argsort(keys, kind="stable")
        sorted_keys = _pooled(keys[order])
        self.segments.append(_KeySegment(sorted_keys, ids.take(pa.array(order)), history))

    def __len__(self) -> int:
        return sum(len(s.keys) for s in self.segments)

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, pa.Array, np.ndarray]:
        """(found, id of the earlier message or null, whether it is from an earlier day); the
        first segment that holds a key answers (segments are added oldest first)."""
        found = np.zeros(len(keys), bool)
        history = np.zeros(len(keys), bool)
        ids = pa.nulls(len(keys), pa.string())
        for seg in self.segments:
            pos = np.minimum(np.searchsorted(seg.keys, keys), len(seg.keys) - 1)
            hit = (seg.keys[pos] == keys) & ~found
            if hit.any():
                ids = pc.replace_with_mask(ids, pa.array(hit), seg.ids.take(pa.array(pos[hit])))
                found |= hit
                history |= hit & seg.history
        return found, ids, history


@dataclass
class SignatureSegment:
    signatures: np.ndarray  # (m, num_perm) uint8: the low 8 bits of each value
    ids: pa.Array
    keys: np.ndarray  # uint32 (bands, m): each band's key folded to 32 bits, sorted
    order: np.ndarray  # int32 (bands, m): the row of each sorted key
    history: bool


_CHANCE = np.float32(1 / 256)  # two different values agree in their low 8 bits


def _estimate(agreement: np.ndarray) -> np.ndarray:
    """The Jaccard estimate from the share of equal low bytes, chance agreements taken out
    (see the module doc)."""
    return np.maximum((agreement - _CHANCE) / (1 - _CHANCE), 0).astype(np.float32)


@dataclass
class SignatureIndex:
    """MinHash signatures of earlier kept texts, banded for lookup (see the module doc)."""

    params: NearDupParams
    segments: list[SignatureSegment] = field(default_factory=list)

    def add(self, signatures: np.ndarray, ids: pa.Array, history: bool) -> None:
        """A segment of ``signatures`` (uint32), of which it keeps the low 8 bits."""
        if len(signatures) == 0:
            return
        bands, rows = self.params.banding
        keys = folded_band_keys(signatures, bands, rows)
        order = np.argsort(keys, axis=1).astype(np.int32)
        keys = _pooled(np.take_along_axis(keys, order, axis=1))
        low = _pooled(signatures.astype(np.uint8))  # see _estimate
        self.segments.append(SignatureSegment(low, ids, keys, _pooled(order), history))

    def to_history(self) -> None:
        """Every segment is from an earlier day."""
        for segment in self.segments:
            segment.history = True

    def __len__(self) -> int:
        return sum(len(s.signatures) for s in self.segments)

    def match(self, signatures: np.ndarray) -> tuple[np.ndarray, pa.Array, np.ndarray]:
        """For each signature: (estimate of its best earlier match, that match's id or null,
        whether it is from an earlier day). Only matches whose estimate reaches the threshold
        count; the best estimate wins, the oldest segment on a tie."""
        n = len(signatures)
        best = np.zeros(n, np.float32)
        ids = pa.nulls(n, pa.string())
        history = np.zeros(n, bool)
        if n == 0 or not self.segments:
            return best, ids, history
        bands, rows = self.params.banding
        query = folded_band_keys(signatures, bands, rows)  # (bands, n)
        low = signatures.astype(np.uint8)
        for seg in self.segments:
            cand_q, cand_r = [], []
            for band in range(bands):
                pos = np.searchsorted(seg.keys[band], query[band])
                pos = np.minimum(pos, seg.keys.shape[1] - 1)
                hit = np.flatnonzero(seg.keys[band][pos] == query[band])
                cand_q.append(hit)
                cand_r.append(seg.order[band][pos[hit]])
            q = np.concatenate(cand_q)
            r = np.concatenate(cand_r).astype(np.int64)
            if len(q) == 0:
                continue
            packed = np.unique(q * len(seg.signatures) + r)
            q, r = packed // len(seg.signatures), packed % len(seg.signatures)
            est = _estimate(signature_agreement(low[q], seg.signatures[r]))  # the candidates
            ok = est >= self.params.threshold
            q, r, est = q[ok], r[ok], est[ok]
            # the best candidate per query: sort by (query, -estimate), take the first
            order = np.lexsort((-est, q))
            q, r, est = q[order], r[order], est[order]
            first = np.concatenate([[True], q[1:] != q[:-1]]) if len(q) else np.zeros(0, bool)
            q, r, est = q[first], r[first], est[first]
            better = est > best[q]
            q, r, est = q[better], r[better], est[better]
            if len(q) == 0:
                continue
            best[q] = est
            mask = np.zeros(n, bool)
            mask[q] = True
            ids = pc.replace_with_mask(
                ids, pa.array(mask), seg.ids.take(pa.array(r[np.argsort(q)]))
            )
            history[q] = seg.history
        return best, ids, history
