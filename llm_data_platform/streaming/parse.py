"""Lines → a typed table of the stream's JSON schema → rows or quarantine rows, vectorised.

Reading: lines Arrow's JSON reader provably reads as ``json.loads`` does (one object per
line, valid UTF-8, none of the syntax Arrow accepts and Python refuses) are read in blocks
with the stream's explicit schema; Arrow is strict — a value of another JSON type fails its
block, which is halved until the failing lines are isolated. Those lines, and every other one,
are read by ``json.loads`` and typed the same way (a value of the wrong type becomes null).
Validating: one set of rules per stream, as Arrow kernels (``transforms.records``), for every
row however it was read. Every line ends as exactly one row or one quarantine row, with its
day: the event's day, or the arrival day when no timestamp can be read. No Dagster import.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from llm_data_platform import schemas
from llm_data_platform.transforms.records import (
    MAX_LINE_BYTES,
    STREAMS,
    StreamSpec,
    first_broken_rule,
    out_of_range_reason,
    parse_timestamps,
)

TS = schemas.TS
# Non-standard numbers Arrow's reader takes and json.loads refuses (``Inf``, ``-NaN``).
_ARROW_ONLY_NUMBERS = re.compile(rb"[:\[,]\s*(?:-NaN|[-+]?Inf(?!inity))")
# A \uD800-\uDFFF escape: Python reads a lone surrogate that cannot be stored as UTF-8
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
_BISECT_MIN = 128  # below this many lines a failing block goes to json.loads whole
_JSON_READ = pj.ReadOptions(use_threads=True, block_size=1 << 20)
_INT64 = (-(2**63), 2**63 - 1)


def spec_of(stream: str) -> StreamSpec:
    if stream not in STREAMS:
        raise ValueError(f"Unknown stream {stream!r}; expected one of {sorted(STREAMS)}.")
    return STREAMS[stream]


def _parse_options(spec: StreamSpec) -> pj.ParseOptions:
    return pj.ParseOptions(explicit_schema=spec.json_schema, unexpected_field_behavior="ignore")


@dataclass
class ParsedBatch:
    """A parsed micro-batch as Arrow: rows and quarantine, each with its day per row."""

    rows: pa.Table  # the stream's schema, in line order
    row_days: pa.Array  # date32, per row
    quarantine: pa.Table  # schemas.QUARANTINE, in line order
    quarantine_days: pa.Array
    fast_rows: int = 0  # rows that took the vectorised path


def _arrivals(arrived_at, n: int) -> pa.Array:
    """One arrival time per line, as timestamp[us, UTC]."""
    if isinstance(arrived_at, datetime):
        return pa.repeat(pa.scalar(_utc(arrived_at), type=TS), n)
    if isinstance(arrived_at, pa.ChunkedArray):
        arrived_at = arrived_at.combine_chunks()
    if isinstance(arrived_at, pa.Array):
        out = arrived_at.cast(TS)
    else:
        out = pa.array([_utc(t) for t in arrived_at], type=TS)
    if len(out) != n:
        raise ValueError(f"{len(out)} arrival times for {n} lines")
    return out


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _fast_eligible(values: list[bytes], max_line_bytes: int) -> tuple[list[bool], bytes]:
    """Lines the vectorised path may take — one JSON object per line, valid UTF-8, not
    oversize, none of the syntax Arrow accepts and Python refuses — and the joined batch.
    Checked on the joined batch with numpy (no loop over lines); per line only when the batch
    check fails. A value holding several objects is caught later by the row count per block."""
    n = len(values)
    ok = [True] * n
    blob = b"\n".join(values)
    if not n or not blob:
        return [v[:1] == b"{" for v in values], blob

    def per_line(test) -> None:
        for i, v in enumerate(values):
            if ok[i] and not test(v):
                ok[i] = False

    raw = np.frombuffer(blob, dtype=np.uint8)
    if b"\r" in blob or np.count_nonzero(raw == 0x0A) != n - 1:
        # one line per value, always: Arrow's reader must never see a line that is not an
        # object (it crashes on a block that starts with ``null``)
        per_line(lambda v: b"\n" not in v and b"\r" not in v)
        per_line(lambda v: len(v) <= max_line_bytes)
        per_line(lambda v: v[:1] == b"{")
    else:  # no newline inside a value: each value starts right after the previous one's end
        lengths = np.fromiter(map(len, values), np.int64, n)
        starts = np.cumsum(lengths + 1) - (lengths + 1)
        if lengths.max() > max_line_bytes:
            per_line(lambda v: len(v) <= max_line_bytes)
        # "{" first: no BOM, no blank line, no top-level null/array/number
        if (lengths == 0).any() or (raw[np.minimum(starts, len(raw) - 1)] != 0x7B).any():
            per_line(lambda v: v[:1] == b"{")
    if not blob.isascii():
        try:
            blob.decode("utf-8")
        except UnicodeDecodeError:
            per_line(_is_utf8)
    if _maybe_arrow_only_numbers(raw) and _ARROW_ONLY_NUMBERS.search(blob):
        per_line(lambda v: _ARROW_ONLY_NUMBERS.search(v) is None)
    return ok, blob


def _maybe_arrow_only_numbers(raw: np.ndarray) -> bool:
    """Is ``Inf`` or ``-NaN`` anywhere in the bytes (numpy: much faster than ``in`` here)."""
    i = np.flatnonzero(raw[:-2] == 0x49)  # I n f
    if len(i) and ((raw[i + 1] == 0x6E) & (raw[i + 2] == 0x66)).any():
        return True
    j = np.flatnonzero(raw[1:-2] == 0x4E) + 1  # - N a N
    return bool(
        len(j) and ((raw[j - 1] == 0x2D) & (raw[j + 1] == 0x61) & (raw[j + 2] == 0x4E)).any()
    )


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _read_json(
    values: list[bytes],
    index: list[int],
    options: pj.ParseOptions,
    joined: bytes | None = None,
) -> tuple[list[tuple[pa.Array, pa.Table]], list[int]]:
    """Arrow-parse ``values[index]`` (``joined``: those values already joined by newlines);
    blocks that fail, or yield another number of rows than lines, are halved until the failing
    lines are isolated. Returns ([(positions, table)] in line order, positions left over)."""
    parsed: list[tuple[pa.Array, pa.Table]] = []
    leftover: list[int] = []
    pending = [index] if index else []
    while pending:
        part = pending.pop()
        if joined is not None:
            data, joined = joined, None
        else:
            data = b"\n".join(values[i] for i in part)
        try:
            table = pj.read_json(pa.BufferReader(data), _JSON_READ, options)
        except (pa.ArrowException, ValueError):
            table = None
        if table is not None and table.num_rows == len(part):
            parsed.append((pa.array(part, pa.int64()), table))
        elif len(part) <= _BISECT_MIN:
            leftover.extend(part)
        else:
            mid = len(part) // 2
            pending += [part[mid:], part[:mid]]
    parsed.sort(key=lambda item: item[0][0].as_py())
    return parsed, sorted(leftover)


def _record_text(raw: bytes) -> str:
    text = raw[:MAX_LINE_BYTES].decode("utf-8", "replace")
    return text if len(text) <= 10_000 else text[:10_000] + f"…[{len(raw)} bytes]"


@dataclass(frozen=True)
class LineColumns:
    """Lines as two parallel lists (what a Kafka batch already has): no tuple per line."""

    numbers: list[int]
    values: list[bytes]

    def __len__(self) -> int:
        return len(self.numbers)


def _columns(lines: Sequence[tuple[int, bytes]] | LineColumns) -> LineColumns:
    if isinstance(lines, LineColumns):
        return lines
    lines = list(lines)
    return LineColumns([number for number, _ in lines], [value for _, value in lines])


def _typed(value: Any, kind: pa.DataType) -> Any:
    """A JSON value as the column's type, or None (what a value of another type reads as)."""
    if pa.types.is_string(kind):
        return value if isinstance(value, str) else None
    if isinstance(value, int) and not isinstance(value, bool) and _INT64[0] <= value <= _INT64[1]:
        return value
    return None


