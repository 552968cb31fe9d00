"""The index follows the documents in the documents' own ingest run: one run from a staged
edit to a promoted, gated index version (no second run's sensor tick, queue and start-up)."""

from __future__ import annotations

from llm_data_platform.definitions import build_definitions
from llm_data_platform_tests.conftest import DAYS, make_platform, stage


def test_one_document_ingest_run_builds_gates_and_promotes_the_index(tmp_path):
    platform = make_platform(tmp_path)
    assert stage(platform).success
    defs = build_definitions(platform.settings)
    job = defs.resolve_job_def("ingest_documents_job")
    keys = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert {"chunk_embeddings", "rag_index", "rag_index_live"} <= keys
    assert "rag_index_after_documents_sensor" not in {s.name for s in defs.sensors or []}

    result = job.execute_in_process(
        partition_key=DAYS[0], instance=platform.instance, raise_on_error=False
    )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["rag_index_retrieval_quality"] is True and checks["rag_index_matches_manifest"]
    [live] = result.asset_materializations_for_node("rag_index_live")
    assert live.metadata["live_version"].value == 1
    chroma, embeddings = platform.resources["chroma"], platform.resources["embeddings"]
    collection = chroma.live_collection(embeddings.model_id, embeddings.dimension)
    assert collection is not None and collection.count() == live.metadata["chunks"].value > 0
    # the nightly safety net stays, on its own job
    assert defs.resolve_job_def("rag_index_job") is not None
    assert "rag_index_schedule" in {s.name for s in defs.schedules or []}
