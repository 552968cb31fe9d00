"""conversations_history_duplicates: copies weeks apart, found over every day of the dedup index
that the real clean step wrote, by the local engine and by Spark (local mode, a real
SparkSession: one for the module), which must give the same table."""

from __future__ import annotations

import random
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from llm_data_platform.defs.conversations.history_duplicates import HISTORY_DUPLICATES_TABLE
from llm_data_platform.transforms.cross_dedup import DedupConfig
from llm_data_platform.transforms.history_duplicates import history_duplicates, scope_params
from llm_data_platform.transforms.near_dedup import minhash_signatures, shingle_hashes
from llm_data_platform_tests.conftest import graph_for, platform_env, settings_for
from llm_data_platform_tests.test_conversation_cleaning import message, raw_table
from llm_data_platform_tests.test_dedup_history import A, B  # two long user messages

# D0 and D2 are 9 days apart, D3 22 days after D0; the clean step looks 3 days back
D0, D1, D2, D3 = "2026-01-05", "2026-01-06", "2026-01-14", "2026-01-27"
Q = (
    "When I rotate the API keys from the admin console the mobile app keeps using the old key "
    "for several hours and every request in that time fails with an authentication error"
)
R = (
    "The mobile app caches its credentials until the next sign-in, so after a rotation ask "
    "your users to sign out and in again, or lower the cache lifetime in the security settings"
)
U = [
    "We would like to move our whole team from the monthly plan to the yearly plan before the "
    "end of the quarter, can you tell me whether the unused months are credited automatically",
    "Since this morning the dashboard shows every chart as empty although the data arrives, and "
    "clearing the browser cache or switching to another browser did not change anything at all",
    "Is there a way to export the audit log of the last ninety days as a file, because our "
    "compliance team needs it for the yearly review and the screen only shows thirty days",
]


def _edit(text: str, at: int, word: str) -> str:
    words = text.split(" ")
    words[at] = word
    return " ".join(words)


def _raw_days() -> dict[str, pa.Table]:
    return {
        D0: raw_table(
            [
                message("a", A, conversation="c-a"),
                message("b", B, conversation="c-b", line=2),
                message("x-q", Q, conversation="c-x", line=3),
                message("x-r", R, conversation="c-x", turn=1, role="assistant", line=4),
            ]
        ),
        D1: raw_table(
            [
                message("a-1d", A, conversation="c-1d"),  # in the window: the day step drops it
                message("u0", U[0], conversation="c-u0", line=2),
            ]
        ),
        D2: raw_table(
            [
                message("a-exact", A.upper(), conversation="c-e"),
                message("b-near", _edit(B, 6, "month"), conversation="c-n", line=2),
                message("y-q", Q, conversation="c-y", line=3),
                message(
                    "y-r",
                    _edit(R, 9, "login"),
                    conversation="c-y",
                    turn=1,
                    role="assistant",
                    line=4,
                ),
                message("u1", U[1], conversation="c-u1", line=5),
            ]
        ),
        D3: raw_table(
            [
                message("b-again", B, conversation="c-b3"),
                message("u2", U[2], conversation="c-u2", line=2),
            ]
        ),
    }


@pytest.fixture(scope="module")
def spark():
    """The module's SparkSession; the history_engine resource finds it and leaves it running.
    C1-only JIT: a test's small jobs are dominated by the JVM warming up (measured: a cold
    first run 34 s -> 14-18 s)."""
    from llm_data_platform.resources.spark import spark_conf, spark_session

    conf = spark_conf("local[2]", "1g", 4, "test_history_duplicates")
    conf["spark.driver.extraJavaOptions"] = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
    session = spark_session(conf)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def lake_history(tmp_path_factory):
    """Four days cleaned by the real clean step (one range run), history window 3 days."""
    from llm_data_platform.definitions import build_resources

    root = Path(tmp_path_factory.mktemp("history"))
    settings = settings_for({**platform_env(root), "LDP_DEDUP_HISTORY_DAYS": "3"})
    resources = build_resources(settings)
    days = _raw_days()
    for key, table in days.items():
        resources["lake"].write_partition("raw", "raw_conversations", key, table)
    instance = dg.DagsterInstance.ephemeral()
    for key in days:  # day by day, as the daily job runs them
        result = dg.materialize(
            graph_for(settings),
            selection=dg.AssetSelection.assets(
                "conversations_clean", "conversations_clean_dropped"
            ),
            resources=resources,
            instance=instance,
            partition_key=key,
        )
        assert result.success
    return settings, resources, instance


