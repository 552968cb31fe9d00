"""llm_data_platform: lake, cleaning, fine-tuning batches and a RAG index as one Dagster code
location (``dagster dev -m llm_data_platform``; the pieces are assembled in ``definitions.py``)."""

from llm_data_platform.definitions import defs

__all__ = ["defs"]
