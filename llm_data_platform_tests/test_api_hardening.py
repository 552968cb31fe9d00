"""The retrieval API against hostile and malformed requests: no 5xx, no input echoed back,
bounded memory, docs and token as configured.

The app runs over a real Chroma collection (a temp folder) with a deterministic fake embedder,
so every filter goes through Chroma's own parser without loading the embedding model. One test
starts a real uvicorn on 127.0.0.1 to measure the server's memory under a 200 MB body.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_data_platform.resources.chroma import ChromaResource
from llm_data_platform.retrieval import Retriever
from llm_data_platform.serving.answer import ChatConfig
from llm_data_platform.serving.api import MAX_QUESTION_CHARS, create_app

CANARY = "Qz7echo"  # planted in fuzzed input; it must never come back in a response
JSON = {"content-type": "application/json"}
TOKEN = "s3cret-token-for-tests"
FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,  # no .hypothesis/ folder in the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class FakeEmbeddings:
    """Deterministic 8-d vectors from a hash of the text: no model to load."""

    model_id = "fake:hash"
    dimension = 8

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
            v = np.frombuffer(digest[:8], dtype=np.uint8).astype("f4") + 1.0
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dimension)


def make_retriever(path: str) -> Retriever:
    """A live index of 30 chunks over three documents, as rag_index_live leaves one."""
    chroma = ChromaResource(path=path)
    embeddings = FakeEmbeddings()
    collection = chroma.slot_collection(embeddings.model_id, 8, "blue", create=True)
    texts = [f"chunk {i} about lists, dictionaries and try/except" for i in range(30)]
    collection.add(
        ids=[f"c{i}" for i in range(30)],
        documents=texts,
        embeddings=embeddings.embed(texts).tolist(),
        metadatas=[
            {"doc_id": f"kb/{i % 3}", "version": "v1", "source_uri": f"kb/{i % 3}.md", "n": i}
            for i in range(30)
        ],
    )
    chroma.promote(embeddings.model_id, 8, "blue", 1)
    return Retriever(chroma, embeddings)


@pytest.fixture(scope="module")
def retriever(tmp_path_factory) -> Retriever:
    return make_retriever(str(tmp_path_factory.mktemp("chroma")))


def _client(retriever: Retriever, **options) -> TestClient:
    app = create_app(retriever, chat=ChatConfig(api_key=None, base_url=None), **options)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(retriever):
    with _client(retriever) as test_client:
        yield test_client


def assert_safe(response: httpx.Response, *echo: str) -> None:
    """Not a server error, a short JSON body when refused, and none of ``echo`` in it."""
    assert response.status_code < 500, response.text[:300]
    if response.status_code >= 400:
        assert len(response.content) < 2048, response.content[:300]
        assert response.json()["detail"]
    for text in (CANARY, *echo):
        assert text not in response.text


# -- each measured problem ----------------------------------------------------------------------
def test_ten_megabyte_question_is_refused_before_it_is_read(client):
    question = "a" * 10_000_000
    response = client.post("/search", json={"question": question})
    assert response.status_code == 413
    assert len(response.content) < 100 and "aaaaaaaa" not in response.text

    def chunked():  # no Content-Length: the cap counts the bytes as they arrive
        yield b'{"question": "'
        for _ in range(10):
            yield b"a" * 1_000_000
        yield b'"}'

    response = client.post("/search", content=chunked(), headers=JSON)
    assert response.status_code == 413 and len(response.content) < 100


def test_ten_megabyte_question_under_a_larger_limit_is_a_422_without_echo(retriever):
    with _client(retriever, max_body_bytes=32_000_000) as client:
        response = client.post("/search", json={"question": "a" * 10_000_000})
    assert response.status_code == 422
    assert len(response.content) < 300 and "aaaaaaaa" not in response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "question"] and "input" not in error


def test_question_and_k_bounds(client):
    ok = client.post("/search", json={"question": "é" * MAX_QUESTION_CHARS, "k": 100})
    assert ok.status_code == 200, ok.text
    for payload in (
        {"question": "x" * (MAX_QUESTION_CHARS + 1)},
        {"question": "lists", "k": 0},
        {"question": "lists", "k": 101},
    ):
        response = client.post("/search", json=payload)
        assert response.status_code == 422
        assert_safe(response, "x" * 100)


@pytest.mark.parametrize(
    "body, status",
    [
        (b'{"question": "\\ud800 lists"}', 422),
        (b'{"question": "lists", "where": {"doc_id": "\\udfff"}}', 400),
        (b'{"question": "lists", "where": {"\\ud800": "kb/1"}}', 400),
        (b'{"question": "lists", "where": {"doc_id": {"$in": ["kb/1", "\\ud83d"]}}}', 400),
    ],
)
def test_lone_surrogates_are_refused_not_a_500(client, body, status):
    response = client.post("/search", content=body, headers=JSON)
    assert response.status_code == status, response.text
    assert_safe(response)


def test_hundred_deep_and_is_a_400(client):
    where = {"doc_id": "kb/1"}
    for _ in range(100):
        where = {"$and": [where, {"doc_id": "kb/1"}]}
    response = client.post("/search", json={"question": "lists", "where": where})
    assert response.status_code == 400 and "nested deeper" in response.json()["detail"]
    assert_safe(response)
    shallow = {"$and": [{"doc_id": "kb/1"}, {"$or": [{"n": {"$gte": 3}}, {"n": 0}]}]}
    response = client.post("/search", json={"question": "lists", "where": shallow})
    assert response.status_code == 200
    assert {h["doc_id"] for h in response.json()["hits"]} == {"kb/1"}


def test_empty_where_is_no_filter_whether_cached_or_not(client):
    unfiltered = client.post("/search", json={"question": "first time asked"})
    empty_cached = client.post("/search", json={"question": "first time asked", "where": {}})
    empty_fresh = client.post("/search", json={"question": "never asked before", "where": {}})
    again = client.post("/search", json={"question": "never asked before"})
    for response in (unfiltered, empty_cached, empty_fresh, again):
        assert response.status_code == 200, response.text
    assert empty_cached.json()["cached"] and not empty_fresh.json()["cached"]
    assert empty_cached.json()["hits"] == unfiltered.json()["hits"]
    assert again.json()["cached"] and again.json()["hits"] == empty_fresh.json()["hits"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"question": ',
        b"",
        b"null",
        b"[]",
        b'"lists"',
        b'{"question": "lists", "k": 1e400}',
        b'{"question": "lists", "k": NaN}',
        b'{"question": "lists", "k": ' + b"9" * 5000 + b"}",
        b'{"question": "lists", "k": "five"}',
        b'{"question": ["lists"]}',
        b'{"question": 42}',
        b'{"question": "lists", "hybrid": [1]}',
        b'{"question": "lists", "where": [1]}',
        b'{"question": "lists", "where": {"doc_id": NaN}}',
        b'{"question": "lists", "where": {"doc_id": Infinity}}',
        b'{"question": "lists", "where": {"n": 99999999999999999999}}',
        b'{"question": "lists", "where": {"doc_id": null}}',
        b'{"question": "lists", "where": {"doc_id": {"$eq": [1]}}}',
        b'{"question": "lists", "where": {"doc_id": {"$in": []}}}',
        b'{"question": "lists", "where": {"doc_id": {"$in": [1, true]}}}',
        b'{"question": "lists", "where": {"n": {"$gt": true}}}',
        b'{"question": "lists", "where": {"$and": [{"doc_id": "kb/1"}]}}',
        b'{"question": "lists", "where": {"doc_id": "kb/1", "n": 1}}',
        b'{"question": "lists", "where": {"$nosuchop": 1}}',
        b'{"question": "lists", "where": {"#document": "chunk"}}',
        b'{"question": "lists", "where": {"doc_id": {"$gt": 1, "$lt": 3}}}',
        b'{"question": "lists", "where": {"$or": ['
        + b",".join(b'{"doc_id": "kb/%d"}' % i for i in range(5000))
        + b"]}}",
        b"[" * 30_000 + b"]" * 30_000,
        b'{"question": "lists", "where": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}",
        b"\xff\xfe\x00garbage",
    ],
)
def test_malformed_requests_are_4xx(client, body):
    response = client.post("/search", content=body, headers=JSON)
    assert 400 <= response.status_code < 500, (body[:80], response.status_code, response.text)
    assert_safe(response)


def test_validation_errors_name_fields_not_values(client):
    response = client.post("/search", json={"question": 42, "k": "many", f"{CANARY}x": 1})
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert {tuple(e["loc"]) for e in errors} == {("body", "question"), ("body", "k")}
    assert all(set(e) == {"loc", "msg", "type"} for e in errors)
    assert_safe(response, "many")


def test_docs_are_off_by_default_and_on_when_enabled(client, retriever):
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(path).status_code == 404
    with _client(retriever, docs=True) as docs_client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert docs_client.get(path).status_code == 200, path
        assert "/search" in docs_client.get("/openapi.json").json()["paths"]


def test_token_is_required_when_set(retriever):
    payload = {"question": "lists", "k": 2}
    with _client(retriever, api_token=TOKEN) as client:
        assert client.post("/search", json=payload).status_code == 401
        assert client.get("/health").status_code == 401
        for header in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer ", "Bearer"):
            response = client.post("/search", json=payload, headers={"Authorization": header})
            assert response.status_code == 401, header
            assert response.headers["www-authenticate"] == "Bearer"
            assert TOKEN not in response.text
        # checked before the body is read: an unauthenticated 10 MB body is a 401, not a 413
        big = client.post("/search", json={"question": "a" * 10_000_000})
        assert big.status_code == 401 and len(big.content) < 200
        good = {"Authorization": f"Bearer {TOKEN}"}
        response = client.post("/search", json=payload, headers=good)
        assert response.status_code == 200 and len(response.json()["hits"]) == 2
        assert (
            client.get("/health", headers={"authorization": f"bearer {TOKEN}"}).status_code == 200
        )
    with _client(retriever) as open_client:  # no token set: no authentication
        assert open_client.post("/search", json=payload).status_code == 200


def test_ldp_serve_passes_the_api_settings(retriever, monkeypatch, capsys):
    """`ldp serve` hands LDP_API_TOKEN, LDP_API_DOCS and LDP_API_MAX_BODY_BYTES to create_app
    and binds 127.0.0.1 unless told otherwise."""
    import uvicorn

    from llm_data_platform import retrieval
    from llm_data_platform.cli import main

    served = {}
    monkeypatch.setattr(retrieval, "retriever_from_settings", lambda: retriever)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    monkeypatch.setenv("LDP_API_TOKEN", TOKEN)
    monkeypatch.setenv("LDP_API_DOCS", "true")
    monkeypatch.setenv("LDP_API_MAX_BODY_BYTES", "1000")
    assert main(["serve"]) == 0
    assert served["host"] == "127.0.0.1"
    assert "bearer token required" in capsys.readouterr().out
    with TestClient(served["app"]) as client:
        assert client.get("/health").status_code == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert client.get("/openapi.json", headers=auth).status_code == 200
        big = client.post("/search", json={"question": "a" * 2000}, headers=auth)
        assert big.status_code == 413


# -- property-based fuzzing of the body ------------------------------------------------------------
def _texts() -> st.SearchStrategy[str]:
    any_char = st.characters(codec=None) | st.characters(categories=["Cs"])  # lone surrogates
    plain = st.text(alphabet=any_char, max_size=30)
    return plain | plain.map(lambda t: CANARY + t) | st.sampled_from(["lists", "try except", ""])


def _scalars() -> st.SearchStrategy:
    return (
        st.none()
        | st.booleans()
        | st.integers()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats(allow_nan=True, allow_infinity=True)
        | _texts()
    )


def _json_values() -> st.SearchStrategy:
    return st.recursive(
        _scalars(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_texts(), inner, max_size=4),
        max_leaves=25,
    )


OPERATORS = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$contains", "$bad"]
FIELDS = ["doc_id", "version", "n", "", "#document", "$and", "$or", "$in", "a" * 200]


def _one(keys: st.SearchStrategy, values: st.SearchStrategy) -> st.SearchStrategy[dict]:
    """Mostly one-key objects, as the grammar wants; sometimes none or two."""
    return st.builds(lambda k, v: {k: v}, keys, values) | st.dictionaries(keys, values, max_size=2)


def _wheres() -> st.SearchStrategy:
    """Filters near Chroma's grammar: real fields and operators, lists of one type, with
    every kind of wrong value mixed in."""
    field = st.sampled_from(["doc_id", "n", "version"]) | st.sampled_from(FIELDS) | _texts()
    scalar = st.sampled_from(["kb/0", "kb/1", "v1"]) | st.integers(0, 40) | _scalars()
    operand = (
        scalar
        | st.lists(st.sampled_from(["kb/0", "kb/1", "kb/2"]), min_size=1, max_size=3)
        | st.lists(st.integers(0, 40), min_size=1, max_size=3)
        | st.lists(scalar, max_size=5)
    )
    condition = scalar | _one(st.sampled_from(OPERATORS) | _texts(), operand)
    return st.recursive(
        _one(field, condition),
        lambda inner: (
            _one(st.sampled_from(["$and", "$or"]), st.lists(inner, max_size=4))
            | _one(field, inner | st.lists(inner, max_size=3))
        ),
        max_leaves=12,
    )


def _valid_wheres() -> st.SearchStrategy:
    """Filters the API's checks accept: Chroma must accept every one of them too."""
    text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
    kinds = [
        text,
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
    ]
    scalar = st.one_of(kinds)
    number = kinds[1] | kinds[2]
    condition = st.one_of(
        scalar,
        st.builds(lambda op, v: {op: v}, st.sampled_from(["$eq", "$ne", "$contains"]), scalar),
        st.builds(lambda op, v: {op: v}, st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), number),
        st.builds(
            lambda op, v: {op: v},
            st.sampled_from(["$in", "$nin"]),
            st.one_of([st.lists(kind, min_size=1, max_size=4) for kind in kinds]),
        ),
    )
    field = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.:-]{0,20}", fullmatch=True)
    return st.recursive(
        st.builds(lambda f, c: {f: c}, field, condition),
        lambda inner: st.builds(
            lambda op, xs: {op: xs},
            st.sampled_from(["$and", "$or"]),
            st.lists(inner, min_size=2, max_size=3),
        ),
        max_leaves=8,
    )


