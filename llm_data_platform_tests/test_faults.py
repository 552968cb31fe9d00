"""Faults outside the code fail the run with a message naming the cause and the fix, leave the
previous version of the partition byte for byte, and a re-run after the fault is gone succeeds.

Each test materializes the real assets (``dagster.materialize``) on a tiny demo day. The raw
conversations partition is the victim of the lake faults: it first exists, then new landing
data is staged so that a successful run *would* change it, then the faulty run must leave it.

- a full disk: a real 2 MB tmpfs filled to the last page when this process may mount one
  (root with CAP_SYS_ADMIN), and everywhere an injected ENOSPC from ``fsync`` on lake files;
- a folder the process may not write: ``chmod`` for a normal user; for root, whom modes do not
  stop, the folder is made immutable (``chattr +i``), else the rename is refused by injection;
- S3: moto's server behind a fault-injecting HTTP proxy on 127.0.0.1 (503 SlowDown, 500,
  a stalled server) on the first write request, the upload's completion or the server-side
  copy; and an upload interrupted midway (pyarrow's stream would commit what it was sent);
- a Chroma server that is configured but not running (its port closed);
- the embedding model raising (torch's out-of-memory error) inside ``encode``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from llm_data_platform_tests.chroma_server import chroma_server, free_port
from llm_data_platform_tests.conftest import Platform, graph_for, platform_env, settings_for

DAY = "2026-01-05"
NEXT_DAY = "2026-01-06"
TINY_DEMO = dict(conversations_per_day=4, n_topics=3, n_modules=1, seed=11)
RAW = ("raw_conversations", "raw_conversations_quarantine")
RAW_FILE = f"raw/raw_conversations/dt={DAY}/data.parquet"
DOC_CHAIN = (
    "raw_documents",
    "raw_documents_quarantine",
    "documents_clean",
    "documents_clean_dropped",
    "document_chunks",
    "chunk_embeddings",
)


# ---- the platform ---------------------------------------------------------------------------
def _platform(root: Path, days: list[str], **env_overrides: str) -> Platform:
    from llm_data_platform.definitions import build_resources
    from llm_data_platform.demo import generate_demo

    env = {**platform_env(root), **env_overrides}
    Path(env["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    settings = settings_for(env)
    truth = generate_demo(settings.landing_dir, [date.fromisoformat(d) for d in days], **TINY_DEMO)
    return Platform(
        root, env, settings, build_resources(settings), truth, dg.DagsterInstance.ephemeral()
    )


def _run(platform: Platform, assets, partition: str | None = None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        graph_for(platform.settings),
        selection=dg.AssetSelection.assets(*assets).without_checks(),
        resources=platform.resources,
        instance=platform.instance,
        partition_key=partition,
        raise_on_error=False,
    )


def _stage(platform: Platform, stream: str = "conversations") -> None:
    staged = _run(platform, (f"{stream}_batches", f"{stream}_batches_quarantine"))
    assert staged.success, _failure(staged)


def _land_more(platform: Platform, tag: str) -> None:
    """New conversations for DAY in the landing folder (another seed: other event ids), staged:
    the raw partition a successful run writes now differs from the one in the lake."""
    from llm_data_platform.demo import generate_demo

    scratch = platform.root / f"more-{tag}"
    generate_demo(scratch, [date.fromisoformat(DAY)], **{**TINY_DEMO, "seed": 100 + len(tag)})
    target = Path(platform.settings.landing_dir) / "conversations" / DAY
    for src in sorted((scratch / "conversations" / DAY).glob("*.jsonl")):
        shutil.copyfile(src, target / f"more-{tag}-{src.name}")
    _stage(platform)


def _failure(result: dg.ExecuteInProcessResult) -> str:
    """What the user reads for the failed step: the error message of its STEP_FAILURE event."""
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    if not failures:
        return "(no step failed)"
    error = failures[0].step_failure_data.error
    return error.message.strip()


def _cause_classes(result: dg.ExecuteInProcessResult) -> list[str]:
    """The class names of the failure's chained causes (the original error must be there)."""
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    names, error = [], failure.step_failure_data.error.cause
    while error is not None:
        names.append(error.cls_name)
        error = error.cause
    return names


