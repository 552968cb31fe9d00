"""Retrieval entry point for chatbot backends: a question in, the top-k chunks out.

Hot path: a repeated question is answered from a results cache (no embedding, no Chroma call);
a new question costs one embedding (itself cached) plus one Chroma query. With the chunk
mirror on (``ldp serve`` turns it on, see ``lib/chunk_mirror.py``) that query asks for ids and
distances only, and texts and lineage come from the mirror. The caches and the mirror are
emptied when the index version changes, which is re-checked at most every
``version_check_seconds``, never per query. Hybrid mode adds BM25 over the chunk texts (built
lazily from the collection once per index version and saved for other processes) and fuses
both rankings with reciprocal rank fusion.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from llm_data_platform.lib.chunk_mirror import ChunkMirror, MirrorSlot, Row, page_rows, to_row
from llm_data_platform.resources.chroma import ChromaResource
from llm_data_platform.resources.embeddings import EmbeddingsResource

RRF_K = 60
BM25_VERSIONS_KEPT = 4  # live, rollback, and two being built or served elsewhere
_INCLUDE = ["documents", "metadatas"]
_FULL = ["documents", "metadatas", "distances"]
_TOKEN = re.compile(r"(?u)\b\w\w+\b")


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float  # vector mode: cosine similarity (1 = same direction); hybrid: the RRF score
    chunk_id: str
    doc_id: str
    version: str
    title: str
    heading_path: str
    source_uri: str
    text: str
    mode: str = "vector"
    vector_score: float | None = None  # cosine similarity, when the vector search found it
    bm25_score: float | None = None  # BM25 score, when the keyword search found it

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    index_version: str
    cached: bool
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _State:
    collection: Any
    version: str
    count: int

    @property
    def key(self) -> tuple[str, str]:
        """What a chunk mirror must have been built from: this very collection (its id: a
        collection re-created under the same name is another one) at this version."""
        return str(getattr(self.collection, "id", "")), self.version


class LRU:
    """A small thread-safe LRU mapping (the API serves requests from a thread pool)."""

    def __init__(self, size: int):
        self.size = size
        self._data: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: Any, value: Any) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


def tokenize(text: str) -> list[str]:
    """Lower-cased words of 2+ characters. No stop-word list: in a Python knowledge base "if",
    "for", "with" and "not" are the subject; BM25's IDF already discounts common words."""
    return _TOKEN.findall(text.lower())