def _python_read(raw: bytes, spec: StreamSpec) -> dict | str:
    """One line by ``json.loads``: its typed fields, or the reason it is not an object."""
    if len(raw) > spec.max_line_bytes:
        return f"line of {len(raw)} bytes exceeds {spec.max_line_bytes}"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not valid UTF-8 at byte {exc.start}"
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"invalid JSON: {exc.msg} at column {exc.colno}"
    except RecursionError:
        return "invalid JSON: nested too deeply"
    if not isinstance(obj, dict):
        return f"a JSON {type(obj).__name__}, not an object"
    if "\\u" in text and _LONE_SURROGATE.search(text):
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return "a string holds a lone UTF-16 surrogate"
    return {f.name: _typed(obj.get(f.name), f.type) for f in spec.json_schema}


@dataclass
class _Read:
    """Typed rows (JSON schema) with their line positions, and lines that are not objects."""

    table: pa.Table
    positions: pa.Array  # int64, per row of ``table``
    unreadable: list[tuple[int, str]]  # (position, reason)
    arrow_rows: int


def _read_lines(values: list[bytes], spec: StreamSpec, fast: bool) -> _Read:
    parts: list[tuple[pa.Array, pa.Table]] = []
    leftover = list(range(len(values)))
    if fast and values:
        eligible, blob = _fast_eligible(values, spec.max_line_bytes)
        if _SURROGATE_ESCAPE.search(blob):
            eligible = [
                ok and not _SURROGATE_ESCAPE.search(v)
                for ok, v in zip(eligible, values, strict=True)
            ]
        options = _parse_options(spec)
        if all(eligible):
            parts, leftover = _read_json(values, list(range(len(values))), options, blob)
        else:
            chosen = [i for i, ok in enumerate(eligible) if ok]
            parts, leftover = _read_json(values, chosen, options)
            leftover = sorted(leftover + [i for i, ok in enumerate(eligible) if not ok])
    rows, positions, unreadable = [], [], []
    for i in leftover:
        read = _python_read(values[i], spec)
        if isinstance(read, str):
            unreadable.append((i, read))
        else:
            rows.append(read)
            positions.append(i)
    slow = pa.Table.from_pylist(rows, schema=spec.json_schema)
    tables = [t for _, t in parts] + [slow]
    arrow_rows = sum(t.num_rows for _, t in parts)
    return _Read(
        pa.concat_tables(tables).combine_chunks(),
        pa.concat_arrays([p for p, _ in parts] + [pa.array(positions, pa.int64())]),
        unreadable,
        arrow_rows,
    )