def _materialize(settings, resources, instance, engine: str) -> tuple[pa.Table, dict]:
    resources = {**resources, "history_engine": replace_engine(resources["history_engine"], engine)}
    result = dg.materialize(
        graph_for(settings),
        selection=dg.AssetSelection.assets(HISTORY_DUPLICATES_TABLE),
        resources=resources,
        instance=instance,
    )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    meta = {k: v.value for k, v in event.event_specific_data.materialization.metadata.items()}
    table = resources["lake"].read_partition("clean", HISTORY_DUPLICATES_TABLE, "all")
    return table, meta


def replace_engine(resource, engine: str):
    from llm_data_platform.resources.spark import HistoryEngineResource

    return HistoryEngineResource(**{**resource.model_dump(), "engine": engine})


def _pairs(table: pa.Table) -> set[tuple]:
    return set(
        zip(
            table["scope"].to_pylist(),
            table["kind"].to_pylist(),
            table["representative_id"].to_pylist(),
            table["member_id"].to_pylist(),
            strict=True,
        )
    )


def test_copies_weeks_apart_are_found_alike_by_both_engines(lake_history, spark):
    settings, resources, instance = lake_history
    local, local_meta = _materialize(settings, resources, instance, "local")
    assert _pairs(local) == {
        ("message", "exact", "a", "a-exact"),  # 9 days apart
        ("message", "near", "b", "b-near"),
        ("message", "exact", "b", "b-again"),  # 22 days apart; a group of three
        ("message", "exact", "x-q", "y-q"),  # the user turn of the replayed conversation
        ("conversation", "near", "c-x", "c-y"),
    }
    rows = {r["member_id"]: r for r in local.to_pylist()}
    assert rows["b-again"]["group_size"] == 3 and rows["b-again"]["member_day"] == D3
    assert rows["a-exact"]["representative_day"] == D0 and rows["a-exact"]["similarity"] == 1.0
    assert 0.5 <= rows["b-near"]["similarity"] < 1.0
    assert 0.8 <= rows["c-y"]["similarity"] < 1.0
    # not a copy of the day step's findings: its drops are not in the index, nor here
    lake = resources["lake"]
    d1 = lake.read_partition("clean", "conversations_clean_dropped", D1)
    assert d1["event_id"].to_pylist() == ["a-1d"]
    for day in (D0, D1, D2, D3):
        dropped = set(
            lake.read_partition("clean", "conversations_clean_dropped", day)["event_id"].to_pylist()
        )
        assert not dropped & set(rows), day
    assert local_meta["days_scanned"] == 4 and local_meta["engine"] == "local"
    assert local_meta["groups"] == 4 and local_meta["members"] == local.num_rows == 5

    distributed, spark_meta = _materialize(settings, resources, instance, "spark")
    assert distributed.equals(local)
    assert spark_meta["engine"] == "spark"
    same = {"groups", "members", "message_candidates", "conversation_candidates", "message_edges"}
    assert {k: spark_meta[k] for k in same} == {k: local_meta[k] for k in same}
    assert not spark.sparkContext._jsc.sc().isStopped()  # the resource left the module's session


# ---------------------------------------------------------------------------- the transform

CONFIG = DedupConfig()
SCOPES = scope_params(CONFIG)


def _index(days: dict[str, list[tuple[str, str]]], params: str | None = None):
    """Index tables of (id, text) messages per day, signed as the clean step signs them."""
    from llm_data_platform.transforms.dedup import content_hash

    hashes, signatures = [], []
    for day, rows in days.items():
        ids = [i for i, _ in rows]
        texts = pa.array([t for _, t in rows], pa.string())
        offsets, shingles = shingle_hashes(texts, CONFIG.near.shingle)
        sig = minhash_signatures(offsets, shingles, CONFIG.near.num_perm, CONFIG.near.seed)
        n, p = len(ids), CONFIG.near.num_perm
        flat = pa.ListArray.from_arrays(
            pa.array(np.arange(0, n * p + 1, p, dtype=np.int32)), pa.array(sig.ravel(), pa.uint32())
        )
        hashes.append(
            pa.table({"dt": [day] * n, "event_id": ids, "content_hash": content_hash(texts)})
        )
        signatures.append(
            pa.table(
                {
                    "dt": [day] * n,
                    "scope": ["message"] * n,
                    "id": ids,
                    "params": [params or CONFIG.fingerprint("message")] * n,
                    "signature": flat,
                }
            )
        )
    return pa.concat_tables(hashes), pa.concat_tables(signatures)