def _bodies() -> st.SearchStrategy:
    request = st.fixed_dictionaries(
        {"question": _texts() | _json_values()},
        optional={
            "k": st.integers(min_value=-5, max_value=200) | _json_values(),
            "where": _wheres() | _json_values(),
            "hybrid": st.booleans() | _json_values(),
            CANARY: _json_values(),
        },
    )
    return request | _json_values()


@FUZZ
@given(body=_bodies())
def test_fuzzed_json_bodies_never_5xx_nor_echo(client, body):
    data = json.dumps(body, ensure_ascii=True).encode()  # NaN, Infinity, \\ud800 escapes
    assert_safe(client.post("/search", content=data, headers=JSON))


@FUZZ
@given(where=_wheres(), hybrid=st.booleans(), k=st.integers(min_value=1, max_value=100))
def test_fuzzed_where_filters_never_5xx_nor_echo(client, where, hybrid, k):
    """A valid question, so that every filter reaches the checks and, if it passes, Chroma."""
    data = json.dumps({"question": "lists", "k": k, "where": where, "hybrid": hybrid})
    response = client.post("/search", content=data.encode(), headers=JSON)
    assert_safe(response)
    assert response.status_code in {200, 400}, response.text


@FUZZ
@given(where=_valid_wheres(), hybrid=st.booleans())
def test_filters_the_checks_accept_chroma_accepts(client, where, hybrid):
    """The checks are no looser than Chroma: what passes them is answered, never refused."""
    response = client.post("/search", json={"question": "lists", "where": where, "hybrid": hybrid})
    assert response.status_code == 200, (where, response.text)


