"""The code location loads, with every asset, check, job, sensor and schedule wired."""

from __future__ import annotations

import dagster as dg

from llm_data_platform import defs

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
    "documents_clean",
    "documents_clean_dropped",
    "training_examples",
    "training_batches",
    "document_chunks",
    "chunk_embeddings",
    "rag_index",
    "rag_index_live",
    "retrieval_eval_set",
}


def test_definitions_load_with_the_contracted_asset_names():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == ASSET_NAMES
    groups = {graph.get(dg.AssetKey(n)).group_name for n in ASSET_NAMES}
    assert groups == {"ingest", "raw", "clean", "curated", "serve"}


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
        }
    ):
        node = graph.get(dg.AssetKey(name))
        assert node.partitions_def is not None, name
        assert node.backfill_policy is not None, name
    check_assets = {k.asset_key.to_user_string() for k in graph.asset_check_keys}
    assert {"conversations_clean", "training_batches", "rag_index"} <= check_assets


def test_jobs_sensors_schedules_resolve():
    for job in ("daily_job", "weekly_training_job", "rag_index_job", "ingest_conversations_job"):
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
