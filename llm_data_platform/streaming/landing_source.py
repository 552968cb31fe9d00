"""Landing-folder files → raw micro-batches, each file version parsed once (no Dagster import).

A landing file is identified by its path and its content: ``stage_file`` hashes the bytes,
and when that hash is the one already staged for the path nothing is read again. A new
version (a rewrite, an append, a half-written line completed) is parsed once, streaming
(``line_reader``), into micro-batches named ``landing-<path hash>-<content hash>-<part>``;
the previous version's batches are then removed, so a version never lives beside its
successor (no stale quarantine row for a line that was later completed).

What each path holds is kept in a small per-path ledger next to the batches
(``raw/<stream>_batches/_landing/<path hash>.json``); it is the staging asset's own index,
read and written only here.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from llm_data_platform.streaming.file_batches import write_file_batches
from llm_data_platform.streaming.line_reader import ReadLimits, read_lines
from llm_data_platform.streaming.microbatch import ZONE, batch_table_names
from llm_data_platform.transforms.records import STREAMS, reason_family

if TYPE_CHECKING:
    from llm_data_platform.resources.lake import LakeResource

LANDING_SUFFIXES = (".jsonl", ".jsonl.gz")
_HASH_BLOCK = 1 << 20


@dataclass(frozen=True, order=True)
class LandingFile:
    """A landed file; ordered by (landed, key) — the order sensors consume them in."""

    landed: float  # max(mtime, ctime): a copy keeping an old mtime still gets a fresh ctime
    key: str  # path relative to the stream folder, "/"-separated
    size: int
    path: str
    mtime: float
    version: str  # mtime_ns:size:ctime_ns:inode — any rewrite changes it, same size or not

    @property
    def identity(self) -> str:
        return f"{self.key}@{self.version}"

    @property
    def arrived_at(self) -> datetime:
        return datetime.fromtimestamp(self.mtime, tz=UTC)


def stat_file(root: str, key: str) -> LandingFile | None:
    """The file ``key`` under ``root`` as it is now; None when it is gone."""
    full = os.path.join(root, *key.split("/"))
    try:
        st = os.stat(full)
    except FileNotFoundError:
        return None
    version = f"{st.st_mtime_ns}:{st.st_size}:{st.st_ctime_ns}:{st.st_ino}"
    return LandingFile(max(st.st_mtime, st.st_ctime), key, st.st_size, full, st.st_mtime, version)


def list_files(root: str) -> list[LandingFile]:
    """Every landing file under ``root`` (hidden names — writers' temp files — skipped)."""
    files: list[LandingFile] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or not name.endswith(LANDING_SUFFIXES):
                continue
            key = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
            file = stat_file(root, key)
            if file is not None:
                files.append(file)
    return sorted(files)


@dataclass
class StagedFile:
    """What staging one landing file did; ``days`` are the event days to rebuild."""

    key: str
    status: str  # staged | unchanged | vanished
    content_hash: str = ""
    batches: list[str] = field(default_factory=list)
    days: set[str] = field(default_factory=set)  # new and superseded version's days
    received: int = 0
    rows: int = 0
    quarantined: int = 0
    late_events: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    quarantine_sample: list[dict] = field(default_factory=list)  # a few rows, for previews
    forgotten: int = 0  # lines of forgotten users, dropped


def _path_hash(stream: str, key: str) -> str:
    return hashlib.sha256(f"{stream}/{key}".encode()).hexdigest()[:20]


def _ledger_path(lake: LakeResource, stream: str, key: str) -> str:
    events_table, _ = batch_table_names(stream)
    return lake.path(ZONE, events_table, "_landing", f"{_path_hash(stream, key)}.json")


def read_ledger(lake: LakeResource, stream: str, key: str) -> dict | None:
    data = lake.read_bytes(_ledger_path(lake, stream, key))
    return json.loads(data) if data else None


def content_hash(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def stage_file(
    lake: LakeResource,
    stream: str,
    root: str,
    key: str,
    *,
    limits: ReadLimits | None = None,
    bounds: tuple[date, date] | None = None,
) -> StagedFile:
    """Stage the current version of landing file ``key`` (idempotent, by content hash)."""
    started = time.perf_counter()
    file = stat_file(root, key)
    if file is None:
        return StagedFile(key, "vanished")
    previous = read_ledger(lake, stream, key)
    if previous and previous.get("version") == file.version:  # not touched since: no read
        return StagedFile(key, "unchanged", previous["content_hash"], previous["batches"])
    digest = content_hash(file.path)
    if previous and previous.get("content_hash") == digest:  # touched, same bytes
        _write_ledger(lake, stream, {**previous, "version": file.version})
        return StagedFile(key, "unchanged", digest, list(previous.get("batches", [])))
    spec = STREAMS[stream]
    limits = limits or ReadLimits(max_line_bytes=spec.max_line_bytes)
    source = f"{stream}/{key}"
    base = f"landing-{_path_hash(stream, key)[:12]}-{digest[:20]}"
    with open(file.path, "rb") as raw:
        staged = write_file_batches(
            lake, stream, base, source, read_lines(raw, key, limits), file.arrived_at, bounds=bounds
        )
    written = staged.result
    result = StagedFile(
        key,
        "staged",
        digest,
        batches=staged.parts,
        days=set(written.days),
        received=written.received,
        rows=written.rows,
        quarantined=written.quarantined,
        late_events=written.late_events,
        bytes_read=file.size,
        bytes_written=written.bytes,
        reasons=Counter({reason_family(r): n for r, n in written.reasons.items()}),
        quarantine_sample=staged.quarantine_sample,
        forgotten=written.forgotten,
    )
    new_days = set(result.days)
    if previous:
        _remove_batches(lake, stream, previous, keep=set(result.batches))
        result.days.update(previous.get("days", []))
    ledger = {
        "key": key,
        "content_hash": digest,
        "version": file.version,
        "batches": result.batches,
        "days": sorted(new_days),
        "staged_at": datetime.now(tz=UTC).isoformat(),
    }
    _write_ledger(lake, stream, ledger)
    result.seconds = time.perf_counter() - started
    return result


def _write_ledger(lake: LakeResource, stream: str, ledger: dict) -> None:
    lake.write_bytes(_ledger_path(lake, stream, ledger["key"]), json.dumps(ledger).encode())


def _remove_batches(lake: LakeResource, stream: str, ledger: dict, keep: set[str]) -> None:
    """Delete a superseded version's batch files (the ones it named, in the days it touched)."""
    fs, _ = lake.filesystem()
    for table in batch_table_names(stream):
        for day in ledger.get("days", []):
            for name in ledger.get("batches", []):
                if name in keep:
                    continue
                path = lake.path(ZONE, table, f"dt={day}", f"{name}.parquet")
                if lake.exists(path):
                    fs.delete_file(path)
