"""Steps on Celery workers (LDP_EXECUTOR=celery): a Redis broker and two workers on loopback.

Everything a deployment runs, each in its own session and stopped by pid: ``redis-server``,
two ``celery -A llm_data_platform.lib.celery_worker worker`` processes (one pool process
each), a PostgreSQL instance (``deploy/dagster.postgres.yaml``: the run process and both
workers write events to it at once), ``dagster job backfill`` and ``dagster-daemon run``.

- pools: a backfill of four days of a job with a step in a pool of limit 1 ("writer") and one
  in no pool ("free"): the free steps of different days run at the same time on the two
  workers (so the cluster can overlap steps), the writer steps never do; dagster-celery
  claims the pool slot in the run process before it sends the task (lib/celery_executor.py).
- the project's daily_job over three days, one run per day: every step ran in a worker's
  process (not the run's), the days' steps on both workers, every day's tables materialized
  once, and no two ``embedding_model`` steps (chunk_embeddings) at once.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
import yaml

from llm_data_platform_tests import postgres
from llm_data_platform_tests.celery_site import (
    StepRecord,
    overlapping,
    start_redis,
    start_workers,
    step_records,
)
from llm_data_platform_tests.daemon import (
    BIN,
    Site,
    prepared_instance,
    site_env,
    workspace_file,
)

PROJECT = Path(__file__).resolve().parents[1]
VARIANT = PROJECT / "deploy" / "dagster.postgres.yaml"
WORKERS = ["w1", "w2"]
POOL_DAYS = ["2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08"]
STEP_SECONDS = 6  # long enough that the days' free steps meet on the two workers
POOL_SECONDS = 240  # four runs through the queue and the workers, on a loaded 2-core machine
DAILY_DAYS = ["2026-01-05", "2026-01-06", "2026-01-07"]
# one run at a time per partition key, whatever its job (the queue's tag concurrency)
PARTITION_LIMIT = {
    "key": "dagster/partition",
    "value": {"applyLimitPerUniqueValue": True},
    "limit": 1,
}
DAILY_SECONDS = 600  # three daily_job runs (embeddings included) on two one-process workers

pytestmark = pytest.mark.skipif(
    not postgres.available(), reason="PostgreSQL binaries missing (.ci/run installs them)"
)

CODE = """
import os
import time

import dagster as dg

from llm_data_platform.definitions import build_executor
from llm_data_platform.settings import load_settings

DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-05")


def _hold(context) -> dg.MaterializeResult:
    time.sleep({seconds})
    return dg.MaterializeResult(metadata={{"pid": os.getpid()}})


@dg.asset(partitions_def=DAILY, pool="writer")
def writer(context) -> dg.MaterializeResult:
    return _hold(context)


@dg.asset(partitions_def=DAILY)
def free(context) -> dg.MaterializeResult:
    return _hold(context)


defs = dg.Definitions(
    assets=[writer, free],
    jobs=[dg.define_asset_job("pool_job", [writer, free], partitions_def=DAILY)],
    executor=build_executor(load_settings()),
)
"""


def test_settings_choose_the_celery_executor_and_its_broker():
    """LDP_EXECUTOR=celery: dagster-celery's executor on the configured broker and backend;
    the workers' app reads the same settings."""
    from llm_data_platform.definitions import build_executor
    from llm_data_platform.lib.celery_executor import celery_config, worker_app
    from llm_data_platform.settings import load_settings

    settings = load_settings(
        {"LDP_EXECUTOR": "celery", "LDP_CELERY_BROKER_URL": "redis://127.0.0.1:6390/3"}
    )
    executor = build_executor(settings)
    assert executor.name == "celery"
    config = celery_config(settings)
    assert config["broker"] == config["backend"] == "redis://127.0.0.1:6390/3"
    assert config["include"] == ["llm_data_platform.definitions"]
    app = worker_app(settings)
    assert app.conf.broker_url == "redis://127.0.0.1:6390/3"
    assert "execute_plan" in app.tasks
    assert app.conf.task_acks_late and app.conf.worker_prefetch_multiplier == 1
    assert app.conf.broker_transport_options["visibility_timeout"] >= 6 * 3600
    backend = load_settings({"LDP_CELERY_BACKEND_URL": "redis://127.0.0.1:6390/4"})
    assert celery_config(backend)["backend"] == "redis://127.0.0.1:6390/4"
    with pytest.raises(ValueError, match="LDP_EXECUTOR"):
        load_settings({"LDP_EXECUTOR": "ray"})


