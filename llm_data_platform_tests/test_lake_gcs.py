"""The lake on GCS (``gs://bucket/prefix``), against a GCS JSON API on loopback.

The server is ``gcp-storage-emulator``, started in its own process on 127.0.0.1 (a free port
it picks and reports) and stopped by its id. Its own process, not a thread of the test's:
pyarrow's GCS client finalizes an upload in a destructor that holds the GIL, which would
deadlock an emulator thread waiting for the same GIL. The lake reaches it through pyarrow's
GcsFileSystem with an endpoint override — the only difference from Google Cloud.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from llm_data_platform.resources.lake import LakeError, LakeResource
from llm_data_platform.resources.lake_commit import COMMITS_DIR, recover_commits
from llm_data_platform.resources.lake_gcs import GcsResource
from llm_data_platform_tests.interrupted_upload import write_then_interrupt

BUCKET = "lake"
DAY = "2026-01-05"

_EMULATOR = textwrap.dedent(
    """
    import signal, sys
    from gcp_storage_emulator.server import create_server

    server = create_server("127.0.0.1", 0, in_memory=True, default_bucket=sys.argv[1])
    server.start()
    print(server._api._httpd.server_address[1], flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.stop()
    """
)


@pytest.fixture(autouse=True)
def time_bound():
    def expired(signum, frame):
        raise TimeoutError("GCS lake test exceeded its 240 s bound")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(240)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def gcs_endpoint() -> Iterator[str]:
    """The emulator, with the lake's bucket, in its own process; stopped by its pid."""
    server = subprocess.Popen(
        [sys.executable, "-c", _EMULATOR, BUCKET],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        port = int(server.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def gcs_lake(endpoint: str, prefix: str, retry_seconds: float = 5.0) -> LakeResource:
    gcs = GcsResource(endpoint_url=endpoint, retry_seconds=retry_seconds)
    return LakeResource(root=f"gs://{BUCKET}/{prefix}", gcs=gcs)


def _table(n: int, tag: str) -> pa.Table:
    return pa.table({"id": list(range(n)), "tag": [tag] * n})


def _objects(lake: LakeResource, under: str) -> list[str]:
    """Every object name under ``under``, as the bucket lists it."""
    fs, _ = lake.filesystem()
    infos = fs.get_file_info(pafs.FileSelector(under, recursive=True, allow_not_found=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File)


def test_gcs_lake_same_code_path(gcs_endpoint, tmp_path):
    lake = gcs_lake(gcs_endpoint, "platform")
    lake.write_partition("clean", "t", "2026-01-05", _table(3, "a"))
    lake.write_partition("clean", "t", "2026-01-06", _table(4, "b"))
    lake.write_partition("clean", "t", "2026-01-06", _table(2, "c"))
    assert lake.uri(lake.path("clean")) == f"gs://{BUCKET}/platform/clean"
    assert lake.list_partitions("clean", "t") == ["2026-01-05", "2026-01-06"]
    assert lake.list_partitions_any("clean", "t", "dt") == ["2026-01-05", "2026-01-06"]
    assert lake.read_partition("clean", "t", "2026-01-06").equals(_table(2, "c"))
    assert lake.read_partitions("clean", "t").num_rows == 5
    assert lake.count_rows("clean", "t", ["2026-01-05", "2026-01-06", "2026-01-07"]) == 5
    dataset = lake.dataset("clean", "t")
    assert sorted(set(dataset.to_table()["dt"].to_pylist())) == ["2026-01-05", "2026-01-06"]
    batches = list(lake.iter_partition_batches("clean", "t", "2026-01-05", batch_rows=2))
    assert [b.num_rows for b in batches] == [2, 1]
    # DuckDB reads a plain local copy of an object (offline: no httpfs extension)
    import duckdb

    path = lake.path("clean", "t", "dt=2026-01-05", "data.parquet")
    local = lake.local_file(path, str(tmp_path))
    assert local.startswith(str(tmp_path))
    assert duckdb.sql(f"select sum(id) from read_parquet('{local}')").fetchall() == [(3,)]
    lake.write_bytes(lake.path("curated", "x", "manifest.json"), b"{}")
    assert lake.read_bytes(lake.path("curated", "x", "manifest.json")) == b"{}"
    assert lake.read_bytes(lake.path("curated", "x", "missing.json")) is None
    lake.delete_partition("clean", "t", "2026-01-05")
    assert lake.list_partitions("clean", "t") == ["2026-01-06"]
    assert lake.read_partition("clean", "t", "2026-01-05") is None
    assert _objects(lake, lake.path("clean")) == [
        lake.path("clean", "t", "dt=2026-01-06", "data.parquet")
    ]


def test_an_upload_interrupted_midway_leaves_the_previous_object(
    gcs_endpoint, tmp_path, monkeypatch
):
    """pyarrow's GCS stream finalizes what it was sent when it is closed or dropped (measured
    against the emulator): a run stopped mid-upload must not replace the good object."""
    lake = gcs_lake(gcs_endpoint, "interrupt")
    path = lake.path("raw", "t", "dt=2026-01-05", "data.parquet")
    good, new = write_then_interrupt(monkeypatch, lake, path, tmp_path)
    assert lake.read_bytes(path) == good
    assert _objects(lake, lake.path("raw")) == [path], "a temp object was left beside it"
    lake.write_file(path, str(new))
    assert lake.read_bytes(path) == new.read_bytes()
    assert _objects(lake, lake.path("raw")) == [path]


def test_a_failed_write_leaves_the_previous_version(gcs_endpoint, tmp_path):
    """The server refuses the upload (its bucket is gone): a LakeError, old object intact."""
    lake = gcs_lake(gcs_endpoint, "refused")
    lake.write_partition("raw", "t", DAY, _table(3, "old"))
    path = lake.path("raw", "t", f"dt={DAY}", "data.parquet")
    elsewhere = LakeResource(
        root="gs://no-such-bucket/x", gcs=GcsResource(endpoint_url=gcs_endpoint)
    )
    with pytest.raises(LakeError) as failed:
        elsewhere.write_partition("raw", "t", DAY, _table(5, "new"))
    message = str(failed.value)
    assert "gs://no-such-bucket/x/raw/t/dt=2026-01-05/data.parquet" in message, message
    assert "does not exist" in message and "gcloud storage buckets create" in message, message
    assert "LDP_LAKE_ROOT" in message and "previous version is in place" in message, message
    assert lake.read_partition("raw", "t", DAY).equals(_table(3, "old"))
    assert _objects(lake, lake.path("raw")) == [path]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_endpoint_is_named_with_the_fix():
    """Nothing listens at the endpoint: the lake fails within its retry budget, naming the
    endpoint, the object and the setting that fixes it."""
    endpoint = f"http://127.0.0.1:{_free_port()}"
    lake = gcs_lake(endpoint, "down", retry_seconds=1)
    started = time.monotonic()
    with pytest.raises(LakeError) as failed:
        lake.write_partition("raw", "t", DAY, _table(1, "x"))
    assert time.monotonic() - started < 30, "retried longer than LDP_GCS_RETRY_SECONDS allows"
    message = str(failed.value)
    assert f"Could not connect to GCS at {endpoint}" in message, message
    assert f"gs://{BUCKET}/down/raw/t/dt={DAY}/data.parquet" in message, message
    assert "LDP_GCS_ENDPOINT_URL" in message and "after retrying for 1 s" in message, message
    with pytest.raises(LakeError, match="Could not connect to GCS"):
        lake.read_partition("raw", "t", DAY)
    assert isinstance(failed.value.__cause__, OSError)


_FAULT_PROXY = textwrap.dedent(
    """
    import http.client, http.server, json, sys

    upstream, status, match = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    injected = 0

    class Proxy(http.server.BaseHTTPRequestHandler):
        def _body(self):
            if self.headers.get("Content-Length"):
                return self.rfile.read(int(self.headers["Content-Length"]))
            data = b""
            while self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                size = int(self.rfile.readline().strip() or b"0", 16)
                if not size:
                    self.rfile.readline()
                    break
                data += self.rfile.read(size)
                self.rfile.readline()
            return data

        def _send(self, code, data, headers=()):
            self.send_response(code)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _any(self):
            global injected
            body = self._body()
            if self.path == "/_injected":
                return self._send(200, str(injected).encode())
            if match in f"{self.command} {self.path}":
                injected += 1
                error = {"error": {"code": status, "message": "injected by the test"}}
                return self._send(status, json.dumps(error).encode())
            skip = {"content-length", "transfer-encoding", "connection"}
            headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
            conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=30)
            conn.request(self.command, self.path, body=body, headers=headers)
            answer = conn.getresponse()
            passed = [(k, v) for k, v in answer.getheaders() if k.lower() not in skip]
            self._send(answer.status, answer.read(), passed)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    """
)


@contextlib.contextmanager
def fault_proxy(endpoint: str, status: int, match: str) -> Iterator[str]:
    """An HTTP proxy in front of the emulator that answers every request whose
    ``"METHOD /path"`` contains ``match`` with ``status``, in its own process (stopped by
    its id)."""
    upstream = endpoint.rsplit(":", 1)[1]
    args = [sys.executable, "-c", _FAULT_PROXY, upstream, str(status), match]
    proxy = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        yield f"http://127.0.0.1:{int(proxy.stdout.readline())}"
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)


def _injected(proxy: str) -> int:
    with urllib.request.urlopen(f"{proxy}/_injected", timeout=10) as answer:
        return int(answer.read())


_RETRY = "raise LDP_GCS_RETRY_SECONDS"


@pytest.mark.parametrize(
    "status, expected, fix, retried",
    [
        (503, "GCS returned HTTP 503 UNAVAILABLE for {uri} after retrying for 3 s", _RETRY, True),
        (429, "HTTP 429 UNAVAILABLE for {uri} after retrying for 3 s", _RETRY, True),
        (403, "GCS denied access to {uri} (HTTP 403 PERMISSION_DENIED", "objectAdmin", False),
        (401, "GCS rejected the credentials for {uri}", "application-default login", False),
    ],
)
def test_gcs_errors_fail_with_the_cause_and_keep_the_object(
    gcs_endpoint, status, expected, fix, retried
):
    """The upload is refused with ``status``: transient codes are retried within the budget,
    permanent ones are not; the step fails naming the cause and the fix; the old object stays."""
    prefix = f"refused-{status}"
    direct = gcs_lake(gcs_endpoint, prefix)
    direct.write_partition("raw", "t", DAY, _table(3, "old"))
    with fault_proxy(gcs_endpoint, status, "POST /upload/") as proxy:
        lake = gcs_lake(proxy, prefix, retry_seconds=3)
        with pytest.raises(LakeError) as failed:
            lake.write_partition("raw", "t", DAY, _table(5, "new"))
        injected = _injected(proxy)
    message = str(failed.value)
    uri = f"gs://{BUCKET}/{prefix}/raw/t/dt={DAY}/data.parquet"
    assert expected.format(uri=uri) in message and fix in message, message
    assert "previous version is in place" in message, message
    assert (injected > 1) == retried, f"{injected} requests refused"
    assert direct.read_partition("raw", "t", DAY).equals(_table(3, "old"))
    assert _objects(direct, direct.path("raw")) == [direct.path("raw", "t", f"dt={DAY}", _DATA)]


_DATA = "data.parquet"


def test_a_failed_server_side_copy_keeps_the_object_and_removes_the_upload(gcs_endpoint, tmp_path):
    """The upload to the temp name succeeds, the rewrite over the partition is refused: the
    old object stays, the temp object is deleted, the error names the final path."""
    direct = gcs_lake(gcs_endpoint, "copy-refused")
    path = direct.path("raw", "t", f"dt={DAY}", _DATA)
    good, new = tmp_path / "good.bin", tmp_path / "new.bin"
    good.write_bytes(b"good" * 1000)
    new.write_bytes(b"new!" * 3000)
    direct.write_file(path, str(good))
    with fault_proxy(gcs_endpoint, 503, "/rewriteTo/") as proxy:
        lake = gcs_lake(proxy, "copy-refused", retry_seconds=1)
        with pytest.raises(LakeError, match=f"HTTP 503 UNAVAILABLE for gs://{path}"):
            lake.write_file(path, str(new))
        assert _injected(proxy) >= 1
    assert direct.read_bytes(path) == good.read_bytes()
    assert _objects(direct, direct.path("raw")) == [path], "the temp upload was left"


TABLES = ("main_table", "side_table")


def _version(lake: LakeResource, table: str) -> set[str]:
    found = lake.read_partition("clean", table, DAY)
    return set(found["v"].to_pylist()) if found is not None else set()


def test_a_commit_across_two_tables_is_whole(gcs_endpoint):
    lake = gcs_lake(gcs_endpoint, "commit")
    for table in TABLES:
        lake.write_partition("clean", table, DAY, pa.table({"v": ["old"]}))
    commit = lake.commit()
    for table in TABLES:
        commit.add_table(lake.partition_path("clean", table, DAY) + "/data.parquet", _new())
    assert [_version(lake, t) for t in TABLES] == [{"old"}, {"old"}]
    assert lake.dataset("clean", "main_table").to_table()["v"].to_pylist() == ["old"]
    commit.apply()
    assert [_version(lake, t) for t in TABLES] == [{"new"}, {"new"}]
    assert _objects(lake, lake.path(COMMITS_DIR)) == []
    finals = [lake.partition_path("clean", t, DAY) + "/data.parquet" for t in TABLES]
    assert _objects(lake, lake.path("clean")) == sorted(finals), "pending objects were left"


def _new() -> pa.Table:
    return pa.table({"v": ["new"]})


def test_killed_between_the_moves_is_rolled_forward_by_the_next_run(gcs_endpoint):
    """A process that commits both tables and is SIGKILLed after the first server-side move:
    one table new, one old, and the commit record; the next run's lake setup finishes it."""
    lake = gcs_lake(gcs_endpoint, "rollforward")
    for table in TABLES:
        lake.write_partition("clean", table, DAY, pa.table({"v": ["old"]}))
    script = textwrap.dedent(
        f"""
        import os, signal
        import pyarrow as pa
        from llm_data_platform.resources import lake_commit
        from llm_data_platform.resources.lake import LakeResource
        from llm_data_platform.resources.lake_gcs import GcsResource

        def first_move_then_die(lake, record, moves):
            fs, _ = lake.filesystem()
            fs.move(*moves[0])
            os.kill(os.getpid(), signal.SIGKILL)

        lake_commit._roll_forward = first_move_then_die
        lake = LakeResource(root={lake.root!r}, gcs=GcsResource(endpoint_url={gcs_endpoint!r}))
        commit = lake.commit()
        for table in {list(TABLES)!r}:
            path = lake.partition_path("clean", table, {DAY!r}) + "/data.parquet"
            commit.add_table(path, pa.table({{"v": ["new"]}}))
        commit.apply()
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    assert sorted(_version(lake, t).pop() for t in TABLES) == ["new", "old"]
    assert len(_objects(lake, lake.path(COMMITS_DIR))) == 1

    @dg.asset
    def anything(lake: LakeResource) -> None:
        """Any run with the lake: its setup finishes the dead run's commit first."""

    assert dg.materialize([anything], resources={"lake": lake}).success
    assert [_version(lake, t) for t in TABLES] == [{"new"}, {"new"}]
    assert _objects(lake, lake.path(COMMITS_DIR)) == []
    assert recover_commits(lake) == 0


def _materialize_day(settings, lake: LakeResource, landing: str) -> None:
    """Staging, then raw and clean of one day, through the graph's own assets."""
    from llm_data_platform.definitions import build_resources
    from llm_data_platform.resources.io_manager import LakeIOManager
    from llm_data_platform.resources.landing import LandingFolderResource
    from llm_data_platform_tests.conftest import graph_for

    resources = {
        **build_resources(settings),
        "lake": lake,
        "io_manager": LakeIOManager(lake=lake),
        "landing": LandingFolderResource(path=landing),
    }
    staging = ("conversations_batches", "conversations_batches_quarantine")
    staged = dg.materialize(
        graph_for(settings), selection=dg.AssetSelection.assets(*staging), resources=resources
    )
    assert staged.success
    daily = (
        "raw_conversations",
        "raw_conversations_quarantine",
        "conversations_clean",
        "conversations_clean_dropped",
    )
    result = dg.materialize(
        graph_for(settings),
        selection=dg.AssetSelection.assets(*daily),
        resources=resources,
        partition_key=DAY,
    )
    assert result.success
    blocking = [
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name != "raw_conversations_quarantine_rate"
    ]
    assert blocking and all(e.passed for e in blocking)


def _rows(lake: LakeResource, zone: str, table: str) -> list[dict]:
    found = lake.read_partition(zone, table, DAY)
    assert found is not None, table
    rows = found.to_pylist()
    return sorted(rows, key=lambda r: repr(sorted(r.items(), key=lambda kv: kv[0])))


def test_raw_and_clean_on_gcs_give_the_local_lake_rows(gcs_endpoint, tmp_path):
    """LDP_LAKE_ROOT=gs://… through build_resources: the same day materialized into GCS and
    into a local lake holds the same rows, table for table."""
    from llm_data_platform.demo import generate_demo
    from llm_data_platform_tests.conftest import settings_for

    landing = str(tmp_path / "landing")
    generate_demo(
        landing, [date.fromisoformat(DAY)], conversations_per_day=6, n_topics=3, n_modules=1, seed=3
    )
    env = {"LDP_HOME": str(tmp_path), "LDP_LANDING_DIR": landing}
    gcs_settings = settings_for(
        {**env, "LDP_LAKE_ROOT": f"gs://{BUCKET}/e2e", "LDP_GCS_ENDPOINT_URL": gcs_endpoint}
    )
    from llm_data_platform.definitions import build_resources

    lake = build_resources(gcs_settings)["lake"]
    assert lake.is_gcs and lake.gcs.endpoint_url == gcs_endpoint
    local = LakeResource(root=str(tmp_path / "local-lake"))
    _materialize_day(gcs_settings, lake, landing)
    _materialize_day(settings_for(env), local, landing)
    tables = [
        ("raw", "raw_conversations"),
        ("clean", "conversations_clean"),
        ("clean", "conversations_clean_dropped"),
    ]
    for zone, table in tables:
        gcs_rows, local_rows = _rows(lake, zone, table), _rows(local, zone, table)
        assert len(gcs_rows) == len(local_rows), table
        assert gcs_rows or table.endswith("_dropped"), f"{table} is empty"
        assert gcs_rows == local_rows, table
    assert lake.list_partitions("clean", "conversations_clean") == [DAY]
    leftovers = [p for p in _objects(lake, lake.path()) if Path(p).name.startswith(".")]
    assert leftovers == [], "temp or pending objects left in the bucket"


def test_gcs_settings_reach_the_lake(tmp_path):
    from llm_data_platform.definitions import build_resources
    from llm_data_platform_tests.conftest import settings_for

    env = {
        "LDP_HOME": str(tmp_path),
        "LDP_LAKE_ROOT": "gs://prod-bucket/lake",
        "LDP_GCS_PROJECT": "my-project",
        "LDP_GCS_RETRY_SECONDS": "12.5",
    }
    lake = build_resources(settings_for(env))["lake"]
    assert lake.root == "gs://prod-bucket/lake" and lake.s3 is None
    assert (lake.gcs.project, lake.gcs.endpoint_url, lake.gcs.retry_seconds) == (
        "my-project",
        None,
        12.5,
    )
    assert not lake.gcs.anonymous  # Google Cloud itself: Application Default Credentials
    local = build_resources(settings_for({"LDP_HOME": str(tmp_path)}))["lake"]
    assert local.gcs is None and not local.is_remote
    assert os.path.isabs(local.root)