def _texts(n: int, seed: int, vocabulary: int = 400) -> list[str]:
    """Random 30-word texts over a small vocabulary: unrelated, yet they meet in LSH buckets."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocabulary)]
    return [" ".join(rng.choice(words) for _ in range(30)) for _ in range(n)]


def test_links_days_not_rows_of_one_day_and_the_earliest_represents():
    base = _texts(3, 1, vocabulary=5000)
    near = _edit(base[1], 4, "changed")
    hashes, sigs = _index(
        {
            "2026-01-05": [("m0", base[0]), ("m1", base[1])],
            "2026-01-06": [("same-day-a", base[2]), ("same-day-b", _edit(base[2], 3, "x"))],
            "2026-02-02": [("m0-copy", base[0]), ("m1-near", near)],
            "2026-03-02": [("m1-near-copy", near)],  # joins m1's group through m1-near
        }
    )
    result = history_duplicates(hashes, sigs, SCOPES)
    assert _pairs(result.table) == {
        ("message", "exact", "m0", "m0-copy"),
        ("message", "near", "m1", "m1-near"),
        ("message", "near", "m1", "m1-near-copy"),
    }
    assert result.counts["groups"] == 2
    assert set(result.table["group_size"].to_pylist()) == {2, 3}


def test_signatures_of_other_parameters_are_skipped_and_empty_history_is_empty():
    hashes, sigs = _index({"2026-01-05": [("a", _texts(1, 3)[0])]}, params="affine32/k5/p128/s1")
    result = history_duplicates(None, sigs, SCOPES)
    assert result.counts["skipped_signatures"] == 1 and result.table.num_rows == 0
    empty = history_duplicates(None, None, SCOPES)
    assert empty.table.num_rows == 0 and empty.counts["groups"] == 0


def test_spark_gives_the_local_table_on_crowded_buckets(tmp_path, spark):
    """Many chance collisions (a 20-word vocabulary): the bucket rule (earliest, previous)
    must pick the same candidates in both engines, or the tables would differ."""
    from llm_data_platform.transforms.history_duplicates_spark import history_duplicates_spark

    days = {}
    for k, day in enumerate(("2026-01-05", "2026-01-19", "2026-02-09")):
        texts = _texts(400, 10 + k, vocabulary=20)
        days[day] = [(f"{day}/{i}", t) for i, t in enumerate(texts)]
    days["2026-02-09"][:50] = [(f"copy/{i}", t) for i, (_, t) in enumerate(days["2026-01-05"][:50])]
    hashes, sigs = _index(days)
    local = history_duplicates(hashes, sigs, SCOPES)
    for name, table in (("h", hashes), ("s", sigs)):
        for day in days:
            folder = tmp_path / name / f"dt={day}"
            folder.mkdir(parents=True)
            part = table.filter(pc.equal(table["dt"], day)).drop(["dt"])
            pq.write_table(part, folder / "data.parquet")
    distributed = history_duplicates_spark(spark, str(tmp_path / "h"), str(tmp_path / "s"), SCOPES)
    assert local.counts["message_candidates"] > 100  # crowded indeed
    assert distributed.table.equals(local.table)
    assert distributed.counts == local.counts
    exact = {
        m
        for k, m in zip(
            local.table["kind"].to_pylist(), local.table["member_id"].to_pylist(), strict=True
        )
        if k == "exact"
    }
    assert exact >= {f"copy/{i}" for i in range(50)}


def test_a_remote_lake_with_spark_fails_naming_the_fix():
    from llm_data_platform.defs.conversations.history_duplicates import _run_spark
    from llm_data_platform.resources.lake import LakeResource
    from llm_data_platform.resources.spark import HistoryEngineResource

    with pytest.raises(dg.Failure, match="LDP_HISTORY_ENGINE=local"):
        _run_spark(
            LakeResource(root="s3://bucket/lake"), HistoryEngineResource(engine="spark"), SCOPES
        )


def test_the_settings_choose_the_engine_and_reject_others():
    from llm_data_platform.definitions import build_resources
    from llm_data_platform.settings import load_settings

    env = {"LDP_HISTORY_ENGINE": "spark", "LDP_SPARK_MASTER": "local[1]"}
    engine = build_resources(load_settings(env))["history_engine"]
    assert (engine.engine, engine.spark_master, engine.spark_shuffle_partitions) == (
        "spark",
        "local[1]",
        4,
    )
    assert build_resources(load_settings({}))["history_engine"].engine == "local"
    with pytest.raises(ValueError, match="LDP_HISTORY_ENGINE"):
        load_settings({"LDP_HISTORY_ENGINE": "dask"})
