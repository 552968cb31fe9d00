"""Column expectations, declared once and run by either engine (no Dagster import).

``validate_arrow`` evaluates them with Arrow kernels in milliseconds; ``validate_gx`` hands
the same list to Great Expectations (imported only then: ~4 s and ~300 MB), for teams that
want GX's results. Null values are ignored by every rule except ``not_null``, as in GX.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class Expectation:
    rule: str  # not_null | unique | in_set | between | length_between
    column: str
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.rule}({self.column})"


@dataclass(frozen=True)
class Outcome:
    expectation: Expectation
    passed: bool
    unexpected: int  # rows breaking the rule


def _unexpected(column: pa.ChunkedArray, e: Expectation) -> int:
    if e.rule == "not_null":
        return column.null_count
    values = pc.drop_null(column)
    if e.rule == "unique":
        return len(values) - len(pc.unique(values))
    if e.rule == "in_set":
        inside = pc.is_in(values, value_set=pa.array(e.args["value_set"], column.type))
        return int(pc.sum(pc.invert(inside)).as_py() or 0)
    if e.rule in {"between", "length_between"}:
        measured = pc.utf8_length(values) if e.rule == "length_between" else values
        low = pc.less(measured, e.args["min_value"])
        high = pc.greater(measured, e.args["max_value"])
        return int(pc.sum(pc.or_(low, high)).as_py() or 0)
    raise ValueError(f"unknown expectation rule {e.rule!r}")


def validate_arrow(table: pa.Table, expectations: list[Expectation]) -> list[Outcome]:
    out = []
    for e in expectations:
        n = _unexpected(table[e.column], e)
        out.append(Outcome(e, n == 0, n))
    return out


def validate_arrow_batches(
    batches: Iterable[pa.RecordBatch | pa.Table], expectations: list[Expectation]
) -> list[Outcome]:
    """``validate_arrow`` over a day read in batches: every rule but ``unique`` is counted
    batch by batch; a ``unique`` column alone is kept to the end (the only whole-day state)."""
    unexpected = [0] * len(expectations)
    kept: dict[int, list[pa.Array]] = {
        i: [] for i, e in enumerate(expectations) if e.rule == "unique"
    }
    for batch in batches:
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        for i, e in enumerate(expectations):
            if e.rule == "unique":
                kept[i].append(table[e.column].combine_chunks())
            else:
                unexpected[i] += _unexpected(table[e.column], e)
    for i, arrays in kept.items():
        e = expectations[i]
        column = (
            pa.chunked_array(arrays, type=arrays[0].type)
            if arrays
            else pa.chunked_array([], pa.string())
        )
        unexpected[i] = _unexpected(column, e)
    return [Outcome(e, n == 0, n) for e, n in zip(expectations, unexpected, strict=True)]


_GX_TYPES = {
    "not_null": "ExpectColumnValuesToNotBeNull",
    "unique": "ExpectColumnValuesToBeUnique",
    "in_set": "ExpectColumnValuesToBeInSet",
    "between": "ExpectColumnValuesToBeBetween",
    "length_between": "ExpectColumnValueLengthsToBeBetween",
}


def validate_gx(table: pa.Table, expectations: list[Expectation]) -> list[Outcome]:
    """The same expectations through Great Expectations 1.x (an ephemeral context)."""
    import os

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch = (
        context.data_sources.add_pandas("ldp")
        .add_dataframe_asset("table")
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": table.to_pandas()})
    )
    suite = gx.ExpectationSuite(
        name="ldp",
        expectations=[
            getattr(gxe, _GX_TYPES[e.rule])(column=e.column, **e.args) for e in expectations
        ],
    )
    result = batch.validate(suite)
    return [
        Outcome(e, bool(r.success), int(r.result.get("unexpected_count") or 0))
        for e, r in zip(expectations, result.results, strict=True)
    ]


CONVERSATIONS_CLEAN_MESSAGES = [
    Expectation("not_null", "event_id"),
    Expectation("unique", "event_id"),
    Expectation("not_null", "content"),
    Expectation("in_set", "role", {"value_set": ["system", "user", "assistant"]}),
    Expectation("between", "quality_score", {"min_value": 0, "max_value": 1}),
    Expectation("length_between", "language", {"min_value": 2, "max_value": 3}),
]
