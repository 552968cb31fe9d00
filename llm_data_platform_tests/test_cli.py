"""The command lines users type, run in subprocesses against temp folders."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from llm_data_platform_tests.conftest import make_platform

BIN = Path(sys.executable).parent


def _run(args: list[str], env: dict[str, str], timeout: int = 300):
    full_env = {**os.environ, **env}
    return subprocess.run(args, env=full_env, capture_output=True, text=True, timeout=timeout)


def test_dagster_cli_stages_then_materializes_one_partition(tmp_path):
    """The README's two commands: stage what landed, then build a day from it."""
    platform = make_platform(tmp_path)
    staging = [
        str(BIN / "dagster"),
        "asset",
        "materialize",
        "-m",
        "llm_data_platform",
        "--select",
        "conversations_batches,conversations_batches_quarantine",
    ]
    proc = _run(staging, platform.env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _run(
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "llm_data_platform",
            "--select",
            "raw_conversations,raw_conversations_quarantine,conversations_clean,conversations_clean_dropped",
            "--partition",
            "2026-01-05",
        ],
        platform.env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lake = platform.resources["lake"]
    raw = lake.read_partition("raw", "raw_conversations", "2026-01-05")
    clean = lake.read_partition("clean", "conversations_clean", "2026-01-05")
    truth = platform.truth.conversations["2026-01-05"]
    assert raw.num_rows == truth.lines - truth.exact_duplicate_events
    assert 0 < clean.num_rows < raw.num_rows


def test_ask_cli_answers_from_the_built_index(built):
    platform, _ = built
    live = set(platform.truth.final_doc_ids)
    question, doc_id = next((q, d) for q, d in platform.truth.eval_questions if d in live)
    proc = _run([str(BIN / "ldp"), "ask", question, "-k", "3", "--json"], platform.env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    hits = json.loads(proc.stdout)
    assert len(hits) == 3
    assert {"score", "doc_id", "source_uri", "text"} <= set(hits[0])
    assert doc_id in {h["doc_id"] for h in hits}


def test_ask_goes_through_the_running_server_of_this_project(built):
    """`ldp serve` announces itself in the project home; `ldp ask` then asks it (the warm
    model and index) instead of loading its own, and searches in process once it stopped."""
    import socket
    import time

    platform, _ = built
    live = set(platform.truth.final_doc_ids)
    question, doc_id = next((q, d) for q, d in platform.truth.eval_questions if d in live)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    announce = Path(platform.env["LDP_HOME"]) / ".ldp_serve.json"
    server = subprocess.Popen(
        [str(BIN / "ldp"), "serve", "--port", str(port), "--log-level", "warning"],
        env={**os.environ, **platform.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not announce.exists():
            assert server.poll() is None and time.monotonic() < deadline, "no ldp serve"
            time.sleep(0.2)
        assert json.loads(announce.read_text())["url"] == f"http://127.0.0.1:{port}"
        proc = _run([str(BIN / "ldp"), "ask", question, "-k", "3"], platform.env)
        while "searched by ldp serve" not in proc.stdout and time.monotonic() < deadline:
            time.sleep(0.5)  # announced before uvicorn listens: ask again
            proc = _run([str(BIN / "ldp"), "ask", question, "-k", "3"], platform.env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"(searched by ldp serve at http://127.0.0.1:{port})" in proc.stdout
        assert doc_id in proc.stdout
        local = _run([str(BIN / "ldp"), "ask", question, "-k", "3", "--local"], platform.env)
        assert local.returncode == 0 and "searched by ldp serve" not in local.stdout
    finally:
        server.terminate()  # the server this test started
        server.wait(timeout=30)
    assert not announce.exists()
    after = _run([str(BIN / "ldp"), "ask", question, "-k", "3", "--json"], platform.env)
    assert after.returncode == 0 and doc_id in {h["doc_id"] for h in json.loads(after.stdout)}


def _live_chunks(env: dict[str, str]) -> dict[str, list[str]]:
    """doc id → chunk texts of the live index version (read from Chroma: no model needed)."""
    from llm_data_platform.definitions import build_resources
    from llm_data_platform_tests.conftest import settings_for

    resources = build_resources(settings_for(env))
    embeddings, chroma = resources["embeddings"], resources["chroma"]
    live = chroma.live_collection(embeddings.model_id, embeddings.dimension)
    assert live is not None, "no live index"
    got = live.get(include=["documents", "metadatas"])
    chunks: dict[str, list[str]] = {}
    for text, meta in zip(got["documents"], got["metadatas"], strict=True):
        chunks.setdefault(meta["doc_id"], []).append(text)
    return chunks


def _docs_project(tmp_path: Path, topics: tuple[str, ...]) -> tuple[dict[str, str], Path]:
    """A project with the shipped dagster.yaml and a knowledge base of one page per topic."""
    from llm_data_platform_tests.conftest import platform_env

    env = platform_env(tmp_path)
    home = Path(env["DAGSTER_HOME"])
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text((Path(__file__).parents[1] / "dagster.yaml").read_text())
    kb = tmp_path / "kb"
    kb.mkdir()
    for topic in topics:
        (kb / f"{topic}.md").write_text(f"# {topic}\n\nThe {topic} service keeps a table.\n")
    return env, kb


def test_ingest_docs_run_serves_an_edit_without_a_daemon(tmp_path):
    """`ldp ingest-docs KB --run`: the sync landed, staged and its day ingested, indexed, gated
    and promoted by one run in the CLI's process, recorded in the instance like the daemon's."""
    import dagster as dg

    env, kb = _docs_project(tmp_path, ("retries", "queues", "logging"))
    command = [str(BIN / "ldp"), "ingest-docs", str(kb), "--run"]
    first = _run(command, env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "→ sync_documents_job" in first.stdout, first.stdout
    assert sorted(_live_chunks(env)) == ["logging.md", "queues.md", "retries.md"]

    (kb / "queues.md").write_text("# queues\n\nThe queues service keeps a zebraquartz table.\n")
    (kb / "logging.md").unlink()
    second = _run(command, env)
    assert second.returncode == 0, second.stderr[-3000:]
    live = _live_chunks(env)
    assert sorted(live) == ["queues.md", "retries.md"]  # the deletion reached the index
    assert any("zebraquartz" in text for text in live["queues.md"])

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        runs = instance.get_runs(dg.RunsFilter(job_name="sync_documents_job"))
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS] * 2
        embedded = instance.fetch_materializations(dg.AssetKey("chunk_embeddings"), limit=1)
        metadata = embedded.records[0].asset_materialization.metadata
    # the day holds both pages left; only the edited one was embedded again
    assert (metadata["embedded"].value, metadata["cache_hits"].value) == (1, 1)
    unchanged = _run(command, env)  # nothing changed: nothing landed, no run
    assert "nothing landed" in unchanged.stdout


def _wait_for(path: Path, text: str, count: int, proc, timeout: float = 240) -> str:
    """The watcher's output once ``text`` appeared ``count`` times (fails if it exits)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = path.read_text()
        if out.count(text) >= count:
            return out
        assert proc.poll() is None, out[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"no {count}x {text!r} in {timeout}s:\n{path.read_text()[-3000:]}")


@contextlib.contextmanager
def _watching(kb: Path, env: dict[str, str], log: Path, *extra: str):
    """`ldp ingest-docs KB --watch` writing to ``log``; SIGTERM must end it with 0."""
    command = [str(BIN / "ldp"), "ingest-docs", str(kb), "--watch", "--interval", "0.3", *extra]
    with open(log, "w") as out:
        proc = subprocess.Popen(command, env={**os.environ, **env}, stdout=out, stderr=out)
    try:
        yield proc
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_ingest_docs_watch_serves_each_edit_from_one_warm_process(tmp_path):
    """`ldp ingest-docs KB --watch`: the first scan syncs the folder, a second watcher of the
    project is refused, a later edit reaches the live index without another command, and a
    SIGTERM sent during its run stops the watcher once the run is done."""
    env, kb = _docs_project(tmp_path, ("retries", "queues"))
    (kb / "huge.md").write_text("x" * (5 * 1024 * 1024 + 1))  # skipped: over the size limit
    log = tmp_path / "watch.log"
    with _watching(kb, env, log) as proc:
        _wait_for(log, "live in", 1, proc)
        assert sorted(_live_chunks(env)) == ["queues.md", "retries.md"]
        second = _run([str(BIN / "ldp"), "ingest-docs", str(kb), "--watch"], env, timeout=120)
        assert second.returncode != 0 and "already watches" in second.stderr, second.stderr
        (kb / "queues.md").write_text("# queues\n\nThe queues service keeps a zebraquartz table.\n")
        _wait_for(log, "→ sync_documents_job", 2, proc)
        # SIGTERM now, while the run executes (Dagster holds the signal handlers then): the
        # watcher must still stop, once the run is done
    assert any("zebraquartz" in text for text in _live_chunks(env)["queues.md"])
    said = log.read_text()
    assert said.count("live in") == 2 and said.rstrip().endswith("stopped"), said
    assert said.count("→ sync_documents_job") == 2
    assert said.count("skipped huge.md") == 1, said  # said once, not at every scan


def test_ingest_docs_watch_restarts_itself_over_its_memory_bound(tmp_path):
    """Over --max-rss-mb after a run, the watcher becomes a fresh copy of itself (same pid,
    same command), which serves the next edit."""
    env, kb = _docs_project(tmp_path, ("retries",))
    log = tmp_path / "watch.log"
    with _watching(kb, env, log, "--max-rss-mb", "1") as proc:
        _wait_for(log, "watching every", 2, proc)  # the first run, then the restarted copy
        assert "restarting" in log.read_text()
        (kb / "retries.md").write_text("# retries\n\nThe retries service keeps a quokka.\n")
        _wait_for(log, "live in", 2, proc)
        assert any("quokka" in t for t in _live_chunks(env)["retries.md"])
        _wait_for(log, "watching every", 3, proc)
