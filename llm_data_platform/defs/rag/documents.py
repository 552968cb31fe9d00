"""Clean documents: the text of each document's latest version of the day, and tombstones."""

import dagster as dg
import pyarrow as pa

from llm_data_platform.lib.cleaning import CLEAN_ASSET, clean_partitions
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.transforms.document_cleaning import clean_documents


@dg.asset(
    **CLEAN_ASSET,
    kinds={"parquet", "html"},
    metadata={"lake_zone": "clean", "lake_sort_by": ["doc_id"]},
)
def documents_clean(
    context: dg.AssetExecutionContext,
    raw_documents: dict[str, pa.Table],
    lake: LakeResource,
) -> dict[str, pa.Table]:
    """Text extracted from each document's latest version of the day; deletions as tombstones."""
    return clean_partitions(
        context, raw_documents, clean_documents, lake, "documents_clean_dropped"
    )
