"""Chroma vector store: a persistent folder by default, a Chroma server when configured.

The index has two collections per embedding model, ``…-blue`` and ``…-green`` (see
``resources/index_versions.py``). Which one is live is recorded in the collections' own
metadata (``live_seq``: highest live wins), so any client of the Chroma server — not only this
package — can find the live version.

A configured server that cannot be reached fails as a ``dg.Failure`` naming its URL, the cause
and the fix; it is never mistaken for a missing collection.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

_NAME_OK = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")
SLOTS = ("blue", "green")
# Chroma keeps the HNSW changes since the index file was last written in its log and replays
# them in every process that opens the collection: with its default of 1,000 (and a buffer of
# 100), the first read of a slot in a new `ldp`/run process took 0.3-1 s. At 2 every write call
# ends with the graph on disk: nothing to replay, and `ldp serve` can search the persisted graph
# itself (lib/hnsw_mirror.py). 5,000 upserts in calls of 500 took the same time (2.0 s) as at 100.
HNSW_SYNC_THRESHOLD = 2  # also the in-memory buffer (Chroma requires buffer <= threshold)


def collection_pages(collection: Any, include: list[str], page_size: int = 5000) -> Iterator[dict]:
    """Every record of ``collection`` with the ``include`` fields, one ``get`` page at a time
    (a large index never comes back in one answer)."""
    offset = 0
    while True:
        got = collection.get(include=include, limit=page_size, offset=offset)
        yield got
        if len(got["ids"]) < page_size:
            return
        offset += page_size


def collection_name(prefix: str, model_id: str, dimension: int, slot: str) -> str:
    """One pair of collections per embedding model: vectors of two models are never mixed."""
    if slot not in SLOTS:
        raise ValueError(f"slot must be one of {SLOTS}, got {slot!r}")
    slug = re.sub(r"[^a-zA-Z0-9._-]+", "-", model_id).strip("-._")
    name = f"{prefix}-{slug}-{dimension}-{slot}"
    if not _NAME_OK.match(name):
        raise ValueError(
            f"Chroma collection name {name!r} is invalid: 3-512 characters of [a-zA-Z0-9._-], "
            "starting and ending with a letter or digit. Change LDP_CHROMA_COLLECTION."
        )
    return name


class ChromaResource(dg.ConfigurableResource):
    """``path`` for an embedded PersistentClient (one writer process at a time: the
    ``chroma`` concurrency pool), or ``host``/``port`` for a Chroma server."""

    path: str = ""
    host: str = ""
    port: int = 8000
    collection_prefix: str = "kb_chunks"

    _client: Any = PrivateAttr(default=None)

    def get_client(self) -> Any:
        if self._client is None:
            import chromadb
            from chromadb.config import Settings as ChromaSettings

            settings = ChromaSettings(anonymized_telemetry=False)
            if self.host:
                with self.reachable():
                    self._client = chromadb.HttpClient(
                        host=self.host, port=self.port, settings=settings
                    )
            elif self.path:
                self._client = chromadb.PersistentClient(path=self.path, settings=settings)
            else:
                raise dg.Failure("Chroma needs LDP_CHROMA_PATH (a folder) or LDP_CHROMA_HOST.")
        return self._client

    def slot_collection(self, model_id: str, dimension: int, slot: str, create: bool) -> Any:
        name = collection_name(self.collection_prefix, model_id, dimension, slot)
        client = self.get_client()
        if create:
            with self.reachable():
                return client.get_or_create_collection(
                    name,
                    embedding_function=None,
                    metadata={
                        "hnsw:space": "cosine",
                        "hnsw:sync_threshold": HNSW_SYNC_THRESHOLD,
                        "hnsw:batch_size": HNSW_SYNC_THRESHOLD,
                        "embedding_model": model_id,
                        "dimension": dimension,
                        "slot": slot,
                        "version": 0,
                        "live_seq": 0,
                    },
                )
        try:
            with self.reachable():
                return client.get_collection(name, embedding_function=None)
        except dg.Failure:  # the server is down: not the same as "no such collection"
            raise
        except Exception:  # noqa: BLE001 - chroma raises different types per client/version
            return None

    def get_collection(
        self, model_id: str, dimension: int, create: bool = False, slot: str | None = None
    ) -> Any:
        """A slot's collection, or (no slot) the live one: what retrieval should read."""
        if slot is not None:
            return self.slot_collection(model_id, dimension, slot, create)
        live = self.live_collection(model_id, dimension)
        if live is None:
            raise LookupError(
                f"No live RAG index for {model_id} in {self.location}. Materialize rag_index "
                "and rag_index_live (`dagster asset materialize -m llm_data_platform --select "
                "retrieval_eval_set,rag_index,rag_index_live`) or run `make demo`."
            )
        return live

    def persist_often(self, collection: Any) -> None:
        """Collections made before ``HNSW_SYNC_THRESHOLD`` get it (settings Chroma lets us
        change); it applies from the next process that writes to the collection."""
        hnsw = (getattr(collection, "configuration", None) or {}).get("hnsw") or {}
        if int(hnsw.get("sync_threshold", 0)) > HNSW_SYNC_THRESHOLD:
            every = HNSW_SYNC_THRESHOLD
            with self.reachable():
                collection.modify(
                    configuration={"hnsw": {"sync_threshold": every, "batch_size": every}}
                )

    def live_collection(self, model_id: str, dimension: int) -> Any:
        best, best_seq = None, 0
        for slot in SLOTS:
            collection = self.slot_collection(model_id, dimension, slot, create=False)
            seq = int((collection.metadata or {}).get("live_seq", 0)) if collection else 0
            if seq > best_seq:
                best, best_seq = collection, seq
        return best

    def set_metadata(self, collection: Any, **changes: Any) -> None:
        """Chroma refuses metadata that repeats ``hnsw:*`` keys on modify: drop them."""
        metadata = {
            k: v for k, v in (collection.metadata or {}).items() if not k.startswith("hnsw:")
        }
        metadata.update(changes)
        with self.reachable():
            collection.modify(metadata=metadata)

    def promote(self, model_id: str, dimension: int, slot: str, version: int) -> int:
        """Make ``slot`` live: its live_seq becomes the highest; the other slot is kept as it is
        (the previous version, for rollback) until the next build overwrites it."""
        seqs = []
        for other in SLOTS:
            collection = self.slot_collection(model_id, dimension, other, create=False)
            if collection is not None:
                seqs.append(int((collection.metadata or {}).get("live_seq", 0)))
        seq = max(seqs, default=0) + 1
        target = self.slot_collection(model_id, dimension, slot, create=False)
        self.set_metadata(target, live_seq=seq, version=version)
        return seq

    @property
    def location(self) -> str:
        return f"http://{self.host}:{self.port}" if self.host else self.path

    @contextlib.contextmanager
    def reachable(self) -> Iterator[None]:
        """Calls to a Chroma server inside this block fail, when it cannot be reached, with a
        ``dg.Failure`` naming the server, the cause and the fix (the original error chained)."""
        try:
            yield
        except dg.Failure:  # explained already (an inner block, or our own message)
            raise
        except Exception as exc:
            cause = _unreachable_cause(exc) if self.host else None
            if cause is None:
                raise
            raise dg.Failure(
                f"The Chroma server at {self.location} is not reachable ({cause}). Start it "
                f"(`chroma run --path <folder> --host {self.host} --port {self.port}`), fix "
                "LDP_CHROMA_HOST / LDP_CHROMA_PORT, or unset LDP_CHROMA_HOST to use the "
                "embedded folder LDP_CHROMA_PATH; then re-run the step. The live index version "
                "is unchanged."
            ) from exc


def _unreachable_cause(exc: BaseException) -> str | None:
    """Why a Chroma server could not be reached ("connection refused", "timed out"), or None
    when ``exc`` is something else. chromadb's HttpClient turns a refused connection into a
    ValueError at construction; later calls raise httpx's transport errors."""
    import httpx

    chain: list[BaseException] = []
    err: BaseException | None = exc
    while err is not None and err not in chain and len(chain) < 8:
        chain.append(err)
        err = err.__cause__ or err.__context__
    refused_at_start = isinstance(exc, ValueError) and "Could not connect" in str(exc)
    transport = [e for e in chain if isinstance(e, httpx.TransportError)]
    if not transport and not refused_at_start:
        return None
    if any(isinstance(e, httpx.TimeoutException) for e in chain):
        return "timed out"
    for e in chain:
        if isinstance(e, OSError) and e.strerror:
            return e.strerror.lower()
    said = str(transport[0]) if transport else "no answer"
    return re.sub(r"^\[Errno \d+\]\s*", "", said).lower() or type(transport[0]).__name__
