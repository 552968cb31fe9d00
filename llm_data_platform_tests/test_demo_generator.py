"""The demo data generator: deterministic, honest about what it wrote, realistic enough.

The truth is checked against an independent re-parse of the written files: every line is read
with `json`, classified by the rules of the landing format, and counted here.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter, defaultdict
from dataclasses import asdict
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from llm_data_platform.demo import (
    GARBAGE_MESSAGES,
    generate_demo,
    load_module_docs,
    load_topics,
    malformed_partition,
)
from llm_data_platform.demo.generator import main

DAYS = [date(2026, 1, 5), date(2026, 1, 6), date(2026, 1, 7)]
SMALL = dict(conversations_per_day=20, n_topics=8, n_modules=2)

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
PHONE = re.compile(r"(?:\+1 \d{3}-|\(\d{3}\) )\d{3}-\d{4}")
CARD = re.compile(r"\b(?:\d{4}[ -]\d{4}[ -]\d{4}[ -]\d{4}|\d{4} \d{6} \d{5})\b")
IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
PII = {"email": EMAIL, "phone": PHONE, "credit_card": CARD, "ipv4": IPV4}
# German, French and Spanish function words, rare in the English parts of the demo data.
_DE = "und ist die der das nicht ich eine wie man du kannst wenn sie bitte"
_FR = "le la les et est une vous avec pour dans un des faut"
_ES = "el los las que y es una por para cómo en me puedes debería qué mi de siempre"
FOREIGN_STOPWORDS = frozenset(f"{_DE} {_FR} {_ES}".split(" "))


def _is_foreign(text: str) -> bool:
    words = re.findall(r"[\w'’]+", text.lower())
    hits = sum(w in FOREIGN_STOPWORDS for w in words)
    return len(words) >= 8 and hits >= 3 and hits / len(words) >= 0.15


def _ts(value) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _well_formed(obj) -> bool:
    if not isinstance(obj, dict) or _ts(obj.get("timestamp")) is None:
        return False
    want = {"event_id": str, "conversation_id": str}
    if obj.get("type") == "message":
        want |= {"turn": int, "role": str, "content": str}
    elif obj.get("type") == "feedback":
        want |= {"rating": int}
    else:
        return False
    if not all(type(obj.get(k)) is t for k, t in want.items()):
        return False
    return obj["type"] != "feedback" or 1 <= obj["rating"] <= 5


def _arrival(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def _files(landing: Path, stream: str) -> list[Path]:
    return sorted((landing / stream).glob("*/*.jsonl"), key=lambda p: (_arrival(p), p.name))


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    landing = tmp_path_factory.mktemp("landing")
    truth = generate_demo(landing, DAYS, conversations_per_day=40)
    return landing, truth


@pytest.fixture(scope="module")
def reparsed(demo):
    """Per event day, counts made from the files alone."""
    landing, _ = demo
    days: dict[str, Counter] = defaultdict(Counter)
    seen: dict[str, str] = {}
    content_keys: set[tuple] = set()
    messages: dict[str, list[dict]] = defaultdict(list)
    ratings: dict[str, int] = {}
    for path in _files(landing, "conversations"):
        arrival = _arrival(path)
        for line in path.read_text(encoding="utf-8").split("\n")[:-1]:
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            if not _well_formed(obj):
                ts = _ts(obj.get("timestamp")) if isinstance(obj, dict) else None
                days[(ts or arrival).date().isoformat()]["malformed"] += 1
                continue
            ts = _ts(obj["timestamp"])
            c = days[ts.date().isoformat()]
            c["lines"] += 1
            if obj["event_id"] in seen:
                assert seen[obj["event_id"]] == line, "a replayed event must be the same line"
                c["exact_duplicate_events"] += 1
                continue
            seen[obj["event_id"]] = line
            if obj["type"] == "feedback":
                c["feedback"] += 1
                c["poor_ratings"] += obj["rating"] <= 2
                ratings[obj["conversation_id"]] = obj["rating"]
                continue
            c["messages"] += 1
            key = (obj["conversation_id"], obj["turn"], obj["role"], obj["content"])
            duplicate = key in content_keys
            c["duplicate_content"] += duplicate
            content_keys.add(key)
            if not duplicate:
                messages[obj["conversation_id"]].append(obj)
                c["sessions"] += obj["turn"] == 0
            text = obj["content"]
            c["empty"] += not text.strip()
            c["garbage"] += text in GARBAGE_MESSAGES
            c["non_english"] += _is_foreign(text)
            c["mojibake"] += "Ã" in text
            c["late_events"] += ts.date() < arrival.date()
            found = {kind: len(rx.findall(text)) for kind, rx in PII.items()}
            c["pii_messages"] += any(found.values())
            for kind, n in found.items():
                c[f"pii_{kind}"] += n
    for msgs in messages.values():
        msgs.sort(key=lambda m: m["turn"])
    return days, messages, ratings


def test_same_seed_gives_identical_files_and_truth(tmp_path):
    a = generate_demo(tmp_path / "a", DAYS[:2], seed=3, **SMALL)
    b = generate_demo(tmp_path / "b", DAYS[:2], seed=3, **SMALL)
    c = generate_demo(tmp_path / "c", DAYS[:2], seed=4, **SMALL)
    tree_a, tree_b, tree_c = _tree(tmp_path / "a"), _tree(tmp_path / "b"), _tree(tmp_path / "c")
    assert tree_a and tree_a == tree_b
    assert asdict(a) == asdict(b)
    assert tree_a != tree_c
    assert asdict(a) != asdict(c)
    # documents do not depend on the seed's conversations, but their event ids do
    assert (
        tree_a["documents/2026-01-05/documents-0001.jsonl"]
        != tree_c["documents/2026-01-05/documents-0001.jsonl"]
    )


def test_truth_counts_match_a_reparse_of_the_files(demo, reparsed):
    _, truth = demo
    days, _, _ = reparsed
    assert set(truth.conversations) == {d.isoformat() for d in DAYS} == set(days)
    for day, t in truth.conversations.items():
        c = days[day]
        assert c["messages"] == t.messages > 0, day
        assert c["feedback"] == t.feedback > 0, day
        assert c["lines"] == t.lines == t.messages + t.feedback + t.exact_duplicate_events
        assert c["malformed"] == t.malformed == sum(t.malformed_by_reason.values()) > 0
        assert c["exact_duplicate_events"] == t.exact_duplicate_events > 0
        assert c["duplicate_content"] == t.duplicate_content > 0
        assert c["empty"] == t.empty > 0
        assert c["garbage"] == t.garbage > 0
        assert c["non_english"] == t.non_english > 0
        assert c["mojibake"] == t.mojibake
        assert c["late_events"] == t.late_events
        assert c["poor_ratings"] == t.poor_ratings > 0
        assert c["sessions"] == t.sessions == 40
        assert c["pii_messages"] == t.pii_messages > 0
        for kind in ("email", "phone", "credit_card", "ipv4"):
            assert c[f"pii_{kind}"] == t.pii.get(kind, 0), (day, kind)
        assert set(t.pii) == {"email", "phone", "credit_card", "ipv4"}
        assert t.near_duplicate_sessions == len(t.near_duplicate_pairs) > 0
    assert sum(t.mojibake for t in truth.conversations.values()) == 1
    # a wrong-typed feedback of day 1 arrives on day 2 and still belongs to day 1
    first = truth.conversations[DAYS[0].isoformat()].malformed_by_reason
    assert first["wrong_type_rating"] == 2


def test_about_80_percent_of_sessions_are_rated_mostly_well(demo):
    _, truth = demo
    sessions = sum(t.sessions for t in truth.conversations.values())
    rated = sum(t.rated_sessions for t in truth.conversations.values())
    poor = sum(t.poor_ratings for t in truth.conversations.values())
    assert 0.65 <= rated / sessions <= 0.9
    assert 0 < poor < rated / 3


def test_candidates_are_clean_well_rated_english_sessions(demo, reparsed):
    _, truth = demo
    _, messages, ratings = reparsed
    for t in truth.conversations.values():
        assert t.candidate_conversation_ids
        bad = set(t.non_english_conversation_ids) | set(t.eval_contaminated_conversation_ids)
        bad |= {copy for copy, _ in t.near_duplicate_pairs}
        for cid in t.candidate_conversation_ids:
            assert cid not in bad
            assert ratings[cid] >= 4
            msgs = messages[cid]
            assert [m["role"] for m in msgs[:2]] == ["user", "assistant"]
            for m in msgs:
                assert m["content"].strip() and m["content"] not in GARBAGE_MESSAGES
                assert not _is_foreign(m["content"])


def test_near_duplicates_differ_by_one_word(demo, reparsed):
    _, truth = demo
    _, messages, _ = reparsed
    for t in truth.conversations.values():
        for copy, original in t.near_duplicate_pairs:
            a, b = messages[copy], messages[original]
            assert len(a) == len(b) and copy != original
            assert {m["event_id"] for m in a}.isdisjoint(m["event_id"] for m in b)
            changed = sum(
                x != y
                for ma, mb in zip(a, b, strict=True)
                for x, y in zip(ma["content"].split(" "), mb["content"].split(" "), strict=True)
            )
            assert changed == 1


def test_eval_contamination_uses_the_eval_question_verbatim(demo, reparsed):
    _, truth = demo
    _, messages, _ = reparsed
    questions = {q for q, _ in truth.eval_questions}
    contaminated = [
        cid for t in truth.conversations.values() for cid in t.eval_contaminated_conversation_ids
    ]
    assert contaminated
    for cid in contaminated:
        assert messages[cid][0]["content"] in questions


def test_file_mtimes_are_arrival_times_on_the_arrival_day(demo):
    landing, truth = demo
    # every landed stream file is in the truth; the eval set is a file beside the streams
    assert {f.path for f in truth.files} == {
        p.relative_to(landing).as_posix()
        for p in landing.rglob("*")
        if p.is_file() and p.parent.name != "eval"
    }
    assert (landing / "eval" / "questions.jsonl").exists()
    for f in truth.files:
        path = landing / f.path
        arrival = _arrival(path)
        assert arrival == datetime.fromisoformat(f.arrived_at)
        assert path.parent.name == f.arrival_day == arrival.date().isoformat()
        assert re.fullmatch(rf"{f.stream}-\d{{4}}\.jsonl", path.name)
        assert len(path.read_text(encoding="utf-8").split("\n")) - 1 == f.lines
        # nothing in a file claims to have happened after the file arrived
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                ts = _ts(obj.get("timestamp") or obj.get("updated_at"))
                assert ts is None or ts <= arrival, (f.path, line[:80])


def test_late_events_sit_in_the_next_days_file_with_their_own_timestamp(demo):
    landing, truth = demo
    late_by_day: Counter = Counter()
    for path in _files(landing, "conversations"):
        arrival_day = date.fromisoformat(path.parent.name)
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if _well_formed(obj) and _ts(obj["timestamp"]).date() < arrival_day:
                event_day = _ts(obj["timestamp"]).date()
                assert (arrival_day - event_day).days == 1
                assert obj["type"] == "message"
                late_by_day[event_day.isoformat()] += 1
    for day in DAYS[:-1]:
        assert late_by_day[day.isoformat()] == truth.conversations[day.isoformat()].late_events > 0
    assert truth.conversations[DAYS[-1].isoformat()].late_events == 0


def test_documents_upserted_then_updated_and_one_deleted_per_later_day(demo):
    landing, truth = demo
    live: dict[str, str] = {}
    for path in _files(landing, "documents"):
        day = path.parent.name
        events = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        assert all(e["updated_at"].startswith(day) for e in events)
        t = truth.documents[day]
        upserts = [e for e in events if e["op"] == "upsert"]
        deletes = [e for e in events if e["op"] == "delete"]
        assert (len(upserts), len(deletes)) == (t.upserts, t.deletes)
        assert [e["doc_id"] for e in deletes] == t.deleted_doc_ids
        if day == DAYS[0].isoformat():
            assert not deletes and len(upserts) == len(t.new_doc_ids) > 20
        else:
            assert len(deletes) == 1 and deletes[0]["doc_id"] in live
            assert set(deletes[0]) == {"event_id", "doc_id", "op", "updated_at"}
            for doc_id in t.updated_doc_ids:
                new = next(e for e in upserts if e["doc_id"] == doc_id)
                assert doc_id in live and new["content"] != live[doc_id]
            for doc_id in t.unchanged_doc_ids:
                new = next(e for e in upserts if e["doc_id"] == doc_id)
                assert new["content"] == live[doc_id]
        for e in upserts:
            assert e["format"] in {"html", "markdown", "text"} and e["title"] and e["source_uri"]
            live[e["doc_id"]] = e["content"]
        for e in deletes:
            del live[e["doc_id"]]
        assert len(live) == t.live_docs
    assert sorted(live) == truth.final_doc_ids


def test_eval_questions_point_at_upserted_live_topics(demo):
    landing, truth = demo
    upserted = {
        json.loads(line)["doc_id"]
        for path in _files(landing, "documents")
        for line in path.read_text(encoding="utf-8").splitlines()
        if json.loads(line)["op"] == "upsert"
    }
    assert len(truth.eval_questions) >= 10
    questions = [q for q, _ in truth.eval_questions]
    assert len(set(questions)) == len(questions)
    for question, doc_id in truth.eval_questions:
        assert doc_id in upserted and doc_id in truth.final_doc_ids
        assert doc_id.startswith("python-reference/") and question.endswith("?")
    assert ("What does the assert statement do in Python?", "python-reference/assert") in [
        tuple(q) for q in truth.eval_questions
    ]


class _TagCounter(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: Counter = Counter()

    def handle_starttag(self, tag, attrs):
        self.tags[tag] += 1


def test_documents_are_real_html_markdown_and_text():
    topics = load_topics(5)
    modules = load_module_docs(3)
    html = [d for d in modules if d.format == "html"]
    text = [d for d in modules if d.format == "text"]
    assert len(html) == 3 and text
    for doc in html:
        assert doc.content.lstrip().startswith("<!DOCTYPE html>")
        assert doc.content.rstrip().endswith("</html>")
        parser = _TagCounter()
        parser.feed(doc.content)
        assert parser.tags["table"] >= 1 and parser.tags["a"] >= 3 and parser.tags["body"] == 1
        assert doc.doc_id.startswith("python-stdlib/") and doc.source_uri.startswith("pydoc:")
        assert "/usr/lib/python3." in doc.content  # machine paths normalised
        assert not re.search(r"at(?: |&nbsp;)0x(?!7f0000000000)[0-9a-f]{6,}", doc.content)
    for doc in topics:
        assert doc.content.startswith(f"# {doc.title}\n")
        assert "*****" not in doc.content and "=====" not in doc.content
        assert doc.format == "markdown" and doc.doc_id.startswith("python-reference/")
    assert "## Augmented assignment statements" in load_topics(2)[1].content
    for doc in text:
        assert "<html" not in doc.content and len(doc.content) >= 500


def test_malformed_lines_go_to_their_timestamp_day_else_the_arrival_day():
    arrival = date(2026, 1, 6)
    line = '{"event_id": "x", "type": "feedback", "rating": "five", '
    assert malformed_partition(line + '"timestamp": "2026-01-05T23:00:00Z"}', arrival) == date(
        2026, 1, 5
    )
    assert malformed_partition(line + '"timestamp": "soon"}', arrival) == arrival
    assert malformed_partition('["a", "2026-01-05T23:00:00Z"]', arrival) == arrival
    assert malformed_partition('{"event_id": "x", "timestamp": "2026-01-0', arrival) == arrival


def test_noise_scales_with_conversations_per_day(tmp_path):
    small = generate_demo(tmp_path / "s", DAYS[:1], conversations_per_day=20, n_topics=8)
    big = generate_demo(tmp_path / "b", DAYS[:1], conversations_per_day=120, n_topics=8)
    s, b = small.conversations["2026-01-05"], big.conversations["2026-01-05"]
    assert b.messages > 4 * s.messages
    assert b.malformed > s.malformed and b.exact_duplicate_events > s.exact_duplicate_events
    assert sum(b.pii.values()) > sum(s.pii.values())
    assert b.sessions == 120 and s.sessions == 20


def test_two_small_days_generate_well_under_a_second(tmp_path):
    generate_demo(tmp_path / "warm", DAYS[:2], **SMALL)  # corpus loading is cached
    started = time.perf_counter()
    generate_demo(tmp_path / "timed", DAYS[:2], **SMALL)
    assert time.perf_counter() - started < 0.5


def test_cli_writes_files_and_prints_the_truth(tmp_path, capsys):
    args = ["--landing", str(tmp_path), "--days", "2026-01-05", "2026-01-06"]
    assert main([*args, "--conversations-per-day", "12", "--topics", "6", "--modules", "1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["days"] == ["2026-01-05", "2026-01-06"]
    assert printed["conversations"]["2026-01-05"]["sessions"] == 12
    for f in printed["files"]:
        assert (tmp_path / f["path"]).is_file()
