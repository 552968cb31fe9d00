"""llm_data_platform: lake, cleaning, fine-tuning batches and a RAG index as one Dagster code
location (``dagster dev -m llm_data_platform``; the pieces are assembled in ``definitions.py``,
whose ``defs`` is the Definitions object).

``code_location`` is that object, built on first access (PEP 562): Dagster finds it by
attribute, while ``ldp``'s light commands (``ingest-docs``, ``ask``, ``settings``) import the
package without paying ~2 s for the whole graph and the libraries every asset uses. (Not named
``defs``: that is the ``defs/`` subpackage of domains.)
"""

from typing import Any

__all__ = ["code_location"]


def __getattr__(name: str) -> Any:
    if name == "code_location":
        from llm_data_platform.definitions import defs

        return defs
    raise AttributeError(f"module 'llm_data_platform' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "code_location"])
