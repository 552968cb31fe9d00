"""Kinesis → raw micro-batches, exactly once in effect, against moto's Kinesis on loopback.

moto's server (``moto_endpoint``, 127.0.0.1, a free port) speaks the Kinesis API over HTTP;
the platform's own boto3 client reaches it by endpoint URL, as it would AWS. Each test puts
records with many partition keys (so every shard gets some), ingests, and checks what the lake
holds: every event once (in the batch files themselves, before ``read_day``'s
de-duplication), checkpoints at the end of every shard, batch names that are sequence ranges.
Crashes here are exceptions raised from the fault hook; test_kinesis_sigkill.py kills a real
process.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path

import boto3
import dagster as dg
import pyarrow.parquet as pq
import pytest

from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.streaming.kinesis_source import (
    KinesisSourceConfig,
    acknowledge,
    ingest_once,
    pending_days,
    positions,
)
from llm_data_platform.streaming.microbatch import read_day_detailed
from llm_data_platform_tests.conftest import time_bound
from llm_data_platform_tests.test_kafka_sigkill import _batch_files as batch_files
from llm_data_platform_tests.test_kafka_sigkill import events

STREAM = "conversations"
SHARDS = 3


@pytest.fixture(autouse=True)
def bounded():
    with time_bound(120, "Kinesis streaming test"):
        yield


def kinesis_client(endpoint: str):
    return boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")


def make_stream(client, shards: int = SHARDS) -> str:
    name = f"ldp-{uuid.uuid4().hex[:8]}"
    client.create_stream(StreamName=name, ShardCount=shards)
    client.get_waiter("stream_exists").wait(StreamName=name)
    return name


def put(client, name: str, values: list[bytes]) -> list[tuple[str, str]]:
    """(shard, sequence number) of each value, put 500 at a time with many partition keys."""
    where: list[tuple[str, str]] = []
    for start in range(0, len(values), 500):
        chunk = values[start : start + 500]
        records = [{"Data": v, "PartitionKey": f"k{start + i}"} for i, v in enumerate(chunk)]
        response = client.put_records(StreamName=name, Records=records)
        assert response.get("FailedRecordCount", 0) == 0, response
        where += [(r["ShardId"], r["SequenceNumber"]) for r in response["Records"]]
    return where


def lake_events(lake_root: Path) -> Counter[str]:
    """event_id → how many rows of all batch files hold it (no de-duplication)."""
    seen: Counter[str] = Counter()
    for path in batch_files(lake_root, f"{STREAM}_batches"):
        seen.update(pq.read_table(path, columns=["event_id"])["event_id"].to_pylist())
    return seen


def ledger_states(lake_root: Path) -> Counter[str]:
    folder = lake_root / "raw" / f"{STREAM}_batches" / "_ledger"
    return Counter(json.loads(p.read_text())["state"] for p in folder.rglob("*.json"))


def caught_up(config, lake, client) -> bool:
    return all(after is None for _, after in positions(config, lake, client).values())


@pytest.fixture
def setup(moto_endpoint, tmp_path):
    client = kinesis_client(moto_endpoint)
    name = make_stream(client)
    lake_root = tmp_path / "lake"
    return client, name, lake_root, LakeResource(root=str(lake_root))


def test_every_event_once_across_shards_and_bounded_runs(setup):
    client, name, lake_root, lake = setup
    produced = events(900)
    ids = [json.loads(v)["event_id"] for v in produced]
    where = put(client, name, produced)
    assert len({shard for shard, _ in where}) == SHARDS
    config = KinesisSourceConfig(name, stream=STREAM, max_records=250, batch_records=60)
    reports = []
    while not caught_up(config, lake, client):
        reports.append(ingest_once(config, lake, client))
        assert len(reports) < 10, [r.stopped for r in reports]
    assert [r.stopped for r in reports[:-1]] == ["max_records"] * (len(reports) - 1)
    assert sum(r.records for r in reports) == 900
    assert all(r.records <= 250 for r in reports)
    seen = lake_events(lake_root)
    assert set(seen) == set(ids) and set(seen.values()) == {1}  # 0 lost, 0 duplicated
    days = ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert sum(read_day_detailed(lake, STREAM, d).rows.num_rows for d in days) == 900
    assert sum(read_day_detailed(lake, STREAM, d).duplicates for d in days) == 0
    # the checkpoints are each shard's last sequence number
    last = {}
    for shard, seq in where:
        last[shard] = max(last.get(shard, seq), seq, key=int)
    assert {s: c for s, (c, _) in positions(config, lake, client).items()} == last
    assert ledger_states(lake_root) == {}  # no entry kept without keep_committed_ledger
    # nothing new: a run reads nothing and writes nothing
    again = ingest_once(config, lake, client)
    assert (again.records, again.batches, again.stopped) == (0, [], "caught_up")


def test_batch_names_are_sequence_ranges_and_rows_point_back(setup):
    client, name, lake_root, lake = setup
    produced = events(120)
    by_id = {json.loads(v)["event_id"]: v for v in produced}
    where = dict(zip(by_id, put(client, name, produced), strict=True))
    report = ingest_once(KinesisSourceConfig(name, stream=STREAM, batch_records=25), lake, client)
    assert report.records == 120 and report.rows == 120
    for path in batch_files(lake_root, f"{STREAM}_batches"):
        table = pq.read_table(path, columns=["event_id", "source_file", "source_line"])
        for row in table.to_pylist():
            _, _, stream_name, shard, first = row["source_file"].split("/")
            assert stream_name == name
            assert path.stem.startswith(f"kinesis-{name}-{shard}-{first}-")
            # the pointer: the source_line-th record from `first` is the event's record
            iterator = client.get_shard_iterator(
                StreamName=name,
                ShardId=shard,
                ShardIteratorType="AT_SEQUENCE_NUMBER",
                StartingSequenceNumber=first,
            )["ShardIterator"]
            got = client.get_records(ShardIterator=iterator, Limit=row["source_line"])
            record = got["Records"][row["source_line"] - 1]
            assert record["Data"] == by_id[row["event_id"]]
            assert (shard, record["SequenceNumber"]) == where[row["event_id"]]
            last = int(path.stem.rsplit("-", 1)[1])
            assert int(first) <= int(record["SequenceNumber"]) <= last


class Crash(Exception):
    pass


def crash_at(stage: str, on: int = 2):
    """A fault hook raising the ``on``-th time a batch reaches ``stage``."""
    seen: list[str] = []

    def fault(name: str, details: dict) -> None:
        if name != stage:
            return
        if details["identity"] not in seen:
            seen.append(details["identity"])
        if len(seen) == on and (name != "mid_write" or details["index"] == 1):
            raise Crash(details["identity"])

    return fault


@pytest.mark.parametrize(
    "stage", ["before_write", "mid_write", "after_write_before_commit", "after_commit"]
)
@pytest.mark.parametrize("restart_batch", [30, 110])  # smaller and larger than the crashed
def test_crash_at_each_stage_then_restart_with_another_batch_size(setup, stage, restart_batch):
    client, name, lake_root, lake = setup
    produced = events(600)
    ids = {json.loads(v)["event_id"] for v in produced}
    put(client, name, produced)
    base = dict(stream=STREAM, keep_committed_ledger=True)
    with pytest.raises(Crash) as crashed:
        ingest_once(
            KinesisSourceConfig(name, batch_records=70, **base), lake, client, fault=crash_at(stage)
        )
    victim = str(crashed.value)
    restart = KinesisSourceConfig(name, batch_records=restart_batch, **base)
    report = ingest_once(restart, lake, client)
    rewritten = {b.identity for b in report.batches}
    if stage in {"before_write", "mid_write"}:
        assert victim in rewritten  # the pinned range: the same name, completed
    elif stage == "after_write_before_commit":
        assert victim in report.recovered and victim not in rewritten
    else:
        assert victim not in rewritten | set(report.recovered)
    assert caught_up(restart, lake, client)
    seen = lake_events(lake_root)
    assert set(seen) == ids and set(seen.values()) == {1}
    # every batch's days still to report, the crashed one's included; then acknowledged
    assert set(ledger_states(lake_root)) == {"committed"}
    pending = pending_days(restart, lake)
    identities = {i for batch in pending.values() for i in batch}
    names = {p.stem for p in batch_files(lake_root, f"{STREAM}_batches")}
    assert identities == names and victim in identities
    assert acknowledge(restart, lake, identities) == len(names)
    assert pending_days(restart, lake) == {}


def test_malformed_records_are_quarantined_and_checkpointed(setup):
    client, name, lake_root, lake = setup
    good = events(30)
    bad = [
        b"{not json",
        b"\xff\xfe\x00",
        json.dumps({"event_id": "x1", "type": "message"}).encode(),
    ]
    put(client, name, good + bad)
    config = KinesisSourceConfig(name, stream=STREAM)
    report = ingest_once(config, lake, client)
    assert (report.records, report.rows, report.quarantined) == (33, 30, 3)
    assert caught_up(config, lake, client)
    quarantine = [
        row
        for path in batch_files(lake_root, f"{STREAM}_batches_quarantine")
        for row in pq.read_table(path, columns=["source_file", "reason"]).to_pylist()
    ]
    assert len(quarantine) == 3
    assert all(row["source_file"].startswith(f"kinesis://{name}/") for row in quarantine)
    assert all(row["reason"] for row in quarantine)


def test_new_records_after_a_run_are_read_after_the_checkpoint(setup):
    client, name, lake_root, lake = setup
    first, second = events(200)[:120], events(200)[120:]
    put(client, name, first)
    config = KinesisSourceConfig(name, stream=STREAM, batch_records=40)
    assert ingest_once(config, lake, client).records == 120
    put(client, name, second)
    assert not caught_up(config, lake, client)
    assert ingest_once(config, lake, client).records == 80
    seen = lake_events(lake_root)
    assert len(seen) == 200 and set(seen.values()) == {1}


def test_a_missing_stream_is_reported_not_raised(moto_endpoint, tmp_path):
    client = kinesis_client(moto_endpoint)
    lake = LakeResource(root=str(tmp_path / "lake"))
    report = ingest_once(KinesisSourceConfig("no-such-stream"), lake, client)
    assert (report.stopped, report.records) == ("no_stream", 0)


# ---- the Dagster wiring: the sensor looks and asks, the staging run reads and reports --------
def _sources(endpoint: str, name: str):
    from llm_data_platform.resources.kinesis import KinesisResource
    from llm_data_platform.resources.stream_sources import StreamSourcesResource

    kinesis = KinesisResource(endpoint_url=endpoint, region_name="us-east-1")
    return StreamSourcesResource(kinesis_streams=f"{STREAM}={name}", kinesis=kinesis)


def test_sensor_requests_a_staging_run_and_staging_reports_every_day(setup, moto_endpoint):

    from llm_data_platform.defs.ingest.stage_sources import stage_kinesis
    from llm_data_platform.defs.ingest.stream_sensors import kinesis_sensor

    client, name, lake_root, lake = setup
    sources = _sources(moto_endpoint, name)
    sensor = kinesis_sensor(STREAM)

    def tick():
        with dg.build_sensor_context(resources={"sources": sources, "lake": lake}) as context:
            return sensor(context)

    assert isinstance(tick(), dg.SkipReason)  # an empty stream: nothing to ask for
    put(client, name, events(300))
    asked = tick()
    (request,) = asked.run_requests
    assert request.run_config["ops"][f"stage_{STREAM}"]["config"]["source"] == "kinesis"
    assert request.tags["ldp/source"] == f"kinesis:{name}"
    assert tick().run_requests[0].run_key == request.run_key  # same snapshot, same run key

    staged, acknowledge_days = stage_kinesis(
        dg.build_asset_context(), STREAM, sources, lake, bounds=None
    )
    assert (staged.received, staged.kept, staged.quarantined) == (300, 300, 0)
    assert sorted(staged.days) == ["2026-01-05", "2026-01-06", "2026-01-07"]
    # checkpointed but not acknowledged: the sensor still asks (a crash before the report
    # loses no day)
    assert tick().run_requests[0].run_key != request.run_key
    acknowledge_days()
    assert isinstance(tick(), dg.SkipReason)
    assert ledger_states(lake_root) == {}


def test_unconfigured_kinesis_fails_with_the_setting_to_set(setup):

    from llm_data_platform.defs.ingest.stage_sources import stage_kinesis
    from llm_data_platform.resources.stream_sources import StreamSourcesResource

    _, _, _, lake = setup
    with pytest.raises(dg.Failure, match="LDP_KINESIS_STREAMS"):
        stage_kinesis(dg.build_asset_context(), STREAM, StreamSourcesResource(), lake, None)


def test_kinesis_sensors_exist_only_when_configured(moto_endpoint):
    from llm_data_platform.defs.ingest.definitions import build_defs
    from llm_data_platform.defs.partitions import build_partitions
    from llm_data_platform_tests.conftest import settings_for

    partitions = build_partitions("2026-01-05")
    off = build_defs(settings_for({}), partitions)
    on = build_defs(settings_for({"LDP_KINESIS_STREAMS": f"{STREAM}=s"}), partitions)
    names = lambda defs: {s.name for s in defs.sensors or []}  # noqa: E731
    assert not any(n.startswith("kinesis_") for n in names(off))
    assert {"kinesis_conversations_sensor", "kinesis_documents_sensor"} <= names(on)


def test_the_staging_asset_stages_from_kinesis(setup, moto_endpoint):

    from llm_data_platform.definitions import build_resources
    from llm_data_platform.defs.ingest.staging import StageConfig
    from llm_data_platform_tests.conftest import platform_env, run_staging, settings_for

    client, name, lake_root, lake = setup
    put(client, name, events(90))
    settings = settings_for(platform_env(lake_root.parent))
    resources = {**build_resources(settings), "sources": _sources(moto_endpoint, name)}
    request = dg.RunRequest(
        run_config=dg.RunConfig(ops={f"stage_{STREAM}": StageConfig(source="kinesis")})
    )
    meta = run_staging(resources, request)
    assert meta["events_staged"] == 90
    assert sorted(meta["days"]) == ["2026-01-05", "2026-01-06", "2026-01-07"]


class FlakyKinesis:
    """The real (moto) client, whose GetRecords fails as AWS would: throttled, then the
    iterator expired, every ``every``-th call."""

    def __init__(self, client, every: int = 3) -> None:
        self.client = client
        self.every = every
        self.calls = 0
        self.failed: Counter[str] = Counter()

    def __getattr__(self, name: str):
        return getattr(self.client, name)

    def get_records(self, **kwargs):
        from botocore.exceptions import ClientError

        self.calls += 1
        if self.calls % self.every == 0:
            code = ("ProvisionedThroughputExceededException", "ExpiredIteratorException")[
                len(self.failed) % 2
            ]
            self.failed[code] += 1
            raise ClientError({"Error": {"Code": code, "Message": "test"}}, "GetRecords")
        return self.client.get_records(**kwargs)


def test_throttling_and_expired_iterators_lose_and_repeat_nothing(setup):
    client, name, lake_root, lake = setup
    produced = events(400)
    ids = {json.loads(v)["event_id"] for v in produced}
    put(client, name, produced)
    flaky = FlakyKinesis(client)
    config = KinesisSourceConfig(
        name, stream=STREAM, batch_records=35, get_records_limit=20, empty_pause_s=0.01
    )
    report = ingest_once(config, lake, flaky)
    assert set(flaky.failed) == {
        "ProvisionedThroughputExceededException",
        "ExpiredIteratorException",
    }
    assert report.records == 400
    seen = lake_events(lake_root)
    assert set(seen) == ids and set(seen.values()) == {1}
    assert caught_up(config, lake, client)
