"""Clean documents: the text of each document's latest version of the day, and tombstones."""

from llm_data_platform.lib.cleaning import clean_asset
from llm_data_platform.transforms.document_cleaning import clean_documents

clean_raw_documents = clean_asset(
    "documents_clean",
    "raw_documents",
    description="Text extracted from each document's latest version of the day; deletions as "
    "tombstones.",
    kinds={"parquet", "html"},
    sort_by=["doc_id"],
    make_transform=lambda pipeline: clean_documents,
)