@FUZZ
@given(
    raw=st.binary(max_size=300) | _bodies().map(lambda b: json.dumps(b).encode()[:-1]),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "application/x-www-form-urlencoded", ""]
    ),
)
def test_fuzzed_raw_bodies_never_5xx_nor_echo(client, raw, content_type):
    headers = {"content-type": content_type} if content_type else {}
    assert_safe(client.post("/search", content=CANARY.encode() + raw, headers=headers))


# -- a real server: memory under a 200 MB body --------------------------------------------------
def _serve(chroma_path: str, port: int) -> None:
    """Entry point of the server subprocess."""
    import uvicorn

    app = create_app(make_retriever(chroma_path), chat=ChatConfig())
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb(pid: int) -> tuple[int, int]:
    """(current, peak) resident memory of a process, in MB."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(status["VmRSS"].split()[0]) // 1024, int(status["VmHWM"].split()[0]) // 1024


def test_real_server_memory_stays_flat_under_a_200_megabyte_body(tmp_path):
    port = _free_port()
    code = "import sys; from llm_data_platform_tests.test_api_hardening import _serve; " \
        "_serve(sys.argv[1], int(sys.argv[2]))"  # fmt: skip
    root = Path(__file__).parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "chroma"), str(port)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        _, peak_before = _memory_mb(proc.pid)
        body = b'{"question": "' + b"a" * 200_000_000 + b'"}'
        try:
            response = httpx.post(f"{url}/search", content=body, headers=JSON, timeout=60)
            assert response.status_code == 413 and len(response.content) < 100
        except httpx.TransportError:
            pass  # the server answered 413 and closed while the client was still sending
        del body

        def chunked():
            yield b'{"question": "'
            for _ in range(200):
                yield b"a" * 1_000_000
            yield b'"}'

        try:
            response = httpx.post(f"{url}/search", content=chunked(), headers=JSON, timeout=60)
            assert response.status_code == 413
        except httpx.TransportError:
            pass
        _, peak_after = _memory_mb(proc.pid)
        assert peak_after - peak_before < 50, (peak_before, peak_after)
        ok = httpx.post(f"{url}/search", json={"question": "lists"}, timeout=10)
        assert ok.status_code == 200 and ok.json()["hits"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