def reciprocal_rank_fusion(rankings: list[list[str]], k: int = RRF_K) -> dict[str, float]:
    """RRF (Cormack et al., 2009): sum over rankings of 1 / (k + rank), ranks from 1."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return dict(sorted(fused.items(), key=lambda kv: -kv[1]))


class BM25Index:
    """BM25 (bm25s, sparse matrices) over every chunk of one collection version.

    Only the ids and the index live in memory; texts and metadata of keyword-only hits are
    fetched from Chroma per query. Saved per index version (:meth:`save`), a later process
    loads it instead of reading every chunk from Chroma again.
    """

    IDS_FILE = "chunk_ids.json"

    def __init__(self, ids: list[str], model: Any):
        self.ids = ids
        self.position = {chunk_id: i for i, chunk_id in enumerate(ids)}
        self.model = model

    @classmethod
    def build(cls, collection: Any, page_size: int = 5000) -> BM25Index:
        import bm25s

        ids: list[str] = []
        corpus: list[list[str]] = []
        for page_ids, rows in page_rows(collection, page_size):
            ids.extend(page_ids)
            corpus.extend(tokenize(f"{fields[3]}\n{text}") for text, fields in rows)
        model = bm25s.BM25()
        if ids:
            model.index(corpus, show_progress=False)
        return cls(ids, model)

    def save(self, folder: str) -> None:
        """Written to a temp folder renamed into place: a reader finds all of it or none."""
        if not self.ids:
            return
        parent = os.path.dirname(folder)
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".bm25-", dir=parent)
        self.model.save(tmp)
        with open(os.path.join(tmp, self.IDS_FILE), "w") as f:
            json.dump(self.ids, f)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process saved this version first
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def load(cls, folder: str) -> BM25Index | None:
        ids_path = os.path.join(folder, cls.IDS_FILE)
        if not os.path.exists(ids_path):
            return None
        import bm25s

        with open(ids_path) as f:
            ids = json.load(f)
        return cls(ids, bm25s.BM25.load(folder, show_progress=False))

    def top(self, question: str, n: int, allowed: np.ndarray | None = None) -> list[tuple]:
        """(chunk_id, score) of the n best chunks with a positive score, best first."""
        tokens = [t for t in tokenize(question) if t in self.model.vocab_dict] if self.ids else []
        if not tokens:
            return []
        scores = self.model.get_scores(tokens)
        if allowed is not None:
            scores = np.where(allowed, scores, 0.0)
        n = min(n, len(scores))
        best = np.argpartition(-scores, n - 1)[:n]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(self.ids[i], float(scores[i])) for i in best if scores[i] > 0]


class Retriever:
    """Embeds the question with the index's own model and searches its collection.

    ``search`` and ``search_detailed`` are safe to call from several threads.
    """

    def __init__(
        self,
        chroma: ChromaResource,
        embeddings: EmbeddingsResource,
        cache_size: int = 1024,
        results_cache_size: int = 4096,
        version_check_seconds: float = 2.0,
        hybrid: bool = False,
        hybrid_candidates: int = 20,
        bm25_dir: str | None = None,
        mirror: bool = False,
    ):
        self.chroma = chroma
        self.bm25_dir = bm25_dir
        self.embeddings = embeddings
        self.hybrid = hybrid
        self.hybrid_candidates = hybrid_candidates
        self.version_check_seconds = version_check_seconds
        self._vectors = LRU(cache_size)
        self._results = LRU(results_cache_size)
        self._masks = LRU(64)  # where filter -> boolean mask over the BM25 index
        self._refresh_lock = threading.Lock()
        self._bm25_lock = threading.Lock()
        self._bm25: tuple[str, BM25Index] | None = None  # (index version, its BM25 index)
        # texts and lineage (and, embedded, Chroma's own graph) of the version being served
        self._mirror = MirrorSlot(mirror, chroma.path if chroma.path and not chroma.host else "")
        self._state = _State(None, "", 0)  # replaced whole, so readers see one consistent state
        self._next_check = 0.0
        self.refresh()

    # -- the index and its version -------------------------------------------------------
    def _open_collection(self) -> Any:
        """The collection searched. The one place that decides which collection that is."""
        return self.chroma.get_collection(
            self.embeddings.model_id, self.embeddings.dimension, create=False
        )

    def refresh(self) -> str:
        """Re-open the collection and re-read its version now; empty the caches if it changed."""
        with self._refresh_lock:
            collection = self._open_collection()
            count = collection.count()
            parts = [collection.name, str(count)]
            meta_version = (collection.metadata or {}).get("version")
            if meta_version is not None:
                parts.append(f"v{meta_version}")
            version = ":".join(parts)
            if version != self._state.version:
                self._results.clear()
                self._vectors.clear()
                self._masks.clear()
            self._state = _State(collection, version, count)
            self._next_check = time.monotonic() + self.version_check_seconds
            if self._mirror.enabled and count:  # (re)build it now, not at the next search
                self._mirror.get(self._state.key, collection, count)
            return version

    def start_mirror(self, wait: float | None = 0.0, graph: bool = True) -> bool:
        """Turns the chunk mirror on and builds it for the live version in the background;
        waits up to ``wait`` seconds (None: until built). True when it is ready. ``graph``:
        also load Chroma's HNSW graph (embedded Chroma only; see ``lib/hnsw_mirror.py``)."""
        self._mirror.enabled = True
        if not graph:
            self._mirror.chroma_path = ""
        state = self._current()
        if state.count:
            self._mirror.get(state.key, state.collection, state.count)
        return self._mirror.wait(wait) if wait != 0.0 else self._mirror.status()["ready"]

    def mirror_status(self) -> dict:
        """Enabled, ready, chunks held, and why the last build failed (searches then use the
        full Chroma query)."""
        return self._mirror.status()

    def _current(self) -> _State:
        if time.monotonic() >= self._next_check:
            self.refresh()
        return self._state

    @property
    def index_version(self) -> str:
        """Collection name, chunk count and the ``version`` in its metadata, if present."""
        return self._current().version

    @property
    def collection(self) -> Any:
        return self._current().collection

    @property
    def count(self) -> int:
        return self._current().count

    def _bm25_index(self, state: _State) -> BM25Index:
        """Loaded from ``bm25_dir`` when a process saved this index version there, else built
        (paged reads of every chunk) and saved; held until the version changes."""
        with self._bm25_lock:
            if self._bm25 is None or self._bm25[0] != state.version:
                self._bm25 = (state.version, self._load_or_build_bm25(state))
            return self._bm25[1]

    def _load_or_build_bm25(self, state: _State) -> BM25Index:
        if not self.bm25_dir:
            return BM25Index.build(state.collection)
        folder = os.path.join(self.bm25_dir, re.sub(r"[^A-Za-z0-9._-]", "_", state.version))
        index = BM25Index.load(folder)
        if index is None:
            index = BM25Index.build(state.collection)
            index.save(folder)
            _keep_newest(self.bm25_dir, keep=BM25_VERSIONS_KEPT)
        return index

    # -- search ----------------------------------------------------------------------------
    def _embed(self, question: str) -> np.ndarray:
        vector = self._vectors.get(question)
        if vector is None:
            vector = self.embeddings.embed([question])[0]
            self._vectors.put(question, vector)
        return vector

    def search(
        self, question: str, k: int = 5, where: dict | None = None, hybrid: bool | None = None
    ) -> list[Hit]:
        return self.search_detailed(question, k, where, hybrid).hits

    def search_detailed(
        self, question: str, k: int = 5, where: dict | None = None, hybrid: bool | None = None
    ) -> SearchResult:
        """Hits plus the index version they come from and where the time went (ms)."""
        started = time.perf_counter()
        question = " ".join(question.split())
        if not question:
            raise ValueError("The question is empty.")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}.")
        state = self._current()
        mode = "hybrid" if (self.hybrid if hybrid is None else hybrid) else "vector"
        key = (question, k, json.dumps(where, sort_keys=True) if where else None, mode)
        hits = self._results.get(key)
        if hits is not None:
            return SearchResult(list(hits), state.version, True, {"total": _ms(started)})
        if not state.count:
            return SearchResult([], state.version, False, {"total": _ms(started)})

        timings: dict[str, float] = {}
        t = time.perf_counter()
        vector = self._embed(question)
        timings["embed"] = _ms(t)
        n_vector = k if mode == "vector" else max(k, self.hybrid_candidates)
        t = time.perf_counter()
        mirror = self._mirror.get(state.key, state.collection, state.count)
        ids, cosine, rows = self._vector_query(state, mirror, vector, n_vector, where)
        timings["vector"] = _ms(t)
        if mode == "vector":
            hits = [
                _hit(rank, cosine[cid], cid, *rows[cid], mode, cosine[cid], None)
                for rank, cid in enumerate(ids[:k], start=1)
            ]
        else:
            t = time.perf_counter()
            hits = self._hybrid(state, mirror, question, k, where, rows, cosine, ids)
            timings["bm25"] = _ms(t)
        if state is self._state:  # not refreshed meanwhile: the hits belong to this version
            self._results.put(key, tuple(hits))
        timings["total"] = _ms(started)
        return SearchResult(hits, state.version, False, timings)

    def _vector_query(
        self, state: _State, mirror: ChunkMirror | None, vector, n: int, where: dict | None
    ) -> tuple[list[str], dict[str, float], dict[str, Row]]:
        """Ids best first, their cosine similarity, and their rows. With a mirror of this
        version, Chroma's graph searched in process (unfiltered) or Chroma asked for ids and
        distances only: the same ids, order and distances as the full query
        (``test_the_mirror_returns_what_the_full_chroma_query_returns``)."""
        if mirror is not None and mirror.vectors is not None and not where:
            try:
                ids, distances = mirror.vectors.query(vector, min(n, state.count))
            except RuntimeError:  # hnswlib found fewer than n: let Chroma answer
                pass
            else:
                cosine = {cid: round(1.0 - d, 4) for cid, d in zip(ids, distances, strict=True)}
                return ids, cosine, self._rows(state, mirror, ids)
        result = state.collection.query(
            query_embeddings=[vector],
            n_results=min(n, state.count),
            where=where,
            include=["distances"] if mirror is not None else _FULL,
        )
        ids = result["ids"][0]
        cosine = {
            cid: round(1.0 - float(d), 4)
            for cid, d in zip(ids, result["distances"][0], strict=True)
        }
        if mirror is not None:
            return ids, cosine, self._rows(state, mirror, ids)
        rows = {
            cid: to_row(text, meta)
            for cid, text, meta in zip(
                ids, result["documents"][0], result["metadatas"][0], strict=True
            )
        }
        return ids, cosine, rows

    @staticmethod
    def _rows(state: _State, mirror: ChunkMirror | None, ids: list[str]) -> dict[str, Row]:
        """Rows of ``ids`` from the mirror; any it does not hold (or all, without one) from
        Chroma, the store of record."""
        rows: dict[str, Row] = {}
        for cid in ids:
            row = mirror.row(cid) if mirror is not None else None
            if row is not None:
                rows[cid] = row
        missing = [cid for cid in ids if cid not in rows]
        if missing:
            got = state.collection.get(ids=missing, include=_INCLUDE)
            for cid, text, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True):
                rows[cid] = to_row(text, meta)
        return rows

    def _hybrid(
        self, state, mirror, question, k, where, rows, cosine, vector_ids
    ) -> list[Hit]:  # fmt: skip
        bm25 = self._bm25_index(state)
        allowed = self._allowed(state, bm25, where) if where else None
        keyword = bm25.top(question, max(k, self.hybrid_candidates), allowed)
        bm25_scores = {cid: round(s, 4) for cid, s in keyword}
        fused = reciprocal_rank_fusion([list(vector_ids), [cid for cid, _ in keyword]])
        chosen = list(fused)[:k]
        missing = [cid for cid in chosen if cid not in rows]
        if missing:
            rows.update(self._rows(state, mirror, missing))
        return [
            _hit(
                rank,
                round(fused[cid], 6),
                cid,
                *rows[cid],
                "hybrid",
                cosine.get(cid),
                bm25_scores.get(cid),
            )  # fmt: skip
            for rank, cid in enumerate(chosen, start=1)
        ]

    def _allowed(self, state: _State, bm25: BM25Index, where: dict) -> np.ndarray:
        """Chroma evaluates the filter; the mask keeps BM25 to the same chunks."""
        key = (state.version, json.dumps(where, sort_keys=True))
        mask = self._masks.get(key)
        if mask is None:
            mask = np.zeros(len(bm25.ids), dtype=bool)
            ids = state.collection.get(where=where, include=[])["ids"]
            mask[[bm25.position[i] for i in ids if i in bm25.position]] = True
            self._masks.put(key, mask)
        return mask


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


