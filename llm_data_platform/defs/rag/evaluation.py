"""The retrieval-evaluation set: questions with the documents that answer them.

Given questions (``<landing>/eval/questions.jsonl``) are what people wrote; training data is
decontaminated against them (a model trained on the eval set would look better than it is).
A knowledge base that ships none is still gated: the set is then generated from its own
documents' titles and headings (``transforms/eval_questions.py``), kept stable across
versions. The index is measured on whichever set there is.
"""

import json
import os

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.lib.metadata import preview_markdown
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.resources.landing import LandingFolderResource
from llm_data_platform.transforms.eval_questions import (
    EVAL_SCHEMA,
    generated_questions,
    latest_documents,
)


def read_eval_questions(lake: LakeResource) -> list[str]:
    """The questions people wrote (not the generated ones: a title is no benchmark to keep
    out of training data), or [] when there are none."""
    table = lake.read_partition("curated", "retrieval_eval_set", "all")
    if table is None:
        return []
    if "source" in table.column_names:
        table = table.filter(pc.equal(table["source"], "given"))
    return table["question"].to_pylist()


def _parse_line(line: str) -> dict:
    obj = json.loads(line)
    question = obj["question"]
    doc_ids = obj.get("doc_ids") or [obj["doc_id"]]
    if not (isinstance(question, str) and question.strip()):
        raise ValueError("question must be a non-empty string")
    if not (isinstance(doc_ids, list) and doc_ids and all(isinstance(d, str) for d in doc_ids)):
        raise ValueError("doc_id must be a string (or doc_ids a list of strings)")
    return {"question": question.strip(), "doc_id": doc_ids[0], "doc_ids": doc_ids}


def _given(path: str) -> tuple[list[dict], list[str]]:
    rows, bad = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                try:
                    rows.append({**_parse_line(line), "source": "given"})
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    bad.append(f"line {number}: {exc}")
    return rows, bad


@dg.asset(
    group_name="curated",
    kinds={"json", "parquet"},
    metadata={"lake_zone": "curated"},
    deps=["documents_clean"],
)
def retrieval_eval_set(
    context: dg.AssetExecutionContext, landing: LandingFolderResource, lake: LakeResource
) -> pa.Table:
    """Questions and the doc ids that answer them: ``<landing>/eval/questions.jsonl`` (one
    ``{"question": …, "doc_id": …}`` or ``{"question": …, "doc_ids": [...]}`` per line), or,
    without that file, questions generated from the documents' titles and headings."""
    path = os.path.join(landing.path, "eval", "questions.jsonl")
    bad: list[str] = []
    if os.path.exists(path):
        rows, bad = _given(path)
        table = pa.Table.from_pylist(rows, schema=EVAL_SCHEMA)
    else:
        documents = lake.read_partitions("clean", "documents_clean")
        previous = lake.read_partition("curated", "retrieval_eval_set", "all")
        if previous is not None and "source" not in previous.column_names:
            previous = None  # a set written before generated questions existed
        latest = latest_documents(documents) if documents is not None else None
        table = (
            generated_questions(latest, previous)
            if latest is not None
            else EVAL_SCHEMA.empty_table()
        )
        context.log.info(
            f"No {path}: {table.num_rows} questions generated from the documents' titles and "
            "headings gate the index (write that file to gate it on your own questions)."
        )
    for problem in bad:
        context.log.warning(f"eval set {problem} (skipped)")
    sources = pc.value_counts(table["source"]).to_pylist() if table.num_rows else []
    context.add_output_metadata(
        {
            "questions": table.num_rows,
            "by_source": {s["values"]: s["counts"] for s in sources},
            "documents": len({d for ds in table["doc_ids"].to_pylist() for d in ds}),
            "rejected_lines": len(bad),
            "rejected": bad[:10] or ["none"],
            "sample": dg.MetadataValue.md(preview_markdown(table.drop(["doc_ids"]))),
        }
    )
    return table
