"""The Retriever: caches, index-version invalidation, metadata filters, hybrid (BM25 + RRF)."""

from __future__ import annotations

import pytest

from llm_data_platform.resources.chroma import ChromaResource
from llm_data_platform.retrieval import LRU, Retriever, reciprocal_rank_fusion, tokenize

LINEAGE = ("chunk_id", "doc_id", "version", "source_uri", "heading_path", "score")


def _questions(platform) -> list[tuple[str, str]]:
    live = set(platform.truth.final_doc_ids)
    questions = [(q, d) for q, d in platform.truth.eval_questions if d in live]
    assert questions
    return questions


@pytest.fixture(scope="module")
def retriever(built) -> Retriever:
    platform, _ = built
    return Retriever(platform.resources["chroma"], platform.resources["embeddings"])


def test_rrf_rewards_agreement_between_rankings():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "d"]])
    assert list(fused)[0] == "b"
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["a"] == pytest.approx(1 / 61)
    assert set(fused) == {"a", "b", "c", "d"}


def test_lru_evicts_the_least_recently_used():
    lru = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # "b" is now the oldest
    lru.put("c", 3)
    assert lru.get("b") is None and lru.get("a") == 1 and lru.get("c") == 3
    assert len(lru) == 2


def test_tokenize_keeps_identifiers():
    assert tokenize("What does __init__ do in os.path?") == [
        "what",
        "does",
        "__init__",
        "do",
        "in",
        "os",
        "path",
    ]


def test_vector_hits_carry_lineage(built, retriever):
    platform, _ = built
    question, doc_id = _questions(platform)[0]
    hits = retriever.search(question, k=3)
    assert [h.rank for h in hits] == [1, 2, 3]
    assert doc_id in {h.doc_id for h in hits}
    for hit in hits:
        assert all(
            getattr(hit, name) not in ("", None) for name in LINEAGE if name != "heading_path"
        )
        assert hit.mode == "vector" and hit.vector_score == hit.score and hit.bm25_score is None
        assert hit.text
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_repeat_is_served_from_the_results_cache(built, retriever):
    platform, _ = built
    question = _questions(platform)[1][0]
    first = retriever.search_detailed(question, k=4)
    again = retriever.search_detailed("  " + question.replace(" ", "   ") + " ", k=4)
    assert not first.cached and again.cached
    assert again.hits == first.hits
    assert set(first.timings_ms) >= {"embed", "vector", "total"}
    assert again.index_version == first.index_version == retriever.index_version
    # k, where and mode are part of the key
    assert not retriever.search_detailed(question, k=2).cached
    assert not retriever.search_detailed(question, k=4, hybrid=True).cached


def test_index_version_names_the_collection_its_size_and_version(retriever):
    collection = retriever.collection
    name, count = collection.name, collection.count()
    version = (collection.metadata or {}).get("version")
    suffix = "" if version is None else f":v{version}"
    assert retriever.index_version == f"{name}:{count}{suffix}"
    assert retriever.count == count > 0


def test_where_filters_reach_chroma_in_both_modes(built, retriever):
    platform, _ = built
    question, _ = _questions(platform)[0]
    other = _questions(platform)[-1][1]
    for hybrid in (False, True):
        hits = retriever.search(question, k=5, where={"doc_id": other}, hybrid=hybrid)
        assert hits and {h.doc_id for h in hits} == {other}
    assert retriever.search(question, k=5, where={"doc_id": "no/such/doc"}) == []
    assert retriever.search(question, k=5, where={"doc_id": "no/such/doc"}, hybrid=True) == []


def test_hybrid_retrieves_the_topic_as_well_as_vectors_alone(built, retriever):
    platform, _ = built
    questions = _questions(platform)
    top3 = {False: 0, True: 0}
    for question, doc_id in questions:
        for hybrid in (False, True):
            hits = retriever.search(question, k=3, hybrid=hybrid)
            top3[hybrid] += doc_id in {h.doc_id for h in hits}
    assert top3[True] / len(questions) >= 0.9, (top3, len(questions))
    hits = retriever.search(questions[0][0], k=5, hybrid=True)
    assert {h.mode for h in hits} == {"hybrid"}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert any(h.bm25_score for h in hits) and any(h.vector_score for h in hits)
    for hit in hits:  # keyword-only hits get their text and lineage from Chroma too
        assert hit.text and hit.chunk_id and hit.doc_id and hit.source_uri


def test_hybrid_is_the_setting_default(built):
    from llm_data_platform.settings import load_settings

    assert not load_settings({"LDP_RETRIEVAL_HYBRID": "false"}).retrieval_hybrid
    assert load_settings({}).retrieval_hybrid  # hybrid won on both measured corpora: the default
    with pytest.raises(ValueError, match="not a boolean"):
        load_settings({"LDP_RETRIEVAL_HYBRID": "maybe"})
    platform, _ = built
    r = Retriever(platform.resources["chroma"], platform.resources["embeddings"], hybrid=True)
    assert {h.mode for h in r.search(_questions(platform)[0][0], k=2)} == {"hybrid"}
    assert {h.mode for h in r.search(_questions(platform)[0][0], k=2, hybrid=False)} == {"vector"}