def _hit(rank, score, chunk_id, text, lineage, mode, vector_score, bm25_score) -> Hit:
    doc_id, version, title, heading_path, source_uri = lineage
    return Hit(
        rank=rank,
        score=score,
        chunk_id=chunk_id,
        doc_id=doc_id,
        version=version,
        title=title,
        heading_path=heading_path,
        source_uri=source_uri,
        text=text,
        mode=mode,
        vector_score=vector_score,
        bm25_score=bm25_score,
    )


def retriever_from_settings() -> Retriever:
    from llm_data_platform.definitions import build_resources
    from llm_data_platform.settings import load_settings

    settings = load_settings()
    resources = build_resources(settings)
    return Retriever(
        resources["chroma"],
        resources["embeddings"],
        hybrid=settings.retrieval_hybrid,
        bm25_dir=settings.bm25_dir,
    )


def _keep_newest(folder: str, keep: int) -> None:
    """Saved BM25 versions beyond the newest ``keep`` are removed (the index moved on)."""
    entries = [e for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")]
    entries.sort(key=lambda e: e.stat().st_mtime, reverse=True)
    for entry in entries[keep:]:
        shutil.rmtree(entry.path, ignore_errors=True)


def ask(question: str, k: int = 5, where: dict | None = None) -> list[Hit]:
    """One-shot helper: ``from llm_data_platform.retrieval import ask``."""
    return retriever_from_settings().search(question, k=k, where=where)
