"""Deterministic demo data: a real-text knowledge base and noisy chat streams with known truth.

The generator's names are imported lazily, so that `python -m llm_data_platform.demo.generator`
does not import the module twice.
"""

from typing import TYPE_CHECKING

from llm_data_platform.demo.corpus import (
    Doc,
    load_docstring_docs,
    load_module_docs,
    load_topics,
)

if TYPE_CHECKING:
    from llm_data_platform.demo.generator import (
        GARBAGE_MESSAGES,
        NON_ENGLISH_SESSIONS,
        PII_KINDS,
        ConversationDayTruth,
        DemoTruth,
        DocumentDayTruth,
        LandedFile,
        eval_question_for,
        generate_demo,
        malformed_partition,
    )

_GENERATOR_NAMES = {
    "GARBAGE_MESSAGES",
    "NON_ENGLISH_SESSIONS",
    "PII_KINDS",
    "ConversationDayTruth",
    "DemoTruth",
    "DocumentDayTruth",
    "LandedFile",
    "eval_question_for",
    "generate_demo",
    "malformed_partition",
}


def __getattr__(name: str):
    if name in _GENERATOR_NAMES:
        from llm_data_platform.demo import generator

        return getattr(generator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "GARBAGE_MESSAGES",
    "NON_ENGLISH_SESSIONS",
    "PII_KINDS",
    "ConversationDayTruth",
    "DemoTruth",
    "Doc",
    "DocumentDayTruth",
    "LandedFile",
    "eval_question_for",
    "generate_demo",
    "load_docstring_docs",
    "load_module_docs",
    "load_topics",
    "malformed_partition",
]
