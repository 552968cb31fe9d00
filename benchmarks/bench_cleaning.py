"""Throughput of conversation cleaning on synthetic chat traffic.

    .venv/bin/python benchmarks/bench_cleaning.py [--rows 200000] [--seed 7]

Prints messages/s of ``clean_conversations`` (all steps), of ``redact_pii`` alone, and of a
naive baseline doing the same redaction with pandas ``.apply`` and Python ``re`` (same
patterns, same validators), with the speed-up ratio. Timings are best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import re
import time

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform import schemas
from llm_data_platform.transforms.conversation_cleaning import clean_conversations
from llm_data_platform.transforms.pii import DETECTORS, python_regex, redact_pii

USER = [
    "How do I reverse a list in Python without copying it?",
    "Can you explain what a closure is, with a short example?",
    "My query returns duplicate rows after the join, why?",
    "Please summarise this article in three bullet points.",
    "What's the difference between a thread and a process?",
    "Write a polite email asking my landlord to fix the heating.",
    "¿Cómo puedo invertir una lista en Python?",
    "Comment inverser une liste en Python ?",
    "Wie kann ich eine Liste in Python umdrehen?",
    "Thanks!",
    "ok",
]
ASSISTANT = [
    "You can call xs.reverse() to reverse in place, or use xs[::-1] for a reversed copy.",
    "A closure is a function that remembers the variables of the scope it was defined in.\n\n"
    "    def make_adder(n):\n        return lambda x: x + n",
    "A join multiplies rows when the key is not unique on one side; deduplicate first or "
    "aggregate before joining. Version 3.11.7 changed nothing here, 1,000 rows is tiny.",
    "Sure. Here are the key points:\n- growth slowed in 2026\n- costs rose\n- outlook stable",
    "Threads share memory inside one process; processes have separate address spaces.",
]
PII = [
    "you can reach me at {name}@example.com",
    "my number is (415) 555-{d4}",
    "call +44 20 7946 {d4} tomorrow",
    "card 4111 1111 1111 1111 exp 12/28",
    "the server is at 10.{o}.{o}.{o}",
    "write to {name}.smith@corp.example.org or 415-555-{d4}",
]
JUNK = ["asdkjh qwe!!! ###$$$", "????????", "aaaaaaaaaaaaaaa", "sdfsdf jkjkjk", "!!!!!!"]
MESSY = ["  Hello   there \t", "cafÃ© au lait", "zero\u200bwidth", "line\r\n\r\n\r\n\r\nbreaks"]
NAMES = ["alice", "bob", "carol", "dave", "erin", "frank"]
# Appended to make messages distinct (real traffic rarely repeats whole messages, and the
# language step classifies each distinct text once).
TAIL_WORDS = [
    "also",
    "the",
    "list",
    "dict",
    "file",
    "loop",
    "error",
    "value",
    "string",
    "number",
    "function",
    "class",
    "module",
    "test",
    "data",
    "server",
    "query",
    "table",
    "index",
    "cache",
    "thread",
    "process",
    "memory",
    "python",
    "code",
    "example",
    "output",
    "input",
]


def _message_text(rng: random.Random, role: str, distinct: bool) -> str:
    text = rng.choice(USER if role == "user" else ASSISTANT)
    if distinct and len(text) > 10:
        text = f"{text} ({' '.join(rng.choices(TAIL_WORDS, k=4))})"
    roll = rng.random()
    if roll < 0.06:
        pii = rng.choice(PII).format(
            name=rng.choice(NAMES), d4=f"{rng.randrange(10000):04d}", o=rng.randrange(256)
        )
        text = f"{text} {pii}"
    elif roll < 0.08:
        text = rng.choice(JUNK)
    elif roll < 0.10:
        text = rng.choice(MESSY)
    return text


def synthetic_raw(n_rows: int, seed: int = 7, distinct: bool = True) -> pa.Table:
    """~n_rows raw events: messages in alternating turns, 5% feedback, ~1% replays."""
    rng = random.Random(seed)
    day = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    rows: list[dict] = []
    conv = 0
    while len(rows) < n_rows:
        conv += 1
        cid = f"conv-{conv:07d}"
        for turn in range(rng.randint(2, 8)):
            role = "user" if turn % 2 == 0 else "assistant"
            rows.append(
                {
                    "event_id": f"{cid}-m{turn}",
                    "event_type": "message",
                    "conversation_id": cid,
                    "turn_index": turn,
                    "role": role,
                    "content": _message_text(rng, role, distinct),
                    "rating": None,
                    "user_id": f"user-{conv % 997}",
                    "event_time": day + dt.timedelta(seconds=len(rows)),
                    "source_file": f"landing/{conv // 1000:05d}.jsonl",
                    "source_line": len(rows) % 1000 + 1,
                    "arrived_at": day,
                }
            )
            if rng.random() < 0.01:
                rows.append(dict(rows[-1]))  # replayed event
        if rng.random() < 0.3:
            rows.append({**rows[-1], "event_id": f"{cid}-fb", "event_type": "feedback"})
            rows[-1].update(turn_index=None, role=None, content=None, rating=rng.randint(1, 5))
    return pa.Table.from_pylist(rows[:n_rows], schema=schemas.RAW_CONVERSATIONS)


def naive_redact(texts: pd.Series) -> tuple[pd.Series, dict[str, int]]:
    """Baseline: the same detectors, row by row with pandas ``.apply`` and Python ``re``."""
    compiled = [(d, python_regex(d.pattern)) for d in DETECTORS]
    totals = dict.fromkeys((d.kind for d in DETECTORS), 0)

    def one(text: str | None) -> str | None:
        if not isinstance(text, str):  # null (None or NaN, depending on the string dtype)
            return None
        for det, pattern in compiled:
            if det.rewrite is None:
                text, n = pattern.subn(det.token, text)
            else:
                n = 0

                def sub(m: re.Match[str], det=det) -> str:
                    nonlocal n
                    out = det.rewrite(m, det.token)
                    if out is None:
                        return m.group(0)
                    n += out.count(det.token)
                    return out

                text = pattern.sub(sub, text)
            totals[det.kind] += n
        return text

    return texts.apply(one), totals


def _best_of(repeat: int, fn) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--repetitive", action="store_true", help="template messages only (many exact repeats)"
    )
    args = parser.parse_args()

    raw = synthetic_raw(args.rows, args.seed, distinct=not args.repetitive)
    n_messages = raw.num_rows
    clean_conversations(raw.slice(0, 1000))  # warm-up: model load, regex compilation

    t_clean, result = _best_of(args.repeat, lambda: clean_conversations(raw))
    content = raw["content"]
    t_redact, fast = _best_of(args.repeat, lambda: redact_pii(content))
    series = content.to_pandas()
    t_naive, (_, naive_counts) = _best_of(1, lambda: naive_redact(series))

    distinct = len(pc.unique(content))
    print(
        f"{n_messages:,} raw events ({len(content) - content.null_count:,} messages, "
        f"{distinct:,} distinct texts); msg/s = raw events per second"
    )
    print(f"clean_conversations (all steps): {t_clean:.2f} s  {n_messages / t_clean:,.0f} msg/s")
    print(f"  kept {result.counts['kept']:,}, dropped {result.dropped.num_rows:,}")
    print(f"redact_pii (Arrow/RE2):          {t_redact:.2f} s  {n_messages / t_redact:,.0f} msg/s")
    print(f"naive pandas .apply + re:        {t_naive:.2f} s  {n_messages / t_naive:,.0f} msg/s")
    print(f"speed-up of redact_pii over naive: {t_naive / t_redact:.1f}x")
    print(f"clean_conversations vs naive redaction alone: {t_naive / t_clean:.2f}x")
    same = fast.counts == naive_counts
    print(f"same PII counts as the baseline: {same} {fast.counts}")


if __name__ == "__main__":
    main()
