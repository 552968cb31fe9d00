"""Micro-batches in the raw zone, named by their content identity.

A micro-batch is what one source delivers in one piece: a Kafka offset range of one partition,
one S3 object version, one landing file. Its lines are parsed with the same validation as the
landing folder (``transforms.records``) and written, per event day, as

    raw/<stream>_batches/dt=<day>/<identity>.parquet              (valid events)
    raw/<stream>_batches_quarantine/dt=<day>/<identity>.parquet   (rejected lines + reason)

Each file is written atomically (``LakeResource.write_bytes``: temp file + rename locally, one
PUT on S3), and its name is the batch's identity (``kafka-<topic>-<partition>-<first>-<last>``,
``s3-<sha of key+etag>``…): writing the same batch twice gives the same files with the same
bytes, never a second copy. A crash between two files of one batch leaves complete files only;
re-writing the batch completes it.

``read_day`` reads every micro-batch of a day and keeps each ``event_id`` once (the first by
``(source_file, source_line)``), so replays under a different identity (an S3 object re-uploaded
with the same events, a re-read offset range) never double an event. That table is what the raw
asset compacts into its partition.

No Dagster import: ``lake`` is anything with LakeResource's ``path``/``filesystem``/
``write_bytes`` methods.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.json as pj
import pyarrow.parquet as pq

from llm_data_platform import schemas
from llm_data_platform.transforms.records import (
    MAX_LINE_BYTES,
    MESSAGE_ROLES,
    STREAMS,
    ParsedLines,
    out_of_range_reason,
    parse_lines,
)

if TYPE_CHECKING:
    from llm_data_platform.resources.lake import LakeResource

# A test hook: called with a stage name and details between the steps of a write; raising
# from it simulates a crash at that point.
FaultHook = Callable[[str, dict], None]

ZONE = "raw"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 160


def batch_table_names(stream: str) -> tuple[str, str]:
    """(events table, quarantine table) of a stream's micro-batches in the raw zone."""
    return f"{stream}_batches", f"{stream}_batches_quarantine"


def safe_identity(identity: str) -> str:
    """A file-name-safe, deterministic form of a batch identity.

    Kept as is when already safe (``[A-Za-z0-9._-]``, not hidden, not too long); otherwise the
    unsafe characters are replaced and a hash of the original is appended, so two identities
    never collide after sanitising.
    """
    if not identity:
        raise ValueError("A micro-batch identity must not be empty.")
    cleaned = _UNSAFE.sub("_", identity).lstrip("._")
    if cleaned == identity and len(identity) <= _MAX_NAME:
        return identity
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]
    return f"{cleaned[: _MAX_NAME - 17] or 'batch'}-{digest}"


@dataclass
class MicroBatchResult:
    identity: str  # the file name stem (safe form)
    source: str  # source_file of its rows
    received: int  # lines handed in
    rows: int  # valid events written
    quarantined: int  # rejected lines written to quarantine
    days: dict[str, tuple[int, int]]  # day -> (rows, quarantined)
    files: list[str]  # lake URIs written
    bytes: int
    seconds: float
    late_events: int  # rows whose arrival day is after their event day
    reasons: dict[str, int] = field(default_factory=dict)  # quarantine reason families
    fast_rows: int = 0  # rows parsed by the vectorised path


def _spec(stream: str):
    if stream not in STREAMS:
        raise ValueError(f"Unknown stream {stream!r}; expected one of {sorted(STREAMS)}.")
    return STREAMS[stream]


# ---- parsing: records.parse_lines, with a vectorised fast path -------------------------------
#
# ``parse_lines`` (json.loads + validation per line) is the definition of what a valid event is.
# For the conversations stream — the high-volume one — a batch is first parsed by Arrow's JSON
# reader and validated with Arrow compute kernels; a line takes that path only when the result
# is provably the one ``parse_lines`` gives (strict timestamp format, the exact whitespace set
# of ``str.strip``, same JSON grammar — lines where Arrow's reader is more lenient than Python's
# are routed away before parsing). Every other line — anything malformed, unusual or merely
# ambiguous — goes through ``parse_lines`` itself, which also writes every quarantine reason.
# ``test_streaming_kafka.py`` checks both paths give identical tables on a corpus of edge cases.

