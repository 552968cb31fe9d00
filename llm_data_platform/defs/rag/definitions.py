"""RAG domain: clean documents → chunks → embeddings → the gated, blue/green Chroma index."""

import dagster as dg

from llm_data_platform.defs.partitions import Partitions
from llm_data_platform.defs.rag.automation import (
    rag_index_job,
    rag_index_schedule,
    retrieval_eval_set_job,
)
from llm_data_platform.defs.rag.checks import rag_checks
from llm_data_platform.defs.rag.chunks import chunk_assets
from llm_data_platform.defs.rag.documents import documents_clean_asset
from llm_data_platform.defs.rag.evaluation import retrieval_eval_set
from llm_data_platform.defs.rag.index import rag_index, rag_index_live
from llm_data_platform.defs.rag.side_tables import SIDE_TABLES
from llm_data_platform.settings import Settings


def build_defs(settings: Settings, partitions: Partitions) -> dg.Definitions:
    return dg.Definitions(
        assets=[
            documents_clean_asset(partitions),
            *chunk_assets(partitions),
            retrieval_eval_set,
            rag_index,
            rag_index_live,
            *SIDE_TABLES,
        ],
        asset_checks=rag_checks(partitions),
        jobs=[rag_index_job, retrieval_eval_set_job],
        schedules=[rag_index_schedule],
    )
