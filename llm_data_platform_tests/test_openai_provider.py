"""OpenAI-compatible providers, against a local HTTP server speaking the OpenAI endpoints.

The server (``fake_openai``, from ``fake_openai.py``, shared with the key and fine-tuning
tests) runs on 127.0.0.1 in a thread for each test. It answers ``/v1/embeddings`` (vectors
that encode each input's position, deliberately unnormalised and returned out of order) and
``/v1/chat/completions`` (a canned answer citing [1], after checking that the prompt holds the
retrieved chunk texts), or fails as told.
"""

from __future__ import annotations

import dagster as dg
import numpy as np
import pytest

from llm_data_platform.resources.embeddings import EmbeddingsResource
from llm_data_platform.retrieval import Retriever
from llm_data_platform.serving.answer import AnswerError, ChatConfig, generate_answer
from llm_data_platform_tests.fake_openai import (  # noqa: F401 - re-exported for other tests
    BAD_KEY,
    CANNED_ANSWER,
    QUOTA,
    FakeOpenAI,
    fake_openai_server,
)

fake_openai = fake_openai_server  # the fixture, under the name other test modules import


def _openai_embeddings(fake: FakeOpenAI, **kwargs) -> EmbeddingsResource:
    return EmbeddingsResource(
        provider="openai", model="text-embedding-3-small", base_url=fake.url, **kwargs
    )


# -- embeddings ---------------------------------------------------------------------------
def test_embeddings_batch_within_limits_keep_order_and_are_normalised(fake_openai):
    texts = [f"text {i}" for i in range(4100)]
    vectors = _openai_embeddings(fake_openai, batch_size=5000, max_retries=0).embed(texts)
    sizes = [len(body["input"]) for _, body in fake_openai.requests]
    assert not fake_openai.problems
    assert sizes and max(sizes) <= 2048 and sum(sizes) == len(texts) and len(sizes) == 3
    sent = [t for _, body in fake_openai.requests for t in body["input"]]
    assert sent == texts
    assert vectors.shape == (4100, 2)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    decoded = np.rint(vectors[:, 0] / vectors[:, 1]) - 1  # the server's index order is undone
    np.testing.assert_array_equal(decoded, np.arange(4100))


def test_embeddings_insufficient_quota_is_a_clear_failure_not_retried(fake_openai):
    fake_openai.fail = QUOTA
    with pytest.raises(dg.Failure, match="insufficient_quota"):
        _openai_embeddings(fake_openai, max_retries=2).embed(["text 1"])
    assert len(fake_openai.requests) == 1


def test_embeddings_bad_key_is_a_clear_key_error(fake_openai):
    fake_openai.fail = BAD_KEY
    with pytest.raises(dg.Failure, match="OPENAI_API_KEY"):
        _openai_embeddings(fake_openai, api_key="sk-bad", max_retries=2).embed(["text 1"])
    assert len(fake_openai.requests) == 1


# -- grounded answers -----------------------------------------------------------------------
def _question_and_hits(built, k=3):
    platform, _ = built
    live = set(platform.truth.final_doc_ids)
    question = next(q for q, d in platform.truth.eval_questions if d in live)
    # the mode `ldp ask` uses by default (LDP_RETRIEVAL_HYBRID), so its hits are these
    retriever = Retriever(
        platform.resources["chroma"],
        platform.resources["embeddings"],
        hybrid=platform.settings.retrieval_hybrid,
    )
    return question, retriever.search(question, k=k)


def test_answer_is_grounded_in_the_retrieved_chunks(built, fake_openai):
    question, hits = _question_and_hits(built)
    fake_openai.expect_in_prompt = [h.text.strip() for h in hits]
    config = ChatConfig(model="test-chat", base_url=fake_openai.url, timeout_seconds=10)
    answer = generate_answer(question, hits, config)
    assert not fake_openai.problems
    assert answer.text == CANNED_ANSWER and answer.cited == [1]
    assert [s["chunk_id"] for s in answer.sources] == [h.chunk_id for h in hits]
    assert answer.sources[0]["source_uri"] == hits[0].source_uri
    (prompt,) = fake_openai.prompts()
    assert question in prompt
    for n, hit in enumerate(hits, start=1):
        assert f"[{n}]" in prompt and hit.source_uri in prompt and hit.text.strip() in prompt
    assert fake_openai.requests[0][1]["model"] == "test-chat"


def test_answer_without_key_or_base_url_is_a_clear_error(built):
    question, hits = _question_and_hits(built, k=1)
    with pytest.raises(AnswerError, match="OPENAI_API_KEY.*OPENAI_BASE_URL"):
        generate_answer(question, hits, ChatConfig(api_key=None, base_url=None))


def test_chat_insufficient_quota_is_not_retried(built, fake_openai):
    question, hits = _question_and_hits(built, k=1)
    fake_openai.fail = QUOTA
    with pytest.raises(AnswerError, match="insufficient_quota"):
        generate_answer(question, hits, ChatConfig(base_url=fake_openai.url, max_retries=3))
    assert len(fake_openai.requests) == 1


def test_chat_bad_key_is_a_clear_key_error(built, fake_openai):
    question, hits = _question_and_hits(built, k=1)
    fake_openai.fail = BAD_KEY
    config = ChatConfig(api_key="sk-bad-SECRET987", base_url=fake_openai.url)
    with pytest.raises(AnswerError, match="OPENAI_API_KEY") as raised:
        generate_answer(question, hits, config)
    # the server and the key that was sent are named; the key itself never is
    assert fake_openai.url in str(raised.value) and "rejected the key" in str(raised.value)
    assert "SECRET987" not in str(raised.value)


def test_ask_answer_command(built, fake_openai, monkeypatch, capsys):
    from llm_data_platform.cli import main

    platform, _ = built
    question, hits = _question_and_hits(built, k=3)
    for name, value in platform.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert main(["ask", question, "--answer"]) == 2
    assert "OPENAI_API_KEY" in capsys.readouterr().out

    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.url)
    monkeypatch.setenv("LDP_CHAT_MODEL", "test-chat")
    fake_openai.expect_in_prompt = [h.text.strip() for h in hits]
    assert main(["ask", question, "-k", "3", "--answer"]) == 0
    out = capsys.readouterr().out
    assert not fake_openai.problems
    assert CANNED_ANSWER in out and "[1] " in out and hits[0].source_uri in out
    assert fake_openai.requests[-1][1]["model"] == "test-chat"
