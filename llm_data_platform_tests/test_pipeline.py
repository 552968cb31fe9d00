"""End to end: the whole asset graph on two demo days, into a temp lake and Chroma folder."""

from __future__ import annotations

import json
import posixpath
import re

import dagster as dg
import pyarrow.compute as pc
import pytest

from llm_data_platform.retrieval import Retriever
from llm_data_platform.transforms.training_format import validate_chat_example
from llm_data_platform_tests.conftest import DAYS, WEEK, materialize_daily, materialize_index

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
PHONE = re.compile(r"\(\d{3}\)\s*\d{3}-\d{4}|\+?\d[\d ]{0,3}\d{3}[- ]\d{3}[- ]\d{4}")
CARD = re.compile(r"\b(?:\d{4}[ -]?){3}\d{4}\b")


def _materialization(result, asset: str, partition: str) -> dict:
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        if mat.asset_key.to_user_string() == asset and mat.partition == partition:
            return {k: v.value for k, v in mat.metadata.items()}
    raise AssertionError(f"no materialization of {asset} {partition}")


def _table(platform, zone, name, day):
    return platform.resources["lake"].read_partition(zone, name, day)


def test_every_run_and_check_succeeded(built):
    _, results = built
    for name, result in results.items():
        assert result.success, name
        evaluations = result.get_asset_check_evaluations()
        failed = [e.check_name for e in evaluations if not e.passed]
        assert not failed, f"{name}: failed checks {failed}"
    checked = {e.check_name for r in results.values() for e in r.get_asset_check_evaluations()}
    assert {"conversations_clean_has_no_pii", "rag_index_matches_manifest"} <= checked


@pytest.mark.parametrize("day", DAYS)
def test_raw_counts_add_up(built, day):
    platform, results = built
    truth = platform.truth.conversations[day]
    kept = _table(platform, "raw", "raw_conversations", day)
    quarantined = _table(platform, "raw", "raw_conversations_quarantine", day)
    # each event once: an exact replay (same event_id) is dropped by the raw compaction
    assert kept.num_rows == truth.lines - truth.exact_duplicate_events
    assert kept["event_id"].num_chunks == 0 or len(pc.unique(kept["event_id"])) == kept.num_rows
    assert quarantined.num_rows == truth.malformed
    assert all(r for r in quarantined["reason"].to_pylist())
    # the day's own counts, not the range's, on the day's materialization
    meta = _materialization(results["daily"], "raw_conversations", day)
    assert meta["replays_dropped"] == truth.exact_duplicate_events
    assert meta["kept"] == kept.num_rows and meta["quarantined"] == truth.malformed
    # late events sit in their own (earlier) event day, with a later arrival
    late = pc.sum(
        pc.greater(pc.cast(kept["arrived_at"], "date32"), pc.cast(kept["event_time"], "date32"))
    ).as_py()
    assert late == truth.late_events


@pytest.mark.parametrize("day", DAYS)
def test_clean_counts_add_up_and_drop_the_noise(built, day):
    platform, _ = built
    truth = platform.truth.conversations[day]
    raw = _table(platform, "raw", "raw_conversations", day)
    clean = _table(platform, "clean", "conversations_clean", day)
    dropped = _table(platform, "clean", "conversations_clean_dropped", day)
    assert clean.num_rows + dropped.num_rows == raw.num_rows
    reasons = dropped["reason"].to_pylist()
    assert reasons.count("duplicate_event") == 0  # replays never get past raw
    assert reasons.count("empty") == truth.empty
    assert reasons.count("duplicate_content") == truth.duplicate_content
    garbage = [r for r in reasons if r.startswith("low_quality")]
    assert len(garbage) == truth.garbage
    # the demo's replayed sessions go whole, each row naming the original it copies
    copies = dropped.filter(pc.equal(dropped["reason"], "near_duplicate_conversation"))
    originals = dict(truth.near_duplicate_pairs)
    copied = set(copies["duplicate_of"].to_pylist())
    assert copied and copied <= set(originals.values()), (copied, originals)
    conversation_of = dict(
        zip(raw["event_id"].to_pylist(), raw["conversation_id"].to_pylist(), strict=True)
    )
    assert {conversation_of[e] for e in copies["event_id"].to_pylist()} <= set(originals)
    assert len(set(clean["event_id"].to_pylist())) == clean.num_rows


def test_no_pii_survives_in_clean_text(built):
    platform, _ = built
    injected = sum(sum(platform.truth.conversations[d].pii.values()) for d in DAYS)
    assert injected > 0
    for day in DAYS:
        clean = _table(platform, "clean", "conversations_clean", day)
        texts = [t for t in clean["content"].to_pylist() if t]
        for text in texts:
            assert not EMAIL.search(text), text
            assert not PHONE.search(text), text
            assert not CARD.search(text), text
        assert any("[EMAIL]" in t for t in texts)


