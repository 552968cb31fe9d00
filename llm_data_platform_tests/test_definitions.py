"""The code location loads, with every asset, check, job, sensor and schedule wired."""

from __future__ import annotations

import dagster as dg

from llm_data_platform.definitions import defs

ASSET_NAMES = {
    "conversations_batches",
    "conversations_batches_quarantine",
    "documents_batches",
    "documents_batches_quarantine",
    "raw_conversations",
    "raw_conversations_quarantine",
    "raw_documents",
    "raw_documents_quarantine",
    "conversations_clean",
    "conversations_clean_dropped",
    "conversations_content_hashes",
    "conversations_near_dup_signatures",
    "conversations_history_duplicates",
    "documents_clean",
    "documents_clean_dropped",
    "training_examples",
    "training_selection_log",
    "training_batches",
    "fine_tune_job",
    "document_chunks",
    "chunk_embeddings",
    "rag_index",
    "rag_index_live",
    "retrieval_eval_set",
    "embedding_cache",
    "rag_index_evaluations",
    "deletion_requests",
    "deletion_audit",
}


def test_definitions_load_with_the_contracted_asset_names():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == ASSET_NAMES
    groups = {graph.get(dg.AssetKey(n)).group_name for n in ASSET_NAMES}
    assert groups == {"ingest", "raw", "clean", "curated", "serve", "privacy"}


def test_every_partitioned_asset_has_a_backfill_policy_and_checks_exist():
    graph = defs.resolve_asset_graph()
    unpartitioned = {
        f"{s}_batches{q}" for s in ("conversations", "documents") for q in ("", "_quarantine")
    }
    for name in (
        ASSET_NAMES
        - unpartitioned
        - {
            "rag_index",
            "rag_index_live",
            "training_batches",
            "retrieval_eval_set",
            "embedding_cache",
            "rag_index_evaluations",
            "conversations_content_hashes",  # side tables the clean step writes (observed)
            "conversations_near_dup_signatures",
            "conversations_history_duplicates",  # every day at once (unpartitioned)
            "deletion_requests",
            "deletion_audit",
        }
    ):
        node = graph.get(dg.AssetKey(name))
        assert node.partitions_def is not None, name
        assert node.backfill_policy is not None, name
    # a backfill of weeks: one run per week (each is built from its own seven days)
    weekly = graph.get(dg.AssetKey("training_batches")).backfill_policy
    assert weekly is not None and weekly.max_partitions_per_run == 1
    check_assets = {k.asset_key.to_user_string() for k in graph.asset_check_keys}
    assert {"conversations_clean", "training_batches", "rag_index"} <= check_assets


def test_jobs_sensors_schedules_resolve():
    for job in (
        "daily_job",
        "weekly_training_job",
        "rag_index_job",
        "ingest_conversations_job",
        "sync_documents_job",
    ):
        assert defs.resolve_job_def(job) is not None
    assert defs.get_sensor_def("landing_conversations_sensor")
    assert defs.get_sensor_def("landing_documents_sensor")
    assert defs.get_sensor_def("raw_conversations_after_staging_sensor")
    assert defs.resolve_job_def("stage_conversations_job") is not None
    assert defs.get_schedule_def("weekly_training_job_schedule")
    assert defs.get_schedule_def("daily_job_schedule")


def test_readme_lists_every_setting_with_its_default():
    from pathlib import Path

    from llm_data_platform.settings import SETTINGS

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for setting in SETTINGS:
        default = f"`{setting.default}`" if setting.default else "(unset)"
        assert f"| `{setting.name}` | {default} |" in readme, setting.name


def test_settings_alone_configure_the_definitions(tmp_path, monkeypatch):
    """build_definitions(settings) reads nothing from the environment: every knob arrives
    through the Settings it is given, into resources, sensors and the executor."""
    import dataclasses

    from llm_data_platform import settings as settings_module
    from llm_data_platform.definitions import build_definitions

    base = settings_module.load_settings()

    def refuse():
        raise AssertionError("build_definitions read the environment")

    monkeypatch.setattr(settings_module, "load_settings", refuse)
    monkeypatch.setattr("llm_data_platform.definitions.load_settings", refuse)
    custom = dataclasses.replace(
        base,
        lake_root=str(tmp_path / "lake"),
        landing_dir=str(tmp_path / "landing"),
        min_quality=0.9,
        training_token_budget=1234,
        sensor_max_files=7,
        sensor_interval_seconds=11,
        kafka_bootstrap="127.0.0.1:9",
        landing_max_lines=99,
        executor="multiprocess",
        expectations_engine="great_expectations",
        partitions_start="2026-03-02",
    )
    defs = build_definitions(custom)
    resources = defs.resources
    assert resources["lake"].root == str(tmp_path / "lake")
    assert resources["landing"].path == str(tmp_path / "landing")
    assert resources["landing"].max_lines_per_file == 99
    assert resources["pipeline"].min_quality == 0.9
    assert resources["pipeline"].training_token_budget == 1234
    assert resources["pipeline"].expectations_engine == "great_expectations"
    assert resources["sources"].kafka_bootstrap == "127.0.0.1:9"
    sensor = defs.get_sensor_def("landing_conversations_sensor")
    assert sensor.minimum_interval_seconds == 11
    assert defs.get_sensor_def("kafka_conversations_sensor")  # Kafka switched on by Settings
    job = defs.resolve_job_def("ingest_conversations_job")
    assert job.executor_def.name == "multiprocess"
    # the partitions too: every partitioned asset, check, job and schedule starts that day
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        partitions = graph.get(key).partitions_def
        if partitions is not None:
            assert partitions.get_first_partition_key() == "2026-03-02", key
    for check in defs.asset_checks:
        if check.partitions_def is not None:
            assert check.partitions_def.get_first_partition_key() == "2026-03-02", check
    for name in ("daily_job", "ingest_documents_job", "weekly_training_job"):
        first = defs.resolve_job_def(name).partitions_def.get_first_partition_key()
        assert first == "2026-03-02", name
    weekly = defs.get_schedule_def("weekly_training_job_schedule")
    assert weekly.job.partitions_def.get_first_partition_key() == "2026-03-02"


def test_staging_quarantines_days_before_the_configured_start(tmp_path):
    """The partitions Settings give decide what staging keeps: an event before their first
    day is quarantined as out of range, an event inside them is staged."""
    import dataclasses
    import json

    from llm_data_platform.definitions import build_definitions, graph
    from llm_data_platform.settings import load_settings

    settings = dataclasses.replace(
        load_settings({"LDP_HOME": str(tmp_path)}), partitions_start="2026-03-02"
    )
    folder = tmp_path / "data" / "landing" / "conversations"
    folder.mkdir(parents=True)
    lines = [
        {
            "event_id": f"e{i}",
            "type": "message",
            "conversation_id": "c",
            "turn": i,
            "role": "user",
            "content": "hello there",
            "timestamp": when,
        }
        for i, when in enumerate(["2026-02-20T10:00:00Z", "2026-03-03T10:00:00Z"])
    ]
    (folder / "a.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    result = dg.materialize(
        graph(settings),
        selection=["conversations_batches", "conversations_batches_quarantine"],
        resources=build_definitions(settings).resources,
    )
    assert result.success
    (meta,) = [
        m.event_specific_data.materialization.metadata
        for m in result.get_asset_materialization_events()
        if m.asset_key == dg.AssetKey("conversations_batches")
    ]
    assert meta["events_staged"].value == 1
    assert meta["lines_quarantined"].value == 1
