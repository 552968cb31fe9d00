"""The retrieval-evaluation set: questions with the documents that answer them.

Training data is decontaminated against these questions (a model trained on the eval set
would look better than it is), and the index is measured on them.
"""

import json
import os

import dagster as dg
import pyarrow as pa

from llm_data_platform.lib.metadata import preview_markdown
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.resources.landing import LandingFolderResource

EVAL_SCHEMA = pa.schema([("question", pa.string()), ("doc_id", pa.string())])


def read_eval_questions(lake: LakeResource) -> list[str]:
    """The questions of the materialized eval set, or [] when there is none yet."""
    table = lake.read_partition("curated", "retrieval_eval_set", "all")
    return [] if table is None else table["question"].to_pylist()


@dg.asset(
    group_name="curated",
    kinds={"json", "parquet"},
    metadata={"lake_zone": "curated"},
)
def retrieval_eval_set(
    context: dg.AssetExecutionContext, landing: LandingFolderResource, lake: LakeResource
) -> pa.Table:
    """Questions and the doc ids that answer them, from ``<landing>/eval/questions.jsonl``."""
    path = os.path.join(landing.path, "eval", "questions.jsonl")
    if not os.path.exists(path):
        raise dg.Failure(
            f"No evaluation set at {path}. Write one JSON object per line: "
            '{"question": "...", "doc_id": "..."} (`ldp demo-data` writes the demo\'s).'
        )
    rows, bad = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                question, doc_id = obj["question"], obj["doc_id"]
                if not (isinstance(question, str) and question.strip() and isinstance(doc_id, str)):
                    raise ValueError("question/doc_id must be non-empty strings")
            except (ValueError, KeyError, TypeError) as exc:
                bad.append(f"line {number}: {exc}")
                continue
            rows.append({"question": question.strip(), "doc_id": doc_id})
    table = pa.Table.from_pylist(rows, schema=EVAL_SCHEMA)
    for problem in bad:
        context.log.warning(f"eval set {problem} (skipped)")
    context.add_output_metadata(
        {
            "questions": table.num_rows,
            "documents": len(set(table["doc_id"].to_pylist())),
            "rejected_lines": len(bad),
            "rejected": bad[:10] or ["none"],
            "sample": dg.MetadataValue.md(preview_markdown(table)),
        }
    )
    return table
