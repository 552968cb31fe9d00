"""Reading a knowledge-base file without ever leaving the knowledge base.

Why: the folder handed to ``ldp ingest-docs`` is not trusted to stay inside itself. A symlink
(``notes.md -> ~/.aws/credentials``, ``docs -> /etc``) or a ``..`` in a path would make the
sync read a file from anywhere the sync user can read and land it as a document, from where it
reaches the index and the chat model. So:

* :func:`contained_rel` resolves where a path really leads (``os.path.realpath``) and accepts
  it only when that lies under the root's real path (``os.path.commonpath``);
* :func:`read_contained` opens the file one path component at a time from a descriptor of the
  root, every component with ``O_NOFOLLOW`` (``..``, ``.``, empty and absolute components are
  refused): what is opened is under the root whatever was swapped in since the walk looked
  (no check-then-open race), and ``fstat`` of the opened descriptor decides that it is a
  regular file and how large it is. ``O_NONBLOCK`` keeps a FIFO swapped in from hanging the
  open.

A hard link inside the root to a file outside it cannot be told apart from a file of the root:
whoever can create one can also copy the file in.
"""

from __future__ import annotations

import errno
import os
import stat

from llm_data_platform.sources.document_files import _Skip

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# component-wise opens need openat() and O_NOFOLLOW; without them (not POSIX) the real path is
# checked just before a plain open
_FD_WALK = bool(_NOFOLLOW and _DIRECTORY) and os.open in os.supports_dir_fd


def real_root(root: str) -> str:
    """The root's real path, against which every target is checked."""
    return os.path.realpath(root)


def contained_rel(root_real: str, path: str) -> str | None:
    """The root-relative ("/"-separated) path of where ``path`` really leads, or None when it
    leads outside ``root_real`` (or to the root itself)."""
    real = os.path.realpath(path)
    try:
        if os.path.commonpath([root_real, real]) != root_real:
            return None
    except ValueError:  # different drives (Windows)
        return None
    rel = os.path.relpath(real, root_real)
    return None if rel == os.curdir else rel.replace(os.sep, "/")


def read_contained(root: str, rel: str, limit: int) -> bytes:
    """The bytes of ``root/rel``, at most ``limit`` of them, never from outside ``root``.

    Raises :class:`_Skip` (the reason for the report) for a path that would leave the root, a
    symlink met on the way, something that is not a regular file, or a file over ``limit``.
    """
    fd = _open_contained(root, rel)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Skip("not a regular file when opened")
        if st.st_size > limit:
            raise _Skip(f"too large: {st.st_size} bytes over the {limit} limit")
        data = _read_at_most(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise _Skip(f"too large: over the {limit}-byte limit")
    return data


def _read_at_most(fd: int, n: int) -> bytes:
    chunks: list[bytes] = []
    while n > 0 and (chunk := os.read(fd, min(n, 1 << 20))):
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _components(rel: str) -> list[str]:
    """The path's components; a ``..``, ``.``, empty or absolute path is refused, not
    normalised (a walk never produces one: it can only come from a hostile input)."""
    parts = rel.split("/")
    if os.path.isabs(rel) or any(p in ("", os.curdir, os.pardir) for p in parts):
        raise _Skip(f"path escapes the root: {rel!r} is not a plain relative path")
    return parts


def _open_contained(root: str, rel: str) -> int:
    parts = _components(rel)
    if not _FD_WALK:  # pragma: no cover - not POSIX
        full = os.path.join(root, *parts)
        if contained_rel(real_root(root), full) is None:
            raise _Skip("symlink to outside the root: not read")
        return os.open(full, os.O_RDONLY | _NONBLOCK)
    dir_fd = os.open(root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        for part in parts[:-1]:
            next_fd = _open_no_follow(part, os.O_RDONLY | _DIRECTORY, dir_fd)
            os.close(dir_fd)
            dir_fd = next_fd
        return _open_no_follow(parts[-1], os.O_RDONLY | _NONBLOCK, dir_fd)
    finally:
        os.close(dir_fd)


def _open_no_follow(name: str, flags: int, dir_fd: int) -> int:
    try:
        return os.open(name, flags | _NOFOLLOW | _CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        # O_NOFOLLOW refuses a symlink with ELOOP (EMLINK on BSD), ENOTDIR with O_DIRECTORY
        if exc.errno in (errno.ELOOP, errno.EMLINK, errno.ENOTDIR) and _is_link(name, dir_fd):
            raise _Skip(f"a symlink appeared at {name!r} during the sync: not followed") from exc
        raise


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False
