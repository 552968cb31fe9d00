"""Blue/green index versions: a build that retrieves badly never reaches users."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import dagster as dg
import pytest

from llm_data_platform.lib.index_versions import candidate_version, evaluation_history
from llm_data_platform.transforms.retrieval_metrics import retrieval_metrics
from llm_data_platform_tests.conftest import DAYS, graph_for, make_platform, materialize_daily

BAD_DAY = "2026-01-08"


def test_retrieval_metrics():
    ranked = [["a", "a", "b"], ["c", "b"], ["x", "y", "z", "w", "v", "b"]]
    m = retrieval_metrics(ranked, ["a", "b", "b"])
    assert m["hit@1"] == pytest.approx(1 / 3, abs=1e-3)
    assert m["hit@5"] == pytest.approx(2 / 3, abs=1e-3)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 6) / 3, abs=1e-3)


def _index_run(platform, selection=("rag_index", "rag_index_live")):

    return dg.materialize(
        graph_for(platform.settings),
        selection=dg.AssetSelection.assets(*selection),
        resources=platform.resources,
        instance=platform.instance,
        raise_on_error=False,
    )


def _vandalise_all_documents(platform) -> None:
    """A day on which every live document is overwritten with unrelated text."""
    folder = os.path.join(platform.settings.landing_dir, "documents", BAD_DAY)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "documents-vandal.jsonl")
    with open(path, "w") as f:
        for i, doc_id in enumerate(platform.truth.final_doc_ids):
            junk = " ".join(f"Shipping invoice {i} pallet {j} cardboard tape." for j in range(8))
            f.write(
                json.dumps(
                    {
                        "event_id": f"vandal-{i}",
                        "doc_id": doc_id,
                        "op": "upsert",
                        "format": "text",
                        "title": "Warehouse notes",
                        "content": junk,
                        "updated_at": f"{BAD_DAY}T09:00:00Z",
                    }
                )
                + "\n"
            )
    arrival = datetime.fromisoformat(f"{BAD_DAY}T23:00:00+00:00").astimezone(UTC).timestamp()
    os.utime(path, (arrival, arrival))


def test_a_bad_build_is_not_promoted_and_the_live_version_keeps_serving(tmp_path):
    from llm_data_platform.retrieval import Retriever

    platform = make_platform(tmp_path)
    chroma, embeddings, lake = (platform.resources[k] for k in ("chroma", "embeddings", "lake"))
    from llm_data_platform_tests.conftest import materialize_one

    assert materialize_one(platform, "retrieval_eval_set").success
    assert materialize_daily(platform, DAYS).success
    first = _index_run(platform)
    assert first.success
    live = chroma.live_collection(embeddings.model_id, embeddings.dimension)
    assert live.metadata["version"] == 1

    _vandalise_all_documents(platform)
    assert materialize_daily(platform, [BAD_DAY]).success
    bad = _index_run(platform)
    assert not bad.success
    failed = [e for e in bad.get_asset_check_evaluations() if not e.passed]
    assert [e.check_name for e in failed] == ["rag_index_retrieval_quality"]
    assert not bad.asset_materializations_for_node("rag_index_live")  # never started

    # users still get version 1 and its answers
    live = chroma.live_collection(embeddings.model_id, embeddings.dimension)
    assert live.metadata["version"] == 1
    question, doc_id = next(
        (q, d) for q, d in platform.truth.eval_questions if d in platform.truth.final_doc_ids
    )
    hits = Retriever(chroma, embeddings).search(question, k=5)
    assert doc_id in {h.doc_id for h in hits}
    assert "Shipping invoice" not in hits[0].text

    # promoting by hand is refused too: the failed evaluation is on record
    candidate = candidate_version(lake, embeddings.model_id)
    assert candidate.version == 2 and candidate.passed is False
    alone = _index_run(platform, selection=("rag_index_live",))
    assert not alone.success
    assert [v.passed for v in evaluation_history(lake, embeddings.model_id)] == [True, False]


def test_a_knowledge_base_without_questions_is_gated_on_its_own_titles(tmp_path):
    """No eval/questions.jsonl: the set is generated from the documents' titles and headings,
    kept when the documents change, and a vandalised build is refused against it."""
    platform = make_platform(tmp_path)
    chroma, embeddings = platform.resources["chroma"], platform.resources["embeddings"]
    os.remove(os.path.join(platform.settings.landing_dir, "eval", "questions.jsonl"))
    assert materialize_daily(platform, DAYS).success
    first = _index_run(platform, selection=("retrieval_eval_set", "rag_index", "rag_index_live"))
    assert first.success
    eval_set = platform.resources["lake"].read_partition("curated", "retrieval_eval_set", "all")
    assert eval_set.num_rows >= 5 and set(eval_set["source"].to_pylist()) == {"generated"}
    (check,) = [e for e in first.get_asset_check_evaluations() if "quality" in e.check_name]
    assert check.passed and check.metadata["question_source"].value == "generated"
    assert check.metadata["questions_embedded"].value == len(set(eval_set["question"].to_pylist()))
    assert (
        chroma.live_collection(embeddings.model_id, embeddings.dimension).metadata["version"] == 1
    )

    _vandalise_all_documents(platform)  # every page now titled "Warehouse notes"
    assert materialize_daily(platform, [BAD_DAY]).success
    bad = _index_run(platform, selection=("retrieval_eval_set", "rag_index", "rag_index_live"))
    assert not bad.success
    again = platform.resources["lake"].read_partition("curated", "retrieval_eval_set", "all")
    # every earlier question kept (a page that had none may gain its new title's)
    assert set(eval_set["question"].to_pylist()) <= set(again["question"].to_pylist())
    (check,) = [e for e in bad.get_asset_check_evaluations() if "quality" in e.check_name]
    assert not check.passed
    # a question asked of an earlier version is not embedded again (the embedding cache)
    new_questions = set(again["question"].to_pylist()) - set(eval_set["question"].to_pylist())
    assert check.metadata["questions_embedded"].value == len(new_questions)
    reasons = " ".join(check.metadata["failed_because"].value)
    assert "hit@5" in reasons and "live version" in reasons, reasons
    assert (
        chroma.live_collection(embeddings.model_id, embeddings.dimension).metadata["version"] == 1
    )


def test_after_the_first_promotion_a_build_syncs_only_what_changed(tmp_path):
    """The first build fills both slots; the next day's document edits then reach the other
    slot as the changed chunks alone — not every chunk into an empty slot — and each slot
    holds exactly its version's chunks (the manifest)."""
    from llm_data_platform.defs.rag.index import read_manifest
    from llm_data_platform.lib.index_slots import read_entries as existing_entries

    platform = make_platform(tmp_path)
    chroma, embeddings, lake = (platform.resources[k] for k in ("chroma", "embeddings", "lake"))
    assert materialize_daily(platform, DAYS[:1]).success
    first = _index_run(platform)
    assert first.success
    meta = first.asset_materializations_for_node("rag_index")[0].metadata
    total = meta["chunks_in_index"].value
    assert meta["upserted"].value == meta["standby_upserted"].value == total > 0
    before = read_manifest(lake)

    assert materialize_daily(platform, DAYS[1:]).success  # edits, additions, a deletion
    second = _index_run(platform)
    assert second.success
    meta = second.asset_materializations_for_node("rag_index")[0].metadata
    after = read_manifest(lake)
    old = set(zip(before["chunk_id"].to_pylist(), before["version"].to_pylist(), strict=True))
    new = set(zip(after["chunk_id"].to_pylist(), after["version"].to_pylist(), strict=True))
    changed, gone = new - old, {c for c, _ in old} - {c for c, _ in new}
    assert changed and meta["upserted"].value == len(changed) < len(new)
    assert meta["deleted"].value == len(gone) and meta["standby_upserted"].value == 0

    live = chroma.live_collection(embeddings.model_id, embeddings.dimension)
    assert live.metadata["version"] == 2
    held = {
        slot: existing_entries(
            chroma.get_collection(embeddings.model_id, embeddings.dimension, slot=slot)
        )
        for slot in ("blue", "green")
    }
    assert {(c, m["version"]) for c, m in held[live.metadata["slot"]].items()} == new
    rollback = "blue" if live.metadata["slot"] == "green" else "green"
    assert {(c, m["version"]) for c, m in held[rollback].items()} == old
    _slot_records_agree_with_chroma(platform, held)


