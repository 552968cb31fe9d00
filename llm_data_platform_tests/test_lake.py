"""The lake: atomic partition replacement, and the same code path on S3 (moto on loopback)."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest
from dagster_aws.s3 import S3Resource

from llm_data_platform.resources.lake import LakeResource


def _table(n: int, tag: str) -> pa.Table:
    return pa.table({"id": list(range(n)), "tag": [tag] * n})


def test_rewriting_a_partition_replaces_it_whole(tmp_path):
    lake = LakeResource(root=str(tmp_path))
    lake.write_partition("raw", "t", "2026-01-05", _table(3, "old"))
    lake.write_partition("raw", "t", "2026-01-05", _table(2, "new"))
    assert lake.read_partition("raw", "t", "2026-01-05").equals(_table(2, "new"))
    assert lake.list_partitions("raw", "t") == ["2026-01-05"]


def test_a_crash_mid_write_leaves_the_previous_version(tmp_path, monkeypatch):
    lake = LakeResource(root=str(tmp_path))
    lake.write_partition("raw", "t", "2026-01-05", _table(3, "old"))

    def crash(src, dst):
        raise OSError("disk died during rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        lake.write_partition("raw", "t", "2026-01-05", _table(5, "new"))
    monkeypatch.undo()
    assert lake.read_partition("raw", "t", "2026-01-05").equals(_table(3, "old"))
    # the leftover temp file is invisible to readers of the table
    assert lake.dataset("raw", "t").to_table().num_rows == 3


@pytest.fixture(scope="module")
def s3_server(moto_endpoint):
    import boto3

    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(
        Bucket="lake"
    )
    return moto_endpoint


def test_s3_lake_same_code_path(s3_server):
    lake = LakeResource(
        root="s3://lake/platform",
        s3=S3Resource(endpoint_url=s3_server, region_name="us-east-1"),
    )
    lake.write_partition("clean", "t", "2026-01-05", _table(3, "a"))
    lake.write_partition("clean", "t", "2026-01-06", _table(4, "b"))
    lake.write_partition("clean", "t", "2026-01-06", _table(2, "c"))
    assert lake.list_partitions("clean", "t") == ["2026-01-05", "2026-01-06"]
    assert lake.read_partition("clean", "t", "2026-01-06").equals(_table(2, "c"))
    assert lake.read_partitions("clean", "t").num_rows == 5
    dataset = lake.dataset("clean", "t")
    assert sorted(set(dataset.to_table()["dt"].to_pylist())) == ["2026-01-05", "2026-01-06"]
    lake.write_bytes(lake.path("curated", "x", "manifest.json"), b"{}")
    assert lake.read_bytes(lake.path("curated", "x", "manifest.json")) == b"{}"


def test_raw_and_clean_assets_materialize_into_s3(s3_server, tmp_path):
    from datetime import date

    import dagster as dg

    from llm_data_platform.definitions import build_resources
    from llm_data_platform.demo import generate_demo
    from llm_data_platform.resources.io_manager import LakeIOManager
    from llm_data_platform.resources.landing import LandingFolderResource
    from llm_data_platform_tests.conftest import graph_for, settings_for

    settings = settings_for({"LDP_HOME": str(tmp_path)})
    generate_demo(
        str(tmp_path / "landing"),
        [date(2026, 1, 5)],
        conversations_per_day=6,
        n_topics=3,
        n_modules=1,
        seed=3,
    )
    lake = LakeResource(
        root="s3://lake/e2e", s3=S3Resource(endpoint_url=s3_server, region_name="us-east-1")
    )
    resources = {
        # unused by the selected assets, but every resource of the graph must be bound
        **build_resources(settings),
        "lake": lake,
        "io_manager": LakeIOManager(lake=lake),
        "landing": LandingFolderResource(path=str(tmp_path / "landing")),
    }
    staged = dg.materialize(
        graph_for(settings),
        selection=dg.AssetSelection.assets(
            "conversations_batches", "conversations_batches_quarantine"
        ),
        resources=resources,
    )
    assert staged.success
    result = dg.materialize(
        graph_for(settings),
        selection=dg.AssetSelection.assets(
            "raw_conversations",
            "raw_conversations_quarantine",
            "conversations_clean",
            "conversations_clean_dropped",
        ),
        resources=resources,
        partition_key="2026-01-05",
    )
    assert result.success
    blocking = [
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name != "raw_conversations_quarantine_rate"
    ]
    assert blocking and all(e.passed for e in blocking)
    clean = lake.read_partition("clean", "conversations_clean", "2026-01-05")
    assert clean is not None and clean.num_rows > 0
