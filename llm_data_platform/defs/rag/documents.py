"""Clean documents: the text of each document's latest version of the day, and tombstones."""

from llm_data_platform import schemas
from llm_data_platform.lib.cleaning import clean_asset
from llm_data_platform.transforms.document_cleaning import clean_documents

clean_raw_documents = clean_asset(
    "documents_clean",
    "raw_documents",
    description="Text extracted from each document's latest version of the day; deletions as "
    "tombstones.",
    kinds={"parquet", "html"},
    sort_by=["doc_id"],
    read_order=["doc_id", "updated_at", "event_id"],
    schema=schemas.DOCUMENTS_CLEAN,
    raw_schema=schemas.RAW_DOCUMENTS,
    make_transform=lambda pipeline: clean_documents,
)