class _GetSpy:
    """A collection whose ``get`` calls are recorded (which fields each one asked for)."""

    def __init__(self, collection):
        self.collection, self.includes = collection, []

    @property
    def metadata(self):
        return self.collection.metadata

    def get(self, **kwargs):
        self.includes.append(tuple(kwargs.get("include", ())))
        return self.collection.get(**kwargs)


def _slot_records_agree_with_chroma(platform, held: dict[str, dict]) -> None:
    """Each slot's lake record gives what Chroma holds without reading its metadata back;
    a record the collection does not vouch for (digest cleared by an interrupted sync, a chunk
    deleted behind the platform's back) is not used."""
    from llm_data_platform.lib.index_slots import DIGEST_KEY, held_versions

    chroma, embeddings, lake = (platform.resources[k] for k in ("chroma", "embeddings", "lake"))
    model_id = embeddings.model_id
    for slot, entries in held.items():
        truth = {cid: meta["version"] for cid, meta in entries.items()}
        spy = _GetSpy(chroma.get_collection(model_id, embeddings.dimension, slot=slot))
        assert held_versions(lake, spy, model_id, slot) == truth
        assert spy.includes and all(inc == () for inc in spy.includes)  # ids only

    slot = next(iter(held))
    collection = chroma.get_collection(model_id, embeddings.dimension, slot=slot)
    gone = sorted(held[slot])[0]
    collection.delete(ids=[gone])  # behind the platform's back: the ids no longer agree
    truth = {cid: meta["version"] for cid, meta in held[slot].items() if cid != gone}
    spy = _GetSpy(collection)
    assert held_versions(lake, spy, model_id, slot) == truth
    assert ("metadatas",) in spy.includes  # read from Chroma

    chroma.set_metadata(collection, **{DIGEST_KEY: ""})  # a sync that never finished
    spy = _GetSpy(collection)
    assert held_versions(lake, spy, model_id, slot) == truth
    assert ("metadatas",) in spy.includes


