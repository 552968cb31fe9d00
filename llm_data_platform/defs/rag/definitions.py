"""RAG domain: clean documents → chunks → embeddings → the gated, blue/green Chroma index."""

import dagster as dg

from llm_data_platform.defs.rag.automation import (
    rag_index_after_documents_sensor,
    rag_index_job,
    rag_index_schedule,
    retrieval_eval_set_job,
)
from llm_data_platform.defs.rag.checks import RAG_CHECKS
from llm_data_platform.defs.rag.chunks import chunk_embeddings, document_chunks
from llm_data_platform.defs.rag.documents import clean_raw_documents
from llm_data_platform.defs.rag.evaluation import retrieval_eval_set
from llm_data_platform.defs.rag.index import rag_index, rag_index_live
from llm_data_platform.settings import Settings

ASSETS = [
    clean_raw_documents,
    document_chunks,
    chunk_embeddings,
    retrieval_eval_set,
    rag_index,
    rag_index_live,
]
CHECKS = RAG_CHECKS


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        jobs=[rag_index_job, retrieval_eval_set_job],
        schedules=[rag_index_schedule],
        sensors=[rag_index_after_documents_sensor],
    )
