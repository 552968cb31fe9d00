"""Duplicates across the whole history of the dedup index, in process (numpy and Arrow).

The clean step deduplicates day D against the ``LDP_DEDUP_HISTORY_DAYS`` days before it; what
it kept is in the day's index tables (``conversations_content_hashes``,
``conversations_near_dup_signatures``). This step reads every day of them at once and finds
what the window cannot: copies further apart than the window, and copies a day missed because
it was cleaned before the day it copies existed (an out-of-order backfill).

Per scope (messages, conversations) the nodes are ``(day, id)`` pairs; two are linked when

- exact (messages only): they share a ``content_hash`` (each to the earliest of its hash);
- near: they share an LSH bucket in some band (the day step's banding of the same
  parameters) and their signatures agree in at least ``ceil(threshold x num_perm)`` values.
  A bucket proposes at most two pairs per node and band (the bucket's earliest node and the
  node before it, in ``(day, id)`` order), as the day step's ``_bucket_edges`` does: a big
  bucket of chance collisions costs 2n pairs, not n^2; a true pair separated in one bucket
  meets in another band. Bucket keys are the band's values themselves, not a hash of them.

Only pairs of different days are linked: within a day the clean step decided already, on the
exact Jaccard of the texts. Linked nodes form groups (connected components); the earliest
node of a group is its representative, every other node a row of the result with its kind
(exact when its content hash is the representative's) and its signature agreement with the
representative. ``history_duplicates_spark`` computes the same table on Spark: both engines
share the parameters, ``group_members`` and ``finish`` here, so they agree row for row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.transforms.cross_dedup import DedupConfig

if TYPE_CHECKING:
    import pyarrow.dataset as pads

__all__ = [
    "HISTORY_DUPLICATES",
    "HistoryResult",
    "ScopeParams",
    "count_groups",
    "finish",
    "group_members",
    "history_duplicates",
    "scope_params",
    "sort_result",
]

HISTORY_DUPLICATES = pa.schema(
    [
        ("scope", pa.string()),  # message | conversation
        ("kind", pa.string()),  # exact | near
        ("representative_day", pa.string()),
        ("representative_id", pa.string()),
        ("member_day", pa.string()),
        ("member_id", pa.string()),
        ("group_size", pa.int64()),  # representative included
        ("similarity", pa.float32()),  # agreement of the two signatures; 1.0 for exact
    ]
)
SORT_KEYS = ["scope", "representative_day", "representative_id", "member_day", "member_id"]
EDGES = pa.schema(
    [("a_dt", pa.string()), ("a_id", pa.string()), ("b_dt", pa.string()), ("b_id", pa.string())]
)
SIGNATURE_ROWS = pa.schema(
    [("dt", pa.string()), ("id", pa.string()), ("signature", pa.list_(pa.uint32()))]
)
MEMBERS = pa.schema([f for f in HISTORY_DUPLICATES if f.name not in {"kind", "similarity"}])


@dataclass(frozen=True)
class ScopeParams:
    """What links two signatures of one scope: the day step's own parameters."""

    scope: str
    fingerprint: str  # the ``params`` a signature must carry to be comparable
    threshold: float
    num_perm: int
    bands: int
    rows: int

    @property
    def required(self) -> int:
        """Equal values that make an agreement >= threshold (an integer test, one answer)."""
        return math.ceil(self.threshold * self.num_perm - 1e-9)


def scope_params(config: DedupConfig) -> tuple[ScopeParams, ScopeParams]:
    """(messages, conversations) as the clean step configured by ``config`` signs them."""
    out = []
    for scope, p in (("message", config.near), ("conversation", config.conversation)):
        bands, rows = p.banding
        out.append(
            ScopeParams(scope, config.fingerprint(scope), p.threshold, p.num_perm, bands, rows)
        )
    return out[0], out[1]


@dataclass
class HistoryResult:
    table: pa.Table  # HISTORY_DUPLICATES, sorted by SORT_KEYS
    counts: dict[str, int]