TS = schemas.TS
_CONVERSATION_JSON = pa.schema(
    [
        ("event_id", pa.string()),
        ("type", pa.string()),
        ("conversation_id", pa.string()),
        ("turn", pa.int64()),
        ("role", pa.string()),
        ("content", pa.string()),
        ("rating", pa.int64()),
        ("user_id", pa.string()),
        ("timestamp", pa.string()),
    ]
)
# Characters str.strip() removes (str.isspace); a field is "non-empty" when it has another one.
_NOT_PY_SPACE = (
    r"[^\t\n\x0b\x0c\r\x1c-\x1f \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}"
    r"\x{202f}\x{205f}\x{3000}]"
)
# The one timestamp shape both datetime.fromisoformat and Arrow's cast read the same way.
_STRICT_TS = (
    r"^\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d"
    r"(?:\.\d{1,6})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$"
)
# Non-standard numbers Arrow's reader takes and json.loads refuses (``Inf``, ``-NaN``).
_ARROW_ONLY_NUMBERS = re.compile(rb"[:\[,]\s*(?:-NaN|[-+]?Inf(?!inity))")
_BISECT_MIN = 128  # below this many lines a failing block goes to parse_lines whole
_JSON_READ = pj.ReadOptions(use_threads=True, block_size=1 << 20)
_JSON_PARSE = pj.ParseOptions(
    explicit_schema=_CONVERSATION_JSON, unexpected_field_behavior="ignore"
)
_FAST_STREAMS = {"conversations"}


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


def _fast_eligible(values: list[bytes]) -> tuple[list[bool], bytes]:
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
        per_line(lambda v: len(v) <= MAX_LINE_BYTES)
        per_line(lambda v: v[:1] == b"{")
    else:  # no newline inside a value: each value starts right after the previous one's end
        lengths = np.fromiter(map(len, values), np.int64, n)
        starts = np.cumsum(lengths + 1) - (lengths + 1)
        if lengths.max() > MAX_LINE_BYTES:
            per_line(lambda v: len(v) <= MAX_LINE_BYTES)
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
    values: list[bytes], index: list[int], joined: bytes | None = None
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
            table = pj.read_json(pa.BufferReader(data), _JSON_READ, _JSON_PARSE)
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


def _flag(array) -> pa.Array:
    return pc.fill_null(array, False)


def _valid_conversations(t: pa.Table) -> pa.Array:
    """The checks of records.conversation_event, as kernels (null → invalid)."""
    is_message = _flag(pc.equal(t["type"], "message"))
    is_feedback = _flag(pc.equal(t["type"], "feedback"))
    turn, rating = t["turn"], t["rating"]
    message_ok = pc.and_(
        pc.and_(is_message, _flag(pc.and_(pc.greater_equal(turn, 0), pc.less(turn, 10_000)))),
        pc.and_(
            _flag(pc.is_in(t["role"], value_set=pa.array(sorted(MESSAGE_ROLES)))),
            pc.is_valid(t["content"]),
        ),
    )
    feedback_ok = pc.and_(
        is_feedback, _flag(pc.and_(pc.greater_equal(rating, 1), pc.less_equal(rating, 5)))
    )
    common = pc.and_(
        pc.and_(
            _flag(pc.match_substring_regex(t["event_id"], _NOT_PY_SPACE)),
            _flag(pc.match_substring_regex(t["conversation_id"], _NOT_PY_SPACE)),
        ),
        _flag(pc.match_substring_regex(t["timestamp"], _STRICT_TS)),
    )
    return pc.and_(common, pc.or_(message_ok, feedback_ok))


