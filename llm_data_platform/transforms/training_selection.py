"""Final selection of fine-tuning examples: no near-duplicates, nothing from the eval set.

Runs on the day's examples and again on the week's, so a copy that arrives on another day is
caught too. Keep-first in rank order (``RANK``): a cluster of near-copies is represented once,
by its best example, and among equals by the original (the earliest).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

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


_MESSAGES = pa.schema(
    [("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])))]
)


def example_texts(
    messages_json: pa.ChunkedArray, order: pa.Array | None = None, block: int = 50_000
) -> pa.ChunkedArray:
    """``example_text`` of every example (in ``order`` when given), a block at a time, with
    Arrow's JSON reader and list kernels: no Python object per example or message."""
    order = order if order is not None else pa.array(range(len(messages_json)), pa.int64())
    chunks = [
        _texts_of_block(messages_json.take(order.slice(start, block)))
        for start in range(0, len(order), block)
    ]
    return pa.chunked_array(chunks, type=pa.string())


def _texts_of_block(lines: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    if len(lines) == 0:
        return pa.array([], pa.string())
    # one line per example, newline-terminated, read straight from the Arrow value buffer
    ndjson = pc.binary_join_element_wise(lines.cast(pa.string()), pa.scalar("\n"), "")
    offsets = np.frombuffer(ndjson.buffers()[1], np.int32, len(ndjson) + 1, ndjson.offset * 4)
    body = ndjson.buffers()[2][int(offsets[0]) : int(offsets[-1])]
    parsed = pajson.read_json(
        pa.BufferReader(body),
        read_options=pajson.ReadOptions(block_size=max(1 << 20, body.size + 1)),
        parse_options=pajson.ParseOptions(
            explicit_schema=_MESSAGES, unexpected_field_behavior="ignore"
        ),
    )
    messages = parsed["messages"].combine_chunks()
    flat = pc.list_flatten(messages)
    parent = pc.list_parent_indices(messages).to_numpy()
    role = pc.fill_null(flat.field("role"), "None")
    content = pc.fill_null(flat.field("content"), "None")
    keep = pc.not_equal(role, "system").to_numpy(zero_copy_only=False)
    line = pc.binary_join_element_wise(role, content, ": ").filter(pa.array(keep))
    counts = np.bincount(parent[keep], minlength=len(lines))
    list_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(list_offsets), line), "\n")


# Best first: a near-duplicate cluster is represented by its best example; among equals the
# earliest (the original, not its copy), then the smaller id.
RANK = (
    ("quality_score", "descending"),
    ("rating", "descending"),
    ("event_time", "ascending"),
    ("example_id", "ascending"),
)


def rank_order(examples: pa.Table) -> pa.Array:
    """Row indices of ``examples`` best first (the columns of ``RANK`` it has)."""
    keys = [(k, order) for k, order in RANK if k in examples.column_names]
    return pc.sort_indices(examples, sort_keys=keys)


def select_examples(
    examples: pa.Table,
    eval_questions: list[str],
    near_dup_threshold: float = 0.8,
    contamination_ngram: int = 8,
) -> SelectionResult:
    """No example overlapping the evaluation questions; one example per near-duplicate
    cluster, the best ranked (``RANK``). ``removed`` gives each removed id its reason."""
    if examples.num_rows == 0:
        return SelectionResult(examples, {"near_duplicate": 0, "contaminated": 0})
    order = rank_order(examples)  # the table itself is not copied in that order
    ids = examples["example_id"].take(order)
    texts = example_texts(examples["messages_json"], order)
    near = near_duplicate_mask(texts, ids.to_pylist(), threshold=near_dup_threshold)
    dirty = np.asarray(
        contaminated_mask(texts, eval_questions, ngram=contamination_ngram)
        if eval_questions
        else np.zeros(len(texts), bool),
        dtype=bool,
    )
    del texts  # the day's texts are done with before the kept rows are copied
    duplicate = ~np.asarray(near.keep, dtype=bool) & ~dirty
    keep = ~dirty & ~duplicate
    of = pa.array(near.duplicate_of, pa.string()).filter(pa.array(duplicate))
    reasons = pc.binary_join_element_wise("near_duplicate_of:", of, "")
    removed = dict(
        zip(
            ids.filter(pa.array(dirty)).to_pylist(),
            ["contaminated"] * int(dirty.sum()),
            strict=True,
        )
    )
    removed.update(
        zip(ids.filter(pa.array(duplicate)).to_pylist(), reasons.to_pylist(), strict=True)
    )
    kept = _kept_by_id(examples, order, pa.array(keep))
    counts = {"contaminated": int(dirty.sum()), "near_duplicate": int(duplicate.sum())}
    return SelectionResult(kept, counts, removed)


def _kept_by_id(examples: pa.Table, order: pa.Array, keep_in_order: pa.Array) -> pa.Table:
    """The kept rows in example-id order, copied at most once. A day's candidates come in
    that order already (built from the clean table, sorted by conversation): then the rows
    are filtered where they are, chunk by chunk, or not touched at all when all are kept."""
    ids = examples["example_id"]
    n = examples.num_rows
    if n < 2 or pc.all(pc.less(ids.slice(0, n - 1), ids.slice(1))).as_py():
        if pc.all(keep_in_order).as_py():
            return examples
        keep = np.empty(n, dtype=bool)  # back from time order to row order
        keep[order.to_numpy()] = keep_in_order.to_numpy(zero_copy_only=False)
        return examples.filter(pa.array(keep))
    rows = order.filter(keep_in_order)
    return examples.take(rows.take(pc.sort_indices(ids.take(rows))))
