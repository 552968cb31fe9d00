"""Walking a knowledge-base directory: which files are documents, with their stat.

Nothing outside the root is taken in: a symlinked file whose real path leaves the root, and a
symlinked directory that leads outside it, are reported as skipped with the reason (like an
unreadable file: present, their previous state kept). Symlinked directories are never followed
(no cycles, no second copy of a subtree); symlinked files that stay inside the root are read
through their target (see :mod:`containment`).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llm_data_platform.sources.containment import contained_rel, real_root

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
OUTSIDE_FILE = "symlink to a file outside the root: not read"
OUTSIDE_DIRECTORY = "symlink to a folder outside the root: not followed"


@dataclass(frozen=True)
class _Entry:
    rel: str  # "/"-separated, relative to root
    path: str  # absolute
    fmt: str  # "" when the file could not be stat'ed or is skipped (present, but unknown)
    mtime_ns: int
    size: int
    target: str = ""  # "/"-separated path under the root's real path that is read


@dataclass
class _Walk:
    """One walk's findings; ``unlisted`` are directories whose previously synced files must not
    be taken for deletions (not listable, or a symlink leading outside)."""

    root: str
    root_real: str
    report: SyncReport
    entries: list[_Entry]
    unlisted: list[str]

    def rel(self, path: str) -> str:
        rel = os.path.relpath(path, self.root).replace(os.sep, "/")
        return "" if rel == "." else rel

    def skip_dir(self, path: str, reason: str) -> None:
        rel = self.rel(path)
        self.unlisted.append(rel)
        self.report.skipped.append((rel or ".", reason))


def _walk(root: str, report: SyncReport) -> tuple[list[_Entry], list[str]]:
    """Candidate files (sorted by relative path) and the relative paths of directories whose
    files are not to be deleted (see :class:`_Walk`)."""
    walk = _Walk(root, real_root(root), report, [], [])

    def onerror(exc: OSError) -> None:
        walk.skip_dir(exc.filename or root, f"directory not listable: {exc.strerror or exc}")

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames[:] = [d for d in sorted(dirnames) if _descend(walk, os.path.join(dirpath, d))]
        for name in sorted(filenames):
            if not name.startswith("."):
                _add_file(walk, os.path.join(dirpath, name))
    return walk.entries, walk.unlisted


def _descend(walk: _Walk, path: str) -> bool:
    """Whether the walk goes into a subdirectory: not hidden, not a symlink (one leading
    outside the root is reported)."""
    if os.path.basename(path).startswith("."):
        return False
    if not os.path.islink(path):
        return True
    if contained_rel(walk.root_real, path) is None:
        walk.skip_dir(path, OUTSIDE_DIRECTORY)
    return False


def _add_file(walk: _Walk, full: str) -> None:
    """A file of a knowledge-base format becomes an entry (skipped ones with ``fmt`` "");
    other files are counted as ignored."""
    rel = walk.rel(full)
    fmt = FORMATS_BY_EXTENSION.get(os.path.splitext(full)[1].lower())
    if fmt is None:
        walk.report.ignored += 1
        return
    target = rel
    if os.path.islink(full):
        target = contained_rel(walk.root_real, full)
        if target is None:
            walk.report.skipped.append((rel, OUTSIDE_FILE))
            walk.entries.append(_Entry(rel, full, "", 0, 0))  # present, keeps its state
            return
    try:
        st = os.stat(full)  # follows a symlinked file (its target is inside the root)
    except FileNotFoundError:
        return  # removed while walking (or a dangling symlink): gone
    except OSError as exc:
        walk.report.skipped.append((rel, f"unreadable: {exc.strerror or exc}"))
        walk.entries.append(_Entry(rel, full, "", 0, 0))  # present, keeps its state
        return
    if not stat.S_ISREG(st.st_mode):
        walk.report.ignored += 1
        return
    walk.entries.append(_Entry(rel, full, fmt, st.st_mtime_ns, st.st_size, target))
