"""Dedup across conversations and days: exact content, near copies, whole conversations, the
persistent index, and the generated support-chat mix of ``benchmarks/bench_curation.py``."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from llm_data_platform.transforms.conversation_cleaning import CleaningConfig, clean_conversations
from llm_data_platform.transforms.cross_dedup import DedupConfig, DedupState
from llm_data_platform.transforms.dedup_index import content_keys
from llm_data_platform.transforms.near_dedup import (
    NearDupParams,
    minhash_signatures,
    oph_signatures,
)
from llm_data_platform_tests.test_conversation_cleaning import (
    dropped_total,
    feedback,
    message,
    raw_table,
)

PASTE = (
    "Our export job has failed every night since the upgrade, the log says the connection to "
    "the warehouse was reset by peer after about forty minutes, and the retry makes it worse"
)
LONG = (
    "I set up the billing integration last week following the guide and everything looked "
    "fine, but the invoices for the new region are generated twice and customers receive two "
    "e-mails for the same payment, which has caused a lot of support tickets on our side"
)


def edited(text: str, changes: dict[int, str]) -> str:
    words = text.split(" ")
    for i, w in changes.items():
        words[i] = w
    return " ".join(words)


def reasons(result) -> dict[str, tuple[str, str | None]]:
    d = result.dropped
    return {
        e: (r, o)
        for e, r, o in zip(
            d["event_id"].to_pylist(),
            d["reason"].to_pylist(),
            d["duplicate_of"].to_pylist(),
            strict=True,
        )
    }


def test_the_same_paste_in_many_conversations_keeps_one() -> None:
    rows = [message(f"m{i}", PASTE, conversation=f"c{i}", line=i) for i in range(5)]
    rows.append(message("short", "Thanks!", conversation="c9", line=9))
    rows.append(message("short2", "Thanks!", conversation="c8", line=10))
    result = clean_conversations(raw_table(rows))
    got = reasons(result)
    # the first conversation (in id order) keeps it; the others point at it
    assert got == {f"m{i}": ("duplicate_content_elsewhere", "m0") for i in range(1, 5)}
    assert result.counts["dropped_duplicate_content_elsewhere"] == 4
    assert result.dropped["similarity"].to_pylist() == [1.0] * 4
    # short turn-taking messages are below min_words: never cross-conversation duplicates
    assert {"short", "short2"} <= set(result.clean["event_id"].to_pylist())
    c = result.counts
    assert c["received"] == c["kept"] + dropped_total(c)


def test_near_copies_at_real_edit_rates_and_format_only_edits() -> None:
    five_percent = edited(LONG, {3: "configured", 20: "region's"})  # 2 of 45 words
    ten_percent = edited(LONG, {1: "we", 9: "everything", 17: "in", 30: "two", 40: "a"})
    formatted = LONG.upper().replace(",", " ;").replace(" ", "  ")
    unrelated = PASTE + " and I would like to know whether the new connector fixes it"
    texts = [LONG, five_percent, ten_percent, formatted, unrelated]
    rows = [message(f"m{i}", t, conversation=f"c{i}", line=i) for i, t in enumerate(texts)]
    result = clean_conversations(raw_table(rows))
    got = reasons(result)
    assert got["m1"] == ("near_duplicate", "m0")
    assert got["m2"] == ("near_duplicate", "m0")
    # case and spacing only: the content hash already matches; punctuation too: near
    assert got["m3"][1] == "m0" and got["m3"][0] in {
        "duplicate_content_elsewhere",
        "near_duplicate",
    }
    assert "m4" not in got and "m0" not in got
    d = result.dropped
    sims = dict(zip(d["event_id"].to_pylist(), d["similarity"].to_pylist(), strict=True))
    assert 0.5 <= sims["m2"] < sims["m1"] < 1.0


def test_whole_conversation_copy_is_dropped_with_its_feedback() -> None:
    def conversation(cid: str, answer: str, line: int) -> list[dict]:
        return [
            message(f"{cid}-q", "How do I stop the double invoices?", conversation=cid, line=line),
            message(f"{cid}-a", answer, conversation=cid, turn=1, role="assistant", line=line + 1),
            feedback(f"{cid}-f", 5, conversation=cid, line=line + 2),
        ]

    rows = conversation("a", LONG, 1) + conversation("b", edited(LONG, {5: "also"}), 10)
    rows += conversation("c", PASTE, 20)
    result = clean_conversations(raw_table(rows))
    got = reasons(result)
    assert got == {e: ("near_duplicate_conversation", "a") for e in ("b-q", "b-a", "b-f")}
    assert {"a-q", "a-a", "a-f", "c-q", "c-a", "c-f"} == set(result.clean["event_id"].to_pylist())


def test_history_across_days_through_the_index_tables() -> None:
    """Day 1's kept rows, persisted as the index tables, drop day 2's copies; a backfill that
    carries the state in memory gives the same result as reading the tables back."""
    config = DedupConfig()
    day1 = raw_table([message("d1", LONG, conversation="x", line=1)])
    day2_rows = [
        message("d2-exact", LONG.lower(), conversation="y", line=1),
        message("d2-near", edited(LONG, {4: "integrations"}), conversation="z", line=2),
        message("d2-new", PASTE, conversation="w", line=3),
    ]
    state1 = DedupState(config)
    clean_conversations(day1, CleaningConfig(dedup_state=state1))
    hashes, signatures = state1.day_tables()
    assert hashes["event_id"].to_pylist() == ["d1"]
    assert signatures["scope"].to_pylist() == ["message"]
    assert signatures["params"].to_pylist() == [config.fingerprint("message")]
    # through the tables (what the next day's run reads from the lake)
    state2 = DedupState(config)
    state2.load_history(hashes, signatures)
    result = clean_conversations(raw_table(day2_rows), CleaningConfig(dedup_state=state2))
    assert reasons(result) == {
        "d2-exact": ("duplicate_content_history", "d1"),
        "d2-near": ("near_duplicate_history", "d1"),
    }
    # in memory (one run over both days) gives the same answer
    state1.next_day()
    again = clean_conversations(raw_table(day2_rows), CleaningConfig(dedup_state=state1))
    assert reasons(again) == reasons(result)
    # signatures made with other parameters are not compared, and counted
    other = DedupState(DedupConfig(near=NearDupParams(threshold=0.5, shingle=3, scheme="oph")))
    other.load_history(None, signatures)
    assert other.history_skipped == 1 and len(other.messages) == 0


def test_chunks_of_a_day_share_the_state() -> None:
    rows = [message(f"m{i}", LONG, conversation=f"c{i}", line=i) for i in range(4)]
    raw = raw_table(rows)
    state = DedupState(DedupConfig())
    config = CleaningConfig(dedup_state=state)
    first = clean_conversations(raw.slice(0, 2), config)
    second = clean_conversations(raw.slice(2), config)
    assert first.clean["event_id"].to_pylist() == ["m0"]
    assert reasons(second) == {
        "m2": ("duplicate_content_elsewhere", "m0"),
        "m3": ("duplicate_content_elsewhere", "m0"),
    }


def test_disabled_keeps_cross_conversation_copies() -> None:
    rows = [message(f"m{i}", PASTE, conversation=f"c{i}", line=i) for i in range(3)]
    result = clean_conversations(raw_table(rows), CleaningConfig(dedup=DedupConfig(enabled=False)))
    assert result.clean.num_rows == 3


def test_content_keys_are_the_first_64_bits() -> None:
    hashes = ["0123456789abcdef" + "0" * 16, "ffffffffffffffff" + "1" * 16, None]
    keys = content_keys(pa.array(hashes))
    assert keys.tolist() == [0x0123456789ABCDEF, 0xFFFFFFFFFFFFFFFF, 0]


def test_oph_signatures_estimate_jaccard_like_minhash() -> None:
    """One-permutation hashing (densified) estimates Jaccard as well as 128 permutations:
    mean absolute error over pairs of known similarity, short and long texts."""
    rng = np.random.default_rng(3)
    errors = {"oph": [], "affine32": []}
    for size in (15, 60, 300):
        for _ in range(40):
            shared = rng.integers(0, 2**63, size)
            a = np.concatenate([shared, rng.integers(0, 2**63, size // 3)]).astype(np.uint64)
            b = np.concatenate([shared, rng.integers(0, 2**63, size // 3)]).astype(np.uint64)
            true = len(shared) / (len(shared) + 2 * (size // 3))
            offsets = np.array([0, len(a), len(a) + len(b)])
            hashes = np.concatenate([a, b])
            for name, sign in (("oph", oph_signatures), ("affine32", minhash_signatures)):
                sig = sign(offsets, hashes, 128, 1)
                errors[name].append(abs((sig[0] == sig[1]).mean() - true))
    assert np.mean(errors["oph"]) < 0.05 and np.mean(errors["oph"]) < 1.5 * np.mean(
        errors["affine32"]
    )


def _bench():
    path = pathlib.Path(__file__).parents[1] / "benchmarks" / "bench_curation.py"
    spec = importlib.util.spec_from_file_location("bench_curation", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_curation"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated():
    bench = _bench()
    messages = bench.generate(6000, seed=11)
    return messages, clean_conversations(bench.raw_table(messages))


def test_generated_mix_recall_and_precision(generated) -> None:
    """Ground truth from the generator: near copies (3-10% of words edited) and format-only
    copies are found at every length, and no distinct message is taken for a copy."""
    messages, result = generated
    d = result.dropped
    reason = dict(zip(d["event_id"].to_pylist(), d["reason"].to_pylist(), strict=True))
    dedup = {"duplicate_content_elsewhere", "near_duplicate"}
    found: Counter[str] = Counter()
    total: Counter[str] = Counter()
    false_positive = 0
    for i, m in enumerate(messages):
        r = reason.get(f"e{i:08d}")
        if r is not None and r.startswith("low_quality"):
            continue  # quality dropped it first: nothing left to dedup
        if m.kind in {"near", "format", "exact"}:
            source = reason.get(f"e{m.source:08d}")
            if source is not None and source.startswith("low_quality"):
                continue  # its original is gone: this copy is the one to keep
            key = f"{m.kind}:{m.band}"
            total[key] += 1
            found[key] += r in dedup
        elif m.kind == "normal":
            false_positive += r in dedup
    for key in total:
        assert found[key] / total[key] >= 0.95, (key, found[key], total[key])
    assert false_positive == 0
    assert sum(total.values()) > 900


def test_representatives_are_kept_messages_and_the_index_holds_only_kept() -> None:
    """A message kept by the exact step but dropped as a near copy is not indexed, and its
    exact copies point at the message that stayed."""
    near = edited(LONG, {3: "configured"})
    rows = [
        message("orig", LONG, conversation="c0", line=0),
        message("near", near, conversation="c1", line=1),
        message("near-copy", near, conversation="c2", line=2),
    ]
    state = DedupState(DedupConfig())
    result = clean_conversations(raw_table(rows), CleaningConfig(dedup_state=state))
    assert reasons(result) == {
        "near": ("near_duplicate", "orig"),
        "near-copy": ("duplicate_content_elsewhere", "orig"),
    }
    hashes, signatures = state.day_tables()
    assert hashes["event_id"].to_pylist() == ["orig"]
    assert signatures["id"].to_pylist() == ["orig"]