def test_slots_persist_their_hnsw_index_after_every_write(tmp_path):
    """A new process replays what Chroma has not yet written to the index file: new slots
    write their graph with every write call (nothing to replay; ``ldp serve`` can load it),
    and a slot made before that gets the setting on its next sync."""
    from llm_data_platform.lib.hnsw_mirror import _vector_segment
    from llm_data_platform.resources.chroma import HNSW_SYNC_THRESHOLD, ChromaResource

    chroma = ChromaResource(path=str(tmp_path / "chroma"))
    made = chroma.slot_collection("local:model", 4, "blue", create=True)
    assert made.configuration["hnsw"]["sync_threshold"] == HNSW_SYNC_THRESHOLD == 2
    path, vectors = str(tmp_path / "chroma"), [[1.0, float(i), 0.5, 0.25] for i in range(200)]
    made.upsert(ids=[f"c{i}" for i in range(150)], embeddings=vectors[:150])
    _vector_segment(path, str(made.id))  # raises while changes wait in Chroma's log
    made.upsert(ids=["c150"], embeddings=vectors[150:151])  # one record: below the threshold
    with pytest.raises(ValueError, match="persisted records up to"):
        _vector_segment(path, str(made.id))
    made.upsert(ids=["c151"], embeddings=vectors[151:152])  # the next write takes both
    _vector_segment(path, str(made.id))
    older = chroma.get_client().create_collection(
        "older-slot", embedding_function=None, metadata={"hnsw:space": "cosine"}
    )
    assert older.configuration["hnsw"]["sync_threshold"] == 1000  # Chroma's default
    chroma.persist_often(older)
    again = chroma.get_client().get_collection("older-slot", embedding_function=None)
    assert again.configuration["hnsw"]["sync_threshold"] == HNSW_SYNC_THRESHOLD
    assert again.metadata == {"hnsw:space": "cosine"}  # nothing else changed


def test_the_gate_ranks_documents_from_ids_and_looks_up_chunks_the_manifest_lacks(tmp_path):
    """The gate queries ids only: the manifest names their documents, and a chunk only the live
    version still holds is named by its own metadata, read from Chroma."""
    import chromadb
    import numpy as np

    from llm_data_platform.defs.rag.checks import _measure

    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    collection = client.create_collection("gate-ids", metadata={"hnsw:space": "cosine"})
    vectors = np.eye(3, 8, dtype=np.float32)
    collection.add(
        ids=["c-a", "c-b", "c-old"],
        embeddings=vectors,
        metadatas=[{"doc_id": "a.md"}, {"doc_id": "b.md"}, {"doc_id": "old.md"}],
    )
    manifest_docs = {"c-a": "a.md", "c-b": "b.md"}  # c-old left the new version
    metrics, ranked = _measure(collection, vectors, [["a.md"], ["b.md"], ["old.md"]], manifest_docs)
    assert [r[0] for r in ranked] == ["a.md", "b.md", "old.md"]
    assert metrics["hit@1"] == 1.0
