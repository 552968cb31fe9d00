"""A file-shaped arrival (a landing file version, an S3 object version) → micro-batch parts.

The file's lines come from ``line_reader`` in bounded chunks; each chunk is parsed and written
as one part, ``<identity>-<part>``, so memory never holds more than a chunk however big the
file is. The parts together are the arrival's micro-batch; re-staging the same bytes writes
the same parts. No Dagster import.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING

from llm_data_platform.streaming.line_reader import LineChunk
from llm_data_platform.streaming.microbatch import FaultHook, MicroBatchResult, write_parsed
from llm_data_platform.streaming.parse import LineColumns, parse_batch

if TYPE_CHECKING:
    from llm_data_platform.resources.lake import LakeResource

SAMPLE_ROWS = 5


@dataclass
class FileBatches:
    """The parts written for one arrival, summed (``result``), and a few quarantine rows."""

    result: MicroBatchResult
    parts: list[str] = field(default_factory=list)
    quarantine_sample: list[dict] = field(default_factory=list)


def write_file_batches(
    lake: LakeResource,
    stream: str,
    identity: str,
    source: str,
    chunks: Iterable[LineChunk],
    arrived_at: datetime,
    *,
    bounds: tuple[date, date] | None = None,
    fault: FaultHook | None = None,
) -> FileBatches:
    started = time.perf_counter()
    written: list[MicroBatchResult] = []
    sample: list[dict] = []
    for part, chunk in enumerate(chunks):
        rejected = [(n, preview, reason, arrived_at) for n, preview, reason in chunk.rejected]
        parsed = parse_batch(
            stream,
            LineColumns(chunk.numbers, chunk.values),
            source,
            arrived_at,
            rejected=rejected,
            bounds=bounds,
        )
        if len(sample) < SAMPLE_ROWS and parsed.quarantine.num_rows:
            sample += parsed.quarantine.slice(0, SAMPLE_ROWS - len(sample)).to_pylist()
        name = f"{identity}-{part:05d}"
        written.append(write_parsed(lake, stream, name, source, parsed, len(chunk), fault))
    return FileBatches(
        _summed(identity, source, written, started), [w.identity for w in written], sample
    )


def _summed(
    identity: str, source: str, parts: list[MicroBatchResult], started: float
) -> MicroBatchResult:
    days: dict[str, tuple[int, int]] = {}
    reasons: Counter[str] = Counter()
    for part in parts:
        reasons.update(part.reasons)
        for day, (rows, quarantined) in part.days.items():
            old = days.get(day, (0, 0))
            days[day] = (old[0] + rows, old[1] + quarantined)
    return MicroBatchResult(
        identity=identity,
        source=source,
        received=sum(p.received for p in parts),
        rows=sum(p.rows for p in parts),
        quarantined=sum(p.quarantined for p in parts),
        days=days,
        files=[f for p in parts for f in p.files],
        bytes=sum(p.bytes for p in parts),
        seconds=time.perf_counter() - started,
        late_events=sum(p.late_events for p in parts),
        reasons=dict(reasons),
        fast_rows=sum(p.fast_rows for p in parts),
        forgotten=sum(p.forgotten for p in parts),
    )
