"""Chroma's own HNSW graph searched in process: the hits equal Chroma's full query, for a real
embedded Chroma collection large enough to have a persisted graph, across a version change."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from llm_data_platform.resources.chroma import ChromaResource
from llm_data_platform.retrieval import Retriever
from llm_data_platform_tests.test_retrieval import _spy_on_includes

DIM = 32
NAME = "test-hnsw-mirror"


class HashEmbeddings:
    """Deterministic vectors from a hash of the text: no model to load."""

    model_id = "fake:hash32"
    dimension = DIM

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            rows.append(np.random.default_rng(seed).standard_normal(DIM, dtype=np.float32))
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), DIM)


class Own(Retriever):
    def _open_collection(self):
        return self.chroma.get_client().get_collection(NAME, embedding_function=None)


def _add(collection, embeddings, start: int, n: int) -> None:
    texts = [f"chunk {i}: about {'lists' if i % 2 else 'dicts'} ünïcode ✓" for i in range(n)]
    collection.upsert(
        ids=[f"c{start + i:05d}" for i in range(n)],
        embeddings=embeddings.embed([f"v{start + i}" for i in range(n)]),
        documents=texts,
        metadatas=[
            {"doc_id": f"kb/{(start + i) // 10}", "version": 3, "source_uri": f"kb/{start + i}"}
            if i % 7
            else None
            for i in range(n)
        ],
    )


@pytest.fixture()
def chroma(tmp_path):
    chroma = ChromaResource(path=str(tmp_path / "chroma"))
    collection = chroma.get_client().create_collection(
        NAME,
        embedding_function=None,
        metadata={"version": 1},
        # Chroma writes its graph to disk every sync_threshold records (default 1,000)
        configuration={"hnsw": {"space": "cosine", "sync_threshold": 100, "batch_size": 100}},
    )
    _add(collection, HashEmbeddings(), 0, 600)
    return chroma


def _assert_as_chroma_returns(mirrored: Retriever, questions: list[str], k: int) -> None:
    collection = mirrored.chroma.get_client().get_collection(NAME, embedding_function=None)
    for question in questions:
        hits = mirrored.search(question, k=k, hybrid=False)
        full = collection.query(
            query_embeddings=mirrored.embeddings.embed([question]),
            n_results=k,
            include=["documents", "metadatas", "distances"],
        )
        assert [h.chunk_id for h in hits] == full["ids"][0]
        for hit, text, meta, distance in zip(
            hits, full["documents"][0], full["metadatas"][0], full["distances"][0], strict=True
        ):
            meta = meta or {}
            assert hit.score == pytest.approx(1 - distance, abs=1e-4)
            assert hit.text == text
            assert (hit.doc_id, hit.version, hit.source_uri) == (
                str(meta.get("doc_id", "")), str(meta.get("version", "")),
                str(meta.get("source_uri", "")),
            )  # fmt: skip


def test_the_graph_answers_as_chroma_does_and_filters_go_to_chroma(chroma):
    embeddings = HashEmbeddings()
    plain = Own(chroma, embeddings)
    mirrored = Own(chroma, embeddings, version_check_seconds=3600, mirror=True)
    assert mirrored.start_mirror(wait=None)
    status = mirrored.mirror_status()
    assert status["vectors"] and status["vector_bytes"] > 0, status
    asked = _spy_on_includes(mirrored.collection)
    questions = [f"question {i}" for i in range(40)]
    _assert_as_chroma_returns(mirrored, questions, k=10)
    assert asked == []  # unfiltered: no Chroma query at all
    for question in questions[:10]:
        for where in (None, {"doc_id": "kb/3"}):
            for hybrid in (False, True):
                expected = plain.search(question, k=5, where=where, hybrid=hybrid)
                assert mirrored.search(question, k=5, where=where, hybrid=hybrid) == expected
    assert asked and all(include == ["distances"] for include in asked)  # the filtered ones


def test_a_new_version_reloads_the_graph_with_additions_and_deletions(chroma):
    embeddings = HashEmbeddings()
    mirrored = Own(chroma, embeddings, version_check_seconds=3600, mirror=True)
    assert mirrored.start_mirror(wait=None) and mirrored.mirror_status()["vectors"]
    collection = chroma.get_client().get_collection(NAME, embedding_function=None)
    _add(collection, embeddings, 600, 250)
    collection.modify(metadata={"version": 2})
    mirrored.refresh()
    assert mirrored.start_mirror(wait=None)
    status = mirrored.mirror_status()
    assert status["chunks"] == 850 and status["vectors"], status
    _assert_as_chroma_returns(mirrored, [f"question {i}" for i in range(40)], k=8)

    collection.delete(ids=[f"c{i:05d}" for i in range(0, 850, 3)])  # 284 chunks go
    collection.modify(metadata={"version": 3})
    mirrored.refresh()
    assert mirrored.start_mirror(wait=None)
    status = mirrored.mirror_status()
    assert status["chunks"] == 566 and status["vectors"], status  # deleted: kept for routing
    _assert_as_chroma_returns(mirrored, [f"question {i}" for i in range(40)], k=8)


def test_a_graph_chroma_has_not_persisted_is_not_used(tmp_path):
    """Fewer records than Chroma's sync threshold: its graph is not on disk, Chroma answers."""
    chroma = ChromaResource(path=str(tmp_path / "chroma"))
    collection = chroma.get_client().create_collection(
        NAME, embedding_function=None, metadata={"hnsw:space": "cosine"}
    )
    _add(collection, HashEmbeddings(), 0, 40)
    mirrored = Own(chroma, HashEmbeddings(), mirror=True)
    assert mirrored.start_mirror(wait=None)
    status = mirrored.mirror_status()
    assert not status["vectors"] and "persisted" in status["vectors_error"]
    _assert_as_chroma_returns(mirrored, [f"question {i}" for i in range(10)], k=5)
