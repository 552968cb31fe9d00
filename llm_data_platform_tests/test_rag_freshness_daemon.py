"""A knowledge-base edit reaches the live index through the real daemon, with no hand-run step.

`ldp ingest-docs` lands what changed in a folder; from there only the daemon's sensors act:
the landing sensor sees the file's day in its name and runs ``sync_documents_job`` for it
(staging, clean, chunks, embeddings, then the next index version, gated and promoted, in one
run); nothing else is left for the after-staging sensor to run. The test edits one page and
waits (bounded) until the live version holds its new text — measured, printed, not asserted
against a time: the benchmark states the figures.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import dagster as dg

from llm_data_platform_tests.conftest import platform_env, settings_for
from llm_data_platform_tests.daemon import BIN, Site, prepared_instance, project_site, site_env

PROJECT = Path(__file__).resolve().parents[1]
PHASE_SECONDS = 420  # first build (model load, first versions) or one edit, on a busy machine
MARKER = "zebraquartz"
PAGES = {
    "alpha.md": "# Alpha settings\n\nThe alpha flag turns on verbose logging for the worker.\n",
    "beta.md": "# Beta queue\n\nThe beta queue holds jobs until a worker is free to run them.\n",
    "gamma.md": "# Gamma retries\n\nFailed gamma tasks are retried three times with backoff.\n",
}


def _ingest(kb: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        [str(BIN / "ldp"), "ingest-docs", str(kb)], env=env, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def _live_index_runs(instance: dg.DagsterInstance, since: float) -> list[dg.DagsterRun]:
    records = instance.get_run_records(
        dg.RunsFilter(job_name="sync_documents_job", statuses=[dg.DagsterRunStatus.SUCCESS])
    )
    return [r.dagster_run for r in records if r.create_timestamp.timestamp() >= since]


def _wait_for_sync(site: Site, instance: dg.DagsterInstance, since: float) -> float:
    """Seconds from ``since`` until a sync_documents_job run created after it succeeded."""
    deadline = time.monotonic() + PHASE_SECONDS
    while not (runs := _live_index_runs(instance, since)):
        failed = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
        assert not failed, [(r.job_name, r.run_id) for r in failed]
        assert time.monotonic() < deadline, site.log("daemon")
        time.sleep(1.0)
    ended = min(instance.get_run_record_by_id(r.run_id).end_time for r in runs)
    return ended - since


def _live_texts(env: dict[str, str], doc_id: str) -> list[str]:
    """The live version's chunk texts of ``doc_id`` (read from Chroma: no model needed)."""
    from llm_data_platform.definitions import build_resources

    resources = build_resources(settings_for(env))
    embeddings, chroma = resources["embeddings"], resources["chroma"]
    live = chroma.live_collection(embeddings.model_id, embeddings.dimension)
    assert live is not None, "no live index"
    return live.get(where={"doc_id": doc_id}, include=["documents"])["documents"]


def test_an_edited_page_reaches_the_live_index_through_the_daemon(tmp_path):
    env = platform_env(tmp_path) | {"LDP_SENSOR_INTERVAL_SECONDS": "5"}
    workspace = project_site(tmp_path, env, PROJECT / "dagster.yaml")
    home = Path(env["DAGSTER_HOME"])
    kb = tmp_path / "kb"
    kb.mkdir()
    for name, text in PAGES.items():
        (kb / name).write_text(text)
    env = site_env(home, env)
    instance = prepared_instance(home)
    site = Site(tmp_path, env)
    try:
        started = time.time()
        _ingest(kb, env)
        site.start([str(BIN / "dagster-daemon"), "run", "-w", str(workspace)], "daemon")
        first = _wait_for_sync(site, instance, started)

        (kb / "alpha.md").write_text(PAGES["alpha.md"] + f"\nThe {MARKER} option is new.\n")
        edited = time.time()
        _ingest(kb, env)
        fresh = _wait_for_sync(site, instance, edited)
        print(f"first build through the daemon {first:.1f} s; edit → live {fresh:.1f} s")
    finally:
        site.stop()
    # one run per sync: no staging run, and the after-staging sensor (ticking all along) asked
    # for no second run of a day the sync run ingested itself
    for job in ("stage_documents_job", "ingest_documents_job"):
        assert not instance.get_runs(dg.RunsFilter(job_name=job)), job
    texts = _live_texts(env, "alpha.md")
    assert texts and any(MARKER in t for t in texts), texts
    assert all(MARKER not in t for t in _live_texts(env, "beta.md"))
