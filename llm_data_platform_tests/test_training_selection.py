"""Final selection of fine-tuning examples: near-copies and eval overlaps removed, the earliest
copy kept, the result in example-id order whichever order the candidates came in."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from llm_data_platform import schemas
from llm_data_platform.transforms.training_selection import (
    example_text,
    example_texts,
    select_examples,
)

BASE = (
    "my router drops the wifi connection every evening around eight and only a restart of the "
    "box brings it back for a while what should i check first"
)
ANSWER = "check the firmware version and move the router away from the microwave oven"


def _example(example_id: str, user: str, hour: int) -> dict:
    messages = [
        {"role": "system", "content": "You are a support assistant."},
        {"role": "user", "content": user},
        {"role": "assistant", "content": ANSWER},
    ]
    return {
        "example_id": example_id,
        "conversation_id": example_id,
        "messages_json": json.dumps({"messages": messages}, ensure_ascii=False),
        "n_turns": 2,
        "n_tokens": 40,
        "rating": 5,
        "split": "train",
        "event_time": datetime(2026, 1, 5, hour, tzinfo=UTC),
    }


def _examples(order: list[str]) -> pa.Table:
    rows = {
        "a": _example("a", BASE, 1),
        "b": _example("b", BASE.upper() + "?!", 2),  # a copy of a in another case, later
        "c": _example("c", "how do i export my invoices as a csv file from the billing page", 3),
        "d": _example("d", "what is the refund policy for annual plans bought last month", 4),
    }
    return pa.Table.from_pylist([rows[i] for i in order], schema=schemas.TRAINING_EXAMPLES)


@pytest.mark.parametrize("order", [["a", "b", "c", "d"], ["d", "b", "c", "a"]])
def test_near_copies_and_eval_overlaps_go_the_original_stays(order):
    eval_questions = ["what is the refund policy for annual plans bought last month"]
    result = select_examples(_examples(order), eval_questions)
    assert result.kept["example_id"].to_pylist() == ["a", "c"]
    assert result.counts == {"near_duplicate": 1, "contaminated": 1}
    assert result.removed == {"b": "near_duplicate_of:a", "d": "contaminated"}


def test_nothing_removed_keeps_the_table_as_it_is():
    examples = _examples(["a", "c", "d"])
    assert select_examples(examples, []).kept.equals(examples)


def test_example_texts_match_the_per_example_definition():
    messages = [
        [{"role": "system", "content": "s"}, {"role": "user", "content": 'héllo "q"\nnext'}],
        [{"role": "system", "content": "only the system prompt"}],
        [],
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b ✓"}],
    ]
    lines = [json.dumps({"messages": m}, ensure_ascii=i % 2 == 0) for i, m in enumerate(messages)]
    column = pa.chunked_array([lines[:3], lines[3:]])
    expected = [example_text(line) for line in lines]
    assert example_texts(column).to_pylist() == expected
    order = pa.array([3, 0, 2, 1], pa.int64())
    assert example_texts(column, order, block=2).to_pylist() == [expected[i] for i in [3, 0, 2, 1]]


def test_a_cluster_of_near_copies_is_represented_by_its_best_example():
    rows = [_example("a", BASE, 1), _example("b", BASE.upper() + "?!", 2)]
    rows[0]["quality_score"], rows[1]["quality_score"] = 0.6, 0.9  # the later copy is better
    rows.append(
        {**_example("c", "how do i export my invoices as a csv file", 3), "quality_score": 0.7}
    )
    schema = schemas.TRAINING_EXAMPLES.append(pa.field("quality_score", pa.float32()))
    result = select_examples(pa.Table.from_pylist(rows, schema=schema), [])
    assert result.kept["example_id"].to_pylist() == ["b", "c"]
    assert result.removed == {"a": "near_duplicate_of:b"}


def test_the_week_is_cut_best_first_at_the_budget_and_the_count():
    from llm_data_platform.defs.training.assets import select_within_budget

    rows = [
        {**_example(i, f"question number {i} about something else entirely", 1), "quality_score": q}
        for i, q in (("p", 0.9), ("q", 0.5), ("r", 0.8), ("s", 0.7))
    ]
    schema = schemas.TRAINING_EXAMPLES.append(pa.field("quality_score", pa.float32()))
    table = pa.Table.from_pylist(rows, schema=schema)  # 40 tokens each
    kept, left_out = select_within_budget(table, token_budget=100, max_examples=10)
    assert kept["example_id"].to_pylist() == ["p", "r"] and left_out == {
        "s": "over_budget",
        "q": "over_budget",
    }
    kept, left_out = select_within_budget(table, token_budget=1000, max_examples=3)
    assert kept["example_id"].to_pylist() == ["p", "r", "s"] and left_out == {"q": "over_count"}
