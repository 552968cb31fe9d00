"""What a staging run does per source: landing files, a Kafka topic, a Kinesis stream, S3
object versions.

Each returns a ``Staged``: the counts of the run and the event days it touched (the raw days
to rebuild). The work itself is ``streaming/``'s; this is the wiring to resources and logs.
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import dagster as dg

from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.resources.landing import LandingFolderResource
from llm_data_platform.resources.stream_sources import StreamSourcesResource
from llm_data_platform.streaming import kinesis_source
from llm_data_platform.streaming.kafka_source import (
    acknowledge,
    describe,
    ingest_once,
    pending_days,
)
from llm_data_platform.streaming.landing_source import StagedFile
from llm_data_platform.streaming.microbatch import MicroBatchResult
from llm_data_platform.transforms.records import reason_family

Bounds = tuple[date, date]  # first and last event day that exist as partitions

SAMPLE_ROWS = 5


@dataclass
class Staged:
    """What one staging run did, whatever the source."""

    units: Counter[str] = field(default_factory=Counter)  # staged | unchanged | vanished | …
    received: int = 0
    kept: int = 0
    quarantined: int = 0
    forgotten: int = 0  # lines of forgotten users, dropped before anything was written
    late_events: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    days: set[str] = field(default_factory=set)
    reasons: Counter[str] = field(default_factory=Counter)
    sample: list[dict] = field(default_factory=list)

    def add_batch(self, result: MicroBatchResult) -> None:
        self.units["staged"] += 1
        self.received += result.received
        self.kept += result.rows
        self.quarantined += result.quarantined
        self.forgotten += result.forgotten
        self.late_events += result.late_events
        self.bytes_written += result.bytes
        self.days.update(result.days)
        self.reasons.update({reason_family(r): n for r, n in result.reasons.items()})

    def add_file(self, result: StagedFile) -> None:
        self.units["staged"] += 1
        self.received += result.received
        self.kept += result.rows
        self.quarantined += result.quarantined
        self.forgotten += result.forgotten
        self.late_events += result.late_events
        self.bytes_read += result.bytes_read
        self.bytes_written += result.bytes_written
        self.days.update(result.days)
        self.reasons.update(result.reasons)
        self.sample += result.quarantine_sample[: SAMPLE_ROWS - len(self.sample)]


def stage_landing(
    context: dg.AssetExecutionContext,
    stream: str,
    keys: list[str],
    landing: LandingFolderResource,
    lake: LakeResource,
    bounds: Bounds,
) -> Staged:
    staged = Staged()
    for done, key in enumerate(keys, start=1):
        result = landing.stage(lake, stream, key, bounds)
        if result.status != "staged":
            staged.units[result.status] += 1
            continue
        staged.add_file(result)
        context.log.info(
            f"[{done}/{len(keys)}] {stream}/{key}: {result.rows} events, "
            f"{result.quarantined} quarantined, days {sorted(result.days)} "
            f"({result.seconds:.2f} s)"
        )
    return staged


def stage_kafka(
    context: dg.AssetExecutionContext,
    stream: str,
    sources: StreamSourcesResource,
    lake: LakeResource,
    bounds: Bounds,
) -> tuple[Staged, Callable[[], object]]:
    """Consume up to the watermarks, committing after each batch is durable. The batches
    committed but not yet reported (this run's, and those of a run that died after its
    commit) give the days; the returned acknowledgement forgets them once reported."""
    config = sources.kafka_config(stream, bounds)
    if config is None:
        raise dg.Failure(
            "Kafka is not configured: set LDP_KAFKA_BOOTSTRAP (and LDP_KAFKA_TOPICS) to stage "
            "from Kafka, or run this asset with source 'landing'."
        )
    report = ingest_once(config, lake)
    context.log.info(describe(report))
    staged = Staged()
    for batch in report.batches:
        staged.add_batch(batch)
    if report.recovered:
        staged.units["recovered"] = len(report.recovered)
    pending = pending_days(lake, config)
    staged.days.update(pending)
    identities = {i for ids in pending.values() for i in ids}
    return staged, lambda: acknowledge(lake, config, identities)


def stage_kinesis(
    context: dg.AssetExecutionContext,
    stream: str,
    sources: StreamSourcesResource,
    lake: LakeResource,
    bounds: Bounds,
) -> tuple[Staged, Callable[[], object]]:
    """Read every shard after its checkpoint, checkpointing after each batch is durable. The
    batches checkpointed but not yet reported (this run's, and those of a run that died after
    its checkpoint) give the days; the returned acknowledgement forgets them once reported."""
    config = sources.kinesis_config(stream, bounds)
    if config is None:
        raise dg.Failure(
            f"Kinesis is not configured for {stream}: set LDP_KINESIS_STREAMS "
            f"({stream}=<stream name>) to stage from Kinesis, or run this asset with source "
            "'landing'."
        )
    report = kinesis_source.ingest_once(config, lake, sources.kinesis_client())
    context.log.info(kinesis_source.describe(report))
    staged = Staged()
    for batch in report.batches:
        staged.add_batch(batch)
    if report.recovered:
        staged.units["recovered"] = len(report.recovered)
    pending = kinesis_source.pending_days(config, lake)
    staged.days.update(pending)
    identities = {i for ids in pending.values() for i in ids}
    return staged, lambda: kinesis_source.acknowledge(config, lake, identities)


def stage_s3(
    context: dg.AssetExecutionContext,
    stream: str,
    objects: list[str],
    sources: StreamSourcesResource,
    lake: LakeResource,
    bounds: Bounds,
) -> Staged:
    source = sources.s3_source(stream)
    if source is None:
        raise dg.Failure("The S3 source is not configured: set LDP_S3_SOURCE_URI.")
    if not objects:
        raise dg.Failure(
            "Name the S3 object versions to stage (config objects: ['<etag> <key>', …]); the "
            f"s3_{stream}_sensor does it for every new object."
        )
    staged = Staged()
    for done, item in enumerate(objects, start=1):
        etag, _, key = item.partition(" ")
        result = source.ingest_object(key, etag, lake, bounds=bounds)
        if result is None:  # overwritten or deleted since it was listed: its successor is new
            staged.units["vanished"] += 1
            continue
        staged.add_batch(result)
        context.log.info(f"[{done}/{len(objects)}] {result.source}: {result.rows} events")
    return staged
