"""Ingest domain: arrivals staged into micro-batches, raw days compacted from them, and the
sensors that notice arrivals."""

import dagster as dg

from llm_data_platform.defs.ingest.assets import raw_assets
from llm_data_platform.defs.ingest.jobs import STAGE_JOBS, ingest_jobs, sync_documents_job
from llm_data_platform.defs.ingest.sensors import landing_sensors
from llm_data_platform.defs.ingest.staging import staging_assets
from llm_data_platform.defs.ingest.stream_sensors import stream_sensors
from llm_data_platform.defs.partitions import Partitions
from llm_data_platform.settings import Settings


def build_defs(settings: Settings, partitions: Partitions) -> dg.Definitions:
    sync_documents = sync_documents_job(partitions)
    return dg.Definitions(
        assets=[*staging_assets(partitions), *raw_assets(partitions)],
        jobs=[*STAGE_JOBS.values(), *ingest_jobs(partitions), sync_documents],
        sensors=[
            *landing_sensors(
                settings.sensor_max_files,
                settings.sensor_interval_seconds,
                settings.documents_sensor_interval_seconds,
                (sync_documents, partitions),
            ),
            *stream_sensors(
                kafka=bool(settings.kafka_bootstrap),
                s3=bool(settings.s3_source_uri),
                kinesis=bool(settings.kinesis_streams),
            ),
        ],
    )
