"""Streaming sources beside the landing folder: Kafka topics, Kinesis streams, S3 prefixes.

Each is switched on by configuration alone (LDP_KAFKA_BOOTSTRAP, LDP_S3_SOURCE_URI); their
sensors only look (Kafka: offsets; S3: a listing) and request staging runs, which stage
exactly-once micro-batches into the raw zone (``streaming/``); the raw assets compact them.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource

from llm_data_platform.resources.kinesis import KinesisResource
from llm_data_platform.streaming.kafka_source import KafkaSourceConfig
from llm_data_platform.streaming.kinesis_source import KinesisSourceConfig
from llm_data_platform.streaming.line_reader import ReadLimits
from llm_data_platform.streaming.s3_source import S3PrefixSource
from llm_data_platform.transforms.records import STREAMS as STREAM_SPECS


class StreamSourcesResource(dg.ConfigurableResource):
    kafka_bootstrap: str = ""
    kafka_topics: str = "conversations=ldp.conversations,documents=ldp.documents"
    kafka_group: str = "llm-data-platform"
    kafka_max_messages: int = 100_000
    kafka_run_seconds: float = 300.0  # a staging run stops reading here; what it read is written
    s3_source_uri: str = ""
    s3: S3Resource | None = None
    max_objects: int = 200
    max_lines_per_object: int = ReadLimits.max_lines
    max_bytes_per_object: int = ReadLimits.max_bytes
    kinesis_streams: str = ""  # conversations=NAME,documents=NAME; empty: Kinesis off
    kinesis: KinesisResource | None = None
    kinesis_consumer: str = "llm-data-platform"
    kinesis_max_records: int = 100_000
    kinesis_run_seconds: float = 300.0

    def topics(self) -> dict[str, str]:
        pairs = [p.split("=", 1) for p in self.kafka_topics.split(",") if "=" in p]
        return {stream.strip(): topic.strip() for stream, topic in pairs}

    def kafka_config(
        self, stream: str, bounds: tuple[date, date] | None = None
    ) -> KafkaSourceConfig | None:
        topic = self.topics().get(stream)
        if not self.kafka_bootstrap or not topic:
            return None
        return KafkaSourceConfig(
            bootstrap_servers=self.kafka_bootstrap,
            topic=topic,
            group_id=self.kafka_group,
            stream=stream,
            max_messages=self.kafka_max_messages,
            run_timeout_s=self.kafka_run_seconds,
            keep_committed_ledger=True,
            bounds=bounds,
        )

    def s3_source(self, stream: str) -> S3PrefixSource | None:
        if not self.s3_source_uri:
            return None
        s3 = self.s3 or S3Resource()
        url = f"{self.s3_source_uri.rstrip('/')}/{stream}/"
        limits = ReadLimits(
            max_line_bytes=STREAM_SPECS[stream].max_line_bytes,
            max_lines=self.max_lines_per_object,
            max_bytes=self.max_bytes_per_object,
        )
        return S3PrefixSource.from_url(
            url, stream, s3.get_client, max_objects=self.max_objects, limits=limits
        )

    def kinesis_config(
        self, stream: str, bounds: tuple[date, date] | None = None
    ) -> KinesisSourceConfig | None:
        """The Kinesis stream of ``stream`` (None when Kinesis is off or has none for it)."""
        pairs = [p.split("=", 1) for p in self.kinesis_streams.split(",") if "=" in p]
        name = {k.strip(): v.strip() for k, v in pairs}.get(stream)
        if not name:
            return None
        return KinesisSourceConfig(
            stream_name=name,
            consumer=self.kinesis_consumer,
            stream=stream,
            max_records=self.kinesis_max_records,
            run_timeout_s=self.kinesis_run_seconds,
            keep_committed_ledger=True,
            bounds=bounds,
        )

    def kinesis_client(self) -> Any:
        """A boto3 Kinesis client (the resource's endpoint and region, or boto3's defaults)."""
        return (self.kinesis or KinesisResource()).get_client()
