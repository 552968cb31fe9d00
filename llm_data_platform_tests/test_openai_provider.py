"""OpenAI-compatible providers, against a local HTTP server speaking the OpenAI endpoints.

The server (``fake_openai``) runs on 127.0.0.1 in a thread for each test. It answers
``/v1/embeddings`` (vectors that encode each input's position, deliberately unnormalised and
returned out of order) and ``/v1/chat/completions`` (a canned answer citing [1], after checking
that the prompt holds the retrieved chunk texts), or fails as told. It records the
Authorization header of every request and, given ``required_key``, answers 401 to any other
(echoing the key it got, as OpenAI's own 401 does in part).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import numpy as np
import pytest

from llm_data_platform.resources.embeddings import EmbeddingsResource
from llm_data_platform.retrieval import Retriever
from llm_data_platform.serving.answer import AnswerError, ChatConfig, generate_answer

CANNED_ANSWER = "Use a try statement with an except clause for the exception [1]."
QUOTA = (
    429,
    {
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "type": "insufficient_quota",
        "param": None,
        "code": "insufficient_quota",
    },
)
BAD_KEY = (
    401,
    {
        "message": "Incorrect API key provided: sk-bad. You can find your API key at ...",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    },
)


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict]] = []
        self.expect_in_prompt: list[str] = []
        self.fail: tuple[int, dict] | None = None
        self.problems: list[str] = []
        self.authorizations: list[str | None] = []
        self.required_key: str | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append((self.path, body))
                presented = self.headers.get("Authorization")
                fake.authorizations.append(presented)
                if fake.required_key and presented != f"Bearer {fake.required_key}":
                    message = f"Incorrect API key provided: {presented}."
                    error = {"message": message, "type": "invalid_request_error"}
                    return self._send(401, {"error": {**error, "code": "invalid_api_key"}})
                if fake.fail:
                    status, error = fake.fail
                    return self._send(status, {"error": error})
                if self.path == "/v1/embeddings":
                    return self._send(*fake.embeddings(body))
                if self.path == "/v1/chat/completions":
                    return self._send(*fake.chat(body))
                return self._send(404, {"error": {"message": f"no route {self.path}"}})

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def embeddings(self, body: dict) -> tuple[int, dict]:
        inputs = body["input"]
        if len(inputs) > 2048:
            self.problems.append(f"{len(inputs)} inputs in one request")
            return 400, {"error": {"message": "'input' : maximum 2048 items", "type": "x"}}
        # input "text N" -> 3 * [N + 1, 1]: the direction encodes N, the norm is not 1
        data = [
            {"object": "embedding", "index": i, "embedding": [3.0 * (int(t.split()[-1]) + 1), 3.0]}
            for i, t in enumerate(inputs)
        ]
        usage = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
        payload = {"object": "list", "data": data[::-1], "model": body["model"], "usage": usage}
        return 200, payload

    def chat(self, body: dict) -> tuple[int, dict]:
        prompt = "\n".join(m["content"] for m in body["messages"])
        missing = [t for t in self.expect_in_prompt if t not in prompt]
        if missing:
            self.problems.append(f"prompt lacks {len(missing)} retrieved chunk texts")
            return 400, {"error": {"message": "prompt lacks the retrieved chunks", "type": "x"}}
        message = {"role": "assistant", "content": CANNED_ANSWER}
        return 200, {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": len(prompt) // 4,
                "completion_tokens": 12,
                "total_tokens": len(prompt) // 4 + 12,
            },  # fmt: skip
        }

    def prompts(self) -> list[str]:
        return [
            "\n".join(m["content"] for m in body["messages"])
            for path, body in self.requests
            if path == "/v1/chat/completions"
        ]


@pytest.fixture
def fake_openai():
    fake = FakeOpenAI()
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        fake.thread.join(timeout=5)


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
    retriever = Retriever(platform.resources["chroma"], platform.resources["embeddings"])
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
