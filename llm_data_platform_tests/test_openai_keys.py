"""OPENAI_API_KEY reaches OpenAI-compatible servers, its failures say what happened, and the
key never lands in the event log or the lake.

Against the local OpenAI-speaking server of fake_openai.py (127.0.0.1), here told to
require a bearer key and to embed any text (8-d vectors from a hash of the text).
"""

from __future__ import annotations

import hashlib
import socket
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from llm_data_platform.definitions import build_resources
from llm_data_platform.resources.embeddings import EmbeddingsResource
from llm_data_platform.settings import load_settings
from llm_data_platform_tests.conftest import DAYS, Platform, graph_for, platform_env, stage
from llm_data_platform_tests.fake_openai import FakeOpenAI, serving

KEY = "sk-test-SECRET123"
SECRET = b"SECRET123"
MODEL = "fake-embed-8"  # not a known OpenAI model: the dimension is probed from the server


class AnyTextOpenAI(FakeOpenAI):
    """Embeds any text (the parent decodes only "text N")."""

    def embeddings(self, body: dict) -> tuple[int, dict]:
        data = [
            {"object": "embedding", "index": i, "embedding": _vector(text)}
            for i, text in enumerate(body["input"])
        ]
        usage = {"prompt_tokens": len(data), "total_tokens": len(data)}
        return 200, {"object": "list", "data": data, "model": body["model"], "usage": usage}


def _vector(text: str) -> list[float]:
    return [b + 1.0 for b in hashlib.sha256(text.encode()).digest()[:8]]


@pytest.fixture
def server():
    with serving(AnyTextOpenAI()) as fake:
        yield fake


def _env(server: FakeOpenAI, key: str | None) -> dict[str, str]:
    env = {
        "LDP_EMBEDDING_PROVIDER": "openai",
        "OPENAI_BASE_URL": server.url,
        "LDP_EMBEDDING_MODEL": MODEL,
    }
    return {**env, "OPENAI_API_KEY": key} if key else env


def _embeddings(server, monkeypatch, key: str | None) -> EmbeddingsResource:
    """The resource as build_resources makes it for a process with this environment."""
    if key:
        monkeypatch.setenv("OPENAI_API_KEY", key)
    else:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    resource = build_resources(load_settings(_env(server, key)))["embeddings"]
    return resource.model_copy(update={"max_retries": 0})


def test_the_key_reaches_a_compatible_server(server, monkeypatch):
    server.required_key = KEY
    vectors = _embeddings(server, monkeypatch, KEY).embed(["what is a list?"])
    assert vectors.shape == (1, 8)
    assert server.authorizations == [f"Bearer {KEY}"]


def test_without_a_key_a_placeholder_goes_and_a_keyless_server_answers(server, monkeypatch):
    vectors = _embeddings(server, monkeypatch, None).embed(["what is a list?"])
    assert vectors.shape == (1, 8)
    assert server.authorizations == ["Bearer not-needed"]


def test_a_keyed_server_without_a_key_says_none_was_sent(server, monkeypatch):
    server.required_key = KEY
    with pytest.raises(dg.Failure) as failure:
        _embeddings(server, monkeypatch, None).embed(["what is a list?"])
    message = failure.value.description
    assert f"The server at {server.url} (OPENAI_BASE_URL) wants a key" in message
    assert "none was sent: OPENAI_API_KEY is not set" in message
    assert "Check OPENAI_API_KEY." not in message  # what it said before, whatever the cause


def test_a_rejected_key_names_the_server_and_stays_out_of_the_message(server, monkeypatch):
    server.required_key = "sk-the-right-one"
    with pytest.raises(dg.Failure) as failure:
        _embeddings(server, monkeypatch, KEY).embed(["what is a list?"])
    message = failure.value.description
    assert f"The server at {server.url} (OPENAI_BASE_URL) rejected the key sent" in message
    assert "OPENAI_API_KEY" in message and "401" in message
    assert "SECRET123" not in message  # the server echoed it; the message does not
    assert failure.value.__cause__ is None and failure.value.__suppress_context__
    assert server.authorizations == [f"Bearer {KEY}"]


def test_connection_refused_names_the_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # closed once the block ends
    resource = EmbeddingsResource(provider="openai", model=MODEL, base_url=url, max_retries=0)
    with pytest.raises(dg.Failure, match=f"Could not connect to the server at {url}"):
        resource.embed(["what is a list?"])


def test_openai_itself_needs_a_key():
    resource = EmbeddingsResource(provider="openai", model="text-embedding-3-small")
    with pytest.raises(dg.Failure, match="needs OPENAI_API_KEY"):
        resource.embed(["what is a list?"])


def _files_holding(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def _materialize_documents(
    root: Path, server: FakeOpenAI, instance: dg.DagsterInstance
) -> tuple[dg.ExecuteInProcessResult, Path]:
    """Demo documents landed under ``root``, staged, then raw → clean → chunks → embeddings
    of one day through the openai provider; the result and the lake root."""
    from llm_data_platform.demo import generate_demo

    env = {**platform_env(root), **_env(server, KEY)}
    settings = load_settings(env)
    day = DAYS[0]
    truth = generate_demo(settings.landing_dir, [date.fromisoformat(day)], 4, 3, 1)
    platform = Platform(root, env, settings, build_resources(settings), truth, instance)
    stage(platform)
    assets = ["raw_documents", "documents_clean", "document_chunks", "chunk_embeddings"]
    result = dg.materialize(
        graph_for(settings),
        selection=dg.AssetSelection.assets(*assets).required_multi_asset_neighbors(),
        resources=platform.resources,
        instance=instance,
        partition_key=day,
        raise_on_error=False,
    )
    return result, Path(settings.lake_root)


def test_a_materialization_keeps_the_key_out_of_the_event_log_and_the_lake(
    server, monkeypatch, tmp_path
):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # what dg.EnvVar reads inside the run
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.DagsterInstance.local_temp(str(home)) as instance:
        server.required_key = KEY
        result, lake = _materialize_documents(tmp_path / "ok", server, instance)
        assert result.success
        (embedded,) = result.asset_materializations_for_node("chunk_embeddings")
        assert embedded.metadata["embedded"].value > 0
        assert set(server.authorizations) == {f"Bearer {KEY}"}
        # a failing run too: the server rejects the key and echoes it in its 401 body
        server.required_key = "sk-the-right-one"
        failed, failed_lake = _materialize_documents(tmp_path / "rejected", server, instance)
        assert not failed.success
        (failure,) = [e for e in failed.all_events if e.is_step_failure]
        assert "rejected the key" in str(failure.event_specific_data.error)
        logged = [r.message for r in instance.all_logs(failed.run_id)]
        assert logged and not [m for m in logged if "SECRET123" in m]
    assert any(lake.rglob("*.parquet")) and any(failed_lake.rglob("*.parquet"))
    assert _files_holding(home, b"chunk_embeddings")  # the grep does reach the event log
    for root in (lake, failed_lake, home):
        assert _files_holding(root, SECRET) == [], root