def _labels(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected components: each node's smallest node index (min-label propagation with
    pointer jumping, vectorised; a few rounds for the short chains duplicates form)."""
    labels = np.arange(n, dtype=np.int64)
    while True:
        low = np.minimum(labels[a], labels[b])
        before = labels.copy()
        np.minimum.at(labels, a, low)
        np.minimum.at(labels, b, low)
        labels = labels[labels]
        if np.array_equal(labels, before):
            return labels


def group_members(scope: str, edges: pa.Table) -> pa.Table:
    """Linked ``(day, id)`` pairs (``EDGES``) -> one ``MEMBERS`` row per node of a group but
    its representative, the group's earliest node by (day, id)."""
    if edges.num_rows == 0:
        return MEMBERS.empty_table()
    days = pa.concat_arrays([_arr(edges["a_dt"]), _arr(edges["b_dt"])])
    ids = pa.concat_arrays([_arr(edges["a_id"]), _arr(edges["b_id"])])
    nodes = pa.table({"dt": days, "id": ids}).group_by(["dt", "id"]).aggregate([])
    nodes = nodes.sort_by([("dt", "ascending"), ("id", "ascending")])  # index = (day, id) rank
    keys = pc.binary_join_element_wise(nodes["dt"], nodes["id"], "\x1f")
    ends = pc.binary_join_element_wise(days, ids, "\x1f")
    pos = pc.index_in(ends, value_set=keys).to_numpy(zero_copy_only=False).astype(np.int64)
    half = edges.num_rows
    labels = _labels(nodes.num_rows, pos[:half], pos[half:])
    sizes = np.bincount(labels, minlength=nodes.num_rows)
    member = np.flatnonzero(labels != np.arange(nodes.num_rows))
    rep = pa.array(labels[member])
    at = pa.array(member)
    return pa.table(
        {
            "scope": pa.array([scope] * len(member), pa.string()),
            "representative_day": nodes["dt"].take(rep),
            "representative_id": nodes["id"].take(rep),
            "member_day": nodes["dt"].take(at),
            "member_id": nodes["id"].take(at),
            "group_size": pa.array(sizes[labels[member]], pa.int64()),
        },
        schema=MEMBERS,
    )


def finish(members: pa.Table, same_hash: pa.Array, agreement: pa.Array, num_perm: int) -> pa.Table:
    """``MEMBERS`` rows with their kind (exact when ``same_hash``) and similarity (equal
    signature values / ``num_perm``; 1.0 for exact; null without two signatures)."""
    exact = pc.fill_null(same_hash, False)
    share = pc.divide(pc.cast(agreement, pa.float64()), float(num_perm))
    similarity = pc.cast(pc.if_else(exact, 1.0, share), pa.float32())
    kind = pc.if_else(exact, "exact", "near")
    table = members.append_column("kind", kind).append_column("similarity", similarity)
    return table.select(HISTORY_DUPLICATES.names).cast(HISTORY_DUPLICATES)


def sort_result(tables: list[pa.Table]) -> pa.Table:
    table = pa.concat_tables([HISTORY_DUPLICATES.empty_table(), *tables])
    return table.sort_by([(c, "ascending") for c in SORT_KEYS])


