"""The RAG index against a real Chroma server (``chroma run`` on loopback), not the folder.

The server is the venv's own ``chroma`` executable (same chromadb version as the client),
started once for the module on a free 127.0.0.1 port with a temp data folder
(``chroma_server.py``, shared with the other tests that need a server).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from llm_data_platform_tests.chroma_server import ChromaServer
from llm_data_platform_tests.chroma_server import chroma_server as start_chroma_server

DAY = "2026-01-05"
TINY_DEMO = dict(conversations_per_day=4, n_topics=3, n_modules=1, seed=11)


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory) -> Iterator[ChromaServer]:
    root = tmp_path_factory.mktemp("chroma_server")
    with start_chroma_server(root / "data", log=root / "server.log") as server:
        yield server


def test_upsert_query_delete_round_trip(chroma_server: ChromaServer):
    from llm_data_platform.resources.chroma import ChromaResource

    resource = ChromaResource(
        host=chroma_server.host, port=chroma_server.port, collection_prefix="roundtrip"
    )
    assert resource.location == f"http://127.0.0.1:{chroma_server.port}"
    assert resource.get_client().heartbeat() > 0
    collection = resource.get_collection("tiny-model", 4, create=True, slot="blue")
    assert collection.name == "roundtrip-tiny-model-4-blue"
    assert collection.metadata["embedding_model"] == "tiny-model"
    assert collection.metadata["dimension"] == 4

    vectors = np.eye(4, dtype=np.float32)[:3]
    collection.upsert(
        ids=["a", "b", "c"],
        embeddings=vectors,
        documents=["alpha text", "beta text", "gamma text"],
        metadatas=[{"doc_id": "d1"}, {"doc_id": "d2"}, {"doc_id": "d3"}],
    )
    hits = collection.query(
        query_embeddings=np.array([[0.9, 0.1, 0.0, 0.0]], dtype=np.float32),
        n_results=2,
        include=["documents", "metadatas", "distances"],
    )
    assert hits["ids"][0] == ["a", "b"]
    assert hits["documents"][0][0] == "alpha text" and hits["metadatas"][0][0]["doc_id"] == "d1"

    # an upsert of an existing id replaces it
    collection.upsert(ids=["a"], embeddings=vectors[2:3], documents=["alpha v2"])
    assert collection.get(ids=["a"])["documents"] == ["alpha v2"]

    collection.delete(ids=["b"])
    # a second client (a new connection to the same server) sees the same state
    other = ChromaResource(
        host=chroma_server.host, port=chroma_server.port, collection_prefix="roundtrip"
    )
    again = other.get_collection("tiny-model", 4, create=False, slot="blue")
    assert again is not None and again.count() == 2
    assert sorted(again.get()["ids"]) == ["a", "c"]
    assert other.get_collection("tiny-model", 4, create=False, slot="green") is None


def _server_platform(root: Path, server: ChromaServer):
    """A tiny demo platform in temp folders whose Chroma is the server (LDP_CHROMA_HOST)."""
    import dagster as dg

    from llm_data_platform.definitions import build_resources
    from llm_data_platform.demo import generate_demo
    from llm_data_platform_tests.conftest import Platform, platform_env, settings_for

    env = {
        **platform_env(root),
        "LDP_CHROMA_HOST": server.host,
        "LDP_CHROMA_PORT": str(server.port),
    }
    Path(env["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    settings = settings_for(env)
    truth = generate_demo(settings.landing_dir, [date.fromisoformat(DAY)], **TINY_DEMO)
    resources = build_resources(settings)
    return Platform(root, env, settings, resources, truth, dg.DagsterInstance.ephemeral())


def _metadata(result, asset: str) -> dict:
    import dagster as dg

    [event] = result.asset_materializations_for_node(asset)
    return {
        k: (v.value if isinstance(v, dg.MetadataValue) else v) for k, v in event.metadata.items()
    }


def test_rag_index_syncs_the_server_to_the_manifest(chroma_server: ChromaServer, tmp_path):
    import dagster as dg

    from llm_data_platform.defs.rag.index import read_manifest
    from llm_data_platform.lib.index_slots import read_entries as existing_entries
    from llm_data_platform.resources.chroma import ChromaResource
    from llm_data_platform_tests.conftest import graph_for, materialize_daily

    platform = _server_platform(tmp_path / "platform", chroma_server)
    chroma = platform.resources["chroma"]
    assert chroma.host == "127.0.0.1" and chroma.port == chroma_server.port

    daily = materialize_daily(platform, [DAY])
    assert daily.success

    def build_index() -> dg.ExecuteInProcessResult:
        return dg.materialize(
            graph_for(platform.settings),
            selection=dg.AssetSelection.assets("rag_index"),
            resources=platform.resources,
            instance=platform.instance,
            raise_on_error=False,
        )

    first = build_index()
    assert first.success, [e.message for e in first.all_events if e.is_failure]
    checks = {e.check_name: e.passed for e in first.get_asset_check_evaluations()}
    assert checks.get("rag_index_matches_manifest") is True, checks
    meta = _metadata(first, "rag_index")
    assert meta["location"] == f"http://127.0.0.1:{chroma_server.port}"
    assert meta["upserted"] > 0

    manifest = read_manifest(platform.resources["lake"])
    assert manifest is not None and manifest.num_rows > 0
    expected = set(manifest["chunk_id"].to_pylist())
    assert len(expected) == manifest.num_rows == meta["upserted"]

    # read back over a fresh connection: the data is in the server, not in this process
    embeddings = platform.resources["embeddings"]
    fresh = ChromaResource(
        host=chroma_server.host,
        port=chroma_server.port,
        collection_prefix=chroma.collection_prefix,
    )
    [held_collection] = [
        c for c in fresh.get_client().list_collections() if c.name == meta["collection"]
    ]
    collection = fresh.get_client().get_collection(held_collection.name, embedding_function=None)
    held = existing_entries(collection)
    assert set(held) == expected
    assert collection.count() == len(expected)
    versions = dict(
        zip(manifest["chunk_id"].to_pylist(), manifest["version"].to_pylist(), strict=True)
    )
    assert all(held[cid]["version"] == versions[cid] for cid in expected)
    assert not Path(platform.settings.chroma_path).exists()  # nothing went to the folder

    # the server answers a real query with the index's own vectors
    some_id = sorted(expected)[0]
    got = collection.get(ids=[some_id], include=["embeddings", "documents"])
    vector = np.asarray(got["embeddings"][0], dtype=np.float32)
    assert vector.shape == (embeddings.dimension,)
    hits = collection.query(query_embeddings=vector[None, :], n_results=1)
    assert hits["ids"][0] == [some_id]

    # an idempotent re-sync: the index already holds the manifest, nothing is re-sent
    second = build_index()
    assert second.success
    again = _metadata(second, "rag_index")
    assert again["upserted"] == 0 and again["deleted"] == 0
    assert set(existing_entries(collection)) == expected
