"""Final selection of fine-tuning examples: no near-duplicates, nothing from the eval set.

Runs on the day's examples and again on the week's, so a copy that arrives on another day is
caught too. Keep-first in time order: the original conversation wins over its copy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.transforms.decontamination import contaminated_mask
from llm_data_platform.transforms.near_dedup import near_duplicate_mask


@dataclass(frozen=True)
class SelectionResult:
    kept: pa.Table
    counts: dict[str, int] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)  # example_id -> reason


def example_text(messages_json: str) -> str:
    """What makes two examples the same: their user and assistant turns (the shared system
    prompt would make every pair look alike)."""
    messages = json.loads(messages_json)["messages"]
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages if m.get("role") != "system")


def example_texts(
    messages_json: pa.ChunkedArray, order: pa.Array | None = None, block: int = 50_000
) -> pa.ChunkedArray:
    """``example_text`` of every example (in ``order`` when given), a block at a time: the
    day's JSON is never copied or turned into Python strings all at once."""
    order = order if order is not None else pa.array(range(len(messages_json)), pa.int64())
    chunks = [
        pa.array(
            [example_text(m) for m in messages_json.take(order.slice(start, block)).to_pylist()]
        )
        for start in range(0, len(order), block)
    ]
    return pa.chunked_array(chunks, type=pa.string())


def select_examples(
    examples: pa.Table,
    eval_questions: list[str],
    near_dup_threshold: float = 0.8,
    contamination_ngram: int = 8,
) -> SelectionResult:
    if examples.num_rows == 0:
        return SelectionResult(examples, {"near_duplicate": 0, "contaminated": 0})
    # earliest first (the original survives); the table itself is not copied in that order
    order = pc.sort_indices(
        examples, sort_keys=[("event_time", "ascending"), ("example_id", "ascending")]
    )
    ids = examples["example_id"].take(order).to_pylist()
    texts = example_texts(examples["messages_json"], order)
    near = near_duplicate_mask(texts, ids, threshold=near_dup_threshold)
    dirty = (
        contaminated_mask(texts, eval_questions, ngram=contamination_ngram)
        if eval_questions
        else [False] * len(texts)
    )
    del texts  # the day's texts are done with before the kept rows are copied
    removed: dict[str, str] = {}
    keep = []
    for i, example_id in enumerate(ids):
        if dirty[i]:
            removed[example_id] = "contaminated"
        elif not near.keep[i]:
            removed[example_id] = f"near_duplicate_of:{near.duplicate_of[i]}"
        keep.append(example_id not in removed)
    # one copy of the kept rows, already in example-id order
    rows = order.filter(pa.array(keep))
    by_id = pc.sort_indices(examples["example_id"].take(rows))
    kept = examples.take(rows.take(by_id))
    counts = {
        "contaminated": sum(1 for r in removed.values() if r == "contaminated"),
        "near_duplicate": sum(1 for r in removed.values() if r.startswith("near_duplicate")),
    }
    return SelectionResult(kept, counts, removed)
