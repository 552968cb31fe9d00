"""Dagster jobs run inside the ``ldp`` process, recorded in the instance like any other run.

``ldp demo`` and ``ldp ingest-docs --run`` execute the platform's own jobs here rather than
through ``dagster asset materialize`` once per step group: one process imports Dagster, the
graph and the embedding model once, and every run still appears in the UI under its job, with
its materializations and check results. The run queue and its limits are for runs the daemon
launches; these runs take the pools' slots like every run does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

CODE_LOCATION = "llm_data_platform"  # workspace.yaml's location_name, `-m llm_data_platform`
# Step-by-step logs stay in the run's page in the UI; the terminal shows progress lines only.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
Log = Callable[[str], None]


def execute_job(job_name: str, instance, log: Log, label: str = "", **kwargs: Any):
    """One run of ``job_name`` in this process; a failure names the failed steps."""
    from dagster._core.storage.tags import REPOSITORY_LABEL_TAG

    from llm_data_platform.definitions import defs

    # The UI lists a job's runs by this label (set by Dagster on runs it launches itself).
    tags = {REPOSITORY_LABEL_TAG: f"__repository__@{CODE_LOCATION}", **kwargs.pop("tags", {})}
    run_config = {**QUIET, **kwargs.pop("run_config", {})}
    log(f"→ {job_name} {label}".rstrip())
    started = time.perf_counter()
    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, raise_on_error=False, run_config=run_config, tags=tags, **kwargs
    )
    if not result.success:
        failed = [e.step_key for e in result.all_events if e.is_step_failure]
        raise SystemExit(f"{job_name} failed at {failed}; see run {result.run_id} in the UI.")
    log(f"  done in {time.perf_counter() - started:.1f}s (run {result.run_id[:8]})")
    return result


def _ts(day: str) -> float:
    return datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() + 3600


def run_pipeline(days: list[str], instance=None, log: Log = print) -> dict[str, float]:
    """Materialize the whole graph for ``days`` through Dagster jobs (one run per job)."""
    import dagster as dg

    from llm_data_platform.definitions import defs

    instance = instance or dg.DagsterInstance.get()
    days = sorted(days)
    span = {
        "dagster/asset_partition_range_start": days[0],
        "dagster/asset_partition_range_end": days[-1],
    }
    plan: list[tuple[str, str, dict]] = [
        ("retrieval_eval_set_job", "", {}),
        ("stage_conversations_job", "", {}),
        ("stage_documents_job", "", {}),
        ("daily_job", f"{days[0]}..{days[-1]}", {"tags": span}),
    ]
    weekly = defs.get_job_def("weekly_training_job").partitions_def
    weeks = sorted({weekly.get_partition_key_for_timestamp(_ts(d)) for d in days})
    plan += [("weekly_training_job", w, {"partition_key": w}) for w in weeks]
    plan += [("rag_index_job", "", {})]
    timings: dict[str, float] = {}
    for job_name, label, kwargs in plan:
        started = time.perf_counter()
        execute_job(job_name, instance, log, label, **kwargs)
        timings[job_name] = time.perf_counter() - started
    return timings


def run_document_sync(
    landing_keys: list[str], day: str, instance=None, log: Log = print
) -> list[str]:
    """What the daemon does with documents landing files, in this process: one run stages
    them and ingests ``day`` (raw → clean → chunks → embeddings → the next index version,
    gated, promoted); any other day they touched gets its own ``ingest_documents_job`` run.
    Returns the days ingested."""
    import dagster as dg

    from llm_data_platform.defs.ingest.staging import staged_days

    instance = instance or dg.DagsterInstance.get()
    config = {"ops": {"stage_documents": {"config": {"files": list(landing_keys)}}}}
    synced = execute_job(
        "sync_documents_job", instance, log, day, partition_key=day, run_config=config
    )
    days = sorted(
        {
            d
            for e in synced.get_asset_materialization_events()
            for d in staged_days(e.materialization)
        }
    )
    for other in days:
        if other != day:
            execute_job("ingest_documents_job", instance, log, other, partition_key=other)
    return sorted({day, *days})


def _warm_up() -> None:
    """What the first run would load: the graph, Chroma's client and the local model."""
    import chromadb  # noqa: F401

    from llm_data_platform.definitions import build_resources, defs
    from llm_data_platform.resources.embeddings import load_local_model

    defs.resolve_job_def("sync_documents_job")
    embeddings = build_resources()["embeddings"]
    if embeddings.provider == "local":
        load_local_model(embeddings.model, embeddings.backend, embeddings.onnx_dir)


RETRY_SECONDS = 30.0  # a failed sync's files run again with the next change or after this


def watch_documents(
    sync: Callable[[], Any], documents_dir: str, interval: float, max_rss_mb: int, log: Log
) -> int:
    """``ldp ingest-docs KB --watch``: scan every ``interval`` seconds; what changed is landed
    and synced by :func:`run_document_sync` in this process, which stays warm (Dagster, the
    graph, Chroma and the model are loaded once, not per change). ``sync()`` scans and lands,
    returning the directory source's report. A failed run is logged and its files retried;
    the first SIGINT/SIGTERM stops after the current run, a second one interrupts it.

    Each in-process run leaves ~12-18 MB of native memory behind (measured over 28 runs; not
    Python objects, not Arrow's pool), so once RSS passes ``max_rss_mb`` after a run with
    nothing pending, the watcher replaces itself with a fresh copy (same pid, same command)."""
    import os
    import signal
    import sys
    import threading

    import dagster as dg

    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        log("stopping after the current run (again to interrupt it)")

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    threading.Thread(target=_warm_up, name="ldp-warm-up", daemon=True).start()
    pending: dict[str, str] = {}  # landing key → its newest document day
    failed_at, restart = 0.0, False
    try:
        with dg.DagsterInstance.get() as instance:
            log(f"watching every {interval:g}s (Ctrl-C stops)")
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    report = sync()
                except OSError as exc:  # the folder moved, a disk error: say so, keep watching
                    log(f"scan failed ({exc}); trying again in {interval:g}s")
                    stop.wait(interval)
                    continue
                if report.landing_file:
                    key = os.path.relpath(report.landing_file, documents_dir)
                    pending[key] = report.days[-1]
                retry = pending and time.monotonic() - failed_at >= RETRY_SECONDS
                if pending and (report.landing_file or retry):
                    try:
                        run_document_sync(list(pending), max(pending.values()), instance, log)
                    except SystemExit as failure:
                        failed_at = time.monotonic()
                        log(f"{failure} Its files run again with the next change or in 30 s.")
                    else:
                        pending.clear()
                        log(f"live in {time.perf_counter() - started:.1f}s after the scan")
                        restart = _rss_mb() > max_rss_mb
                        if restart:
                            log(f"RSS {_rss_mb()} MB > --max-rss-mb {max_rss_mb}: restarting")
                            break
                stop.wait(interval)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if restart and not stop.is_set():
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, *sys.argv])
    return 0


def _rss_mb() -> int:
    """This process's resident memory (0 where /proc is missing: never restarts)."""
    try:
        with open("/proc/self/status") as status:
            line = next(x for x in status if x.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0
    return int(line.split()[1]) // 1024
