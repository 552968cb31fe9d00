"""An in-process copy of every chunk's text and lineage for one index version.

Why: at 100k chunks a Chroma query that also returns documents and metadatas costs ~0.8 ms
more than one returning ids and distances only (the rows are read from SQLite and converted
per query). With this mirror the retriever asks Chroma for ids and distances, and takes the
texts and lineage from here. Chroma stays the store of record: the mirror is paged from the
live collection once per index version, in a background thread (searches use the full Chroma
query until it is ready), checked against the collection's count, and dropped the moment the
version changes. An id the mirror does not hold is read from Chroma. With an embedded
PersistentClient the mirror also loads Chroma's own HNSW graph of the collection
(``lib/hnsw_mirror.py``), so that unfiltered queries need no Chroma call at all.

Memory: the strings of each field are kept UTF-8 encoded in one buffer with offsets (no
Python object per value), plus one dict from chunk id to row.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from llm_data_platform.lib.hnsw_mirror import HnswMirror
from llm_data_platform.resources.chroma import collection_pages

log = logging.getLogger(__name__)

LINEAGE = ("doc_id", "version", "title", "heading_path", "source_uri")
INCLUDE = ["documents", "metadatas"]
Row = tuple[str, tuple[str, ...]]  # (text, the LINEAGE fields as strings)


def to_row(text: str | None, meta: dict | None) -> Row:
    """A Chroma document and metadata as the hit needs them: missing text is "", missing or
    non-string lineage fields are str()-ed, as ``retrieval._hit`` always did."""
    meta = meta or {}
    return text or "", tuple(str(meta.get(name, "")) for name in LINEAGE)


def page_rows(collection: Any, page_size: int = 5000) -> Iterator[tuple[list[str], list[Row]]]:
    """Every chunk of ``collection``, a page of (ids, rows) at a time."""
    for got in collection_pages(collection, INCLUDE, page_size):
        rows = [to_row(t, m) for t, m in zip(got["documents"], got["metadatas"], strict=True)]
        yield got["ids"], rows


class _Column:
    """Strings as UTF-8 buffers, one per page of ``page`` values, with their end offsets:
    ~1 byte per ASCII character, no Python object per value, and no copy to join pages."""

    def __init__(self, page: int) -> None:
        self.page = page
        self._blobs: list[bytes] = []
        self._ends: list[np.ndarray] = []

    def extend(self, values: list[str]) -> None:
        if self._ends and len(self._ends[-1]) != self.page:
            raise ValueError("only the last page may be short")
        encoded = [v.encode("utf-8") for v in values]
        self._ends.append(np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded))))
        self._blobs.append(b"".join(encoded))

    def __getitem__(self, i: int) -> str:
        p, j = divmod(i, self.page)
        ends = self._ends[p]
        start = int(ends[j - 1]) if j else 0
        return self._blobs[p][start : int(ends[j])].decode("utf-8")

    @property
    def nbytes(self) -> int:
        return sum(map(len, self._blobs)) + sum(e.nbytes for e in self._ends)


class ChunkMirror:
    """Text and lineage of every chunk of one collection version, by chunk id."""

    def __init__(self, page: int = 2000) -> None:
        self.vectors: HnswMirror | None = None  # Chroma's graph, when it could be loaded
        self.position: dict[str, int] = {}
        self._text = _Column(page)
        self._lineage = [_Column(page) for _ in LINEAGE]

    @classmethod
    def build(cls, collection: Any, page_size: int = 2000) -> ChunkMirror:
        mirror = cls(page_size)
        for ids, rows in page_rows(collection, page_size):
            mirror.add(ids, rows)
        return mirror

    def add(self, ids: list[str], rows: list[Row]) -> None:
        """One page of chunks: every page but the last holds exactly ``page`` chunks."""
        start = len(self.position)
        self.position.update(zip(ids, range(start, start + len(ids)), strict=True))
        if len(self.position) != start + len(ids):
            raise ValueError("a chunk id was read twice: the collection changed meanwhile")
        self._text.extend([text for text, _ in rows])
        for j, column in enumerate(self._lineage):
            column.extend([fields[j] for _, fields in rows])

    def __len__(self) -> int:
        return len(self.position)

    def __contains__(self, chunk_id: str) -> bool:
        return chunk_id in self.position

    def row(self, chunk_id: str) -> Row | None:
        i = self.position.get(chunk_id)
        if i is None:
            return None
        return self._text[i], tuple(column[i] for column in self._lineage)

    @property
    def nbytes(self) -> int:
        """The buffers' size (the id dict comes on top: ~150 bytes per chunk)."""
        return self._text.nbytes + sum(c.nbytes for c in self._lineage)


