"""The demo's ground truth: what was written, per day, counted from the landed lines."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING

from llm_data_platform.demo.chat_texts import GARBAGE_MESSAGES, PII_KINDS
from llm_data_platform.demo.event_lines import CONVERSATIONS, _parse_ts, malformed_partition

if TYPE_CHECKING:
    from llm_data_platform.demo.conversations import _ConversationDay, _Session


@dataclass
class ConversationDayTruth:
    """What was written for one event-day partition of the conversations stream.

    Event counts are over *unique* well-formed events (by event_id) whose timestamp falls on
    the day, wherever their line landed; repeated lines are counted in
    `exact_duplicate_events` only. Message-level counts (`empty`, `garbage`, `non_english`,
    `mojibake`, `pii_messages`, `late_events`) are over unique message events.
    """

    sessions: int = 0  # conversations started on the day (all kinds, incl. near-dup copies)
    messages: int = 0  # unique well-formed message events
    feedback: int = 0  # unique well-formed feedback events
    lines: int = 0  # well-formed lines (messages + feedback + exact_duplicate_events)
    malformed: int = 0  # malformed lines attributed to this partition (see malformed_partition)
    malformed_by_reason: dict[str, int] = field(default_factory=dict)
    pii: dict[str, int] = field(default_factory=dict)  # kind -> injected spans
    pii_messages: int = 0
    exact_duplicate_events: int = 0  # extra lines replaying an event (same event_id and bytes)
    duplicate_content: int = 0  # messages repeating (conversation_id, turn, role, content)
    near_duplicate_sessions: int = 0
    near_duplicate_pairs: list[tuple[str, str]] = field(default_factory=list)  # (copy, original)
    empty: int = 0  # content "" or whitespace only
    garbage: int = 0
    non_english: int = 0  # messages of the non-English sessions
    non_english_conversation_ids: list[str] = field(default_factory=list)
    mojibake: int = 0
    late_events: int = 0  # messages whose line arrived in a file of a later day
    poor_ratings: int = 0  # feedback with rating 1 or 2
    rated_sessions: int = 0
    # Clean English sessions with a well-formed rating >= 4: not empty/garbage/non-English, not
    # a near-duplicate copy, not containing an eval question. PII in them is fine (redacted).
    candidate_conversation_ids: list[str] = field(default_factory=list)
    # Sessions whose first user message is an eval question verbatim (for decontamination).
    eval_contaminated_conversation_ids: list[str] = field(default_factory=list)


@dataclass
class DocumentDayTruth:
    """What was written for one update-day of the documents stream."""

    upserts: int = 0  # upsert events (new + updated + unchanged re-sends)
    deletes: int = 0
    new_doc_ids: list[str] = field(default_factory=list)
    updated_doc_ids: list[str] = field(default_factory=list)  # content changed
    unchanged_doc_ids: list[str] = field(default_factory=list)  # re-sent with identical content
    deleted_doc_ids: list[str] = field(default_factory=list)
    live_docs: int = 0  # documents existing at the end of the day


@dataclass
class LandedFile:
    path: str  # relative to landing_dir, POSIX separators
    stream: str  # "conversations" | "documents"
    arrival_day: str  # YYYY-MM-DD
    arrived_at: str  # ISO-8601 UTC, also the file's mtime
    lines: int


@dataclass
class DemoTruth:
    seed: int
    days: list[str]
    conversations: dict[str, ConversationDayTruth]  # by event day
    documents: dict[str, DocumentDayTruth]  # by update day
    eval_questions: list[tuple[str, str]]  # (question, doc_id), one per live topic
    final_doc_ids: list[str]  # documents that exist after the last day
    files: list[LandedFile]

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# counting


def _conversation_truth(
    days: Sequence[date],
    conv_days: Sequence[_ConversationDay],
    planned: Sequence[tuple[str, str, datetime, list[str]]],
) -> dict[str, ConversationDayTruth]:
    """Count what the conversation files actually contain, line by line."""
    truth = {d.isoformat(): ConversationDayTruth() for d in days}
    sessions = {s.conversation_id: s for cd in conv_days for s in cd.sessions}
    counter = _LineCounter(truth, sessions)
    for stream, _rel, arrived_at, lines in planned:
        if stream != CONVERSATIONS:
            continue
        for line in lines:
            counter.count(line, arrived_at)
    _count_sessions(truth, sessions)
    for t in truth.values():
        t.pii = {k: t.pii.get(k, 0) for k in PII_KINDS}
        t.malformed_by_reason = dict(sorted(t.malformed_by_reason.items()))
    return dict(sorted(truth.items()))


def _day_truth(truth: dict[str, ConversationDayTruth], key: str) -> ConversationDayTruth:
    return truth.setdefault(key, ConversationDayTruth())


class _LineCounter:
    """Counts landed conversation lines into the truth of their event day (malformed ones into
    the day ``malformed_partition`` gives), remembering what it has seen already."""

    def __init__(self, truth: dict[str, ConversationDayTruth], sessions: dict[str, _Session]):
        self.truth = truth
        self.sessions = sessions
        self.messages = {e["event_id"]: s for s in sessions.values() for e in s.messages}
        self.seen: set[str] = set()
        self.content_keys: set[tuple] = set()

    def count(self, line: str, arrived_at: datetime) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        ok = isinstance(event, dict) and _well_formed(event)
        if not ok:
            t = _day_truth(self.truth, malformed_partition(line, arrived_at.date()).isoformat())
            t.malformed += 1
            reason = _malformed_reason(event)
            t.malformed_by_reason[reason] = t.malformed_by_reason.get(reason, 0) + 1
            return
        ts = _parse_ts(event["timestamp"])
        assert ts is not None
        t = _day_truth(self.truth, ts.date().isoformat())
        t.lines += 1
        if event["event_id"] in self.seen:
            t.exact_duplicate_events += 1
            return
        self.seen.add(event["event_id"])
        if event["type"] == "feedback":
            t.feedback += 1
            t.poor_ratings += event["rating"] <= 2
            return
        self._count_message(t, event, ts, arrived_at)

    def _count_message(
        self, t: ConversationDayTruth, event: dict, ts: datetime, arrived_at: datetime
    ) -> None:
        """A message event seen for the first time."""
        t.messages += 1
        key = (event["conversation_id"], event["turn"], event["role"], event["content"])
        if key in self.content_keys:
            t.duplicate_content += 1
        self.content_keys.add(key)
        content = event["content"]
        t.empty += content.strip() == ""
        t.garbage += content in GARBAGE_MESSAGES
        t.late_events += ts.date() < arrived_at.date()
        s = self.messages.get(event["event_id"]) or self.sessions[event["conversation_id"]]
        t.non_english += s.kind == "non_english"
        if event["turn"] == 0 and event["role"] == "user" and event in s.messages:
            t.mojibake += s.mojibake
            if s.pii:
                t.pii_messages += 1
                for kind, k in s.pii.items():
                    t.pii[kind] = t.pii.get(kind, 0) + k


def _count_sessions(truth: dict[str, ConversationDayTruth], sessions: dict[str, _Session]) -> None:
    """Session-level truth, by the day each session started."""
    for s in sorted(sessions.values(), key=lambda s: s.start):
        t = _day_truth(truth, s.start.date().isoformat())
        t.sessions += 1
        t.rated_sessions += s.feedback is not None
        if s.kind == "non_english":
            t.non_english_conversation_ids.append(s.conversation_id)
        if s.kind == "near_duplicate":
            t.near_duplicate_sessions += 1
            t.near_duplicate_pairs.append((s.conversation_id, s.source or ""))
        if s.contaminated:
            t.eval_contaminated_conversation_ids.append(s.conversation_id)
        elif s.kind == "clean" and s.feedback is not None and s.feedback["rating"] >= 4:
            t.candidate_conversation_ids.append(s.conversation_id)


_REQUIRED = {
    "message": {
        "event_id": str,
        "conversation_id": str,
        "turn": int,
        "role": str,
        "content": str,
        "timestamp": str,
    },
    "feedback": {"event_id": str, "conversation_id": str, "rating": int, "timestamp": str},
}


def _well_formed(event: dict) -> bool:
    required = _REQUIRED.get(event.get("type"))  # type: ignore[arg-type]
    if required is None:
        return False
    for name, typ in required.items():
        value = event.get(name)
        if not isinstance(value, typ) or isinstance(value, bool):
            return False
    if event["type"] == "feedback" and not 1 <= event["rating"] <= 5:
        return False
    return _parse_ts(event["timestamp"]) is not None


def _malformed_reason(event: object) -> str:
    if event is None:
        return "invalid_json"
    if not isinstance(event, dict):
        return "not_an_object"
    required = _REQUIRED.get(event.get("type"), {})
    for name, typ in required.items():
        if name not in event:
            return f"missing_{name}"
        if not isinstance(event[name], typ):
            return f"wrong_type_{name}"
    if _parse_ts(event.get("timestamp")) is None:
        return "bad_timestamp"
    return "invalid_event"