def _with_defaults(table: pa.Table, spec: StreamSpec) -> pa.Table:
    for name, value in spec.defaults:
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, pc.fill_null(table[name], value))
    return table


def parse_batch(
    stream: str,
    lines: Sequence[tuple[int, bytes]] | LineColumns,
    source: str,
    arrived_at: datetime | Sequence[datetime] | pa.Array,
    *,
    rejected: Sequence[tuple[int, bytes, str, datetime]] = (),
    fast: bool = True,
    bounds: tuple[date, date] | None = None,
) -> ParsedBatch:
    """Every line → exactly one row or one quarantine row, with its day.

    ``rejected`` are records the source already knows are bad ((line, raw bytes, reason,
    arrival time)); ``bounds`` (first, last day that exist as partitions): an event dated
    outside them is quarantined under the nearest day — for every source alike. ``fast=False``
    reads every line with ``json.loads`` (same rules: the two readers must agree)."""
    spec = spec_of(stream)
    cols = _columns(lines)
    arrivals = _arrivals(arrived_at, len(cols))
    numbers = pa.array(cols.numbers, pa.int32())
    read = _read_lines(cols.values, spec, fast)
    typed = _with_defaults(read.table, spec)
    times = parse_timestamps(typed[spec.json_time_key])
    typed = typed.append_column("__time", times)
    reasons = first_broken_rule(typed, spec.rules, spec.json_time_key)
    valid = pc.is_null(reasons)
    if bounds is not None:
        reasons, valid = _outside_bounds(reasons, valid, times, bounds)

    good, good_pos = typed.filter(valid), read.positions.filter(valid)
    rows = pa.table(
        {
            **spec.to_raw(good),
            "source_file": pa.repeat(pa.scalar(source, pa.string()), good.num_rows),
            "source_line": numbers.take(good_pos),
            "arrived_at": arrivals.take(good_pos),
        }
    ).cast(spec.schema)
    order = pc.sort_indices(good_pos)
    rows = rows.take(order)
    row_days = pc.cast(rows[spec.row_time_key], pa.date32()).combine_chunks()

    bad = pc.invert(valid)
    bad_pos = read.positions.filter(bad).to_pylist() + [p for p, _ in read.unreadable]
    bad_reasons = reasons.filter(bad).to_pylist() + [r for _, r in read.unreadable]
    event_days = pc.cast(times.filter(bad), pa.date32()).to_pylist()
    event_days += [None] * len(read.unreadable)
    quarantine = [
        _quarantine_row(source, cols.numbers[p], cols.values[p], r, arrivals[p].as_py(), d)
        for p, r, d in zip(bad_pos, bad_reasons, event_days, strict=True)
    ]
    quarantine += [
        _quarantine_row(source, n, raw, reason, _utc(when), None)
        for n, raw, reason, when in rejected
    ]
    return _parsed(rows, row_days, quarantine, bounds, read.arrow_rows)


