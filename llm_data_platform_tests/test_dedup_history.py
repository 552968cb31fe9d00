"""The dedup index in the lake: conversations_clean drops copies of what earlier days kept,
a range run gives what day-by-day runs give, and the window bounds how far back it looks."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow as pa

from llm_data_platform.defs.conversations.dedup_history import (
    CONTENT_HASHES,
    NEAR_DUP_SIGNATURES,
    history_keys,
)
from llm_data_platform_tests.conftest import graph_for, platform_env, settings_for
from llm_data_platform_tests.test_conversation_cleaning import message, raw_table

DAYS = ["2026-01-05", "2026-01-06", "2026-01-07"]
A = (
    "Our export job has failed every night since the upgrade, the log says the connection to "
    "the warehouse was reset by peer after about forty minutes, and the retry makes it worse"
)
B = (
    "I set up the billing integration last week following the guide and everything looked "
    "fine, but the invoices for the new region are generated twice and customers receive two "
    "e-mails for the same payment"
)


def _near(text: str) -> str:
    words = text.split(" ")
    words[6] = "evening"
    return " ".join(words)


def _raw_days() -> dict[str, pa.Table]:
    return {
        DAYS[0]: raw_table([message("a", A, conversation="c-a")]),
        DAYS[1]: raw_table(
            [
                message("a-exact", A.upper(), conversation="c-x"),
                message("a-near", _near(A), conversation="c-y", line=2),
                message("b", B, conversation="c-b", line=3),
            ]
        ),
        DAYS[2]: raw_table(
            [
                message("b-again", B, conversation="c-z"),
                message("a-again", A, conversation="c-w", line=2),
            ]
        ),
    }


def _platform(root: Path, extra: dict[str, str] | None = None):
    from llm_data_platform.definitions import build_resources

    env = {**platform_env(root), **(extra or {})}
    settings = settings_for(env)
    resources = build_resources(settings)
    for key, table in _raw_days().items():
        resources["lake"].write_partition("raw", "raw_conversations", key, table)
    return settings, resources, dg.DagsterInstance.ephemeral()


def _run(settings, resources, instance, keys: list[str]) -> None:
    run = (
        dict(partition_key=keys[0])
        if len(keys) == 1
        else dict(
            tags={
                "dagster/asset_partition_range_start": keys[0],
                "dagster/asset_partition_range_end": keys[-1],
            }
        )
    )
    result = dg.materialize(
        graph_for(settings),
        selection=dg.AssetSelection.assets("conversations_clean", "conversations_clean_dropped"),
        resources=resources,
        instance=instance,
        **run,
    )
    assert result.success


def _dropped(resources, day: str) -> dict[str, tuple[str, str]]:
    t = resources["lake"].read_partition("clean", "conversations_clean_dropped", day)
    return {
        e: (r, o)
        for e, r, o in zip(
            t["event_id"].to_pylist(),
            t["reason"].to_pylist(),
            t["duplicate_of"].to_pylist(),
            strict=True,
        )
    }


def test_earlier_days_are_the_history_and_a_range_run_gives_the_same(tmp_path):
    settings, resources, instance = _platform(tmp_path / "daily")
    for day in DAYS:
        _run(settings, resources, instance, [day])
    assert _dropped(resources, DAYS[0]) == {}
    assert _dropped(resources, DAYS[1]) == {
        "a-exact": ("duplicate_content_history", "a"),
        "a-near": ("near_duplicate_history", "a"),
    }
    assert _dropped(resources, DAYS[2]) == {
        "b-again": ("duplicate_content_history", "b"),  # one day back
        "a-again": ("duplicate_content_history", "a"),  # two days back
    }
    lake = resources["lake"]
    assert lake.read_partition("clean", CONTENT_HASHES, DAYS[1])["event_id"].to_pylist() == ["b"]
    signatures = lake.read_partition("clean", NEAR_DUP_SIGNATURES, DAYS[1])
    assert signatures["id"].to_pylist() == ["b"]
    # the clean step observes the index tables it committed, per day
    observed = instance.fetch_observations(dg.AssetKey(CONTENT_HASHES), limit=10).records
    assert sorted(r.asset_observation.partition for r in observed) == DAYS
    meta = {
        r.asset_observation.partition: {k: v.value for k, v in r.asset_observation.metadata.items()}
        for r in observed
    }
    assert meta[DAYS[1]]["rows"] == 1

    # one run over the range: each day is committed before the next reads it
    r_settings, r_resources, r_instance = _platform(tmp_path / "range")
    _run(r_settings, r_resources, r_instance, DAYS)
    for day in DAYS:
        assert _dropped(r_resources, day) == _dropped(resources, day), day
        for table in ("conversations_clean", CONTENT_HASHES, NEAR_DUP_SIGNATURES):
            a = resources["lake"].read_partition("clean", table, day)
            b = r_resources["lake"].read_partition("clean", table, day)
            assert a.equals(b), (table, day)

    # re-running a day reads the same history and replaces its index whole
    _run(settings, resources, instance, [DAYS[1]])
    assert _dropped(resources, DAYS[1])["a-near"] == ("near_duplicate_history", "a")
    assert lake.read_partition("clean", CONTENT_HASHES, DAYS[1])["event_id"].to_pylist() == ["b"]


def test_the_window_bounds_the_history(tmp_path):
    settings, resources, instance = _platform(tmp_path, {"LDP_DEDUP_HISTORY_DAYS": "1"})
    _run(settings, resources, instance, DAYS)
    assert _dropped(resources, DAYS[2]) == {"b-again": ("duplicate_content_history", "b")}


def test_dedup_across_can_be_switched_off(tmp_path):
    settings, resources, instance = _platform(tmp_path, {"LDP_DEDUP_ACROSS": "false"})
    _run(settings, resources, instance, DAYS)
    assert all(_dropped(resources, day) == {} for day in DAYS)


def test_history_keys_are_the_days_before() -> None:
    assert history_keys("2026-01-07", 3) == ["2026-01-04", "2026-01-05", "2026-01-06"]