def _arr(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return arr.cast(pa.string())


def _exact_edges(hashes: pa.Table) -> pa.Table:
    """Each message to the earliest message of its content hash, across days."""
    t = hashes.select(["dt", "event_id", "content_hash"]).rename_columns(["dt", "id", "h"])
    t = t.filter(pc.is_valid(t["h"])).sort_by(
        [("h", "ascending"), ("dt", "ascending"), ("id", "ascending")]
    )
    h = _arr(t["h"])
    if len(h) < 2:
        return EDGES.empty_table()
    same = pc.equal(h.slice(1), h.slice(0, len(h) - 1)).to_numpy(zero_copy_only=False)
    start = np.concatenate([[True], ~same])
    head = np.flatnonzero(start)[np.cumsum(start) - 1]  # per row: its hash's first row
    later = np.flatnonzero(~start)
    a, b = pa.array(head[later]), pa.array(later)
    cols = {"a_dt": t["dt"].take(a), "a_id": t["id"].take(a)}
    cols |= {"b_dt": t["dt"].take(b), "b_id": t["id"].take(b)}
    edges = pa.table({k: _arr(v) for k, v in cols.items()}, schema=EDGES)
    return edges.filter(pc.not_equal(edges["a_dt"], edges["b_dt"]))


def _bucket_pairs(sig: np.ndarray, params: ScopeParams) -> tuple[np.ndarray, np.ndarray]:
    """Candidate (earlier, later) rows: per band, each row to its bucket's first row and to
    the row before it (rows are in (day, id) order, so row index is the order)."""
    n = len(sig)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rank = np.arange(n, dtype=np.uint64)
    firsts, seconds = [], []
    for band in range(params.bands):
        values = sig[:, band : params.bands * params.rows : params.bands].astype(np.uint64)
        packed = [
            values[:, j] << np.uint64(32) | values[:, j + 1] for j in range(0, params.rows - 1, 2)
        ]
        if params.rows % 2:
            packed.append(values[:, -1])
        order = np.lexsort([rank, *packed[::-1]])  # by the band's values, then (day, id)
        same = np.ones(n - 1, bool)
        for key in packed:
            ordered = key[order]
            same &= ordered[1:] == ordered[:-1]
        start = np.concatenate([[True], ~same])
        head = order[np.flatnonzero(start)[np.cumsum(start) - 1]]
        later = np.flatnonzero(~start)
        firsts += [order[later - 1], head[later]]
        seconds += [order[later], order[later]]
    a, b = np.concatenate(firsts).astype(np.int64), np.concatenate(seconds).astype(np.int64)
    packed_pairs = np.unique(a * n + b)
    return packed_pairs // n, packed_pairs % n


def _agreement(sig: np.ndarray, a: np.ndarray, b: np.ndarray, block: int = 65_536) -> np.ndarray:
    """Equal values of each signature pair, a block of pairs at a time."""
    out = np.empty(len(a), np.int64)
    for start in range(0, len(a), block):
        end = start + block
        out[start:end] = (sig[a[start:end]] == sig[b[start:end]]).sum(axis=1)
    return out


def comparable(signatures: pa.Table | pads.Dataset, params: ScopeParams) -> pa.Table:
    """The signatures of ``params.scope`` made with its parameters, in (day, id) order; from
    a dataset, only that scope's rows are read (one scope in memory at a time)."""
    if not isinstance(signatures, pa.Table):
        import pyarrow.dataset as pads

        wanted = (pads.field("scope") == params.scope) & (
            pads.field("params") == params.fingerprint
        )
        # no read-ahead: buffered batches were ~300 MB of the peak (100k/day, 7 days)
        signatures = signatures.to_table(
            columns=["dt", "scope", "id", "params", "signature"],
            filter=wanted,
            batch_readahead=0,
            fragment_readahead=1,
        )
    ok = pc.and_(
        pc.and_(
            pc.equal(signatures["scope"], params.scope),
            pc.equal(signatures["params"], params.fingerprint),
        ),
        pc.equal(pc.list_value_length(signatures["signature"]), params.num_perm),
    )
    rows = np.flatnonzero(pc.fill_null(ok, False).to_numpy(zero_copy_only=False))
    keys = signatures.select(["dt", "id"]).take(pa.array(rows))
    order = pc.sort_indices(keys, [("dt", "ascending"), ("id", "ascending")]).to_numpy()
    # one take: the signatures (most of the bytes) are copied once, filtered and in order
    return signatures.select(["dt", "id", "signature"]).take(pa.array(rows[order]))


def _matrix(column: pa.ChunkedArray | pa.Array, width: int) -> np.ndarray:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return (
        arr.flatten()
        .to_numpy(zero_copy_only=False)
        .astype(np.uint32, copy=False)
        .reshape(-1, width)
    )


def _near(sigs: pa.Table, params: ScopeParams, counts: dict) -> tuple[pa.Table, np.ndarray]:
    """Verified near edges of one scope's signatures (cross-day), and the signature matrix."""
    sig = _matrix(sigs["signature"], params.num_perm)
    a, b = _bucket_pairs(sig, params)
    dt = pc.index_in(sigs["dt"], value_set=pc.unique(sigs["dt"])).to_numpy(zero_copy_only=False)
    cross = dt[a] != dt[b]
    a, b = a[cross], b[cross]
    counts[f"{params.scope}_candidates"] = len(a)
    ok = _agreement(sig, a, b) >= params.required
    a, b = pa.array(a[ok]), pa.array(b[ok])
    cols = {"a_dt": sigs["dt"].take(a), "a_id": sigs["id"].take(a)}
    cols |= {"b_dt": sigs["dt"].take(b), "b_id": sigs["id"].take(b)}
    return pa.table({k: _arr(v) for k, v in cols.items()}, schema=EDGES), sig


def _keys(days: pa.ChunkedArray | pa.Array, ids: pa.ChunkedArray | pa.Array) -> pa.Array:
    return _arr(pc.binary_join_element_wise(_arr(days), _arr(ids), "\x1f"))


def _scope(params: ScopeParams, sigs: pa.Table, hashes: pa.Table | None, counts: dict) -> pa.Table:
    """The result rows of one scope."""
    edges, sig = _near(sigs, params, counts)
    if hashes is not None:
        edges = pa.concat_tables([_exact_edges(hashes), edges])
    counts[f"{params.scope}_edges"] = edges.num_rows
    members = group_members(params.scope, edges)
    rep = _keys(members["representative_day"], members["representative_id"])
    mem = _keys(members["member_day"], members["member_id"])
    sig_keys = _keys(sigs["dt"], sigs["id"])
    ri = pc.index_in(rep, value_set=sig_keys)
    mi = pc.index_in(mem, value_set=sig_keys)
    both = pc.and_(pc.is_valid(ri), pc.is_valid(mi)).to_numpy(zero_copy_only=False)
    ra = pc.fill_null(ri, 0).to_numpy(zero_copy_only=False)
    ma = pc.fill_null(mi, 0).to_numpy(zero_copy_only=False)
    agree = pa.array(np.where(both, _agreement(sig, ra, ma), 0), mask=~both)
    if hashes is None:
        same = pa.nulls(members.num_rows, pa.bool_())
    else:
        lookup = hashes.select(["dt", "event_id", "content_hash"])
        h_keys = _keys(lookup["dt"], lookup["event_id"])
        h = _arr(lookup["content_hash"])
        same = pc.equal(
            h.take(pc.index_in(rep, value_set=h_keys)), h.take(pc.index_in(mem, value_set=h_keys))
        )
    return finish(members, same, agree, params.num_perm)


def history_duplicates(
    hashes: pa.Table | None,
    signatures: pa.Table | pads.Dataset | None,
    scopes: tuple[ScopeParams, ScopeParams],
) -> HistoryResult:
    """Every day's index (``dt`` column added; the signatures as a table or a lazy dataset)
    -> the history-wide duplicate table and its counts; the module doc says what links two
    nodes."""
    counts: dict[str, int] = {}
    if hashes is not None:
        counts["message_hashes"] = hashes.num_rows
    tables = []
    empty_sigs = SIGNATURE_ROWS.empty_table()
    for params in scopes:
        sigs = empty_sigs if signatures is None else comparable(signatures, params)
        counts[f"{params.scope}_signatures"] = sigs.num_rows
        use_hashes = hashes if params.scope == "message" else None
        tables.append(_scope(params, sigs, use_hashes, counts))
    if signatures is not None:
        total = signatures.num_rows if isinstance(signatures, pa.Table) else signatures.count_rows()
        counts["skipped_signatures"] = total - sum(counts[f"{p.scope}_signatures"] for p in scopes)
    table = sort_result(tables)
    counts.update(groups=count_groups(table), members=table.num_rows)
    return HistoryResult(table, counts)


def count_groups(table: pa.Table) -> int:
    """Distinct (scope, representative) of a result table."""
    if table.num_rows == 0:
        return 0
    rep = _keys(table["representative_day"], table["representative_id"])
    return len(pc.unique(_keys(table["scope"], rep)))