def test_training_batch_files_are_valid_chat_jsonl(built):
    platform, results = built
    lake = platform.resources["lake"]
    directory = lake.partition_path("curated", "training_batches", WEEK, name="week")
    manifest = json.loads(lake.read_bytes(posixpath.join(directory, "manifest.json")))
    total = 0
    for name in ("train.jsonl", "validation.jsonl"):
        lines = lake.read_bytes(posixpath.join(directory, name)).decode().splitlines()
        assert len(lines) == manifest["files"][name]["examples"]
        for line in lines:
            assert validate_chat_example(json.loads(line)) == []
        total += len(lines)
    candidates = {
        cid for d in DAYS for cid in platform.truth.conversations[d].candidate_conversation_ids
    }
    examples = lake.read_partitions("curated", "training_examples", keys=DAYS)
    assert total == examples.num_rows > 0
    assert set(examples["conversation_id"].to_pylist()) <= candidates


def test_sample_questions_retrieve_their_topic(built):
    platform, _ = built
    retriever = Retriever(platform.resources["chroma"], platform.resources["embeddings"])
    live = set(platform.truth.final_doc_ids)
    questions = [(q, d) for q, d in platform.truth.eval_questions if d in live]
    assert questions
    top1 = top3 = 0
    for question, doc_id in questions:
        hits = retriever.search(question, k=3)
        top1 += hits[0].doc_id == doc_id
        top3 += doc_id in {h.doc_id for h in hits}
        assert hits[0].source_uri and hits[0].text
    assert top1 / len(questions) >= 0.7, (top1, len(questions))
    assert top3 / len(questions) >= 0.9, (top3, len(questions))


def test_index_holds_exactly_the_live_documents(built):
    platform, _ = built
    chroma, embeddings = platform.resources["chroma"], platform.resources["embeddings"]
    collection = chroma.get_collection(embeddings.model_id, embeddings.dimension)
    got = collection.get(include=["metadatas"])
    indexed_docs = {m["doc_id"] for m in got["metadatas"]}
    assert indexed_docs == set(platform.truth.final_doc_ids)
    deleted = {d for day in DAYS for d in platform.truth.documents[day].deleted_doc_ids}
    assert deleted and not deleted & indexed_docs


def test_rematerializing_changes_nothing(built):
    platform, _ = built
    day = DAYS[-1]
    tables = [
        ("raw", "raw_conversations"),
        ("raw", "raw_documents"),
        ("clean", "conversations_clean"),
        ("clean", "documents_clean"),
        ("curated", "training_examples"),
        ("curated", "document_chunks"),
        ("curated", "chunk_embeddings"),
    ]
    before = {t: _table(platform, *t, day) for t in tables}
    result = materialize_daily(platform, [day])
    assert result.success
    for t in tables:
        assert _table(platform, *t, day).equals(before[t]), t
    mats = result.asset_materializations_for_node("chunk_embeddings")
    assert mats[0].metadata["embedded"] == dg.IntMetadataValue(0)  # all from the cache
    index = materialize_index(platform)
    meta = index.asset_materializations_for_node("rag_index")[0].metadata
    assert meta["upserted"].value == 0 and meta["deleted"].value == 0
    assert meta["already_live"].value is True  # no change → no new version


@pytest.mark.parametrize(
    ("zone", "asset"),
    [
        ("raw", "raw_conversations"),
        ("raw", "raw_conversations_quarantine"),
        ("clean", "conversations_clean"),
        ("curated", "training_examples"),
        ("curated", "document_chunks"),
    ],
)
def test_a_range_run_records_each_days_own_row_count(built, zone, asset):
    """One run over two days: each day's materialization tells that day's rows, not the sum."""
    platform, results = built
    counts = {}
    for day in DAYS:
        table = _table(platform, zone, asset, day)
        counts[day] = table.num_rows if table is not None else 0
        meta = _materialization(results["daily"], asset, day)
        assert meta["dagster/row_count"] == counts[day], (asset, day)
    # the second day has rows too: a day's own count is then not the range's sum
    assert counts[DAYS[1]] > 0 or counts[DAYS[0]] == 0


def test_side_tables_are_observed_in_the_graph(built):
    """The embedding cache and the index evaluations are assets of the graph, and the steps
    that write them record what they wrote as observations on them."""
    platform, _ = built
    from llm_data_platform.definitions import build_definitions

    graph = build_definitions(platform.settings).resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {"embedding_cache", "rag_index_evaluations"} <= keys

    def observations(asset: str) -> list[dict]:
        records = platform.instance.fetch_observations(dg.AssetKey(asset), limit=100).records
        return [{k: v.value for k, v in r.asset_observation.metadata.items()} for r in records]

    cache = observations("embedding_cache")
    assert cache and sum(o["vectors_added"] for o in cache) > 0
    evaluations = observations("rag_index_evaluations")  # one per index build of the session
    assert evaluations and all(e["passed"] is True and e["hit@5"] > 0 for e in evaluations)
