"""Shared fixtures: a demo landing folder, and the whole graph materialized into temp folders.

The graph runs once per test session (loading the embedding model once); tests then read the
real Parquet files, JSONL batches and Chroma collection it produced.
"""

from __future__ import annotations

import logging
import os
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

DAYS = ["2026-01-05", "2026-01-06"]
WEEK = "2026-01-05"
DEMO_SIZE = dict(conversations_per_day=16, n_topics=10, n_modules=2, seed=11)


@dataclass
class Platform:
    root: Path
    env: dict[str, str]
    settings: object
    resources: dict
    truth: object
    instance: dg.DagsterInstance


def platform_env(root: Path) -> dict[str, str]:
    return {
        "LDP_HOME": str(root),
        "LDP_DATA_DIR": str(root / "data"),
        "LDP_LAKE_ROOT": str(root / "data" / "lake"),
        "LDP_LANDING_DIR": str(root / "data" / "landing"),
        "LDP_CHROMA_PATH": str(root / "data" / "chroma"),
        "DAGSTER_HOME": str(root / "dagster_home"),
        "HF_HUB_OFFLINE": "1",
        "GX_ANALYTICS_ENABLED": "False",
    }


def settings_for(env: dict[str, str]):
    """Settings as a process started with ``env`` would read them."""
    from llm_data_platform.settings import load_settings

    return load_settings(env)


def graph_for(settings=None) -> list:
    """Every asset and check of the code location ``settings`` configure (default settings:
    a test that passes its own resources needs only the graph's partitions)."""
    from llm_data_platform.definitions import graph

    return graph(settings or settings_for({}))


def make_platform(root: Path) -> Platform:
    from llm_data_platform.definitions import build_resources
    from llm_data_platform.demo import generate_demo

    env = platform_env(root)
    Path(env["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    settings = settings_for(env)
    truth = generate_demo(settings.landing_dir, [date.fromisoformat(d) for d in DAYS], **DEMO_SIZE)
    return Platform(
        root, env, settings, build_resources(settings), truth, dg.DagsterInstance.ephemeral()
    )


def materialize_daily(
    platform: Platform, days: list[str], selection=None
) -> dg.ExecuteInProcessResult:
    from llm_data_platform.defs.jobs import DAILY_ASSETS

    selection = selection or dg.AssetSelection.assets(*DAILY_ASSETS)
    stage(platform)
    return dg.materialize(
        graph_for(platform.settings),
        selection=selection,
        resources=platform.resources,
        instance=platform.instance,
        tags={
            "dagster/asset_partition_range_start": days[0],
            "dagster/asset_partition_range_end": days[-1],
        },
    )


def stage(platform: Platform) -> dg.ExecuteInProcessResult:
    """Stage every new landing file of both streams, as the landing sensors' runs do."""

    batches = [
        f"{s}_batches{q}" for s in ("conversations", "documents") for q in ("", "_quarantine")
    ]
    return dg.materialize(
        graph_for(platform.settings),
        selection=dg.AssetSelection.assets(*batches),
        resources=platform.resources,
        instance=platform.instance,
    )


def materialize_one(platform: Platform, asset: str, partition_key: str | None = None):

    return dg.materialize(
        graph_for(platform.settings),
        selection=dg.AssetSelection.assets(asset),
        resources=platform.resources,
        instance=platform.instance,
        partition_key=partition_key,
    )


def materialize_index(platform: Platform):
    """Build the next index version, gate it on retrieval quality, promote it."""

    return dg.materialize(
        graph_for(platform.settings),
        selection=dg.AssetSelection.assets("rag_index", "rag_index_live"),
        resources=platform.resources,
        instance=platform.instance,
    )


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> tuple[Platform, dict[str, dg.ExecuteInProcessResult]]:
    """The whole graph for two demo days, as `make demo` runs it."""
    platform = make_platform(tmp_path_factory.mktemp("platform"))
    results = {
        "eval_set": materialize_one(platform, "retrieval_eval_set"),
        "daily": materialize_daily(platform, DAYS),
        "weekly": materialize_one(platform, "training_batches", WEEK),
        "index": materialize_index(platform),
    }
    return platform, results


@pytest.fixture(scope="session")
def moto_endpoint():
    """A real S3 API on loopback (moto's server, free port) and test credentials for it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield f"http://{host}:{port}"
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


KAFKA_LOG = logging.getLogger("test.librdkafka")
KAFKA_LOG.setLevel(logging.CRITICAL)


@pytest.fixture(scope="module")
def bootstrap():
    """librdkafka's mock cluster: a real Kafka protocol endpoint on 127.0.0.1."""
    from confluent_kafka import Producer

    cluster = Producer({"test.mock.num.brokers": 1, "logger": KAFKA_LOG})
    brokers = cluster.list_topics(timeout=10).brokers.values()
    assert all(b.host == "127.0.0.1" for b in brokers)
    yield ",".join(f"{b.host}:{b.port}" for b in brokers)
    cluster.flush(5)
    del cluster


@contextmanager
def time_bound(seconds: int, what: str):
    """A test that would hang on a broker or a server fails after ``seconds`` instead."""

    def expired(signum, frame):
        raise TimeoutError(f"{what} exceeded its {seconds} s bound")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_staging(resources: dict, request: dg.RunRequest, stream: str = "conversations") -> dict:
    """Run the staging run a sensor asked for; the metadata of its ``<stream>_batches``."""

    result = dg.materialize(
        graph_for(),
        selection=dg.AssetSelection.assets(f"{stream}_batches", f"{stream}_batches_quarantine"),
        resources=resources,
        run_config=request.run_config,
    )
    assert result.success
    (meta,) = [
        m.metadata
        for m in result.get_asset_materialization_events()
        for m in [m.event_specific_data.materialization]
        if m.asset_key == dg.AssetKey(f"{stream}_batches")
    ]
    return {k: v.value for k, v in meta.items()}
