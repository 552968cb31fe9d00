"""Streaming ingest building blocks (no Dagster import): exactly-once micro-batches in the lake.

- ``microbatch``: parse a batch of raw lines and write it under its content identity, per event
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
    arrival_times,
    batch_table_names,
    dedupe_events,
    list_day_batches,
    read_day,
    read_day_detailed,
    safe_identity,
    write_microbatch,
)

__all__ = [
    "DayBatches",
    "MicroBatchResult",
    "arrival_times",
    "batch_table_names",
    "dedupe_events",
    "list_day_batches",
    "read_day",
    "read_day_detailed",
    "safe_identity",
    "write_microbatch",
]
