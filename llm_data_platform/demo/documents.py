"""The documents stream of the demo: every doc on the first day, then edits and a delete."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta

from llm_data_platform.demo.corpus import Doc
from llm_data_platform.demo.event_lines import _at, _Ids, _iso
from llm_data_platform.demo.truth import DocumentDayTruth

_DOC_EDIT_SENTENCES = (
    "This section was reviewed by the documentation team and clarified for readers who are "
    "new to Python.",
    "A common source of confusion is covered in the FAQ; the behaviour described here has not "
    "changed.",
    "Examples in this section were checked against the current interpreter.",
    "Readers upgrading from older versions should re-read this section carefully.",
)


def _edit_content(doc: Doc, day: date, rng: random.Random) -> str:
    sentence = rng.choice(_DOC_EDIT_SENTENCES)
    note = f"Revised on {day.isoformat()}: {sentence}"
    content = doc.content
    if doc.format == "html":
        idx = content.rfind("</body>")
        if idx < 0:
            return content + f"\n<p>{note}</p>\n"
        return content[:idx] + f"<p>{note}</p>\n" + content[idx:]
    if rng.random() < 0.5:
        # edit: extend a prose paragraph in place
        paras = content.split("\n\n")
        prose = [i for i, p in enumerate(paras) if p[:1].isalpha() and len(p) > 80]
        if prose:
            i = rng.choice(prose)
            paras[i] = paras[i] + " " + note
            return "\n\n".join(paras)
    return content.rstrip("\n") + "\n\n" + note + "\n"


def _documents(
    days: Sequence[date], docs: Sequence[Doc], topic_ids: set[str], seed: int
) -> tuple[dict[date, list[dict]], dict[str, DocumentDayTruth], dict[str, Doc]]:
    rng = random.Random(f"{seed}:documents")
    ids = _Ids(f"{seed}:documents")
    live: dict[str, Doc] = {}
    events_by_day: dict[date, list[dict]] = {}
    truth: dict[str, DocumentDayTruth] = {}

    def upsert(doc: Doc, ts: datetime) -> dict:
        return {
            "event_id": ids("event"),
            "doc_id": doc.doc_id,
            "op": "upsert",
            "format": doc.format,
            "title": doc.title,
            "content": doc.content,
            "source_uri": doc.source_uri,
            "updated_at": _iso(ts),
        }

    for day_i, day in enumerate(days):
        t = DocumentDayTruth()
        events: list[dict] = []
        ts = _at(day, time(6, 0))
        if day_i == 0:
            for doc in docs:
                ts += timedelta(seconds=7)
                events.append(upsert(doc, ts))
                live[doc.doc_id] = doc
                t.new_doc_ids.append(doc.doc_id)
        elif live:
            # exactly one delete; documents outside the conversation topics go first
            others = sorted(d for d in live if d not in topic_ids)
            victim = rng.choice(others or sorted(live))
            rest = sorted(d for d in live if d != victim)
            picks = rng.sample(rest, min(3, len(rest)))
            for j, doc_id in enumerate(picks):
                ts += timedelta(minutes=rng.randint(5, 90))
                doc = live[doc_id]
                if j < 2:  # content changes
                    doc = Doc(
                        doc.doc_id,
                        doc.title,
                        doc.format,
                        _edit_content(doc, day, rng),
                        doc.source_uri,
                    )
                    live[doc_id] = doc
                    t.updated_doc_ids.append(doc_id)
                else:  # re-sent unchanged (same version)
                    t.unchanged_doc_ids.append(doc_id)
                events.append(upsert(doc, ts))
            ts += timedelta(minutes=rng.randint(5, 90))
            events.append(
                {"event_id": ids("event"), "doc_id": victim, "op": "delete", "updated_at": _iso(ts)}
            )
            del live[victim]
            t.deleted_doc_ids.append(victim)
        t.upserts = sum(e["op"] == "upsert" for e in events)
        t.deletes = sum(e["op"] == "delete" for e in events)
        t.live_docs = len(live)
        events_by_day[day] = events
        truth[day.isoformat()] = t
    return events_by_day, truth, live
