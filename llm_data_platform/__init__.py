"""llm_data_platform: lake, cleaning, fine-tuning batches and a RAG index as one Dagster code
location (``dagster dev -m llm_data_platform``; the pieces are assembled in ``definitions.py``)."""

try:  # TEMPORARY while transforms are being written; removed before release
    from llm_data_platform.definitions import defs
except ModuleNotFoundError as _exc:  # pragma: no cover
    if "llm_data_platform.transforms" not in str(_exc):
        raise

__all__ = ["defs"]