def _outside_bounds(reasons, valid, times, bounds: tuple[date, date]):
    """Valid rows dated outside ``bounds`` get the out-of-range reason."""
    days = pc.cast(times, pa.date32())
    first, last = (pa.scalar(d, pa.date32()) for d in bounds)
    outside = pc.fill_null(pc.or_(pc.less(days, first), pc.greater(days, last)), False)
    moved = pc.and_(valid, outside)
    if not pc.any(moved).as_py():
        return reasons, valid
    texts = [
        out_of_range_reason(d, *bounds) if m else None
        for d, m in zip(days.to_pylist(), moved.to_pylist(), strict=True)
    ]
    return pc.if_else(moved, pa.array(texts, pa.string()), reasons), pc.and_(
        valid, pc.invert(moved)
    )


def _quarantine_row(
    source: str, number: int, raw: bytes, reason: str, when: datetime, day: date | None
) -> dict:
    return {
        "source_file": source,
        "source_line": number,
        "record": _record_text(raw),
        "reason": reason,
        "arrived_at": when,
        "__day": day or when.date(),
    }


def _parsed(rows, row_days, quarantine: list[dict], bounds, arrow_rows: int) -> ParsedBatch:
    quarantine.sort(key=lambda q: q["source_line"])
    days = pa.array([q.pop("__day") for q in quarantine], pa.date32())
    table = pa.Table.from_pylist(quarantine, schema=schemas.QUARANTINE)
    if bounds is not None and len(days):
        first, last = (pa.scalar(d, pa.date32()) for d in bounds)
        days = pc.min_element_wise(pc.max_element_wise(days, first), last)
    return ParsedBatch(rows, row_days, table, days, arrow_rows)


def combine_parsed(parts: Sequence[ParsedBatch]) -> ParsedBatch:
    """One batch from consecutive pieces of it, each parsed on its own (``parse_batch`` is
    line by line, so the pieces' rows and quarantine rows, in piece order, are the batch's)."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        raise ValueError("no parsed pieces to combine")
    return ParsedBatch(
        rows=pa.concat_tables([p.rows for p in parts]),
        row_days=pa.concat_arrays([p.row_days for p in parts]),
        quarantine=pa.concat_tables([p.quarantine for p in parts]),
        quarantine_days=pa.concat_arrays([p.quarantine_days for p in parts]),
        fast_rows=sum(p.fast_rows for p in parts),
    )
