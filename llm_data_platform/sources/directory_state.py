"""The directory sync's state file: what the previous sync saw, written durably, one sync
at a time (a lock file beside it)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

STATE_VERSION = 1


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
