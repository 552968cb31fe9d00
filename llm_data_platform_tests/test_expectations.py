"""Column expectations: one declaration, two engines that agree, and rules that catch."""

from __future__ import annotations

import pyarrow as pa
import pytest

from llm_data_platform.transforms.expectations import (
    CONVERSATIONS_CLEAN_MESSAGES,
    Expectation,
    validate_arrow,
    validate_arrow_batches,
    validate_gx,
)


def _messages(**overrides) -> pa.Table:
    columns = {
        "event_id": ["a", "b", "c", "d"],
        "content": ["hi", "there", "ok", "bye"],
        "role": ["user", "assistant", "user", None],
        "quality_score": [0.1, 0.9, 1.0, None],
        "language": ["en", "fra", None, "de"],
    }
    columns.update(overrides)
    return pa.table(columns)


def _failed(outcomes) -> dict[str, int]:
    return {o.expectation.name: o.unexpected for o in outcomes if not o.passed}


def test_clean_messages_pass_and_nulls_count_only_for_not_null():
    assert _failed(validate_arrow(_messages(), CONVERSATIONS_CLEAN_MESSAGES)) == {}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"event_id": ["a", "a", "c", None]}, {"unique(event_id)": 1, "not_null(event_id)": 1}),
        ({"role": ["user", "robot", "tool", "user"]}, {"in_set(role)": 2}),
        ({"quality_score": [1.5, -0.1, 0.5, 0.5]}, {"between(quality_score)": 2}),
        ({"language": ["english", "e", "en", "en"]}, {"length_between(language)": 2}),
        ({"content": ["x", None, None, "y"]}, {"not_null(content)": 2}),
    ],
)
def test_each_rule_catches_what_it_names(overrides, expected):
    assert _failed(validate_arrow(_messages(**overrides), CONVERSATIONS_CLEAN_MESSAGES)) == expected


def test_great_expectations_agrees_with_the_arrow_engine():
    table = _messages(role=["user", "robot", "tool", "user"], quality_score=[1.5, 0.2, 0.3, 0.4])
    arrow = validate_arrow(table, CONVERSATIONS_CLEAN_MESSAGES)
    gx = validate_gx(table, CONVERSATIONS_CLEAN_MESSAGES)
    assert [(o.passed, o.unexpected) for o in arrow] == [(o.passed, o.unexpected) for o in gx]
    assert _failed(arrow) == {"in_set(role)": 2, "between(quality_score)": 1}


def test_an_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="unknown expectation rule"):
        validate_arrow(_messages(), [Expectation("matches", "event_id")])


def test_a_day_in_batches_gives_what_the_whole_day_gives():
    table = _messages(event_id=["a", "b", "a", None], role=["user", "robot", "tool", None])
    whole = validate_arrow(table, CONVERSATIONS_CLEAN_MESSAGES)
    for size in (1, 2, 3):
        batched = validate_arrow_batches(table.to_batches(size), CONVERSATIONS_CLEAN_MESSAGES)
        assert [(o.passed, o.unexpected) for o in batched] == [
            (o.passed, o.unexpected) for o in whole
        ]
    assert _failed(whole)["unique(event_id)"] == 1  # a duplicate across two batches counts
