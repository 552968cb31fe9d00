"""Who is forgotten: the user and conversation ids of every deletion request so far.

The set is stored in the lake by the ``deletion_requests`` asset; staging reads it so that a
later arrival (a replayed file, a Kafka redelivery, a new event) of a forgotten user is
dropped before it is written, and the purge matches rows against it.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

ZONE, TABLE, KEY = "raw", "deletion_requests", "all"

REQUESTS = pa.schema(
    [
        ("request_id", pa.string()),
        ("user_id", pa.string()),  # null when a conversation is named
        ("conversation_id", pa.string()),  # null when a user is named
        ("requested_at", pa.timestamp("us", tz="UTC")),
        ("source_file", pa.string()),
    ]
)


@dataclass(frozen=True)
class Subjects:
    """Ids whose rows are forgotten. ``conversation_ids`` include every conversation of a
    forgotten user found in the lake when the request was applied."""

    user_ids: frozenset[str] = frozenset()
    conversation_ids: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.user_ids or self.conversation_ids)

    def union(self, other: Subjects) -> Subjects:
        return Subjects(
            self.user_ids | other.user_ids, self.conversation_ids | other.conversation_ids
        )

    def strings(self) -> list[str]:
        """Every id, for matching text that cannot be parsed (quarantined lines)."""
        return sorted(self.user_ids | self.conversation_ids)


def subjects_of(requests: pa.Table) -> Subjects:
    users = {u for u in requests["user_id"].to_pylist() if u}
    conversations = {c for c in requests["conversation_id"].to_pylist() if c}
    return Subjects(frozenset(users), frozenset(conversations))


def load_subjects(lake) -> Subjects:
    """The forgotten ids recorded in the lake (none before the first request).

    Staging asks before every micro-batch it writes; the table is read again only when its
    file changed (size or modification time), so a run of many batches costs one read and a
    stat per batch, and a request recorded meanwhile is seen by the next batch."""
    path = posixpath.join(lake.partition_path(ZONE, TABLE, KEY), "data.parquet")
    fs, _ = lake.filesystem()
    with lake._faults("read", path):
        info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return Subjects()
    stamp = (lake.uri(path), info.size, info.mtime_ns)
    cached = _LOADED.get(stamp[0])
    if cached is not None and cached[0] == stamp:
        return cached[1]
    table = lake.read_partition(ZONE, TABLE, KEY)
    subjects = subjects_of(table) if table is not None and table.num_rows else Subjects()
    _LOADED[stamp[0]] = (stamp, subjects)
    return subjects


_LOADED: dict[str, tuple[tuple, Subjects]] = {}  # lake path -> (file stamp, its subjects)


def row_mask(table: pa.Table, subjects: Subjects) -> pa.Array | None:
    """True for the rows of ``table`` that belong to ``subjects``, by whichever of
    ``user_id``, ``conversation_id``, ``example_id`` (a conversation id) and ``record`` (an
    unparsed line: any id as a substring) it has; None when it has none of them."""
    masks = []
    for column, ids in (
        ("user_id", subjects.user_ids),
        ("conversation_id", subjects.conversation_ids),
        ("example_id", subjects.conversation_ids),
    ):
        if column in table.column_names and ids:
            masks.append(pc.is_in(table[column], pa.array(sorted(ids), pa.string())))
    if "record" in table.column_names and subjects:
        record = table["record"]
        for text in subjects.strings():
            masks.append(pc.match_substring(record, text))
    if not masks:
        return None
    combined = masks[0]
    for mask in masks[1:]:
        combined = pc.or_(combined, mask)
    return pc.fill_null(combined, False)


def drop_rows(table: pa.Table, subjects: Subjects) -> tuple[pa.Table, int]:
    """``table`` without the rows of ``subjects``; (rows kept, rows dropped)."""
    mask = row_mask(table, subjects) if subjects else None
    if mask is None:
        return table, 0
    dropped = int(pc.sum(mask).as_py() or 0)
    return (table.filter(pc.invert(mask)), dropped) if dropped else (table, 0)
