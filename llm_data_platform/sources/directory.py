"""Ingest a knowledge base kept as a directory of HTML, Markdown and plain-text files.

Plain functions, no Dagster import. :func:`sync_directory` compares the directory with what the
previous sync saw and writes ONE documents-stream landing file (JSONL, the format in
``schemas.py``) with an ``upsert`` per new or changed file and a ``delete`` per file gone since
then; the landing sensor and ``raw_documents`` take it from there.

Contract:

* **What is a document.** Files ending in ``.html``/``.htm`` (format ``html``),
  ``.md``/``.markdown`` (``markdown``) and ``.txt``/``.rst`` (``text``), case-insensitive, found
  below ``root``. Hidden files and directories (name starts with ``.``) are not walked; other
  files are counted as ``ignored``. Symlinked files are read, symlinked directories are not
  followed (no cycles).
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
* **Bad files** never crash the sync and are never silently dropped: unreadable, undecodable
  (binary, not UTF-8 and no usable HTML charset declaration), too large (``max_bytes``, default
  5 MB) or too large for one landing line (``records.MAX_LINE_BYTES``) files are listed in
  ``SyncReport.skipped`` with the reason, produce no event and keep their previous state (a file
  that cannot be read now is not a deletion). Files under a directory that cannot be listed are
  not deleted either. A missing ``root`` is an error, not "everything was deleted".
* **Durability, exactly-once in effect.** The landing file is written under a dot-prefixed
  temporary name (the landing sensor ignores dot files), fsynced and renamed to
  ``dirsync-<sync time>-<content hash>.jsonl``; only then is the state file written (temp,
  fsync, rename). A crash between the two re-sends the same events on the next sync (same
  event ids, same versions) instead of losing them; downstream deduplicates identical
  versions. Two syncs of the same state file are serialised by a lock file beside it.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import html
import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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
STATE_VERSION = 1
STREAM = "documents"

FORMATS_BY_EXTENSION: dict[str, str] = {
    ".html": "html",
    ".htm": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".rst": "text",
}

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


class _Skip(Exception):
    """A file that cannot be ingested; the message is the reason in the report."""


# --------------------------------------------------------------------------------------------
# state


def default_state_path(root: str | os.PathLike, landing_dir: str | os.PathLike) -> str:
    """``<landing_dir>/.state/directory-<sha256(abs root)[:16]>.json``."""
    digest = hashlib.sha256(os.path.abspath(root).encode("utf-8")).hexdigest()[:16]
    return os.path.join(os.path.abspath(landing_dir), ".state", f"directory-{digest}.json")


def _load_state(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {"version": STATE_VERSION, "docs": {}, "deleted": {}}
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"Directory sync state {path} is unreadable ({exc}). Delete it to re-send every "
            "file as an upsert (downstream deduplicates identical versions)."
        ) from exc
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise ValueError(f"Directory sync state {path} has an unknown format.")
    data.setdefault("docs", {})
    data.setdefault("deleted", {})
    return data


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):  # not supported on every platform / filesystem
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write_json(path: str, data: dict) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, sort_keys=True, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


@contextlib.contextmanager
def _locked(state_path: str) -> Iterator[None]:
    os.makedirs(os.path.dirname(state_path), exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no cross-process lock
        yield
        return
    with open(state_path + ".lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# reading files


def _decode(data: bytes, fmt: str) -> str:
    """Text of a file: UTF-8 (BOM allowed), UTF-16 with a BOM, or an HTML page's declared
    charset. Raises :class:`_Skip` for binary or undecodable content."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise _Skip(f"undecodable: invalid UTF-16 at byte {exc.start}") from exc
    nul = data.find(b"\x00")
    if nul >= 0:
        raise _Skip(f"binary file: NUL byte at offset {nul}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        charset = _declared_charset(data) if fmt == "html" else None
        if charset:
            try:
                return data.decode(charset)
            except (LookupError, UnicodeDecodeError):
                pass
        raise _Skip(f"undecodable: not valid UTF-8 at byte {exc.start}") from exc


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


def _declared_charset(data: bytes) -> str | None:
    match = _META_CHARSET.search(data[:4096])
    if not match:
        return None
    name = match.group(1).decode("ascii", "replace")
    try:
        codecs.lookup(name)
    except LookupError:
        return None
    return name


_TITLE = re.compile(r"<title\b[^>]*>(.*?)</title\s*>", re.I | re.S)
_H1 = re.compile(r"<h1\b[^>]*>(.*?)</h1\s*>", re.I | re.S)
_TAG = re.compile(r"<[^>]+>")
_ATX = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_RST_ADORNMENT = re.compile(r"""^([!-/:-@\[-`{-~])\1{2,}\s*$""")


def _clean_title(text: str) -> str:
    return " ".join(html.unescape(_TAG.sub(" ", text)).split())


def _html_title(text: str) -> str | None:
    head = text[:200_000]
    for pattern in (_TITLE, _H1):
        match = pattern.search(head)
        if match and (title := _clean_title(match.group(1))):
            return title
    return None


def _markdown_title(text: str) -> str | None:
    lines = text.splitlines()
    start = 0
    if lines and lines[0].strip() == "---":  # YAML front matter
        for i in range(1, min(len(lines), 200)):
            if lines[i].strip() in {"---", "..."}:
                for line in lines[1:i]:
                    key, sep, value = line.partition(":")
                    if sep and key.strip().lower() == "title":
                        title = value.strip().strip("\"'").strip()
                        if title:
                            return title
                start = i + 1
                break
    fence: str | None = None
    previous = ""
    for line in lines[start:]:
        fence_match = _FENCE.match(line)
        if fence is not None:
            if fence_match and fence_match.group(1)[0] == fence[0]:
                fence = None
            previous = ""
            continue
        if fence_match:
            fence = fence_match.group(1)
            previous = ""
            continue
        atx = _ATX.match(line)
        if atx and (title := (atx.group(1) or "").strip()):
            return title
        if _SETEXT.match(line) and previous.strip() and not previous.startswith((" " * 4, "\t")):
            return previous.strip()
        previous = line
    return None


def _rst_title(text: str) -> str | None:
    lines = [line.rstrip() for line in text.splitlines()[:200]]
    for i, line in enumerate(lines[:-1]):
        if not line.strip() or _RST_ADORNMENT.match(line):
            continue
        below = lines[i + 1]
        if _RST_ADORNMENT.match(below) and len(below) >= len(line.strip()):
            return line.strip()
        return None  # the first text line is not a title
    return None


def _title(text: str, fmt: str, name: str) -> str:
    title = None
    if fmt == "html":
        title = _html_title(text)
    elif fmt == "markdown":
        title = _markdown_title(text)
    elif name.lower().endswith(".rst"):
        title = _rst_title(text)
    return title or name


def _read_limited(path: str, limit: int) -> bytes:
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise _Skip(f"too large: over the {limit}-byte limit")
    return data


# --------------------------------------------------------------------------------------------
# walking


@dataclass(frozen=True)
class _Entry:
    rel: str  # "/"-separated, relative to root
    path: str  # absolute
    fmt: str  # "" when the file could not be stat'ed (present, but unknown)
    mtime_ns: int
    size: int


def _walk(root: str, report: SyncReport) -> tuple[list[_Entry], list[str]]:
    """Candidate files (sorted by relative path) and the relative paths of directories that
    could not be listed (their previously synced files must not be taken for deletions)."""
    entries: list[_Entry] = []
    unlisted: list[str] = []

    def onerror(exc: OSError) -> None:
        where = exc.filename or root
        rel = os.path.relpath(where, root).replace(os.sep, "/")
        unlisted.append("" if rel == "." else rel)
        report.skipped.append((rel, f"directory not listable: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            fmt = FORMATS_BY_EXTENSION.get(os.path.splitext(name)[1].lower())
            if fmt is None:
                report.ignored += 1
                continue
            try:
                st = os.stat(full)  # follows a symlinked file
            except FileNotFoundError:
                continue  # removed while walking (or a dangling symlink): gone
            except OSError as exc:
                report.skipped.append((rel, f"unreadable: {exc.strerror or exc}"))
                entries.append(_Entry(rel, full, "", 0, 0))  # present, keeps its state
                continue
            if not stat.S_ISREG(st.st_mode):
                report.ignored += 1
                continue
            entries.append(_Entry(rel, full, fmt, st.st_mtime_ns, st.st_size))
    return entries, unlisted


# --------------------------------------------------------------------------------------------
# the sync


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

    with _locked(state_file):
        state = _load_state(state_file)
        old_docs: dict[str, dict] = state["docs"]
        tombstones: dict[str, str] = state["deleted"]
        new_docs: dict[str, dict] = {}
        new_tombstones = dict(tombstones)
        state_changed = False

        out_dir = os.path.join(landing_root, STREAM)
        os.makedirs(out_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".dirsync-", suffix=".jsonl.tmp", dir=out_dir)
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out:

                def emit(event: dict) -> None:
                    line = json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n"
                    data = line.encode("utf-8")
                    out.write(data)
                    digest.update(data)

                entries, unlisted = _walk(root, report)
                present = set()
                for entry in entries:
                    doc_id = _doc_id(prefix, entry.rel)
                    present.add(doc_id)
                    old = old_docs.get(doc_id)
                    if not entry.fmt:  # stat failed: present, keep what we knew
                        if old is not None:
                            new_docs[doc_id] = old
                        continue
                    if (
                        old is not None
                        and not rehash
                        and old.get("mtime_ns") == entry.mtime_ns
                        and old.get("size") == entry.size
                    ):
                        new_docs[doc_id] = old
                        report.unchanged += 1
                        continue
                    try:
                        if entry.size > max_bytes:
                            raise _Skip(f"too large: {entry.size} bytes over the {max_bytes} limit")
                        data = _read_limited(entry.path, max_bytes)
                        sha = hashlib.sha256(data).hexdigest()
                        if old is not None and old.get("sha256") == sha:
                            new_docs[doc_id] = {
                                **old,
                                "mtime_ns": entry.mtime_ns,
                                "size": len(data),
                            }
                            state_changed = True
                            report.unchanged += 1
                            continue
                        text = _decode(data, entry.fmt)
                    except _Skip as exc:
                        report.skipped.append((entry.rel, str(exc)))
                        if old is not None:
                            new_docs[doc_id] = old
                        continue
                    except OSError as exc:
                        if isinstance(exc, FileNotFoundError):
                            present.discard(doc_id)  # removed since the walk: gone
                            continue
                        report.skipped.append((entry.rel, f"unreadable: {exc.strerror or exc}"))
                        if old is not None:
                            new_docs[doc_id] = old
                        continue
                    mtime = _EPOCH + timedelta(microseconds=entry.mtime_ns // 1000)
                    candidate = max(mtime, floor) if floor else mtime
                    previous = _parse_iso((old or {}).get("updated_at")) or _parse_iso(
                        tombstones.get(doc_id)
                    )
                    updated_at = _event_time(candidate, previous, sync_time)
                    event = {
                        "event_id": _event_id(doc_id, sha, "upsert"),
                        "doc_id": doc_id,
                        "op": "upsert",
                        "format": entry.fmt,
                        "title": _title(text, entry.fmt, os.path.basename(entry.rel)),
                        "content": text,
                        "source_uri": Path(entry.path).as_uri(),
                        "updated_at": _iso(updated_at),
                    }
                    line_bytes = len(
                        json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
                    )
                    if line_bytes > MAX_LINE_BYTES:
                        report.skipped.append(
                            (
                                entry.rel,
                                f"too large: its landing line would be {line_bytes} bytes, "
                                f"over the {MAX_LINE_BYTES}-byte line limit",
                            )
                        )
                        if old is not None:
                            new_docs[doc_id] = old
                        continue
                    emit(event)
                    report.upserts.append(doc_id)
                    new_docs[doc_id] = {
                        "sha256": sha,
                        "mtime_ns": entry.mtime_ns,
                        "size": len(data),
                        "updated_at": event["updated_at"],
                    }
                    new_tombstones.pop(doc_id, None)
                    state_changed = True

                def under_unlisted(doc_id: str) -> bool:
                    rel = _rel_path(prefix, doc_id)
                    return any(u == "" or rel.startswith(u + "/") for u in unlisted)

                for doc_id in sorted(set(old_docs) - present):
                    old = old_docs[doc_id]
                    if under_unlisted(doc_id):
                        new_docs[doc_id] = old
                        continue
                    previous = _parse_iso(old.get("updated_at"))
                    candidate = max(sync_time, floor) if floor else sync_time
                    updated_at = _event_time(candidate, previous, sync_time)
                    emit(
                        {
                            "event_id": _event_id(doc_id, old.get("sha256", ""), "delete"),
                            "doc_id": doc_id,
                            "op": "delete",
                            "source_uri": Path(root, _rel_path(prefix, doc_id)).as_uri(),
                            "updated_at": _iso(updated_at),
                        }
                    )
                    report.deletes.append(doc_id)
                    new_tombstones[doc_id] = _iso(updated_at)
                    state_changed = True

                out.flush()
                os.fsync(out.fileno())

            if report.events:
                stamp = sync_time.strftime("%Y%m%dT%H%M%S%fZ")
                name = f"dirsync-{stamp}-{digest.hexdigest()[:16]}.jsonl"
                final = os.path.join(out_dir, name)
                os.replace(tmp, final)
                _fsync_dir(out_dir)
                report.landing_file = final
            else:
                os.unlink(tmp)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

        report.upserts.sort()
        report.deletes.sort()
        if state_changed or not os.path.exists(state_file):
            _atomic_write_json(
                state_file,
                {
                    "version": STATE_VERSION,
                    "root": root,
                    "prefix": prefix or "",
                    "synced_at": _iso(sync_time),
                    "docs": new_docs,
                    "deleted": new_tombstones,
                },
            )
    return report


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
