"""The purge: every file that holds a forgotten subject's rows, rewritten without them.

Nothing here keeps a list of tables. The lake is walked and every Parquet file whose columns
can name a subject (``user_id``, ``conversation_id``, ``example_id``, a quarantined
``record``, an ``event_id`` of one of the subjects' events, or a side table's ``id`` that is
one of those events or conversations) is checked from those columns alone; only files with a
match are read whole, filtered and replaced, all in one lake commit. The weekly training
files hold chat text without ids: their lines are matched against the removed training
examples. The landing folder's files are rewritten without the subjects'
lines, so no re-run can bring them back (and a rewritten file is a new version: staging
replaces that file's batches, as for any edit).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import posixpath
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from llm_data_platform.privacy.subjects import TABLE as REQUESTS_TABLE
from llm_data_platform.privacy.subjects import Subjects, row_mask

ID_COLUMNS = ("user_id", "conversation_id", "example_id", "record")
SKIP_TABLES = {REQUESTS_TABLE, "deletion_audit"}  # the requests and the audit are the record
BATCH_FILES = ("train.jsonl", "validation.jsonl")


@dataclass(frozen=True)
class Removal:
    """Rows (or lines) removed from one file."""

    location: str  # lake | landing
    table: str  # the table (lake) or stream (landing)
    partition: str  # dt=… / week=… / the landing key
    path: str
    rows: int


def _lake_files(lake, suffix: str) -> Iterator[str]:
    fs, root = lake.filesystem()
    selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    for info in fs.get_file_info(selector):
        name = posixpath.basename(info.path)
        if info.type == pafs.FileType.File and name.endswith(suffix) and not name.startswith("."):
            yield info.path


def _table_and_partition(lake, path: str) -> tuple[str, str]:
    _, root = lake.filesystem()
    parts = posixpath.relpath(path, root).split("/")  # zone/table/dt=…/file
    table = parts[1] if len(parts) > 2 else parts[0]
    partition = next((p for p in parts if "=" in p), "")
    return table, partition


def conversations_of_users(lake, users: frozenset[str]) -> set[str]:
    """Every conversation id that a forgotten user's rows carry, anywhere in the lake."""
    found: set[str] = set()
    if not users:
        return found
    fs, _ = lake.filesystem()
    wanted = pa.array(sorted(users), pa.string())
    for path in _lake_files(lake, ".parquet"):
        if _table_and_partition(lake, path)[0] in SKIP_TABLES:
            continue
        names = set(pq.read_schema(path, filesystem=fs).names)
        if not {"user_id", "conversation_id"} <= names:
            continue
        table = pq.read_table(path, columns=["user_id", "conversation_id"], filesystem=fs)
        mine = table.filter(pc.fill_null(pc.is_in(table["user_id"], wanted), False))
        found.update(c for c in pc.unique(mine["conversation_id"]).to_pylist() if c)
    return found


def purge_lake_tables(lake, subjects: Subjects) -> tuple[list[Removal], dict[str, int]]:
    """Rewrite every lake Parquet file holding ``subjects``' rows without them. Returns the
    removals and, from removed training examples, their chat lines -> tokens (the weekly
    files are matched on these)."""
    fs, _ = lake.filesystem()
    removals: list[Removal] = []
    removed_lines: dict[str, int] = {}
    files = [
        p
        for p in _lake_files(lake, ".parquet")
        if _table_and_partition(lake, p)[0] not in SKIP_TABLES
    ]
    columns = {p: pq.read_schema(p, filesystem=fs).names for p in files}  # one read per file
    events = _subject_event_ids(lake, columns, subjects)
    commit = lake.commit()  # every rewritten file at once: a purge is whole or not at all
    for path in files:
        table_name, partition = _table_and_partition(lake, path)
        whole = _rows_to_remove(lake, path, columns[path], subjects, events)
        if whole is None:
            continue
        whole, mask = whole
        gone = whole.filter(mask)
        if "messages_json" in gone.column_names:
            tokens = gone["n_tokens"].to_pylist() if "n_tokens" in gone.column_names else None
            for i, line in enumerate(gone["messages_json"].to_pylist()):
                removed_lines[line] = int(tokens[i] or 0) if tokens else 0
        commit.add_table(path, whole.filter(pc.invert(mask)))
        removals.append(Removal("lake", table_name, partition, path, gone.num_rows))
    commit.apply()
    return removals, removed_lines


def _subject_event_ids(lake, files: dict[str, list[str]], subjects: Subjects) -> pa.Array:
    """The event ids of the subjects' rows, from every table that has both an id column and
    ``event_id`` (raw, clean): side tables that name rows by event only — the rows cleaning
    dropped, say — are matched on these."""
    fs, _ = lake.filesystem()
    found: set[str] = set()
    for path, names in files.items():
        columns = [c for c in ID_COLUMNS if c in names and c != "record"]
        if not columns or "event_id" not in names:
            continue
        table = pq.read_table(path, columns=[*columns, "event_id"], filesystem=fs)
        mask = row_mask(table, subjects)
        if mask is not None and pc.any(mask).as_py():
            found.update(e for e in table.filter(mask)["event_id"].to_pylist() if e)
    return pa.array(sorted(found), pa.string())


