"""Kafka messages as plain columns, and those columns as a micro-batch's lines.

The consume loop does no per-message Python beyond unpacking each ``consume`` result into plain
columns (``_unpack``, with cyclic GC paused so the short-lived ``Message`` objects never reach a
collection).
"""

from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import KafkaError, KafkaException, Message

from llm_data_platform.streaming.kafka_config import batch_source
from llm_data_platform.streaming.parse import LineColumns

NULL_VALUE = "null message value (a tombstone or an empty produce)"


@dataclass
class _Messages:
    """One partition's messages as parallel columns, in offset order. ``consume`` hands out
    ``Message`` objects; only these plain columns are kept (see ``_unpack``)."""

    offsets: list[int]
    values: list[bytes | None]
    stamps: list[int]  # message timestamps, epoch ms (-1: none)

    def __len__(self) -> int:
        return len(self.offsets)

    def extend(self, offsets: list[int], values: list[bytes | None], stamps: list[int]) -> None:
        self.offsets += offsets
        self.values += values
        self.stamps += stamps


@contextmanager
def _gc_paused():
    """Cyclic GC off while a ``consume`` result is unpacked. Each ``Message`` is a GC-tracked
    object: 10,000 of them at a time trigger collections that promote them, and every promotion
    brings the next full collection (over every object of the process) nearer — that cost
    dominated ingest. Unpacked into plain columns (ints, bytes) and released before GC is back
    on, they never reach a collection. Collections are only deferred, never skipped."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _unpack(messages: list[Message]):
    """(partitions as numpy, offsets, values, timestamps) of a ``consume`` result; a message
    carrying an error (other than a partition EOF) raises; EOF events are dropped."""
    errors = list(map(Message.error, messages))
    if errors.count(None) != len(errors):
        for error in errors:
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                raise KafkaException(error)
        messages = [m for m, e in zip(messages, errors, strict=True) if e is None]
    parts = np.fromiter(map(Message.partition, messages), np.int64, len(messages))
    offsets = list(map(Message.offset, messages))
    values = list(map(Message.value, messages))
    stamps = [t for _, t in map(Message.timestamp, messages)]
    return parts, offsets, values, stamps


def _batch_lines(topic: str, partition: int, first: int, batch: _Messages):
    """(lines, source, arrival times, rejected) of a batch starting at offset ``first`` (or of
    a piece of it); line number = offset - first + 1; null values (tombstones) are
    ``rejected``: quarantined with their reason."""
    offsets = batch.offsets
    stamps = pa.array(batch.stamps, pa.int64())
    if pc.min(stamps).as_py() < 0:  # no timestamp (old message format): arrival = now
        stamps = pc.if_else(pc.less(stamps, 0), int(time.time() * 1000), stamps)
    arrivals = stamps.cast(pa.timestamp("ms", tz="UTC"))
    values = batch.values
    numbers = (np.asarray(offsets, dtype=np.int64) - (first - 1)).tolist()
    rejected: list[tuple[int, bytes, str, datetime]] = []
    if None in values:
        keep = [v is not None for v in values]
        times = arrivals.to_pylist()
        rejected = [
            (number, b"", NULL_VALUE, when)
            for number, when, k in zip(numbers, times, keep, strict=True)
            if not k
        ]
        numbers = [n for n, k in zip(numbers, keep, strict=True) if k]
        values = [v for v, k in zip(values, keep, strict=True) if k]
        arrivals = arrivals.filter(pa.array(keep))
    lines = LineColumns(numbers, values)
    return lines, batch_source(topic, partition, first), arrivals, rejected