def _leftovers(folder: Path) -> list[str]:
    """Temp files a failed write would have left beside the partition file."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _raw_platform(root: Path, **env_overrides: str) -> tuple[Platform, Path, bytes]:
    """A platform whose raw partition for DAY exists (its bytes) and whose landing folder has
    new data for that day, staged."""
    platform = _platform(root, [DAY], **env_overrides)
    _stage(platform)
    first = _run(platform, RAW, DAY)
    assert first.success, _failure(first)
    path = Path(platform.settings.lake_root) / RAW_FILE
    before = path.read_bytes()
    _land_more(platform, "a")
    return platform, path, before


def _assert_kept(platform: Platform, path: Path, before: bytes) -> None:
    assert path.read_bytes() == before, "the failed run changed the previous version"
    assert _leftovers(path.parent) == []


def _assert_retry_replaces(platform: Platform, path: Path, before: bytes) -> None:
    retry = _run(platform, RAW, DAY)
    assert retry.success, _failure(retry)
    assert path.read_bytes() != before, "the retry should have written the new data"


# ---- a full disk ------------------------------------------------------------------------------
@contextlib.contextmanager
def _tmpfs(folder: Path, size: str) -> Iterator[Path]:
    folder.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        timeout=10,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()[:120]})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=10)


def _fill(folder: Path) -> Path:
    """Write zeros until the filesystem under ``folder`` has no page left."""
    filler = folder / "filler.bin"
    block = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(block)
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0")
    return filler


def _no_space_on_fsync(monkeypatch, lake_root: str) -> None:
    """fsync of any file under the lake fails as a full disk does (delayed allocation, NFS)."""
    real_fsync = os.fsync
    root = os.path.realpath(lake_root)

    def fsync(fd: int) -> None:
        if os.path.realpath(f"/proc/self/fd/{fd}").startswith(root + os.sep):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("how", ["tmpfs", "injected"])
def test_a_full_disk_fails_with_the_cause_and_keeps_the_partition(tmp_path, monkeypatch, how):
    with contextlib.ExitStack() as stack:
        lake_root = tmp_path / "data" / "lake"
        if how == "tmpfs":
            lake_root = stack.enter_context(_tmpfs(tmp_path / "small_disk", "2m")) / "lake"
        platform, path, before = _raw_platform(tmp_path, LDP_LAKE_ROOT=str(lake_root))

        if how == "tmpfs":
            filler = _fill(lake_root.parent)
        else:
            _no_space_on_fsync(monkeypatch, str(lake_root))
        failed = _run(platform, RAW, DAY)
        assert not failed.success
        message = _failure(failed)
        assert f"The lake at {lake_root} is full (no space left on device)" in message
        assert str(path) in message and "df -h" in message and "LDP_LAKE_ROOT" in message
        assert "The previous version is in place" in message
        assert "OSError" in _cause_classes(failed)
        _assert_kept(platform, path, before)

        if how == "tmpfs":
            filler.unlink()
        else:
            monkeypatch.undo()
        _assert_retry_replaces(platform, path, before)


# ---- a folder the process may not write ---------------------------------------------------------
@contextlib.contextmanager
def _deny_writes(folder: Path, monkeypatch) -> Iterator[str]:
    """Make ``folder`` refuse new files with a real kernel check where this process can:
    mode 0555 for a normal user, the immutable attribute for root; else inject the refusal."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield "chmod 0555"
        finally:
            folder.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    if chattr and subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode == 0:
        try:
            yield "chattr +i (root ignores modes)"
        finally:
            subprocess.run([chattr, "-i", str(folder)], capture_output=True)
        return
    real_replace = os.replace
    denied = os.path.realpath(folder)

    def replace(src, dst, *args, **kwargs):
        if os.path.realpath(os.path.dirname(dst)) == denied:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    try:
        yield "injected EACCES (root without chattr)"
    finally:
        monkeypatch.undo()


def test_a_lake_folder_it_may_not_write_fails_with_the_cause_and_keeps_the_partition(
    tmp_path, monkeypatch
):
    platform, path, before = _raw_platform(tmp_path)
    with _deny_writes(path.parent, monkeypatch) as how:
        failed = _run(platform, RAW, DAY)
        assert not failed.success, how
        message = _failure(failed)
        assert f"The lake at {platform.settings.lake_root} is not writable (permission " in (
            message
        ), (how, message)
        assert f"ls -ld {path.parent}" in message and "LDP_LAKE_ROOT" in message, message
        assert "The previous version is in place" in message
        assert path.read_bytes() == before
    _assert_kept(platform, path, before)
    _assert_retry_replaces(platform, path, before)


