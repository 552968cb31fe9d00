"""The local model's runtimes (torch, onnx, onnx-int8): the same vector space where promised,
an offline export made once, and vectors of two backends never mixed in the cache or index."""

from __future__ import annotations

import os

import dagster as dg
import numpy as np
import pytest

from llm_data_platform.lib.embedding_cache import EmbeddingCache
from llm_data_platform.lib.onnx_embedder import FP32_FILE, INT8_FILE, export_folder
from llm_data_platform.resources.chroma import collection_name
from llm_data_platform.resources.embeddings import EmbeddingsResource, load_local_model
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.transforms.tokenizer import count_tokens, model_dir

TEXTS = [
    "What does the assert statement do?",
    "The try statement specifies exception handlers and/or cleanup code for a group of statements.",
    # far beyond the 256-word-piece window: every backend must truncate the same way
    " ".join(f"word{i} and the interpreter's evaluation order" for i in range(200)),
]


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="module")
def vectors(onnx_dir) -> dict[str, np.ndarray]:
    return {
        backend: EmbeddingsResource(backend=backend, onnx_dir=onnx_dir).embed(TEXTS)
        for backend in ("torch", "onnx", "onnx-int8")
    }


def test_the_long_text_really_exceeds_the_window():
    assert count_tokens([TEXTS[2]])[0] > 600


def test_onnx_fp32_gives_torchs_vectors(vectors):
    cosine = (vectors["onnx"] * vectors["torch"]).sum(axis=1)
    assert cosine.min() > 0.9999, cosine
    assert np.allclose(np.linalg.norm(vectors["onnx"], axis=1), 1.0, atol=1e-5)


def test_int8_is_quantized_but_close(vectors, onnx_dir):
    cosine = (vectors["onnx-int8"] * vectors["torch"]).sum(axis=1)
    assert cosine.min() > 0.97, cosine  # per-channel weights (per-tensor gave ~0.94)
    assert cosine.max() < 0.9999, "int8 vectors equal fp32's: the quantized graph is not used"
    folder = export_folder(onnx_dir, "all-MiniLM-L6-v2", model_dir())
    assert (
        os.path.getsize(os.path.join(folder, INT8_FILE))
        < os.path.getsize(os.path.join(folder, FP32_FILE)) / 3
    )


def test_the_export_fuses_attention_and_quantizes_per_channel(vectors, onnx_dir):
    import onnx

    folder = export_folder(onnx_dir, "all-MiniLM-L6-v2", model_dir())
    fused = {n.op_type for n in onnx.load(os.path.join(folder, FP32_FILE)).graph.node}
    assert {"Attention", "SkipLayerNormalization", "BiasGelu"} <= fused
    int8 = onnx.load(os.path.join(folder, INT8_FILE)).graph
    scales = [t for t in int8.initializer if t.name.endswith("_scale") and t.dims]
    assert scales and all(t.dims[0] > 1 for t in scales), "weights are not per channel"


def test_order_and_batches_do_not_change_vectors(vectors, onnx_dir):
    resource = EmbeddingsResource(backend="onnx", onnx_dir=onnx_dir, batch_size=1)
    again = resource.embed(list(reversed(TEXTS)))[::-1]
    assert np.allclose(again, vectors["onnx"], atol=1e-5)


def test_the_export_is_made_once_and_reused(vectors, onnx_dir):
    folder = export_folder(onnx_dir, "all-MiniLM-L6-v2", model_dir())
    path = os.path.join(folder, INT8_FILE)
    before = os.stat(path).st_mtime_ns
    load_local_model.cache_clear()  # a new process: loads, does not export
    EmbeddingsResource(backend="onnx-int8", onnx_dir=onnx_dir).embed(["again"])
    assert os.stat(path).st_mtime_ns == before
    assert not [n for n in os.listdir(folder) if n.startswith(".tmp-")]


def test_the_model_is_loaded_once_per_process(onnx_dir):
    first = load_local_model("all-MiniLM-L6-v2", "onnx-int8", onnx_dir)
    assert load_local_model("all-MiniLM-L6-v2", "onnx-int8", onnx_dir) is first


def test_each_backend_has_its_own_vector_space_identity(onnx_dir):
    ids = {
        b: EmbeddingsResource(backend=b, onnx_dir=onnx_dir).model_id
        for b in ("torch", "onnx", "onnx-int8")
    }
    assert ids["torch"] == "local:all-MiniLM-L6-v2"  # existing caches and indexes stay valid
    assert len(set(ids.values())) == 3
    names = {collection_name("kb_chunks", i, 384, "blue") for i in ids.values()}
    assert len(names) == 3
    # an OpenAI model is not affected by the local backend setting
    assert EmbeddingsResource(provider="openai", model="m", backend="onnx").model_id == "openai:m"


def test_the_embedding_cache_never_mixes_backends(tmp_path, vectors, onnx_dir):
    lake = LakeResource(root=str(tmp_path / "lake"))
    torch_id = EmbeddingsResource(backend="torch").model_id
    int8_id = EmbeddingsResource(backend="onnx-int8", onnx_dir=onnx_dir).model_id
    torch_cache = EmbeddingCache(lake, torch_id, 384)
    int8_cache = EmbeddingCache(lake, int8_id, 384)
    assert torch_cache.directory != int8_cache.directory
    torch_cache.add(["h1", "h2"], vectors["torch"][:2])
    assert set(torch_cache.lookup(["h1", "h2"])) == {"h1", "h2"}
    assert int8_cache.lookup(["h1", "h2"]) == {}


def test_an_unknown_backend_is_a_clear_failure():
    with pytest.raises(dg.Failure, match="LDP_EMBEDDING_BACKEND='tensorrt' is unknown"):
        EmbeddingsResource(backend="tensorrt").embed(["x"])


def test_the_setting_reaches_the_resource(tmp_path):
    from llm_data_platform.definitions import build_resources
    from llm_data_platform.settings import load_settings

    env = {"LDP_HOME": str(tmp_path), "LDP_EMBEDDING_BACKEND": "ONNX", "XDG_CACHE_HOME": "/c"}
    resource = build_resources(load_settings(env))["embeddings"]
    assert resource.backend == "onnx"
    assert resource.onnx_dir == "/c/llm_data_platform/onnx"  # one export per user, not project
    assert resource.model_id == "local:all-MiniLM-L6-v2+onnx"
    env["LDP_ONNX_DIR"] = "exports"
    resource = build_resources(load_settings(env))["embeddings"]
    assert resource.onnx_dir == str(tmp_path / "exports")


def test_two_processes_at_first_use_share_one_export(tmp_path):
    """Step processes start together on a fresh machine: both succeed with the same vectors
    and leave one complete export (no half-written or temporary file)."""
    import subprocess
    import sys

    script = (
        "import sys, numpy as np\n"
        "from llm_data_platform.resources.embeddings import EmbeddingsResource\n"
        "v = EmbeddingsResource(backend='onnx-int8', onnx_dir=sys.argv[1]).embed(['same text'])\n"
        "np.save(sys.argv[2], v)\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "onnx"), str(out)])
        for out in (tmp_path / "a.npy", tmp_path / "b.npy")
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert np.array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
    (folder,) = [e for e in (tmp_path / "onnx").iterdir() if e.is_dir()]
    assert sorted(os.listdir(folder)) == ["model.onnx", "model_int8.onnx", "source.json"]
