"""Walking a knowledge-base directory: which files are documents, with their stat."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llm_data_platform.sources.directory import SyncReport

FORMATS_BY_EXTENSION: dict[str, str] = {
    ".html": "html",
    ".htm": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".rst": "text",
}


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
