"""Clean documents: the text of each document's latest version of the day, and tombstones."""

import dagster as dg

from llm_data_platform import schemas
from llm_data_platform.defs.partitions import Partitions
from llm_data_platform.lib.cleaning import clean_asset
from llm_data_platform.transforms.document_cleaning import clean_documents, known_texts


def documents_clean_asset(partitions: Partitions) -> dg.AssetsDefinition:
    """raw_documents → documents_clean and the rows it dropped."""
    return clean_asset(
        "documents_clean",
        "raw_documents",
        description="Text extracted from each document's latest version of the day; deletions as "
        "tombstones.",
        kinds={"parquet", "html"},
        sort_by=["doc_id"],
        read_order=["doc_id", "updated_at", "event_id"],
        schema=schemas.DOCUMENTS_CLEAN,
        raw_schema=schemas.RAW_DOCUMENTS,
        make_transform=_reusing_extractions,
        partitions=partitions,
        reuse_previous=True,
    )


def _reusing_extractions(pipeline, previous):
    """Each version's text is extracted once: a re-run of the day (a 2-page edit that landed
    the same day as the rest) extracts only the versions it has not seen."""
    known = known_texts(previous)
    return lambda raw: clean_documents(raw, known)
