"""The retrieval HTTP API, through FastAPI's TestClient, against the real built index."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from llm_data_platform.retrieval import Retriever
from llm_data_platform.serving.answer import ChatConfig
from llm_data_platform.serving.api import create_app
from llm_data_platform_tests.test_openai_provider import CANNED_ANSWER, fake_openai  # noqa: F401

LINEAGE = {"chunk_id", "doc_id", "version", "source_uri", "heading_path", "score"}


@pytest.fixture(scope="module")
def retriever(built) -> Retriever:
    platform, _ = built
    return Retriever(platform.resources["chroma"], platform.resources["embeddings"])


@pytest.fixture(scope="module")
def client(retriever):
    app = create_app(retriever, chat=ChatConfig(api_key=None, base_url=None))
    with TestClient(app) as test_client:
        yield test_client


def _question(built, index=0) -> tuple[str, str]:
    platform, _ = built
    live = set(platform.truth.final_doc_ids)
    return [(q, d) for q, d in platform.truth.eval_questions if d in live][index]


def test_health_reports_the_index(client, retriever, built):
    platform, _ = built
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["index_version"] == retriever.index_version
    assert body["chunks"] == retriever.collection.count() > 0
    assert body["collection"] == retriever.collection.name
    assert body["embedding_model"] == platform.resources["embeddings"].model_id
    assert body["dimension"] == 384


def test_search_returns_hits_with_lineage_version_and_timings(client, built):
    question, doc_id = _question(built)
    response = client.post("/search", json={"question": question, "k": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["hits"]) == 3 and doc_id in {h["doc_id"] for h in body["hits"]}
    for hit in body["hits"]:
        assert set(hit) >= LINEAGE and hit["chunk_id"] and hit["source_uri"] and hit["text"]
    assert body["index_version"] == client.get("/health").json()["index_version"]
    assert not body["cached"] and {"embed", "vector", "total"} <= set(body["timings_ms"])
    again = client.post("/search", json={"question": question, "k": 3}).json()
    assert again["cached"] and again["hits"] == body["hits"]


def test_search_filters_and_hybrid(client, built):
    question, _ = _question(built, 0)
    _, other_doc = _question(built, -1)
    for hybrid in (False, True):
        payload = {"question": question, "k": 4, "where": {"doc_id": other_doc}, "hybrid": hybrid}
        hits = client.post("/search", json=payload).json()["hits"]
        assert hits and {h["doc_id"] for h in hits} == {other_doc}
        assert {h["mode"] for h in hits} == {"hybrid" if hybrid else "vector"}
    body = client.post("/search", json={"question": question, "k": 3, "hybrid": True}).json()
    assert "bm25" in body["timings_ms"]


@pytest.mark.parametrize(
    "payload, status",
    [
        ({"question": ""}, 422),
        ({"question": "what is a list?", "k": 0}, 422),
        ({"k": 3}, 422),
        ({"question": "   "}, 400),
        ({"question": "what is a list?", "where": {"doc_id": {"$nosuchop": 1}}}, 400),
    ],
)
def test_search_rejects_bad_requests(client, payload, status):
    response = client.post("/search", json=payload)
    assert response.status_code == status, response.text
    assert response.json()["detail"]


def test_answer_without_a_chat_model_says_what_to_set(client, built):
    question, _ = _question(built)
    response = client.post("/answer", json={"question": question})
    assert response.status_code == 503
    assert "OPENAI_API_KEY" in response.json()["detail"]


def test_answer_cites_the_retrieved_chunks(retriever, built, fake_openai):  # noqa: F811
    question, _ = _question(built)
    hits = retriever.search(question, k=3)
    fake_openai.expect_in_prompt = [h.text.strip() for h in hits]
    app = create_app(retriever, chat=ChatConfig(model="test-chat", base_url=fake_openai.url))
    with TestClient(app) as client:
        response = client.post("/answer", json={"question": question, "k": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert not fake_openai.problems and len(fake_openai.prompts()) == 1
    assert body["answer"] == CANNED_ANSWER and body["cited"] == [1]
    assert body["model"] == "test-chat"
    assert [s["chunk_id"] for s in body["sources"]] == [h.chunk_id for h in hits]
    assert [h["chunk_id"] for h in body["hits"]] == [h.chunk_id for h in hits]
    assert "answer" in body["timings_ms"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ldp_serve_starts_the_api(built):
    """The one command: `ldp serve --host 127.0.0.1 --port N`, in a real process."""
    platform, _ = built
    port = _free_port()
    ldp = Path(sys.executable).parent / "ldp"
    proc = subprocess.Popen(
        [str(ldp), "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env={**os.environ, **platform.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.5)
        assert health is not None and health.status_code == 200, proc.poll()
        assert health.json()["chunks"] > 0
        question, doc_id = _question(built)
        url = f"http://127.0.0.1:{port}/search"
        hits = httpx.post(url, json={"question": question, "k": 3}, timeout=30).json()["hits"]
        assert doc_id in {h["doc_id"] for h in hits}
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert "serving" in out, out[-2000:]


def test_the_api_serves_texts_and_lineage_from_the_chunk_mirror(client, retriever, built):
    """The app builds the mirror at start; /search then returns what Chroma's full query
    gives (an unmirrored retriever), and /health says the mirror is ready."""
    platform, _ = built
    assert retriever.start_mirror(wait=None)
    mirror = client.get("/health").json()["chunk_mirror"]
    assert mirror["enabled"] and mirror["ready"] and mirror["chunks"] == retriever.count
    plain = Retriever(platform.resources["chroma"], platform.resources["embeddings"])
    question, _ = _question(built)
    for hybrid in (False, True):
        body = client.post("/search", json={"question": question, "k": 4, "hybrid": hybrid})
        assert body.status_code == 200, body.text
        expected = [h.as_dict() for h in plain.search(question, k=4, hybrid=hybrid)]
        assert body.json()["hits"] == expected


def test_a_serving_process_makes_openmp_passive_before_torch_loads():
    """Set before torch loads libgomp (which reads it once); an operator's own value wins."""
    code = (
        "import os; from llm_data_platform.serving.runtime import passive_openmp; "
        "print(passive_openmp(), os.environ['OMP_WAIT_POLICY']); import torch; "
        "print(passive_openmp())"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["True", "PASSIVE", "False"], out.stderr
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["True", "ACTIVE", "False"], out.stderr
