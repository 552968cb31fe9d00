"""The training side on its own platform (no embeddings): every conversation's outcome in the
selection log, a changed template marking exactly its dependents stale, and a week's
manifest with target-model tokens and cost."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pytest
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

from llm_data_platform.definitions import build_definitions, build_resources
from llm_data_platform.transforms.target_tokenizer import chat_tokens
from llm_data_platform.transforms.training_examples import REJECTION_REASONS
from llm_data_platform_tests.conftest import DAYS, WEEK, make_platform, stage

DAILY = (
    "raw_conversations",
    "raw_conversations_quarantine",
    "conversations_clean",
    "conversations_clean_dropped",
    "training_examples",
    "training_selection_log",
)


def _materialize(platform, settings, selection, **kwargs) -> dg.ExecuteInProcessResult:
    defs = build_definitions(settings)
    return dg.materialize(
        [*defs.assets, *defs.asset_checks],
        selection=dg.AssetSelection.assets(*selection),
        resources=build_resources(settings),
        instance=platform.instance,
        raise_on_error=False,
        **kwargs,
    )


@pytest.fixture(scope="module")
def week(tmp_path_factory):
    """Two demo days through the training side, then their week (the batch check's verdict
    on the demo's few examples does not matter here)."""
    platform = make_platform(tmp_path_factory.mktemp("training_week"))
    stage(platform)
    tags = {
        "dagster/asset_partition_range_start": DAYS[0],
        "dagster/asset_partition_range_end": DAYS[-1],
    }
    assert _materialize(platform, platform.settings, DAILY, tags=tags).success
    _materialize(platform, platform.settings, ["training_batches"], partition_key=WEEK)
    return platform


def _status(platform, settings, asset: str, partition: str) -> StaleStatus:
    graph = build_definitions(settings).resolve_asset_graph()
    resolver = CachingStaleStatusResolver(
        platform.instance, graph, LoadingContextForTest(platform.instance)
    )
    return resolver.get_status(dg.AssetKey(asset), partition)


def test_every_conversation_has_one_outcome_with_its_reason(week):
    lake = week.resources["lake"]
    allowed = {"kept", "contaminated", "near_duplicate", *REJECTION_REASONS}
    for day in DAYS:
        clean = lake.read_partition("clean", "conversations_clean", day)
        messages = clean.filter(pc.equal(clean["event_type"], "message"))
        conversations = set(pc.unique(messages["conversation_id"]).to_pylist())
        log = lake.read_partition("curated", "training_selection_log", day)
        ids = log["conversation_id"].to_pylist()
        assert sorted(ids) == sorted(conversations) and len(ids) == len(set(ids))
        assert set(log["outcome"].to_pylist()) <= allowed
        kept = log.filter(pc.equal(log["outcome"], "kept"))["conversation_id"].to_pylist()
        examples = lake.read_partition("curated", "training_examples", day)
        assert sorted(kept) == sorted(examples["example_id"].to_pylist())
        assert len(kept) < len(ids)  # the demo has conversations the rules turn away


def test_a_changed_template_marks_exactly_its_dependents_stale(week):
    settings = week.settings
    fresh = {
        (asset, part): _status(week, settings, asset, part)
        for asset, part in [
            ("conversations_clean", DAYS[0]),
            ("training_examples", DAYS[0]),
            ("training_selection_log", DAYS[0]),
            ("training_batches", WEEK),
        ]
    }
    assert set(fresh.values()) == {StaleStatus.FRESH}, fresh
    changed = dataclasses.replace(settings, training_template="support_chat@1")
    assert _status(week, changed, "conversations_clean", DAYS[0]) == StaleStatus.FRESH
    for asset in ("training_examples", "training_selection_log"):
        assert _status(week, changed, asset, DAYS[0]) == StaleStatus.STALE, asset
    # Dagster 1.13 carries a code-version change across the daily -> weekly mapping only once
    # a day is rebuilt (below); the manifest names the templates the week was built with
    manifest = Path(settings.lake_root) / "curated/training_batches" / f"week={WEEK}/manifest.json"
    assert json.loads(manifest.read_text())["templates"] == ["python_docs_assistant@1"]
    # a rule change is a change too; the day rebuilt with it is fresh again
    stricter = dataclasses.replace(settings, training_min_quality=0.9)
    assert _status(week, stricter, "training_examples", DAYS[0]) == StaleStatus.STALE
    result = _materialize(
        week, changed, ["training_examples", "training_selection_log"], partition_key=DAYS[0]
    )
    assert result.success
    assert _status(week, changed, "training_examples", DAYS[0]) == StaleStatus.FRESH
    assert _status(week, changed, "training_examples", DAYS[1]) == StaleStatus.STALE
    # the rebuilt day's new data version marks the week that holds it
    assert _status(week, changed, "training_batches", WEEK) == StaleStatus.STALE


def test_the_manifest_counts_target_model_tokens_and_cost(week):
    directory = Path(week.settings.lake_root) / "curated" / "training_batches" / f"week={WEEK}"
    manifest = json.loads((directory / "manifest.json").read_text())
    lines = [ln for ln in (directory / "train.jsonl").read_text().splitlines() if ln]
    tokens = sum(chat_tokens(json.loads(ln)["messages"], "o200k_base") for ln in lines)
    assert lines and manifest["files"]["train.jsonl"]["tokens"] == tokens
    estimate = manifest["estimate"]
    assert estimate["target_model"] == "gpt-4o-mini-2024-07-18"
    assert estimate["encoding"] == "o200k_base" and estimate["context_limit"] == 65_536
    assert estimate["train_tokens_per_epoch"] == tokens
    assert estimate["usd_per_epoch"] == round(tokens * 3.0 / 1e6, 4)
    assert set(manifest["not_selected"].values()) <= {"over_budget", "over_count"} | {
        r for r in manifest["not_selected"].values() if r.startswith("near_duplicate_of:")
    } | {"contaminated"}