class MirrorSlot:
    """The mirror of the version being served, built in a background thread.

    ``get(key, ...)`` returns the mirror only when it was built for exactly ``key`` (the
    collection's id and the index version): a mirror of another version is never used, and
    is dropped as soon as another key is asked for. Thread-safe.
    """

    def __init__(self, enabled: bool = False, chroma_path: str = ""):
        self.enabled = enabled
        self.chroma_path = chroma_path  # an embedded PersistentClient's folder: load its graph
        self._lock = threading.Lock()
        self._key: Any = None
        self._mirror: ChunkMirror | None = None
        self._thread: threading.Thread | None = None
        self.error: str | None = None
        self.vectors_error: str | None = None

    def get(self, key: Any, collection: Any, count: int) -> ChunkMirror | None:
        """The mirror for ``key``, or None (not enabled, or still being built: then a build
        for ``key`` is started if none is running for it)."""
        if not self.enabled:
            return None
        with self._lock:
            if self._key == key:
                return self._mirror
            self._key, self._mirror, self.error, self.vectors_error = key, None, None, None
            self._thread = threading.Thread(
                target=self._build, args=(key, collection, count), daemon=True,
                name="chunk-mirror",
            )  # fmt: skip
            self._thread.start()
            return None

    def wait(self, timeout: float | None = None) -> bool:
        """Waits for the running build; True when a mirror is ready."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self._mirror is not None

    def _build(self, key: Any, collection: Any, count: int) -> None:
        try:
            mirror = ChunkMirror.build(collection)
            if len(mirror) != count or collection.count() != count:
                raise RuntimeError(
                    f"the collection changed while it was mirrored ({count} chunks expected, "
                    f"{len(mirror)} read)"
                )
        except Exception as exc:  # noqa: BLE001 - searches fall back to the full Chroma query
            log.warning("chunk mirror of %s not built: %s", key, exc)
            with self._lock:
                if self._key == key:
                    self.error = str(exc)
            return
        vectors_error = self._load_vectors(mirror, collection) if self.chroma_path else None
        with self._lock:
            if self._key == key:  # not superseded by another version meanwhile
                self._mirror, self.vectors_error = mirror, vectors_error

    def _load_vectors(self, mirror: ChunkMirror, collection: Any) -> str | None:
        """Chroma's graph, checked against Chroma; why not, when it cannot be used."""
        try:
            vectors = HnswMirror.load(self.chroma_path, collection)
            vectors.validate(collection)
        except Exception as exc:  # noqa: BLE001 - queries then go to Chroma
            log.info("Chroma's HNSW graph not mirrored: %s", exc)
            return f"{type(exc).__name__}: {exc}"
        mirror.vectors = vectors
        return None

    def status(self) -> dict:
        mirror = self._mirror
        return {
            "enabled": self.enabled,
            "ready": mirror is not None,
            "chunks": len(mirror) if mirror is not None else 0,
            "buffer_bytes": mirror.nbytes if mirror is not None else 0,
            "error": self.error,
            "vectors": mirror is not None and mirror.vectors is not None,
            "vector_bytes": mirror.vectors.nbytes if mirror and mirror.vectors else 0,
            "vectors_error": self.vectors_error,
        }