def instance_yaml(one_run_per_partition: bool) -> str:
    """The shipped Postgres instance; with ``one_run_per_partition``, the run queue's limit of
    one run at a time per ``dagster/partition`` value (the README's Distributed execution)."""
    config = yaml.safe_load(VARIANT.read_text())
    if one_run_per_partition:
        config["concurrency"]["runs"]["tag_concurrency_limits"] = [PARTITION_LIMIT]
    return yaml.safe_dump(config)


@contextlib.contextmanager
def _cluster(
    tmp_path: Path, pg: postgres.Postgres, extra: dict[str, str], per_partition: bool = False
) -> Iterator[tuple[Site, dg.DagsterInstance]]:
    """DAGSTER_HOME on Postgres, Redis, and the environment every process of the site shares;
    every process the site started is stopped on the way out, whatever failed."""
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(instance_yaml(per_partition))
    instance = prepared_instance(home, pools=("writer",))  # and the pool test's own
    s = Site(tmp_path, site_env(home, pg.env))
    try:
        broker = start_redis(s)
        s.env = s.env | {"LDP_EXECUTOR": "celery", "LDP_CELERY_BROKER_URL": broker} | extra
        yield s, instance
    finally:
        s.stop()
        instance.dispose()
    assert not s.alive(), f"processes left running: {s.alive()}"


def _backfill(s: Site, target: list[str], job: str, days: list[str]) -> str:
    cli = subprocess.run(
        [str(BIN / "dagster"), "job", "backfill", *target, "-j", job]
        + ["--partitions", ",".join(days), "--noprompt"],
        env=s.env,
        cwd=s.root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stdout[-2000:] + cli.stderr[-3000:]
    return cli.stdout.split("Launched backfill job `")[1].split("`")[0]


def _finished_runs(instance, s: Site, daemon, backfill: str, n: int, seconds: float) -> list:
    deadline = time.monotonic() + seconds
    while True:
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill}))
        if len(runs) == n and all(r.is_finished for r in runs):
            return runs
        assert daemon.poll() is None, s.log("daemon")
        assert time.monotonic() < deadline, (
            f"backfill not done in {seconds} s: "
            f"{sorted((r.tags.get('dagster/partition'), r.status.value) for r in runs)}\n"
            + s.log("daemon")
            + "".join(s.log(f"worker-{w}") for w in WORKERS)
        )
        time.sleep(1)


def _records(instance, runs) -> list[StepRecord]:
    return [record for run in runs for record in step_records(instance, run)]


def _run_pids(instance, runs) -> set[int]:
    return {
        entry.dagster_event.pid
        for run in runs
        for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_START)
    }


def test_pool_steps_never_overlap_on_celery_workers(tmp_path, monkeypatch):
    with postgres.postgres_server() as pg:
        for key, value in pg.env.items():
            monkeypatch.setenv(key, value)
        code = tmp_path / "pool_location.py"
        code.write_text(CODE.format(seconds=STEP_SECONDS))
        workspace = workspace_file(tmp_path, code, "pool_location")
        with _cluster(tmp_path, pg, {}) as (s, instance):
            start_workers(s, WORKERS)
            backfill = _backfill(s, ["-w", str(workspace)], "pool_job", POOL_DAYS)
            daemon = s.start([str(BIN / "dagster-daemon"), "run", "-w", str(workspace)], "daemon")
            runs = _finished_runs(instance, s, daemon, backfill, len(POOL_DAYS), POOL_SECONDS)
            assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
            records = _records(instance, runs)
            run_pids = _run_pids(instance, runs)
    writers = [r for r in records if r.step == "writer"]
    free = [r for r in records if r.step == "free"]
    assert len(writers) == len(free) == len(POOL_DAYS)
    assert {r.worker for r in records} == {f"{w}@ldp" for w in WORKERS}, records
    assert not {r.pid for r in records} & run_pids, "a step ran in its run's process"
    assert overlapping(free), f"free steps never overlapped: the test could not see it {free}"
    assert not overlapping(writers), overlapping(writers)
    print(
        f"\ncelery pools: {len(records)} steps on {sorted({r.worker for r in records})}, "
        f"{len(overlapping(free))} overlapping free pairs, 0 overlapping writer pairs"
    )


