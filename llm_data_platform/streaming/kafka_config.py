"""What a Kafka ingest reads and how its batches are named (shared by the run and the ledger)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urlparse

OFFSET_WIDTH = 20


@dataclass(frozen=True)
class KafkaSourceConfig:
    bootstrap_servers: str
    topic: str
    group_id: str
    stream: str = "conversations"
    max_messages: int = 100_000  # per ingest run, all partitions together
    batch_messages: int = 25_000  # per micro-batch (bounds memory)
    max_in_flight: int = 4  # batches parsed and written while the next ones are read
    poll_timeout_s: float = 1.0  # one consume() call
    run_timeout_s: float = 45.0  # stop reading after this (what was read is still written)
    idle_timeout_s: float = 10.0  # give up on offsets below the watermark that never come
    metadata_timeout_s: float = 10.0
    # Keep each committed batch's ledger entry (state ``committed``, with its event days) until
    # ``acknowledge`` removes it: a sensor requests runs for ``pending_days`` and acknowledges
    # them, so even a crash between the commit and the run requests loses no trigger.
    keep_committed_ledger: bool = False
    consumer_config: Mapping[str, Any] = field(default_factory=dict)  # security.protocol, …
    # first and last day that exist as partitions: events outside are quarantined
    bounds: tuple[date, date] | None = None

    @classmethod
    def from_url(cls, url: str, group_id: str, **kwargs: Any) -> KafkaSourceConfig:
        """``kafka://host:port[,host:port]/topic``."""
        parsed = urlparse(url)
        topic = parsed.path.strip("/")
        if parsed.scheme != "kafka" or not parsed.netloc or not topic:
            raise ValueError(f"Expected kafka://host:port/topic, got {url!r}")
        return cls(bootstrap_servers=parsed.netloc, topic=topic, group_id=group_id, **kwargs)


def consumer_settings(config: KafkaSourceConfig) -> dict[str, Any]:
    return {
        "bootstrap.servers": config.bootstrap_servers,
        "group.id": config.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "client.id": f"ldp-{config.stream}-ingest",
        # librdkafka ≥ 2.x pauses fetching for fetch.queue.backoff.ms (1 s) whenever its local
        # queue is full: a bulk reader wants it short. The queue itself bounds memory.
        "fetch.queue.backoff.ms": 20,
        "queued.max.messages.kbytes": 32_768,
        "logger": logging.getLogger("llm_data_platform.streaming.librdkafka"),
        **dict(config.consumer_config),
    }


def batch_identity(topic: str, partition: int, first: int, last: int) -> str:
    return f"kafka-{topic}-{partition}-{first:0{OFFSET_WIDTH}d}-{last:0{OFFSET_WIDTH}d}"


def batch_source(topic: str, partition: int, first: int) -> str:
    return f"kafka://{topic}/{partition}/{first:0{OFFSET_WIDTH}d}"