def _event_times(timestamps: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(parsed times, mask of the ones parsed); impossible dates (Feb 30) are left unparsed."""
    try:
        parsed = pc.cast(timestamps, TS)
    except pa.ArrowInvalid:
        day_ok = pc.is_valid(
            pc.strptime(
                pc.utf8_slice_codeunits(timestamps, 0, 10),
                format="%Y-%m-%d",
                unit="s",
                error_is_null=True,
            )
        )
        try:
            parsed = pc.cast(pc.if_else(day_ok, timestamps, pa.scalar(None, pa.string())), TS)
        except pa.ArrowInvalid:  # anything else odd: let parse_lines decide every line
            return pa.nulls(len(timestamps), TS), pa.repeat(False, len(timestamps))
    # Arrow goes below year 1 (0001-01-01T00:00:00+01:00) where Python overflows
    in_range = pc.and_(
        pc.greater_equal(parsed, pa.scalar(datetime.min.replace(tzinfo=UTC), TS)),
        pc.less_equal(parsed, pa.scalar(datetime.max.replace(tzinfo=UTC), TS)),
    )
    return parsed, _flag(in_range)


def _fast_conversations(
    values: list[bytes], numbers: pa.Array, arrivals: pa.Array, source: str
) -> tuple[pa.Table, pa.Array, list[int]]:
    """(rows with a ``__pos`` column, their days, positions left for parse_lines)."""
    eligible, blob = _fast_eligible(values)
    if all(eligible):
        parts, leftover = _read_json(values, list(range(len(values))), blob)
    else:
        parts, leftover = _read_json(values, [i for i, ok in enumerate(eligible) if ok])
        leftover += [i for i, ok in enumerate(eligible) if not ok]
    tables = []
    for positions, table in parts:
        valid = _valid_conversations(table)
        if not pc.all(valid).as_py():
            leftover += pc.filter(positions, pc.invert(valid)).to_pylist()
            table, positions = table.filter(valid), positions.filter(valid)
        times, parsed = _event_times(table["timestamp"])
        if not pc.all(parsed).as_py():
            leftover += positions.filter(pc.invert(parsed)).to_pylist()
            table, positions, times = (
                table.filter(parsed),
                positions.filter(parsed),
                times.filter(parsed),
            )
        is_message = pc.equal(table["type"], "message")
        is_feedback = pc.invert(is_message)
        n = table.num_rows
        tables.append(
            pa.table(
                {
                    "event_id": table["event_id"],
                    "event_type": table["type"],
                    "conversation_id": table["conversation_id"],
                    "turn_index": pc.cast(
                        pc.if_else(is_message, table["turn"], pa.scalar(None, pa.int64())),
                        pa.int32(),
                    ),
                    "role": pc.if_else(is_message, table["role"], pa.scalar(None, pa.string())),
                    "content": pc.if_else(
                        is_message, table["content"], pa.scalar(None, pa.string())
                    ),
                    "rating": pc.cast(
                        pc.if_else(is_feedback, table["rating"], pa.scalar(None, pa.int64())),
                        pa.int8(),
                    ),
                    "user_id": table["user_id"],
                    "event_time": times,
                    "source_file": pa.repeat(pa.scalar(source, pa.string()), n),
                    "source_line": numbers.take(positions),
                    "arrived_at": arrivals.take(positions),
                    "__pos": positions,
                }
            )
        )
    schema = schemas.RAW_CONVERSATIONS.append(pa.field("__pos", pa.int64()))
    rows = pa.concat_tables([t.cast(schema) for t in tables]) if tables else schema.empty_table()
    days = pc.cast(rows["event_time"], pa.date32()).combine_chunks()
    return rows, days, sorted(leftover)


def _parse_lines_robust(spec, lines, source: str, arrived_at: datetime) -> ParsedLines:
    """parse_lines; a line on which it raises (nesting beyond the recursion limit, a date that
    overflows when converted to UTC) is quarantined with the error instead of failing the batch."""
    kwargs = dict(
        source_file=source,
        arrived_at=arrived_at,
        validate=spec.validate,
        json_time_key=spec.json_time_key,
        row_time_key=spec.row_time_key,
        max_line_bytes=spec.max_line_bytes,
    )
    try:
        return parse_lines(lines, **kwargs)
    except Exception:  # isolate the failing line, below
        out = ParsedLines()
        for line in lines:
            try:
                one = parse_lines([line], **kwargs)
            except Exception as exc:
                out.quarantine.append(_quarantine_row(source, line[0], line[1], exc, arrived_at))
                out.quarantine_days.append(arrived_at.date())
                continue
            out.rows += one.rows
            out.row_days += one.row_days
            out.quarantine += one.quarantine
            out.quarantine_days += one.quarantine_days
        return out


def _quarantine_row(source: str, number: int, raw: bytes, reason, when: datetime) -> dict:
    if isinstance(reason, BaseException):
        reason = f"unparseable record: {type(reason).__name__}: {reason}"
    return {
        "source_file": source,
        "source_line": number,
        "record": _record_text(raw),
        "reason": str(reason),
        "arrived_at": when,
    }


def _slow_path(
    stream: str,
    lines: list[tuple[int, bytes]],
    source: str,
    arrivals: list[datetime],
) -> ParsedLines:
    """parse_lines over lines with per-line arrival times: in runs of one arrival *day* (a line
    whose timestamp cannot be read falls back to its own arrival day), then each row gets its
    own line's exact arrival time."""
    spec = _spec(stream)
    out = ParsedLines()
    start = 0
    while start < len(lines):
        day = arrivals[start].date()
        end = start + 1
        while end < len(lines) and arrivals[end].date() == day:
            end += 1
        chunk, times = lines[start:end], arrivals[start:end]
        parsed = _parse_lines_robust(spec, chunk, source, times[0])
        if any(t != times[0] for t in times):
            when = {number: t for (number, _), t in zip(chunk, times, strict=True)}
            for row in parsed.rows:
                row["arrived_at"] = when[row["source_line"]]
            for row in parsed.quarantine:
                row["arrived_at"] = when[row["source_line"]]
        out.rows += parsed.rows
        out.row_days += parsed.row_days
        out.quarantine += parsed.quarantine
        out.quarantine_days += parsed.quarantine_days
        start = end
    return out


def _table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Column by column (several times faster than ``Table.from_pylist`` on wide rows)."""
    if not rows:
        return schema.empty_table()
    return pa.Table.from_arrays(
        [pa.array([r.get(f.name) for r in rows], type=f.type) for f in schema], schema=schema
    )


def _encodable(row: dict) -> bool:
    try:
        for value in row.values():
            if isinstance(value, str):
                value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
    """Every line → exactly one row or one quarantine row, with its day (see write_microbatch).

    ``bounds`` (first, last day that exist as partitions): an event dated outside them is
    quarantined with the reason, under the nearest day — for every source alike."""
    spec = _spec(stream)
    cols = _columns(lines)
    arrivals = _arrivals(arrived_at, len(cols))
    numbers = pa.array(cols.numbers, pa.int32())
    helper = spec.schema.append(pa.field("__pos", pa.int64()))
    if fast and stream in _FAST_STREAMS and len(cols):
        fast_rows, fast_days, slow = _fast_conversations(cols.values, numbers, arrivals, source)
    else:
        fast_rows, fast_days = helper.empty_table(), pa.array([], pa.date32())
        slow = list(range(len(cols)))

    slow_lines = [(cols.numbers[i], cols.values[i]) for i in slow]
    if isinstance(arrived_at, datetime):
        parsed = _parse_lines_robust(spec, slow_lines, source, _utc(arrived_at))
    else:
        slow_times = arrivals.take(pa.array(slow, pa.int64())).to_pylist()
        parsed = _slow_path(stream, slow_lines, source, slow_times)
    position = {number: i for i, (number, _) in zip(slow, slow_lines, strict=True)}
    # a lone surrogate (``"\ud800"``) is valid JSON for Python but not storable as UTF-8
    good_rows, good_days = [], []
    for row, day in zip(parsed.rows, parsed.row_days, strict=True):
        if _encodable(row):
            good_rows.append(row)
            good_days.append(day)
            continue
        raw = cols.values[position[row["source_line"]]]
        reason = "string not encodable as UTF-8 (a lone surrogate escape)"
        parsed.quarantine.append(
            _quarantine_row(source, row["source_line"], raw, reason, row["arrived_at"])
        )
        parsed.quarantine_days.append(day)
    for number, raw, reason, when in rejected:
        parsed.quarantine.append(_quarantine_row(source, number, raw, reason, _utc(when)))
        parsed.quarantine_days.append(_utc(when).date())

    if good_rows:
        slow_table = _table(good_rows, spec.schema).append_column(
            "__pos", pa.array([position.get(r["source_line"], -1) for r in good_rows], pa.int64())
        )
        rows = pa.concat_tables([fast_rows, slow_table])
        days = pa.concat_arrays([fast_days, pa.array(good_days, pa.date32())])
        order = pc.sort_indices(rows["__pos"])
        rows, days = rows.take(order), days.take(order)
    else:  # the fast path keeps line order
        rows, days = fast_rows, fast_days
    rows = rows.drop_columns(["__pos"])

    quarantine = _table(parsed.quarantine, schemas.QUARANTINE)
    quarantine_days = pa.array(parsed.quarantine_days, pa.date32())
    if bounds is not None:
        rows, days, quarantine, quarantine_days = _outside_bounds(
            rows, days, quarantine, quarantine_days, cols, bounds
        )
    if quarantine.num_rows:
        order = pc.sort_indices(quarantine["source_line"])
        quarantine, quarantine_days = quarantine.take(order), quarantine_days.take(order)
    return ParsedBatch(rows, days, quarantine, quarantine_days, fast_rows.num_rows)


def _outside_bounds(rows, days, quarantine, quarantine_days, cols: LineColumns, bounds):
    """Move rows dated outside ``bounds`` to quarantine (original line kept, day clamped)."""
    first, last = (pa.scalar(d, pa.date32()) for d in bounds)
    outside = pc.or_(pc.less(days, first), pc.greater(days, last))
    if pc.any(outside).as_py():
        moved, moved_days = rows.filter(outside), days.filter(outside)
        line = dict(zip(cols.numbers, cols.values, strict=True))
        extra = [
            {
                "source_file": r["source_file"],
                "source_line": r["source_line"],
                "record": _record_text(line.get(r["source_line"], b"")),
                "reason": out_of_range_reason(d, *bounds),
                "arrived_at": r["arrived_at"],
            }
            for r, d in zip(moved.to_pylist(), moved_days.to_pylist(), strict=True)
        ]
        keep = pc.invert(outside)
        rows, days = rows.filter(keep), days.filter(keep)
        quarantine = pa.concat_tables([quarantine, _table(extra, schemas.QUARANTINE)])
        quarantine_days = pa.concat_arrays([quarantine_days, moved_days])
    if len(quarantine_days):
        clamped = pc.min_element_wise(pc.max_element_wise(quarantine_days, first), last)
        quarantine_days = clamped
    return rows, days, quarantine, quarantine_days


# Dictionary encoding only for columns that repeat a handful of values in a batch; ids, texts,
# line numbers and times are (nearly) unique, and zstd packs plain ids smaller and faster than
# a dictionary that grows to the page limit and falls back (measured on a 25,000-event batch).
_DICTIONARY = {
    "event_type",
    "role",
    "turn_index",
    "rating",
    "op",
    "format",
    "source_file",
    "reason",
}


# Free text: min/max statistics of it prune nothing and cost a comparison per value.
_NO_STATISTICS = {"content", "record", "title"}


def _parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(
        table,
        buffer,
        compression="zstd",
        row_group_size=64_000,
        use_dictionary=[c for c in table.column_names if c in _DICTIONARY],
        write_statistics=[c for c in table.column_names if c not in _NO_STATISTICS],
    )
    return buffer.getvalue()


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


def write_microbatch(
    lake: LakeResource,
    stream: str,
    identity: str,
    lines: Sequence[tuple[int, bytes]] | LineColumns,
    source: str,
    arrived_at: datetime | Sequence[datetime] | pa.Array,
    *,
    rejected: Sequence[tuple[int, bytes, str, datetime]] = (),
    fault: FaultHook | None = None,
    bounds: tuple[date, date] | None = None,
) -> MicroBatchResult:
    """Parse ``lines`` ((line number, raw bytes)) and write the batch, one file per event day.

    ``source`` becomes every row's ``source_file`` and the line number its ``source_line``, a
    pointer back to the original bytes. ``arrived_at`` is one time for the whole batch or one per
    line (datetimes or an Arrow timestamp array). ``rejected`` are records the source already
    knows are bad ((line, raw bytes, reason, arrival time): a null Kafka value, an unreadable
    object); they are quarantined under their arrival day. Idempotent: the same inputs always
    write the same files, byte for byte.
    """
    started = time.perf_counter()
    parsed = parse_batch(stream, lines, source, arrived_at, rejected=rejected, bounds=bounds)
    received = len(lines) + len(rejected)
    return write_parsed(lake, stream, identity, source, parsed, received, fault, started)


def write_parsed(
    lake: LakeResource,
    stream: str,
    identity: str,
    source: str,
    parsed: ParsedBatch,
    received: int,
    fault: FaultHook | None = None,
    started: float | None = None,
) -> MicroBatchResult:
    """Write a parsed batch (``parse_batch``, or ``combine_parsed`` of its pieces): one file
    per event day and table (``encode_parsed`` then ``write_encoded``)."""
    started = time.perf_counter() if started is None else started
    encoded = encode_parsed(lake, stream, identity, source, parsed, received)
    return write_encoded(lake, encoded, fault, started)


@dataclass
class EncodedBatch:
    """A batch's files as Parquet bytes, not yet written (``encode_parsed``)."""

    name: str
    source: str
    received: int
    rows: int
    quarantined: int
    days: dict[str, tuple[int, int]]
    files: list[tuple[str, bytes]]  # (lake path, Parquet bytes), in write order
    late_events: int
    reasons: dict[str, int]
    fast_rows: int
    seconds: float  # spent encoding


def encode_parsed(
    lake: LakeResource,
    stream: str,
    identity: str,
    source: str,
    parsed: ParsedBatch,
    received: int,
) -> EncodedBatch:
    """Split a parsed batch per event day and encode each file (no side effect: may run on
    any thread, ahead of the writes). The bytes depend on the rows only, not on how the batch
    was cut into pieces for parsing (each file's table is made contiguous before encoding)."""
    started = time.perf_counter()
    name = safe_identity(identity)
    events_table, quarantine_name = batch_table_names(stream)

    files: list[tuple[str, bytes]] = []
    days: dict[str, tuple[int, int]] = {}
    all_days = sorted(
        set(pc.unique(parsed.row_days).to_pylist())
        | set(pc.unique(parsed.quarantine_days).to_pylist())
    )
    for day in all_days:
        key = day.isoformat()
        good, bad = parsed.rows, parsed.quarantine
        if len(all_days) > 1:
            good = good.filter(pc.equal(parsed.row_days, pa.scalar(day, pa.date32())))
            bad = bad.filter(pc.equal(parsed.quarantine_days, pa.scalar(day, pa.date32())))
        days[key] = (good.num_rows, bad.num_rows)
        if good.num_rows:
            path = lake.path(ZONE, events_table, f"dt={key}", f"{name}.parquet")
            files.append((path, _parquet_bytes(good.combine_chunks())))
        if bad.num_rows:
            path = lake.path(ZONE, quarantine_name, f"dt={key}", f"{name}.parquet")
            files.append((path, _parquet_bytes(bad.combine_chunks())))
    late = 0
    if parsed.rows.num_rows:
        arrived_days = pc.cast(parsed.rows["arrived_at"], pa.date32())
        late = pc.sum(pc.greater(arrived_days, parsed.row_days)).as_py() or 0
    reasons = Counter(r.split(":")[0] for r in parsed.quarantine["reason"].to_pylist())
    return EncodedBatch(
        name=name,
        source=source,
        received=received,
        rows=parsed.rows.num_rows,
        quarantined=parsed.quarantine.num_rows,
        days=days,
        files=files,
        late_events=late,
        reasons=dict(reasons),
        fast_rows=parsed.fast_rows,
        seconds=time.perf_counter() - started,
    )


def write_encoded(
    lake: LakeResource,
    encoded: EncodedBatch,
    fault: FaultHook | None = None,
    started: float | None = None,
) -> MicroBatchResult:
    """Write an encoded batch's files, each atomically (``fault`` at ``mid_write`` before
    each one)."""
    started = time.perf_counter() - encoded.seconds if started is None else started
    written: list[str] = []
    size = 0
    for index, (path, data) in enumerate(encoded.files):
        if fault is not None:
            details = {"identity": encoded.name, "index": index, "files": len(encoded.files)}
            fault("mid_write", details)
        size += lake.write_bytes(path, data)
        written.append(lake.uri(path))
    return MicroBatchResult(
        identity=encoded.name,
        source=encoded.source,
        received=encoded.received,
        rows=encoded.rows,
        quarantined=encoded.quarantined,
        days=encoded.days,
        files=written,
        bytes=size,
        seconds=time.perf_counter() - started,
        late_events=encoded.late_events,
        reasons=encoded.reasons,
        fast_rows=encoded.fast_rows,
    )


# ---- reading ---------------------------------------------------------------------------------
def _day_key(day: str | date) -> str:
    return day.isoformat() if isinstance(day, date) else date.fromisoformat(day).isoformat()


def _day_files(lake: LakeResource, table: str, day: str) -> list[str]:
    fs, _ = lake.filesystem()
    folder = lake.path(ZONE, table, f"dt={day}")
    infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    return sorted(
        i.path
        for i in infos
        if i.type == pafs.FileType.File
        and i.base_name.endswith(".parquet")
        and not i.base_name.startswith((".", "_"))  # writers' temp files, markers
    )


def _read(lake: LakeResource, paths: list[str], schema: pa.Schema) -> pa.Table:
    if not paths:
        return schema.empty_table()
    import pyarrow.dataset as pads  # pulls pandas: only where a scan happens

    fs, _ = lake.filesystem()
    return pads.dataset(paths, schema=schema, filesystem=fs, format="parquet").to_table()


_SOURCE_ORDER = [("source_file", "ascending"), ("source_line", "ascending")]
# First arrival wins; among rows that arrived at the same instant, source order decides.
_ARRIVAL_ORDER = [("arrived_at", "ascending"), *_SOURCE_ORDER]


def _stem(path: str) -> str:
    return posixpath.basename(path)[: -len(".parquet")]


def list_day_batches(lake: LakeResource, stream: str, day: str | date) -> list[str]:
    """Identities of the micro-batches holding events or quarantine rows of ``day``."""
    key = _day_key(day)
    names: set[str] = set()
    for table in batch_table_names(stream):
        names.update(_stem(p) for p in _day_files(lake, table, key))
    return sorted(names)


@dataclass
class DayBatches:
    rows: pa.Table  # events of the day, each event_id once
    quarantine: pa.Table
    batches: list[str]  # identities read
    files: int
    received_rows: int  # before de-duplication
    duplicates: int  # rows dropped because their event_id came earlier

    @property
    def per_source(self) -> dict[str, int]:
        """Events kept per source family (kafka://topic, s3://bucket/…, landing stream…)."""
        counts: Counter[str] = Counter()
        for item in pc.value_counts(self.rows["source_file"]).to_pylist():  # one per batch
            counts[_source_family(item["values"])] += item["counts"]
        return dict(counts)


def _source_family(source: str) -> str:
    scheme, sep, rest = source.partition("://")
    if not sep:
        return source.split("/")[0]
    return f"{scheme}://{rest.split('/')[0]}"


def dedupe_events(table: pa.Table) -> pa.Table:
    """Keep the first arrival of each ``event_id`` (ties: (source_file, source_line) order)."""
    if table.num_rows == 0:
        return table
    ordered = table.sort_by(_ARRIVAL_ORDER)
    index = pa.array(np.arange(ordered.num_rows, dtype=np.int64))
    firsts = (
        pa.table({"event_id": ordered["event_id"], "i": index})
        .group_by("event_id", use_threads=False)
        .aggregate([("i", "min")])["i_min"]
    )
    return ordered.take(np.sort(firsts.to_numpy()))


def read_day_detailed(lake: LakeResource, stream: str, day: str | date) -> DayBatches:
    spec = _spec(stream)
    key = _day_key(day)
    events_table, quarantine_name = batch_table_names(stream)
    event_files = _day_files(lake, events_table, key)
    quarantine_files = _day_files(lake, quarantine_name, key)
    raw = _read(lake, event_files, spec.schema)
    rows = dedupe_events(raw)
    quarantine = _read(lake, quarantine_files, schemas.QUARANTINE)
    if quarantine.num_rows:
        quarantine = quarantine.sort_by(_SOURCE_ORDER)
    names = {_stem(p) for p in event_files + quarantine_files}
    return DayBatches(
        rows=rows,
        quarantine=quarantine,
        batches=sorted(names),
        files=len(event_files) + len(quarantine_files),
        received_rows=raw.num_rows,
        duplicates=raw.num_rows - rows.num_rows,
    )


def read_day(lake: LakeResource, stream: str, day: str | date) -> tuple[pa.Table, pa.Table]:
    """(events, quarantine) of one day across all its micro-batches, events de-duplicated by
    ``event_id``: what the raw asset compacts into its partition."""
    result = read_day_detailed(lake, stream, day)
    return result.rows, result.quarantine


def arrival_times(ms_timestamps: Sequence[int]) -> list[datetime]:
    """UTC datetimes for epoch-millisecond timestamps (cached per distinct value)."""
    cache: dict[int, datetime] = {}
    out: list[datetime] = []
    for ms in ms_timestamps:
        when = cache.get(ms)
        if when is None:
            when = cache[ms] = datetime.fromtimestamp(ms / 1000, tz=UTC)
        out.append(when)
    return out
