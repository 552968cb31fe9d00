"""The code location: assets by zone, their checks, jobs, sensors, schedules and resources."""

from __future__ import annotations

import warnings

import dagster as dg

# Partitioned asset checks are "preview" and backfill_policy "beta" in Dagster 1.13; both are
# the documented way to get what the platform needs. Filtered before the modules below import.
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
warnings.filterwarnings("ignore", category=dg.BetaWarning)

from dagster_aws.s3 import S3Resource
from dagster_duckdb import DuckDBResource

from llm_data_platform.assets.clean import conversations_clean, documents_clean
from llm_data_platform.assets.curated_rag import chunk_embeddings, document_chunks
from llm_data_platform.assets.curated_training import training_batches, training_examples
from llm_data_platform.assets.evaluation import retrieval_eval_set
from llm_data_platform.assets.raw import raw_conversations, raw_documents
from llm_data_platform.assets.serve import rag_index, rag_index_live
from llm_data_platform.automation.jobs import ALL_JOBS
from llm_data_platform.automation.schedules import ALL_SCHEDULES
from llm_data_platform.automation.sensors import ALL_SENSORS
from llm_data_platform.automation.stream_sensors import stream_sensors
from llm_data_platform.checks.conversation_checks import CONVERSATION_CHECKS
from llm_data_platform.checks.rag_checks import RAG_CHECKS
from llm_data_platform.checks.training_checks import TRAINING_CHECKS
from llm_data_platform.resources.chroma import ChromaResource
from llm_data_platform.resources.embeddings import EmbeddingsResource
from llm_data_platform.resources.io_manager import LakeIOManager
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.resources.landing import LandingFolderResource
from llm_data_platform.resources.stream_sources import StreamSourcesResource
from llm_data_platform.settings import Settings, load_settings

ASSETS = [
    raw_conversations,
    raw_documents,
    conversations_clean,
    documents_clean,
    training_examples,
    training_batches,
    document_chunks,
    chunk_embeddings,
    rag_index,
    rag_index_live,
    retrieval_eval_set,
]
CHECKS = [*CONVERSATION_CHECKS, *TRAINING_CHECKS, *RAG_CHECKS]


def build_resources(settings: Settings | None = None) -> dict[str, object]:
    """Resources from settings; tests pass their own Settings pointing at temp folders."""
    settings = settings or load_settings()
    s3 = S3Resource(
        region_name=settings.s3_region,
        endpoint_url=settings.s3_endpoint_url or None,
    )
    lake = LakeResource(
        root=settings.lake_root, s3=s3 if settings.lake_root.startswith("s3://") else None
    )
    if settings.embedding_provider == "openai":
        embeddings = EmbeddingsResource(
            provider="openai",
            model=settings.embedding_model,
            batch_size=settings.embedding_batch_size,
            api_key=dg.EnvVar("OPENAI_API_KEY") if not settings.openai_base_url else None,
            base_url=settings.openai_base_url or None,
        )
    else:
        embeddings = EmbeddingsResource(
            provider="local",
            model=settings.embedding_model,
            batch_size=settings.embedding_batch_size,
        )
    return {
        "lake": lake,
        "io_manager": LakeIOManager(lake=lake),
        "landing": LandingFolderResource(path=settings.landing_dir),
        "duckdb": DuckDBResource(database=":memory:"),
        "chroma": ChromaResource(
            path=settings.chroma_path,
            host=settings.chroma_host,
            port=settings.chroma_port,
            collection_prefix=settings.chroma_collection,
        ),
        "embeddings": embeddings,
        "sources": StreamSourcesResource(
            kafka_bootstrap=settings.kafka_bootstrap,
            kafka_topics=settings.kafka_topics,
            kafka_group=settings.kafka_group,
            kafka_max_messages=settings.kafka_max_messages,
            s3_source_uri=settings.s3_source_uri,
            s3=s3 if settings.s3_source_uri else None,
            max_objects=settings.sensor_max_files,
        ),
    }


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or load_settings()
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        jobs=ALL_JOBS,
        sensors=[
            *ALL_SENSORS,
            *stream_sensors(kafka=bool(settings.kafka_bootstrap), s3=bool(settings.s3_source_uri)),
        ],
        schedules=ALL_SCHEDULES,
        resources=build_resources(settings),
    )


defs = build_definitions()
