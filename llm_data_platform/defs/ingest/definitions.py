"""Ingest domain: raw tables staged from every source, and the sensors that notice arrivals."""

import dagster as dg

from llm_data_platform.defs.ingest.assets import raw_conversations, raw_documents
from llm_data_platform.defs.ingest.jobs import INGEST_JOBS
from llm_data_platform.defs.ingest.sensors import LANDING_SENSORS
from llm_data_platform.defs.ingest.stream_sensors import stream_sensors
from llm_data_platform.settings import Settings

ASSETS = [raw_conversations, raw_documents]


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=ASSETS,
        jobs=list(INGEST_JOBS.values()),
        sensors=[
            *LANDING_SENSORS,
            *stream_sensors(kafka=bool(settings.kafka_bootstrap), s3=bool(settings.s3_source_uri)),
        ],
    )