# ---- S3: throttling, 5xx and timeouts through a proxy in front of moto -------------------------
@dataclass
class Faults:
    """What the proxy does to matching requests: answer ``status`` (503/500) or stall."""

    status: int | None = None
    stall: bool = False
    match: str = "write"  # write: PUT/POST; complete: CompleteMultipartUpload; copy: CopyObject
    injected: int = 0
    release: threading.Event = field(default_factory=threading.Event)

    def applies(self, method: str, path: str, headers) -> bool:
        if self.status is None and not self.stall:
            return False
        if self.match == "complete":
            return method == "POST" and "uploadId=" in path
        if self.match == "copy":
            return method == "PUT" and "x-amz-copy-source" in headers
        return method in {"PUT", "POST"}

    def clear(self) -> None:
        self.status, self.stall = None, False
        self.release.set()


_S3_CODES = {500: "InternalError", 503: "SlowDown"}


def _proxy(upstream: str, faults: Faults) -> ThreadingHTTPServer:
    """An HTTP proxy on 127.0.0.1 that forwards to ``upstream`` unless ``faults`` apply."""
    host, port = upstream.removeprefix("http://").split(":")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = b""
                while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                    out += self.rfile.read(size)
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return out
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _handle(self) -> None:
            body = self._body()
            if faults.applies(self.command, self.path, self.headers):
                faults.injected += 1
                if faults.stall:  # never answer: the client's request timeout must fire
                    faults.release.wait(30)
                    self.close_connection = True
                    return
                code = _S3_CODES[faults.status]
                xml = (
                    f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                    f"<Message>injected by the test</Message><RequestId>t</RequestId></Error>"
                ).encode()
                self.send_response(faults.status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(xml)))
                self.end_headers()
                self.wfile.write(xml)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"}
            headers["Content-Length"] = str(len(body))
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            finally:
                conn.close()
            self.send_response(response.status)
            for k, v in response.getheaders():
                if k.lower() not in {"transfer-encoding", "content-length", "connection", "date"}:
                    self.send_header(k, v)
            # a HEAD answer carries the object's length, not its (empty) body's
            length = response.getheader("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", length or str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def s3_proxy(moto_endpoint) -> Iterator[tuple[str, str, Faults]]:
    import boto3

    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(
        Bucket="faults"
    )
    faults = Faults()
    server = _proxy(moto_endpoint, faults)
    yield moto_endpoint, f"http://127.0.0.1:{server.server_address[1]}", faults
    faults.clear()
    server.shutdown()
    server.server_close()


S3_ATTEMPTS = 2


def _s3_platform(root: Path, proxy: str, prefix: str) -> Platform:
    from dagster_aws.s3 import S3Resource

    from llm_data_platform.resources.io_manager import LakeIOManager
    from llm_data_platform.resources.lake import LakeResource

    platform = _platform(root, [DAY])
    lake = LakeResource(
        root=f"s3://faults/{prefix}",
        s3=S3Resource(endpoint_url=proxy, region_name="us-east-1"),
        s3_max_attempts=S3_ATTEMPTS,
        s3_connect_timeout_seconds=1,
        s3_request_timeout_seconds=1,
    )
    platform.resources.update(lake=lake, io_manager=LakeIOManager(lake=lake))
    return platform


def _object(moto: str, key: str) -> bytes:
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1")
    return s3.get_object(Bucket="faults", Key=key)["Body"].read()


def _s3_leftovers(moto: str, key: str) -> list[str]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1")
    folder = key.rsplit("/", 1)[0] + "/"
    listed = s3.list_objects_v2(Bucket="faults", Prefix=folder).get("Contents", [])
    return sorted(o["Key"] for o in listed if o["Key"].rsplit("/", 1)[1].startswith("."))


def test_an_upload_interrupted_midway_leaves_the_previous_object(s3_proxy, tmp_path, monkeypatch):
    """pyarrow's S3 stream commits what it was sent when it is closed or dropped: a run
    terminated mid-upload must not replace the good object with the part it sent."""
    from dagster_aws.s3 import S3Resource

    from llm_data_platform.resources.lake import LakeResource
    from llm_data_platform_tests.interrupted_upload import write_then_interrupt

    moto, proxy, _ = s3_proxy
    lake = LakeResource(root="s3://faults/interrupt", s3=S3Resource(endpoint_url=proxy))
    path = lake.path("raw", "t", "dt=2026-01-05", "data.parquet")
    key = path.removeprefix("faults/")
    good, new = write_then_interrupt(monkeypatch, lake, path, tmp_path)
    assert _object(moto, key) == good
    assert _s3_leftovers(moto, key) == []
    lake.write_file(path, str(new))
    assert _object(moto, key) == new.read_bytes()


@pytest.mark.parametrize(
    ("status", "stall", "match", "expected"),
    [
        (503, False, "write", "S3 returned 503 SlowDown for {uri} after 2 attempts"),
        (503, False, "complete", "S3 returned 503 SlowDown for {uri} after 2 attempts"),
        (503, False, "copy", "S3 returned 503 SlowDown for {uri} after 2 attempts"),
        (500, False, "write", "S3 returned 500 InternalError for {uri} after 2 attempts"),
        (None, True, "write", "S3 at {proxy} did not answer within 1 s for {uri} after 2 att"),
    ],
    ids=["503-slowdown", "503-on-completion", "503-on-copy", "500", "timeout"],
)
def test_s3_faults_fail_with_the_cause_and_keep_the_object(
    s3_proxy, tmp_path, status, stall, match, expected
):
    moto, proxy, faults = s3_proxy
    prefix = f"{status}-{match}-{int(stall)}"
    platform = _s3_platform(tmp_path, proxy, prefix)
    _stage(platform)
    assert _run(platform, RAW, DAY).success
    key = f"{prefix}/{RAW_FILE}"
    before = _object(moto, key)
    _land_more(platform, "a")

    faults.status, faults.stall, faults.match, faults.injected = status, stall, match, 0
    faults.release.clear()
    started = time.monotonic()
    try:
        failed = _run(platform, RAW, DAY)
    finally:
        faults.clear()
    seconds = time.monotonic() - started
    message = _failure(failed)
    assert not failed.success
    assert expected.format(uri=f"s3://faults/{key}", proxy=proxy) in message, message
    assert "The previous version is in place" in message
    assert "OSError" in _cause_classes(failed)
    assert faults.injected == S3_ATTEMPTS, "the SDK retries as configured, no more, no less"
    assert seconds < 20, f"the failure took {seconds:.1f} s"
    assert _object(moto, key) == before
    assert _s3_leftovers(moto, key) == [], "a temp object was left beside the partition"

    retry = _run(platform, RAW, DAY)
    assert retry.success, _failure(retry)
    assert _object(moto, key) != before


# ---- the embedding model raising, and a Chroma server that is down ---------------------------
class _Model:
    """A stand-in for the sentence-transformers model: deterministic unit vectors per text
    (``salt`` changes them all), or the error it raises."""

    def __init__(self, salt: int = 0, error: Exception | None = None):
        self.salt, self.error = salt, error

    def encode(self, texts, **kwargs) -> np.ndarray:
        if self.error is not None:
            raise self.error
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(f"{self.salt}:{text}".encode()).digest()[:8])
            rows.append(np.random.default_rng(seed).standard_normal(384))
        vectors = np.asarray(rows, dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _use_model(monkeypatch, model: _Model) -> None:
    from llm_data_platform.resources import embeddings

    monkeypatch.setattr(embeddings, "load_local_model", lambda *name_backend_dir: model)


TORCH_OOM = RuntimeError(
    "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: you "
    "tried to allocate 1610612736 bytes."
)


def test_the_embedding_model_raising_names_the_model_and_keeps_the_partition(tmp_path, monkeypatch):
    _use_model(monkeypatch, _Model())
    platform = _platform(tmp_path, [DAY])
    _stage(platform, "documents")
    first = _run(platform, DOC_CHAIN, DAY)
    assert first.success, _failure(first)
    lake = Path(platform.settings.lake_root)
    path = lake / f"curated/chunk_embeddings/dt={DAY}/data.parquet"
    before = path.read_bytes()
    shutil.rmtree(lake / "curated" / "embedding_cache")  # else every text is a cache hit

    _use_model(monkeypatch, _Model(error=TORCH_OOM))
    failed = _run(platform, ["chunk_embeddings"], DAY)
    assert not failed.success
    message = _failure(failed)
    model_id = platform.resources["embeddings"].model_id  # local:all-MiniLM-L6-v2[+backend]
    assert f"The embedding model {model_id} failed on a batch of" in message
    assert "RuntimeError: [enforce fail at alloc_cpu.cpp:117]" in message
    assert "Lower LDP_EMBEDDING_BATCH_SIZE (now 64)" in message
    assert "RuntimeError" in _cause_classes(failed)
    assert path.read_bytes() == before and _leftovers(path.parent) == []

    _use_model(monkeypatch, _Model(salt=1))  # healthy again (other vectors: a visible rewrite)
    retry = _run(platform, ["chunk_embeddings"], DAY)
    assert retry.success, _failure(retry)
    assert path.read_bytes() != before


def test_a_chroma_server_that_is_down_is_named_and_the_index_stays(tmp_path, monkeypatch):
    from llm_data_platform.defs.rag.index import manifest_path

    _use_model(monkeypatch, _Model())
    port = free_port()
    data = tmp_path / "chroma_server"
    platform = _platform(
        tmp_path, [DAY, NEXT_DAY], LDP_CHROMA_HOST="127.0.0.1", LDP_CHROMA_PORT=str(port)
    )
    _stage(platform, "documents")
    assert _run(platform, DOC_CHAIN, DAY).success
    lake = platform.resources["lake"]
    with chroma_server(data, port):
        first = _run(platform, ["rag_index"])
        assert first.success, _failure(first)
    manifest = Path(manifest_path(lake))
    before = manifest.read_bytes()
    # a new day of documents: a successful index run now writes another manifest
    assert _run(platform, DOC_CHAIN, NEXT_DAY).success

    failed = _run(platform, ["rag_index"])  # the server is configured, its port is closed
    assert not failed.success
    message = _failure(failed)
    assert f"The Chroma server at http://127.0.0.1:{port} is not reachable (connection " in (
        message
    ), message
    assert "chroma run --path" in message and "LDP_CHROMA_HOST" in message
    assert manifest.read_bytes() == before

    with chroma_server(data, port):
        retry = _run(platform, ["rag_index"])
        assert retry.success, _failure(retry)
    assert manifest.read_bytes() != before


def test_a_chroma_server_that_dies_mid_sync_is_named_and_a_retry_finishes(tmp_path, monkeypatch):
    """The server stops answering between two upsert batches of the candidate slot: the run
    fails naming the server and the fix, the manifest (what the index claims to hold) stays,
    and a retry against the restarted server completes the sync."""
    from llm_data_platform.defs.rag import index
    from llm_data_platform.defs.rag.index import manifest_path

    _use_model(monkeypatch, _Model())
    port = free_port()
    data = tmp_path / "chroma_server"
    platform = _platform(
        tmp_path, [DAY, NEXT_DAY], LDP_CHROMA_HOST="127.0.0.1", LDP_CHROMA_PORT=str(port)
    )
    _stage(platform, "documents")
    assert _run(platform, DOC_CHAIN, DAY).success
    with chroma_server(data, port):
        first = _run(platform, ["rag_index"])
        assert first.success, _failure(first)
    manifest = Path(manifest_path(lake := platform.resources["lake"]))
    before = manifest.read_bytes()
    assert _run(platform, DOC_CHAIN, NEXT_DAY).success

    real_upsert, servers = index._upsert, []

    def upsert_after_the_server_died(collection, batch, dimension):
        servers[-1].terminate()
        servers[-1].wait(timeout=10)
        return real_upsert(collection, batch, dimension)

    monkeypatch.setattr(index, "_upsert", upsert_after_the_server_died)
    with chroma_server(data, port) as server:
        servers.append(server.process)
        failed = _run(platform, ["rag_index"])
    assert not failed.success
    message = _failure(failed)
    assert f"The Chroma server at http://127.0.0.1:{port} is not reachable (" in message, message
    assert "The live index version is unchanged" in message
    assert manifest.read_bytes() == before and lake.exists(manifest_path(lake))

    monkeypatch.setattr(index, "_upsert", real_upsert)
    with chroma_server(data, port):
        retry = _run(platform, ["rag_index"])
        assert retry.success, _failure(retry)
    assert manifest.read_bytes() != before