class _OwnCollection:
    """A small collection of a test's own (the built one is shared): real model, real Chroma.
    ``put(ids)`` upserts ``texts[id]`` as document ``kb/<id>``, version 1."""

    def __init__(self, embeddings, path: str, name: str, texts: dict[str, str]):
        self.embeddings, self.texts = embeddings, texts
        self.chroma = ChromaResource(path=path)
        self.collection = self.chroma.get_client().create_collection(
            name, embedding_function=None, metadata={"hnsw:space": "cosine"}
        )

    def put(self, ids: list[str]) -> None:
        self.collection.upsert(
            ids=ids,
            embeddings=self.embeddings.embed([self.texts[i] for i in ids]),
            documents=[self.texts[i] for i in ids],
            metadatas=[
                {"doc_id": f"kb/{i}", "version": "1", "source_uri": f"https://kb/{i}"} for i in ids
            ],
        )

    def retriever(self, **kwargs) -> Retriever:
        """A retriever that reads this collection, not the platform's live one."""
        chroma, name = self.chroma, self.collection.name

        class OwnCollection(Retriever):
            def _open_collection(self):
                return chroma.get_client().get_collection(name, embedding_function=None)

        return OwnCollection(chroma, self.embeddings, **kwargs)


def test_a_new_index_version_empties_the_caches_and_rebuilds_bm25(built, tmp_path):
    """A small collection of our own (the built one is shared): real model, real Chroma."""
    platform, _ = built
    texts = {
        "c1": "The try statement specifies exception handlers for a group of statements.",
        "c2": "A for loop iterates over the items of any sequence, in order.",
        "c3": "The with statement wraps a block with methods of a context manager.",
    }
    kb = _OwnCollection(
        platform.resources["embeddings"], str(tmp_path / "chroma"), "test-invalidation", texts
    )
    collection = kb.collection
    kb.put(["c1", "c2", "c3"])
    retriever = kb.retriever(version_check_seconds=3600)
    v1 = retriever.index_version
    assert v1 == f"{collection.name}:3"
    assert retriever.search("quuxfrobnicate", k=2, hybrid=True)[0].bm25_score is None
    assert retriever.search_detailed("quuxfrobnicate", k=2, hybrid=True).cached

    texts["c4"] = "The quuxfrobnicate builtin frobnicates a quux."
    kb.put(["c4"])
    # re-checked at most every version_check_seconds: still the old version, still cached
    assert retriever.index_version == v1
    assert retriever.search_detailed("quuxfrobnicate", k=2, hybrid=True).cached

    assert retriever.refresh() == f"{collection.name}:4"
    result = retriever.search_detailed("quuxfrobnicate", k=2, hybrid=True)
    assert not result.cached
    assert result.hits[0].chunk_id == "c4" and result.hits[0].bm25_score > 0

    # a version entry in the collection's metadata is part of the index version too
    collection.modify(metadata={"version": 7})
    assert retriever.refresh() == f"{collection.name}:4:v7"
    assert not retriever.search_detailed("quuxfrobnicate", k=2, hybrid=True).cached


def test_empty_question_is_refused(retriever):
    with pytest.raises(ValueError, match="empty"):
        retriever.search("   ")


