"""Retrieval entry point for chatbot backends: a question in, the top-k chunks out."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass

import numpy as np

from llm_data_platform.resources.chroma import ChromaResource
from llm_data_platform.resources.embeddings import EmbeddingsResource


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float  # cosine similarity, 1 = identical direction
    chunk_id: str
    doc_id: str
    version: str
    title: str
    heading_path: str
    source_uri: str
    text: str

    def as_dict(self) -> dict:
        return asdict(self)


class Retriever:
    """Embeds the question with the index's own model and searches its collection.

    Query vectors are kept in a small LRU cache: chat traffic repeats questions.
    """

    def __init__(
        self, chroma: ChromaResource, embeddings: EmbeddingsResource, cache_size: int = 1024
    ):
        self.chroma = chroma
        self.embeddings = embeddings
        self.collection = chroma.get_collection(
            embeddings.model_id, embeddings.dimension, create=False
        )
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    def _embed(self, question: str) -> np.ndarray:
        vector = self._cache.get(question)
        if vector is None:
            vector = self.embeddings.embed([question])[0]
            self._cache[question] = vector
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(question)
        return vector

    def search(self, question: str, k: int = 5, where: dict | None = None) -> list[Hit]:
        if not question.strip():
            raise ValueError("The question is empty.")
        result = self.collection.query(
            query_embeddings=[self._embed(question)],
            n_results=k,
            where=where,
            include=["documents", "metadatas", "distances"],
        )
        hits = []
        for rank, (chunk_id, text, meta, distance) in enumerate(
            zip(
                result["ids"][0],
                result["documents"][0],
                result["metadatas"][0],
                result["distances"][0],
                strict=True,
            ),
            start=1,
        ):
            meta = meta or {}
            hits.append(
                Hit(
                    rank=rank,
                    score=round(1.0 - float(distance), 4),
                    chunk_id=chunk_id,
                    doc_id=str(meta.get("doc_id", "")),
                    version=str(meta.get("version", "")),
                    title=str(meta.get("title", "")),
                    heading_path=str(meta.get("heading_path", "")),
                    source_uri=str(meta.get("source_uri", "")),
                    text=text or "",
                )
            )
        return hits


def retriever_from_settings() -> Retriever:
    from llm_data_platform.definitions import build_resources

    resources = build_resources()
    return Retriever(resources["chroma"], resources["embeddings"])


def ask(question: str, k: int = 5) -> list[Hit]:
    """One-shot helper: ``from llm_data_platform.retrieval import ask``."""
    return retriever_from_settings().search(question, k=k)