def _rows_to_remove(
    lake, path: str, names: list[str], subjects: Subjects, events: pa.Array
) -> tuple[pa.Table, pa.Array] | None:
    """(the whole file, the mask of the subjects' rows), or None when it holds none; decided
    from the id columns alone (``names``: the file's columns), so a file without the subjects
    is never read whole."""
    fs, _ = lake.filesystem()
    columns = [c for c in ID_COLUMNS if c in names]
    # ``event_id`` of a subject's event; ``id``: a side table's key, an event id or a
    # conversation id (the near-duplicate signatures of messages and of conversations)
    keyed = {
        "event_id": events,
        "id": pa.concat_arrays([events, pa.array(sorted(subjects.conversation_ids), pa.string())]),
    }
    by_key = {c: v for c, v in keyed.items() if c in names and len(v) > 0}
    if not columns and not by_key:
        return None

    def mask_of(table: pa.Table) -> pa.Array | None:
        masks = [m for m in [row_mask(table, subjects)] if m is not None]
        for column, values in by_key.items():
            masks.append(pc.fill_null(pc.is_in(table[column], value_set=values), False))
        if not masks:
            return None
        combined = masks[0]
        for mask in masks[1:]:
            combined = pc.or_(combined, mask)
        return combined

    ids = pq.read_table(path, columns=columns + list(by_key), filesystem=fs)
    mask = mask_of(ids)
    if mask is None or not pc.any(mask).as_py():
        return None
    whole = pq.read_table(path, filesystem=fs)
    return whole, mask_of(whole)


def purge_training_batches(
    lake,
    removed_lines: dict[str, int],
    request_ids: list[str],
    purged_at: str,
    removed_ids: frozenset[str] = frozenset(),
) -> list[Removal]:
    """Remove the forgotten examples' lines from every weekly batch that has them; the
    manifest (written last, as when the batch is built) records the removal."""
    if not removed_lines:
        return []
    removals: list[Removal] = []
    for manifest_path in _lake_files(lake, "manifest.json"):
        directory = posixpath.dirname(manifest_path)
        manifest = json.loads(lake.read_bytes(manifest_path))
        commit = lake.commit()  # the week's files and its manifest change together
        removed_here = 0
        for name in BATCH_FILES:
            data = (lake.read_bytes(posixpath.join(directory, name)) or b"").decode("utf-8")
            lines = [line for line in data.split("\n") if line]
            kept = [line for line in lines if line not in removed_lines]
            if len(kept) == len(lines):
                continue
            gone = [line for line in lines if line in removed_lines]
            body = ("\n".join(kept) + "\n" if kept else "").encode("utf-8")
            commit.add_bytes(posixpath.join(directory, name), body)
            entry = manifest["files"][name]
            entry.update(
                examples=len(kept),
                tokens=entry["tokens"] - sum(removed_lines[line] for line in gone),
                bytes=len(body),
                sha256=hashlib.sha256(body).hexdigest(),
            )
            removed_here += len(gone)
            table, partition = _table_and_partition(lake, directory + "/x")
            removals.append(
                Removal("lake", table, partition, posixpath.join(directory, name), len(gone))
            )
        if removed_here:
            gone_ids = set(removed_ids)
            for name, ids in manifest.get("example_ids", {}).items():
                manifest["example_ids"][name] = [i for i in ids if i not in gone_ids]
            manifest.setdefault("deletions", []).append(
                {"requests": request_ids, "examples_removed": removed_here, "at": purged_at}
            )
            commit.add_bytes(manifest_path, json.dumps(manifest, indent=2).encode("utf-8"))
        commit.apply()
    return removals


def _line_is_forgotten(line: bytes, subjects: Subjects) -> bool:
    text = line.decode("utf-8", errors="replace")
    if not any(s in text for s in subjects.strings()):
        return False  # cannot name a subject: kept without parsing
    try:
        event = json.loads(text)
    except ValueError:
        return True  # unparseable and holding an id: removed, to be safe
    if not isinstance(event, dict):
        return True
    return (
        event.get("user_id") in subjects.user_ids
        or event.get("conversation_id") in subjects.conversation_ids
    )


def purge_landing(root: str, stream: str, subjects: Subjects) -> list[Removal]:
    """Rewrite the stream's landing files without the subjects' lines (atomically: a hidden
    temp file beside it, renamed over it; the landing sensors skip hidden names)."""
    removals: list[Removal] = []
    folder = os.path.join(root, stream)
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or not name.endswith((".jsonl", ".jsonl.gz")):
                continue
            path = os.path.join(dirpath, name)
            removed = _rewrite_landing_file(path, subjects)
            if removed:
                key = os.path.relpath(path, folder).replace(os.sep, "/")
                removals.append(Removal("landing", stream, key, path, removed))
    return removals


def _rewrite_landing_file(path: str, subjects: Subjects) -> int:
    gz = path.endswith(".gz")
    try:
        with (gzip.open if gz else open)(path, "rb") as f:
            lines = f.read().splitlines(keepends=True)
    except (OSError, EOFError):  # a corrupt gzip: read up to the damage by the salvage path
        lines = _salvage_gzip_lines(path)
    kept = [line for line in lines if not _line_is_forgotten(line.rstrip(b"\r\n"), subjects)]
    if len(kept) == len(lines):
        return 0
    body = b"".join(kept)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=os.path.dirname(path))
    with os.fdopen(fd, "wb") as out:
        out.write(gzip.compress(body, mtime=0) if gz else body)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return len(lines) - len(kept)


def _salvage_gzip_lines(path: str) -> list[bytes]:
    """The lines before the damage of a corrupt or truncated gzip (the rest is unreadable to
    anyone, the purge included)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(data)
    except zlib.error:
        text = b""
    return text.splitlines(keepends=True)
