"""What one Kafka ingest run did, per partition and in all (and the line it logs)."""

from __future__ import annotations

from dataclasses import dataclass, field

from llm_data_platform.streaming.microbatch import MicroBatchResult


@dataclass
class PartitionReport:
    partition: int
    start: int  # first offset this run read from
    high_watermark: int  # at the start of the run
    target: int  # exclusive bound of this run (≤ high_watermark unless recovering)
    committed: int  # the group's offset after the run
    messages: int = 0
    lost_to_retention: int = 0  # committed offset had already been deleted by retention


@dataclass
class IngestReport:
    topic: str
    group_id: str
    stream: str
    messages: int = 0
    rows: int = 0
    quarantined: int = 0
    late_events: int = 0
    batches: list[MicroBatchResult] = field(default_factory=list)
    partitions: dict[int, PartitionReport] = field(default_factory=dict)
    recovered: list[str] = field(default_factory=list)  # written, uncommitted: now committed
    recovered_days: dict[str, list[str]] = field(default_factory=dict)  # their event days
    recovered_messages: int = 0
    first_message_seconds: float | None = None  # start-up: until the first message arrived
    reasons: dict[str, int] = field(default_factory=dict)
    stopped: str = "caught_up"  # caught_up | max_messages | timeout | idle | no_topic
    seconds: float = 0.0

    @property
    def lag_before(self) -> dict[int, int]:
        return {p: r.high_watermark - r.start for p, r in self.partitions.items()}

    @property
    def lag_after(self) -> dict[int, int]:
        """Lag left against the start-of-run watermarks (new arrivals not counted)."""
        return {p: max(0, r.high_watermark - r.committed) for p, r in self.partitions.items()}

    @property
    def days(self) -> dict[str, list[str]]:
        """Event day → identities of the batches this run wrote or recovered for it: the daily
        partitions to refresh (a crashed run never got to request its days)."""
        out: dict[str, list[str]] = {}
        for batch in self.batches:
            for day in batch.days:
                out.setdefault(day, []).append(batch.identity)
        for day, identities in self.recovered_days.items():
            out.setdefault(day, []).extend(identities)
        return {d: sorted(set(ids)) for d, ids in sorted(out.items())}


def describe(report: IngestReport) -> str:
    """One line for logs."""
    return (
        f"{report.topic}: {report.messages} messages → {report.rows} rows, "
        f"{report.quarantined} quarantined in {len(report.batches)} batches "
        f"({report.stopped}, {report.seconds:.1f}s); lag left {sum(report.lag_after.values())}"
    )
