"""Dagster jobs run inside the ``ldp`` process, recorded in the instance like any other run.

``ldp demo`` and ``ldp ingest-docs --run`` execute the platform's own jobs here rather than
through ``dagster asset materialize`` once per step group: one process imports Dagster, the
graph and the embedding model once, and every run still appears in the UI under its job, with
its materializations and check results. The run queue and its limits are for runs the daemon
launches; these runs take the pools' slots like every run does.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
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
    returning the directory source's report. A failed run is logged and its files retried.
    SIGINT/SIGTERM stop it after the current run: Dagster takes both signals over while a run
    executes and drops them when it ends, so they are read from a wakeup socket, not a handler.

    Each run leaves a few MB of native memory behind (Arrow allocates from malloc here, see
    ``cli.WATCH_ARROW_POOL``), so once RSS passes ``max_rss_mb`` after a run with nothing
    pending, the watcher replaces itself with a fresh copy (same pid, same command)."""
    import os
    import sys

    import dagster as dg

    pending: dict[str, str] = {}  # landing key → its newest document day
    failed_at, restart = 0.0, False
    with _one_watcher(documents_dir), _stop_signals() as stop_requested:
        threading.Thread(target=_warm_up, name="ldp-warm-up", daemon=True).start()
        with dg.DagsterInstance.get() as instance:
            log(f"watching every {interval:g}s (Ctrl-C stops after the current run)")
            while True:
                started = time.perf_counter()
                try:
                    report = sync()
                except OSError as exc:  # the folder moved, a disk error: say so, keep watching
                    log(f"scan failed ({exc}); trying again in {interval:g}s")
                    report = None
                landed = report is not None and bool(report.landing_file)
                if landed:
                    pending[os.path.relpath(report.landing_file, documents_dir)] = report.days[-1]
                if pending and (landed or time.monotonic() - failed_at >= RETRY_SECONDS):
                    try:
                        run_document_sync(list(pending), max(pending.values()), instance, log)
                    except SystemExit as failure:
                        failed_at = time.monotonic()
                        log(
                            f"{failure} Its files run again with the next change or in "
                            f"{RETRY_SECONDS:g} s."
                        )
                    else:
                        pending.clear()
                        log(f"live in {time.perf_counter() - started:.1f}s after the scan")
                        restart = _rss_mb() > max_rss_mb
                if stop_requested(0 if restart else interval):
                    log("stopped")
                    return 0
                if restart:
                    log(f"RSS {_rss_mb()} MB > --max-rss-mb {max_rss_mb}: restarting")
                    break
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, *sys.argv])


@contextlib.contextmanager
def _stop_signals() -> Iterator[Callable[[float], bool]]:
    """A function waiting up to its timeout for SIGINT/SIGTERM, true once one came, at any
    time since the watcher started (during a run included)."""
    import select
    import signal
    import socket

    wanted = {int(signal.SIGINT), int(signal.SIGTERM)}
    received, notify = socket.socketpair()
    for end in (received, notify):
        end.setblocking(False)
    handlers = {s: signal.signal(s, lambda *_: None) for s in wanted}  # noted by the socket
    previous_fd = signal.set_wakeup_fd(notify.fileno(), warn_on_full_buffer=False)

    def stop_requested(timeout: float) -> bool:
        ready, _, _ = select.select([received], [], [], max(0.0, timeout))
        return bool(ready) and bool(wanted & set(received.recv(256)))

    try:
        yield stop_requested
    finally:
        signal.set_wakeup_fd(previous_fd)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        received.close()
        notify.close()


@contextlib.contextmanager
def _one_watcher(documents_dir: str) -> Iterator[None]:
    """One watcher per landing folder: two would run every change twice, and two processes
    writing one Chroma folder at once can corrupt a slot's HNSW index."""
    import fcntl
    import os

    os.makedirs(documents_dir, exist_ok=True)
    with open(os.path.join(documents_dir, ".watch.lock"), "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise SystemExit(
                f"Another `ldp ingest-docs --watch` (pid {lock.read().strip() or '?'}) "
                f"already watches into {documents_dir}: stop it first, or use --run."
            ) from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        yield


def _rss_mb() -> int:
    """This process's resident memory (0 where /proc is missing: never restarts)."""
    try:
        with open("/proc/self/status") as status:
            line = next(x for x in status if x.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0
    return int(line.split()[1]) // 1024