def _stage(s: Site) -> None:
    """Landing files → micro-batches, in the CLI's own process (the raw days read them)."""
    batches = ",".join(
        f"{st}_batches{q}" for st in ("conversations", "documents") for q in ("", "_quarantine")
    )
    done = subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "llm_data_platform.definitions"]
        + ["--select", batches],
        env=s.env | {"LDP_EXECUTOR": "in_process"},
        cwd=s.root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


def _same_partition_overlaps(instance: dg.DagsterInstance) -> list[tuple]:
    """Pairs of runs (any job: the backfill's, the sensors') of one partition at one time."""
    now = time.time()
    spans = [
        (r.dagster_run.tags["dagster/partition"], r.start_time, r.end_time or now, r.dagster_run)
        for r in instance.get_run_records()
        if "dagster/partition" in r.dagster_run.tags and r.start_time
    ]
    return [
        (a[3].job_name, b[3].job_name, a[0])
        for i, a in enumerate(spans)
        for b in spans[i + 1 :]
        if a[0] == b[0] and a[1] < b[2] and b[1] < a[2]
    ]


def test_daily_backfill_runs_its_days_on_both_workers(tmp_path, monkeypatch):
    """The staging below also sets off the raw sensors' ingest runs of the same days (as in
    production): with the queue's one-run-per-partition limit they never overlap the
    backfill's run of that day (without it they did: ingest_documents_job and daily_job of
    2026-01-06 at once, both writing raw_documents)."""
    from llm_data_platform.defs.jobs import DAILY_ASSETS
    from llm_data_platform.demo import generate_demo
    from llm_data_platform_tests.conftest import DEMO_SIZE, platform_env

    env = platform_env(tmp_path)
    del env["DAGSTER_HOME"]
    landing = Path(env["LDP_LANDING_DIR"])
    generate_demo(str(landing), [date.fromisoformat(d) for d in DAILY_DAYS], **DEMO_SIZE)
    with postgres.postgres_server() as pg:
        for key, value in pg.env.items():
            monkeypatch.setenv(key, value)
        extra = env | {"LDP_PARTITIONS_START": DAILY_DAYS[0]}
        with _cluster(tmp_path, pg, extra, per_partition=True) as (s, instance):
            _stage(s)
            start_workers(s, WORKERS)
            target = ["-m", "llm_data_platform.definitions"]
            backfill = _backfill(s, target, "daily_job", DAILY_DAYS)
            daemon = s.start([str(BIN / "dagster-daemon"), "run", *target], "daemon")
            runs = _finished_runs(instance, s, daemon, backfill, len(DAILY_DAYS), DAILY_SECONDS)
            statuses = {r.tags["dagster/partition"]: r.status.value for r in runs}
            assert set(statuses.values()) == {"SUCCESS"}, (statuses, s.log("worker-w1"))
            records = _records(instance, runs)
            run_pids = _run_pids(instance, runs)
            ours = {r.run_id for r in runs}
            materialized = {
                (name, day): [
                    m.run_id
                    for m in instance.fetch_materializations(
                        dg.AssetRecordsFilter(asset_key=dg.AssetKey(name), asset_partitions=[day]),
                        limit=10,
                    ).records
                    if m.run_id in ours
                ]
                for name in DAILY_ASSETS
                for day in DAILY_DAYS
            }
            same_partition = _same_partition_overlaps(instance)
    assert {len(ids) for ids in materialized.values()} == {1}, materialized
    assert not same_partition, same_partition
    assert all(r.worker for r in records), [r for r in records if not r.worker]
    assert not {r.pid for r in records} & run_pids, "a step ran in its run's process"
    by_day = {day: sorted({r.pid for r in records if r.partition == day}) for day in DAILY_DAYS}
    assert {r.worker for r in records} == {f"{w}@ldp" for w in WORKERS}, by_day
    assert len({r.pid for r in records}) >= 2, by_day
    embeddings = [r for r in records if r.step == "chunk_embeddings"]
    assert len(embeddings) == len(DAILY_DAYS)
    assert not overlapping(embeddings), overlapping(embeddings)
    print(f"\ncelery daily backfill: {len(records)} steps, worker pids by day {by_day}")
