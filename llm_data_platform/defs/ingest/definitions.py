"""Ingest domain: arrivals staged into micro-batches, raw days compacted from them, and the
sensors that notice arrivals."""

import dagster as dg

from llm_data_platform.defs.ingest.assets import compact_conversations, compact_documents
from llm_data_platform.defs.ingest.jobs import INGEST_JOBS, STAGE_JOBS
from llm_data_platform.defs.ingest.sensors import landing_sensors
from llm_data_platform.defs.ingest.staging import STAGING_ASSETS
from llm_data_platform.defs.ingest.stream_sensors import stream_sensors
from llm_data_platform.settings import Settings

ASSETS = [*STAGING_ASSETS, compact_conversations, compact_documents]


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=ASSETS,
        jobs=[*STAGE_JOBS.values(), *INGEST_JOBS.values()],
        sensors=[
            *landing_sensors(settings.sensor_max_files, settings.sensor_interval_seconds),
            *stream_sensors(kafka=bool(settings.kafka_bootstrap), s3=bool(settings.s3_source_uri)),
        ],
    )
