"""Sources that write landing files: plain functions, no Dagster import.

``directory``: a knowledge base kept as a folder of HTML / Markdown / text files, synced
incrementally into the documents stream (:func:`sync_directory`).
"""

from llm_data_platform.sources.directory import SyncReport, default_state_path, sync_directory

__all__ = ["SyncReport", "default_state_path", "sync_directory"]
