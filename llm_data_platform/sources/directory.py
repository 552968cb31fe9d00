"""Ingest a knowledge base kept as a directory of HTML, Markdown and plain-text files.

Plain functions, no Dagster import. :func:`sync_directory` compares the directory with what the
previous sync saw and writes ONE documents-stream landing file (JSONL, the format in
``schemas.py``) with an ``upsert`` per new or changed file and a ``delete`` per file gone since
then; the landing sensor and ``raw_documents`` take it from there.

Contract:

* **What is a document.** Files ending in ``.html``/``.htm`` (format ``html``),
  ``.md``/``.markdown`` (``markdown``) and ``.txt``/``.rst`` (``text``), case-insensitive, found
  below ``root``. Hidden files and directories (name starts with ``.``) are not walked; other
  files are counted as ``ignored``.
* **Nothing from outside ``root``** (:mod:`containment`). A symlinked file is read only when
  its real path lies under the root's real path; a symlinked directory is never followed (no
  cycles), and one leading outside is reported. Files are opened component by component from
  the root with ``O_NOFOLLOW``, so a symlink swapped in after the walk is not followed either,
  and a path with ``..`` or an absolute path is refused. Either way the file is listed in
  ``SyncReport.skipped`` with the reason and handled like the bad files below.
* **Identity.** ``doc_id`` is the path relative to ``root`` with ``/`` separators, or
  ``<prefix>/<relative path>`` when a prefix is given. A rename is a delete of the old id and
  an upsert of the new one.
* **Change detection.** The state file maps every doc id to the sha256 of its bytes, its mtime
  (ns) and size. A file whose mtime and size are both unchanged is not read again (as rsync
  does; ``rehash=True`` reads every file); a file that is read and hashes the same is
  ``unchanged`` (a ``touch`` produces no event). Unchanged files produce no event.
* **Events.** ``event_id`` = sha256(doc_id, content sha256, op): a re-sent event is the same
  event. ``updated_at`` of an upsert is the file's mtime in UTC, ``source_uri`` its ``file://``
  URI, ``title`` the HTML ``<title>`` (else first ``<h1>``), the first Markdown heading (YAML
  front matter ``title:`` first), the reStructuredText document title, else the file name. A
  delete's ``updated_at`` is the sync time. Downstream, the latest event of a document by
  ``updated_at`` wins, so an event is never dated at or before the previous event of the same
  document: when a file comes back with an older mtime (a rename back, ``cp -p``, a restore
  from backup) its upsert is dated at the sync time instead. ``not_before`` raises every date
  to a floor (the first daily partition: events older than it would belong to no partition).
* **Bad files** never crash the sync and are never silently dropped: outside the root,
  unreadable, undecodable (binary, not UTF-8 and no usable HTML charset declaration), too large
  (``max_bytes``, default 5 MB) or too large for one landing line (``records.MAX_LINE_BYTES``)
  files are listed in ``SyncReport.skipped`` with the reason, produce no event and keep their
  previous state (a file that cannot be read now is not a deletion). Files under a directory
  that cannot be listed, or under a symlink leading outside, are not deleted either. A missing
  ``root`` is an error, not "everything was deleted".
* **Durability, exactly-once in effect.** The landing file is written under a dot-prefixed
  temporary name (the landing sensor ignores dot files), fsynced and renamed to
  ``dirsync-<sync time>-<content hash>-day-<latest event day>.jsonl`` (the day lets the
  landing sensor stage the file and ingest that day in one run, from the listing alone);
  only then is the state file written (temp, fsync, rename). A crash between the two re-sends
  the same events on the next sync (same event ids, same versions) instead of losing them;
  downstream deduplicates identical versions. Two syncs of the same state file are serialised
  by a lock file beside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from llm_data_platform.sources.containment import read_contained
from llm_data_platform.sources.directory_state import (
    STATE_VERSION,
    _atomic_write_json,
    _fsync_dir,
    _load_state,
    _locked,
    default_state_path,
)
from llm_data_platform.sources.directory_walk import FORMATS_BY_EXTENSION, _Entry, _walk
from llm_data_platform.sources.document_files import _decode, _Skip, _title
from llm_data_platform.transforms.records import MAX_LINE_BYTES

__all__ = [
    "DEFAULT_MAX_BYTES",
    "FORMATS_BY_EXTENSION",
    "STATE_VERSION",
    "SyncReport",
    "default_state_path",
    "sync_directory",
]

DEFAULT_MAX_BYTES = 5 * 1024 * 1024
STREAM = "documents"

_ONE_US = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class SyncReport:
    """What one sync did. Paths in ``skipped`` are relative to ``root`` ("/"-separated)."""

    root: str
    upserts: list[str] = field(default_factory=list)  # doc ids, sorted
    deletes: list[str] = field(default_factory=list)  # doc ids, sorted
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    landing_file: str | None = None  # None when nothing changed
    days: list[str] = field(default_factory=list)  # event days (updated_at dates) it holds
    ignored: int = 0  # files of other types (not a knowledge-base format)
    state_path: str = ""

    @property
    def events(self) -> int:
        return len(self.upserts) + len(self.deletes)

    def summary(self) -> str:
        return (
            f"{self.root}: {len(self.upserts)} upserts, {len(self.deletes)} deletes, "
            f"{self.unchanged} unchanged, {len(self.skipped)} skipped, {self.ignored} ignored"
            + (f" -> {self.landing_file}" if self.landing_file else " (no landing file)")
        )


# --------------------------------------------------------------------------------------------
# dates and ids


def _utc(value: datetime | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _event_id(doc_id: str, content_sha256: str, op: str) -> str:
    return hashlib.sha256(f"{doc_id}\n{content_sha256}\n{op}".encode()).hexdigest()


def _event_time(candidate: datetime, previous: datetime | None, now: datetime) -> datetime:
    """``candidate`` unless the document's previous event is not older: then the sync time
    (or just after the previous event, if even that is not later)."""
    if previous is None or candidate > previous:
        return candidate
    return max(now, previous + _ONE_US)


def _doc_id(prefix: str | None, rel: str) -> str:
    prefix = (prefix or "").strip().strip("/")
    return f"{prefix}/{rel}" if prefix else rel


def _rel_path(prefix: str | None, doc_id: str) -> str:
    """The root-relative path of a doc id made by :func:`_doc_id` with the same prefix."""
    head = _doc_id(prefix, "")
    return doc_id[len(head) :] if head and doc_id.startswith(head) else doc_id


def _under_unlisted(prefix: str | None, doc_id: str, unlisted: list[str]) -> bool:
    """Whether the document lies under a directory that could not be listed."""
    rel = _rel_path(prefix, doc_id)
    return any(u == "" or rel.startswith(u + "/") for u in unlisted)


# --------------------------------------------------------------------------------------------
# the sync


def sync_directory(
    path: str | os.PathLike,
    landing_dir: str | os.PathLike,
    state_path: str | os.PathLike | None = None,
    now: datetime | None = None,
    *,
    prefix: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    not_before: datetime | None = None,
    rehash: bool = False,
) -> SyncReport:
    """Write one documents landing file with what changed in ``path`` since the last sync.

    ``landing_dir`` is the landing root (the file goes to ``<landing_dir>/documents/``);
    ``state_path`` defaults to :func:`default_state_path`; ``now`` (default: the current time,
    naive = UTC) dates deletions and names the file. See the module docstring for the rules.
    """
    root = os.path.abspath(os.fspath(path))
    if not os.path.isdir(root):
        raise NotADirectoryError(
            f"{root} is not a directory (a knowledge base to sync must be a folder)."
        )
    if max_bytes <= 0:
        raise ValueError("max_bytes must be positive")
    landing_root = os.path.abspath(os.fspath(landing_dir))
    state_file = os.path.abspath(
        os.fspath(state_path) if state_path else default_state_path(root, landing_root)
    )
    sync_time = _utc(now)
    floor = _utc(not_before) if not_before is not None else None
    report = SyncReport(root=root, state_path=state_file)
    options = _SyncOptions(root, prefix, max_bytes, rehash, sync_time, floor)

    with _locked(state_file):
        sync = _DirectorySync(options, _load_state(state_file), report)
        sync.write_landing_file(os.path.join(landing_root, STREAM))
        report.upserts.sort()
        report.deletes.sort()
        if sync.changed or not os.path.exists(state_file):
            _atomic_write_json(state_file, sync.next_state())
    return report


@dataclass(frozen=True)
class _SyncOptions:
    root: str
    prefix: str | None
    max_bytes: int
    rehash: bool
    sync_time: datetime
    floor: datetime | None  # ``not_before``: no event is dated earlier


_Emit = Callable[[dict], None]


class _DirectorySync:
    """One sync, under the state lock: an event per change, and the state file's next contents
    built alongside (a file that yields no event keeps its previous state)."""

    def __init__(self, options: _SyncOptions, state: dict, report: SyncReport) -> None:
        self.options = options
        self.report = report
        self.old_docs: dict[str, dict] = state["docs"]
        self.tombstones: dict[str, str] = state["deleted"]
        self.new_docs: dict[str, dict] = {}
        self.new_tombstones = dict(self.tombstones)
        self.changed = False
        self.present: set[str] = set()  # doc ids of the files found

    def write_landing_file(self, out_dir: str) -> None:
        """The events go to a dot-named temporary file, fsynced, then renamed (or removed when
        there are none), so the landing sensor never sees a partial file."""
        os.makedirs(out_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".dirsync-", suffix=".jsonl.tmp", dir=out_dir)
        digest = hashlib.sha256()
        days: set[str] = set()
        try:
            with os.fdopen(fd, "wb") as out:

                def emit(event: dict) -> None:
                    line = json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n"
                    data = line.encode("utf-8")
                    out.write(data)
                    digest.update(data)
                    days.add(event["updated_at"][:10])

                entries, unlisted = _walk(self.options.root, self.report)
                for entry in entries:
                    self._sync_file(entry, emit)
                self._emit_deletes(unlisted, emit)
                out.flush()
                os.fsync(out.fileno())

            if self.report.events:
                stamp = self.options.sync_time.strftime("%Y%m%dT%H%M%S%fZ")
                self.report.days = sorted(days)
                name = f"dirsync-{stamp}-{digest.hexdigest()[:16]}-day-{self.report.days[-1]}.jsonl"
                final = os.path.join(out_dir, name)
                os.replace(tmp, final)
                _fsync_dir(out_dir)
                self.report.landing_file = final
            else:
                os.unlink(tmp)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _keep(self, doc_id: str, old: dict | None) -> None:
        if old is not None:
            self.new_docs[doc_id] = old

    def _sync_file(self, entry: _Entry, emit: _Emit) -> None:
        """A file found by the walk: unchanged, skipped (with the reason) or an upsert."""
        doc_id = _doc_id(self.options.prefix, entry.rel)
        self.present.add(doc_id)
        old = self.old_docs.get(doc_id)
        if not entry.fmt:  # stat failed: present, keep what we knew
            self._keep(doc_id, old)
            return
        if (
            old is not None
            and not self.options.rehash
            and old.get("mtime_ns") == entry.mtime_ns
            and old.get("size") == entry.size
        ):
            self.new_docs[doc_id] = old
            self.report.unchanged += 1
            return
        read = self._read_changed(entry, doc_id, old)
        if read is None:
            return
        data, sha, text = read
        event = self._upsert_event(entry, doc_id, old, sha, text)
        line_bytes = len(json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode())
        if line_bytes > MAX_LINE_BYTES:
            self.report.skipped.append(
                (
                    entry.rel,
                    f"too large: its landing line would be {line_bytes} bytes, "
                    f"over the {MAX_LINE_BYTES}-byte line limit",
                )
            )
            self._keep(doc_id, old)
            return
        emit(event)
        self.report.upserts.append(doc_id)
        self.new_docs[doc_id] = {
            "sha256": sha,
            "mtime_ns": entry.mtime_ns,
            "size": len(data),
            "updated_at": event["updated_at"],
        }
        self.new_tombstones.pop(doc_id, None)
        self.changed = True

    def _read_changed(
        self, entry: _Entry, doc_id: str, old: dict | None
    ) -> tuple[bytes, str, str] | None:
        """(bytes, sha256, text) of a file whose mtime or size changed; None when it yields no
        event: same content (a ``touch``), skipped, or gone since the walk."""
        max_bytes = self.options.max_bytes
        try:
            if entry.size > max_bytes:
                raise _Skip(f"too large: {entry.size} bytes over the {max_bytes} limit")
            data = read_contained(self.options.root, entry.target, max_bytes)
            sha = hashlib.sha256(data).hexdigest()
            if old is not None and old.get("sha256") == sha:
                self.new_docs[doc_id] = {**old, "mtime_ns": entry.mtime_ns, "size": len(data)}
                self.changed = True
                self.report.unchanged += 1
                return None
            return data, sha, _decode(data, entry.fmt)
        except _Skip as exc:
            self.report.skipped.append((entry.rel, str(exc)))
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                self.present.discard(doc_id)  # removed since the walk: gone
                return None
            self.report.skipped.append((entry.rel, f"unreadable: {exc.strerror or exc}"))
        self._keep(doc_id, old)
        return None

    def _upsert_event(
        self, entry: _Entry, doc_id: str, old: dict | None, sha: str, text: str
    ) -> dict:
        """Dated by the file's mtime, unless that would not come after the document's
        previous event (see the module docstring)."""
        floor = self.options.floor
        mtime = _EPOCH + timedelta(microseconds=entry.mtime_ns // 1000)
        candidate = max(mtime, floor) if floor else mtime
        previous = _parse_iso((old or {}).get("updated_at")) or _parse_iso(
            self.tombstones.get(doc_id)
        )
        updated_at = _event_time(candidate, previous, self.options.sync_time)
        return {
            "event_id": _event_id(doc_id, sha, "upsert"),
            "doc_id": doc_id,
            "op": "upsert",
            "format": entry.fmt,
            "title": _title(text, entry.fmt, os.path.basename(entry.rel)),
            "content": text,
            "source_uri": Path(entry.path).as_uri(),
            "updated_at": _iso(updated_at),
        }

    def _emit_deletes(self, unlisted: list[str], emit: _Emit) -> None:
        """A delete per document gone since the last sync (not one under a directory that
        could not be listed: that is not a deletion)."""
        options = self.options
        for doc_id in sorted(set(self.old_docs) - self.present):
            old = self.old_docs[doc_id]
            if _under_unlisted(options.prefix, doc_id, unlisted):
                self.new_docs[doc_id] = old
                continue
            previous = _parse_iso(old.get("updated_at"))
            candidate = (
                max(options.sync_time, options.floor) if options.floor else options.sync_time
            )
            updated_at = _event_time(candidate, previous, options.sync_time)
            emit(
                {
                    "event_id": _event_id(doc_id, old.get("sha256", ""), "delete"),
                    "doc_id": doc_id,
                    "op": "delete",
                    "source_uri": Path(options.root, _rel_path(options.prefix, doc_id)).as_uri(),
                    "updated_at": _iso(updated_at),
                }
            )
            self.report.deletes.append(doc_id)
            self.new_tombstones[doc_id] = _iso(updated_at)
            self.changed = True

    def next_state(self) -> dict:
        return {
            "version": STATE_VERSION,
            "root": self.options.root,
            "prefix": self.options.prefix or "",
            "synced_at": _iso(self.options.sync_time),
            "docs": self.new_docs,
            "deleted": self.new_tombstones,
        }


def main(argv: list[str] | None = None) -> int:
    """``python -m llm_data_platform.sources.directory ROOT LANDING_DIR [--prefix P]``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="the knowledge-base directory to sync")
    parser.add_argument("landing_dir", help="the landing root (LDP_LANDING_DIR)")
    parser.add_argument("--prefix", default=None, help="doc id prefix, e.g. 'kb'")
    parser.add_argument("--state", default=None, help="state file (default: under landing)")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    parser.add_argument(
        "--rehash",
        action="store_true",
        help="read every file, even if mtime and size are unchanged",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    report = sync_directory(
        args.root,
        args.landing_dir,
        args.state,
        prefix=args.prefix,
        max_bytes=args.max_bytes,
        rehash=args.rehash,
    )
    if args.json:
        print(json.dumps({**report.__dict__, "skipped": [list(s) for s in report.skipped]}))
    else:
        print(report.summary())
        for rel, reason in report.skipped:
            print(f"  skipped {rel}: {reason}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