def test_ask_command_filters_and_fuses(built, monkeypatch, capsys):
    import json

    from llm_data_platform.cli import main

    platform, _ = built
    for name, value in platform.env.items():
        monkeypatch.setenv(name, value)
    question, _ = _questions(platform)[0]
    other = _questions(platform)[-1][1]
    where = json.dumps({"doc_id": other})
    assert main(["ask", question, "-k", "3", "--hybrid", "--json", "--where", where]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits and {h["doc_id"] for h in hits} == {other}
    assert {h["mode"] for h in hits} == {"hybrid"}
    assert main(["ask", question, "--where", "{not json"]) == 2
    assert "--where is not JSON" in capsys.readouterr().out


def test_bm25_is_saved_per_index_version_and_loaded_by_the_next_process(
    built, tmp_path, monkeypatch
):
    """The first retriever builds BM25 for the live version and saves it; a later one (a new
    process: a fresh Retriever) loads it without reading the collection, with equal scores."""
    from llm_data_platform import retrieval

    platform, _ = built
    chroma, embeddings = platform.resources["chroma"], platform.resources["embeddings"]
    question = _questions(platform)[0][0]
    first = Retriever(chroma, embeddings, hybrid=True, bm25_dir=str(tmp_path / "bm25"))
    expected = [(h.chunk_id, h.bm25_score) for h in first.search(question, k=5)]
    [saved] = [p for p in (tmp_path / "bm25").iterdir() if not p.name.startswith(".")]
    assert (saved / "chunk_ids.json").exists()

    def no_build(*args, **kwargs):
        raise AssertionError("BM25 was rebuilt although this index version was saved")

    monkeypatch.setattr(retrieval.BM25Index, "build", classmethod(no_build))
    second = Retriever(chroma, embeddings, hybrid=True, bm25_dir=str(tmp_path / "bm25"))
    assert [(h.chunk_id, h.bm25_score) for h in second.search(question, k=5)] == expected
    assert any(score is not None for _, score in expected)


# -- the chunk mirror: ids and distances from Chroma, texts and lineage from memory ------------
def _mirrored(platform, **kwargs) -> Retriever:
    r = Retriever(platform.resources["chroma"], platform.resources["embeddings"], **kwargs)
    assert r.start_mirror(wait=None), r.mirror_status()
    return r


def test_the_mirror_returns_what_the_full_chroma_query_returns(built, retriever):
    """Against Chroma's own full query (documents, metadatas, distances): same ids, order,
    scores within 1e-4, texts and lineage; and the same hits as the unmirrored retriever, in
    both modes, with and without a where filter."""
    platform, _ = built
    mirrored = _mirrored(platform, version_check_seconds=3600)  # one collection object
    assert mirrored.mirror_status()["chunks"] == retriever.count
    asked = _spy_on_includes(mirrored.collection)
    questions = _questions(platform)
    collection = retriever.collection
    for question, _ in questions:
        hits = mirrored.search(question, k=8, hybrid=False)
        full = collection.query(
            query_embeddings=[mirrored._embed(" ".join(question.split()))],
            n_results=8,
            include=["documents", "metadatas", "distances"],
        )
        assert [h.chunk_id for h in hits] == full["ids"][0]
        for hit, text, meta, distance in zip(
            hits, full["documents"][0], full["metadatas"][0], full["distances"][0], strict=True
        ):
            assert hit.score == pytest.approx(1 - distance, abs=1e-4)
            assert hit.text == text
            assert (hit.doc_id, hit.version, hit.source_uri) == (
                meta["doc_id"], str(meta["version"]), meta["source_uri"]
            )  # fmt: skip
            assert (hit.title, hit.heading_path) == (
                str(meta.get("title", "")), str(meta.get("heading_path", ""))
            )  # fmt: skip
    other = questions[-1][1]
    for question, _ in questions[:5]:
        for where in (None, {"doc_id": other}):
            for hybrid in (False, True):
                expected = retriever.search(question, k=5, where=where, hybrid=hybrid)
                assert mirrored.search(question, k=5, where=where, hybrid=hybrid) == expected
    assert asked and all(include == ["distances"] for include in asked)


def _spy_on_includes(collection) -> list:
    """What each query of ``collection`` asked Chroma to include."""
    asked, query = [], collection.query

    def spy(*args, **kwargs):
        asked.append(kwargs.get("include"))
        return query(*args, **kwargs)

    collection.query = spy
    return asked


def test_the_mirror_is_rebuilt_for_a_new_index_version_and_chroma_fills_its_gaps(built, tmp_path):
    """A chunk the mirror does not hold (added while the version was not re-checked) comes from
    Chroma; a new version (count or metadata ``version``) gets a new mirror, and a changed text
    is served as Chroma now holds it."""
    platform, _ = built
    texts = {
        "c1": "The try statement specifies exception handlers for a group of statements.",
        "c2": "A for loop iterates over the items of any sequence, in order.",
    }
    kb = _OwnCollection(
        platform.resources["embeddings"], str(tmp_path / "chroma"), "test-mirror", texts
    )
    collection = kb.collection
    kb.put(["c1", "c2"])
    retriever = kb.retriever(version_check_seconds=3600)
    assert retriever.start_mirror(wait=None) and retriever.mirror_status()["chunks"] == 2

    texts["c3"] = "The quuxfrobnicate builtin frobnicates a quux."
    kb.put(["c3"])  # not re-checked yet: the mirror (2 chunks) stays, Chroma fills the gap
    [hit] = retriever.search("What does quuxfrobnicate do?", k=1)
    assert (hit.chunk_id, hit.text, hit.doc_id) == ("c3", texts["c3"], "kb/c3")
    assert retriever.mirror_status()["chunks"] == 2

    texts["c3"] = "The quuxfrobnicate builtin frobnicates a quux, twice."
    kb.put(["c3"])
    collection.modify(metadata={"version": 2})
    retriever.refresh()  # a new version: the old mirror is dropped, a new one built
    assert retriever.start_mirror(wait=None) and retriever.mirror_status()["chunks"] == 3
    [hit] = retriever.search("What does quuxfrobnicate do?", k=1)
    assert (hit.chunk_id, hit.text) == ("c3", texts["c3"])


def test_without_a_ready_mirror_search_uses_the_full_query(built, retriever, monkeypatch):
    """A mirror that failed to build (or is still building) is never consulted."""
    from llm_data_platform.lib import chunk_mirror

    platform, _ = built

    def fail(cls, collection, page_size=5000):
        raise RuntimeError("Chroma went away")

    monkeypatch.setattr(chunk_mirror.ChunkMirror, "build", classmethod(fail))
    broken = Retriever(platform.resources["chroma"], platform.resources["embeddings"])
    assert not broken.start_mirror(wait=None)
    assert broken.mirror_status()["error"] == "Chroma went away"
    question = _questions(platform)[0][0]
    assert broken.search(question, k=4, hybrid=False) == retriever.search(question, k=4)
