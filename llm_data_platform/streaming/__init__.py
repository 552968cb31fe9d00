"""Streaming ingest building blocks (no Dagster import): exactly-once micro-batches in the lake.

- ``line_reader``: capped, streaming JSONL lines of a file or an object (gzip or not).
- ``parse``: lines → typed rows or quarantine rows (one reader, one rule set per stream).
- ``microbatch``: write a parsed batch under its content identity, per event
  day (``raw/<stream>_batches/dt=<day>/<identity>.parquet`` and ``…_batches_quarantine/…``);
  ``read_day`` gives a day's events de-duplicated by ``event_id``, ready to be compacted.
- ``kafka_source``: consumer-group ingest that commits offsets only after the files are written.
- ``s3_source``: objects under an S3 prefix, drained in (last_modified, key) order with a cursor.
- ``producer``: a synthetic chat stream into a landing folder, an S3 prefix or a Kafka topic.

Assets and sensors wire these to Dagster; the modules here are plain Python.
"""

from llm_data_platform.streaming.microbatch import (
    DayBatches,
    MicroBatchResult,
    batch_table_names,
    dedupe_events,
    read_day,
    read_day_detailed,
    safe_identity,
    write_microbatch,
)

__all__ = [
    "DayBatches",
    "MicroBatchResult",
    "batch_table_names",
    "dedupe_events",
    "read_day",
    "read_day_detailed",
    "safe_identity",
    "write_microbatch",
]
