"""Deterministic demo data for the landing zone, with the ground truth of what was written.

`generate_demo` writes the two landing streams the platform ingests (formats in
`llm_data_platform.schemas`):

    <landing_dir>/documents/<arrival-date>/documents-<seq:04d>.jsonl
    <landing_dir>/conversations/<arrival-date>/conversations-<seq:04d>.jsonl

Each file's mtime is its arrival time (the platform's `arrived_at`). Files are written under a
temporary dot-name, stamped, then renamed, so a watcher never sees a half-written file.

Conversations are chat sessions about the reference topics of the demo knowledge base (real
CPython documentation, see `corpus`), with deliberate noise in known amounts: PII, replayed
events, duplicate content, near-duplicate sessions, empty and garbage messages, non-English
sessions, malformed lines, late events and mojibake. `DemoTruth` records what was written,
counted from the lines themselves, so tests and asset checks can compare the platform's
output with it.

Same arguments and Python version -> byte-identical files and truth.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time
from pathlib import Path

from llm_data_platform.demo.chat_texts import GARBAGE_MESSAGES, NON_ENGLISH_SESSIONS, PII_KINDS
from llm_data_platform.demo.conversations import _ConversationDay
from llm_data_platform.demo.corpus import Doc, load_module_docs, load_topics
from llm_data_platform.demo.documents import _documents
from llm_data_platform.demo.eval_set import write_eval_questions
from llm_data_platform.demo.event_lines import (
    CONVERSATIONS,
    DOCUMENTS,
    _at,
    _dumps,
    _iso,
    malformed_partition,
)
from llm_data_platform.demo.topics import (
    _sentences,
    _subject,
    _Topic,
    _unambiguous_topics,
    eval_question_for,
)
from llm_data_platform.demo.truth import (
    ConversationDayTruth,
    DemoTruth,
    DocumentDayTruth,
    LandedFile,
    _conversation_truth,
)

__all__ = [
    "GARBAGE_MESSAGES",
    "NON_ENGLISH_SESSIONS",
    "PII_KINDS",
    "ConversationDayTruth",
    "DemoTruth",
    "DocumentDayTruth",
    "LandedFile",
    "eval_question_for",
    "generate_demo",
    "main",
    "malformed_partition",
]

# Arrival times (UTC) of the files of one day. Conversation events before the cut-off go into
# the midday file, the rest into the evening file; the previous day's late events arrive with
# the midday file. Documents arrive once a day.
_MIDDAY_CUTOFF = time(11, 30)
_MIDDAY_ARRIVAL = time(12, 0)
_EVENING_ARRIVAL = time(23, 30)
_DOCUMENTS_ARRIVAL = time(23, 0)

# (stream, path relative to the landing folder, arrival time, lines)
_PlannedFile = tuple[str, str, datetime, list[str]]


def _write(landing: Path, rel: str, lines: Iterable[str], arrived_at: datetime) -> int:
    path = landing / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
            n += 1
    stamp = arrived_at.timestamp()
    os.utime(tmp, (stamp, stamp))
    os.replace(tmp, path)
    return n


def generate_demo(
    landing_dir: str | os.PathLike,
    days: Sequence[date],
    conversations_per_day: int = 40,
    n_topics: int = 20,
    n_modules: int = 6,
    seed: int = 7,
) -> DemoTruth:
    """Write the demo landing files for `days` into `landing_dir` and return the truth.

    Existing files with the same names are replaced; other files are left alone.
    """
    landing = Path(landing_dir)
    days = sorted(set(days))
    if conversations_per_day < 0:
        raise ValueError("conversations_per_day must be >= 0")

    topic_docs = load_topics(n_topics)
    module_docs = load_module_docs(n_modules)
    all_docs = topic_docs + module_docs
    topic_ids = {d.doc_id for d in topic_docs}

    doc_events, doc_truth, live_docs = _documents(days, all_docs, topic_ids, seed)
    usable, eval_by_doc = _conversation_topics(topic_docs, doc_truth)
    conv_days = [
        _ConversationDay(
            day, conversations_per_day, usable, eval_by_doc, seed, with_mojibake=i == 0
        )
        for i, day in enumerate(days)
    ]
    planned = _plan_files(days, conv_days, doc_events, conversations_per_day)
    files = [_land(landing, *file) for file in planned]

    conv_truth = _conversation_truth(days, conv_days, planned)
    eval_questions = [(q, doc_id) for doc_id, q in eval_by_doc.items()]
    # The retrieval-evaluation set ships with the knowledge base: the platform decontaminates
    # training data against it and (later) gates new index versions on it.
    write_eval_questions(landing, eval_questions)
    return DemoTruth(
        seed=seed,
        days=[d.isoformat() for d in days],
        conversations=conv_truth,
        documents=doc_truth,
        eval_questions=eval_questions,
        final_doc_ids=sorted(live_docs),
        files=files,
    )


def _conversation_topics(
    topic_docs: Sequence[Doc], doc_truth: dict[str, DocumentDayTruth]
) -> tuple[list[_Topic], dict[str, str]]:
    """(topics sessions may be about, doc id -> its eval question). Conversations only use
    topics that exist for the whole run, so none refers to a deleted doc."""
    deleted = {d for t in doc_truth.values() for d in t.deleted_doc_ids}
    topics = [_Topic(d, _subject(d.title), _sentences(d.content)) for d in topic_docs]
    usable = [t for t in topics if len(t.sentences) >= 2 and t.doc.doc_id not in deleted]
    eval_by_doc = {
        d.doc_id: eval_question_for(d.title)
        for d in _unambiguous_topics(topic_docs)
        if d.doc_id not in deleted
    }
    return usable, eval_by_doc


def _plan_files(
    days: Sequence[date],
    conv_days: Sequence[_ConversationDay],
    doc_events: dict[date, list[dict]],
    conversations_per_day: int,
) -> list[_PlannedFile]:
    """Every landing file with its lines, in arrival order: per day the documents file, then
    the midday and the evening conversations files (files without lines are left out)."""
    planned: list[_PlannedFile] = []
    seqs = Counter()

    def rel_path(stream: str, day: date) -> str:
        seqs[stream] += 1
        return f"{stream}/{day.isoformat()}/{stream}-{seqs[stream]:04d}.jsonl"

    reps = max(1, round(conversations_per_day / 40)) if conversations_per_day else 0
    late_carry: list[dict] = []
    previous: _ConversationDay | None = None
    for i, (day, cd) in enumerate(zip(days, conv_days, strict=True)):
        midday, evening, late_carry = _conversation_lines(
            day, cd, previous, late_carry, reps, has_next_day=i + 1 < len(days)
        )
        previous = cd

        doc_lines = [_dumps(e) for e in doc_events[day]]
        if doc_lines:
            planned.append(
                (DOCUMENTS, rel_path(DOCUMENTS, day), _at(day, _DOCUMENTS_ARRIVAL), doc_lines)
            )
        for lines, t in ((midday, _MIDDAY_ARRIVAL), (evening, _EVENING_ARRIVAL)):
            if lines:
                planned.append((CONVERSATIONS, rel_path(CONVERSATIONS, day), _at(day, t), lines))
    return planned


def _conversation_lines(
    day: date,
    cd: _ConversationDay,
    previous: _ConversationDay | None,
    late_carry: list[dict],
    reps: int,
    has_next_day: bool,
) -> tuple[list[str], list[str], list[dict]]:
    """(midday lines, evening lines, late events for the next day's midday file) of a day:
    the previous day's late events first, replays after their original, malformed lines
    anywhere."""
    rng = cd.rng
    on_time, late, extra = cd.plan_lines(has_next_day=has_next_day)
    cutoff = _iso(_at(day, _MIDDAY_CUTOFF))
    on_time.sort(key=lambda e: e["timestamp"])
    midday = [_dumps(e) for e in late_carry] + [
        _dumps(e) for e in on_time if e["timestamp"] < cutoff
    ]
    evening = [_dumps(e) for e in on_time if e["timestamp"] >= cutoff]
    # replays go into the evening file, after the original line
    for _, event in extra:
        line = _dumps(event)
        first = evening.index(line) + 1 if line in evening else 0
        evening.insert(rng.randint(first, len(evening)), line)
    for _reason, text, where in cd.malformed_lines(previous, reps):
        target = midday if where == "midday" else evening
        target.insert(rng.randint(0, len(target)), text)
    return midday, evening, late


def _land(
    landing: Path, stream: str, rel: str, arrived_at: datetime, lines: list[str]
) -> LandedFile:
    """Write one planned file; its record in the truth."""
    n = _write(landing, rel, lines, arrived_at)
    return LandedFile(
        path=rel,
        stream=stream,
        arrival_day=arrived_at.date().isoformat(),
        arrived_at=_iso(arrived_at),
        lines=n,
    )


# --------------------------------------------------------------------------------------------
# CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llm_data_platform.demo.generator",
        description="Write deterministic demo landing files and print the truth as JSON.",
    )
    parser.add_argument("--landing", required=True, help="landing folder to write into")
    parser.add_argument(
        "--days", required=True, nargs="+", type=date.fromisoformat, help="YYYY-MM-DD ..."
    )
    parser.add_argument("--conversations-per-day", type=int, default=40)
    parser.add_argument("--topics", type=int, default=20, help="reference topics to publish")
    parser.add_argument("--modules", type=int, default=6, help="stdlib module pages to publish")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    truth = generate_demo(
        args.landing,
        args.days,
        conversations_per_day=args.conversations_per_day,
        n_topics=args.topics,
        n_modules=args.modules,
        seed=args.seed,
    )
    sys.stdout.write(truth.to_json() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
