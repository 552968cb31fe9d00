"""Landing folder source: JSONL (or JSONL.gz) files dropped into ``<dir>/<stream>/``."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

STREAMS = ("conversations", "documents")


@dataclass(frozen=True, order=True)
class LandingFile:
    """A landed file; ordered by (mtime, key) — the order sensors consume them in."""

    mtime: float
    key: str  # path relative to the stream folder, "/"-separated
    size: int
    path: str
    # max(mtime, ctime): when the file appeared here. A copy that preserves an old mtime still
    # gets a fresh ctime, so the sensor's watermark does not skip it.
    landed: float = 0.0

    @property
    def identity(self) -> str:
        """Content identity used in run keys: a rewritten file is a new arrival."""
        return f"{self.key}@{self.mtime:.6f}:{self.size}"

    @property
    def arrived_at(self) -> datetime:
        return datetime.fromtimestamp(self.mtime, tz=UTC)


class LandingFolderResource(dg.ConfigurableResource):
    path: str

    def stream_dir(self, stream: str) -> str:
        if stream not in STREAMS:
            raise ValueError(f"Unknown stream {stream!r}; expected one of {STREAMS}.")
        return os.path.join(self.path, stream)

    def list_files(self, stream: str) -> list[LandingFile]:
        root = self.stream_dir(stream)
        files: list[LandingFile] = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in filenames:
                if name.startswith(".") or not name.endswith((".jsonl", ".jsonl.gz")):
                    continue  # temp files of writers in progress, and foreign files
                full = os.path.join(dirpath, name)
                try:
                    st = os.stat(full)
                except FileNotFoundError:
                    continue  # removed between listing and stat
                key = os.path.relpath(full, root).replace(os.sep, "/")
                files.append(
                    LandingFile(st.st_mtime, key, st.st_size, full, max(st.st_mtime, st.st_ctime))
                )
        return sorted(files)

    @staticmethod
    def read_lines(file: LandingFile) -> Iterator[tuple[int, bytes]]:
        """(1-based line number, raw bytes) — bytes, so undecodable input can be quarantined."""
        opener = gzip.open if file.path.endswith(".gz") else open
        with opener(file.path, "rb") as f:
            for number, line in enumerate(f, start=1):
                line = line.rstrip(b"\r\n")
                if line.strip():
                    yield number, line
