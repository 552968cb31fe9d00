"""The Dagster instance on PostgreSQL: deploy/dagster.postgres.yaml against a real server.

A PostgreSQL 15 cluster is started for the test (``postgres.postgres_server``: initdb +
pg_ctl in a temp dir, 127.0.0.1, a free port, password auth); DAGSTER_HOME holds the shipped
Postgres variant and every process gets the credentials through DAGSTER_PG_* only. Then the
real CLI and daemon: ``dagster job backfill`` of a daily-partitioned job over six days
queues six runs, ``dagster-daemon run`` starts them several at once (SQLite's file locks are
why the default instance allows two), and the test checks through ``DagsterInstance`` — and
with SQL straight against the database — that every run, materialization and check result
is recorded there and nowhere else. The dead-run half (a SIGKILLed run failed by the
monitoring, its pool slot freed) is test_dead_runs.py, parametrized over both instances.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import dagster as dg
import psycopg2
import yaml

from llm_data_platform_tests.daemon import (
    BIN,
    Site,
    prepared_instance,
    site_env,
    workspace_file,
)
from llm_data_platform_tests.postgres import postgres_server

PROJECT = Path(__file__).resolve().parents[1]
VARIANT = PROJECT / "deploy" / "dagster.postgres.yaml"
LOCATION = "pg_backfill"
JOB = "daily_numbers_job"
DAYS = [f"2026-01-0{d}" for d in range(5, 10)] + ["2026-01-10"]
STEP_SECONDS = 8  # each run's step holds on long enough for the runs to overlap
BACKFILL_SECONDS = 240  # CLI → every run finished, on a loaded 2-core machine

CODE = """
import time

import dagster as dg

DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-05")


@dg.asset(partitions_def=DAILY)
def daily_numbers(context) -> dg.MaterializeResult:
    time.sleep({step_seconds})
    day = int(context.partition_key[-2:])
    return dg.MaterializeResult(metadata={{"rows": day * 10}})


@dg.asset_check(asset=daily_numbers, partitions_def=DAILY, blocking=True)
def daily_numbers_has_rows(context) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True, metadata={{"day": context.partition_key}})


defs = dg.Definitions(
    assets=[daily_numbers],
    asset_checks=[daily_numbers_has_rows],
    jobs=[dg.define_asset_job("{job}", [daily_numbers], partitions_def=DAILY)],
)
"""


def test_the_postgres_variant_is_the_shipped_instance_on_postgres():
    """Same queue, pools, sensors, run monitoring and retries as dagster.yaml; storage on
    Postgres with every credential from the environment; more runs at once."""
    shipped = yaml.safe_load((PROJECT / "dagster.yaml").read_text())
    variant = yaml.safe_load(VARIANT.read_text())
    database = variant.pop("storage")["postgres"]["postgres_db"]
    assert database == {
        "username": {"env": "DAGSTER_PG_USERNAME"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "db_name": {"env": "DAGSTER_PG_DB"},
        "port": {"env": "DAGSTER_PG_PORT"},
        "scheme": "postgresql+psycopg2",  # the driver dagster-postgres installs
    }
    runs = variant["concurrency"]["runs"].pop("max_concurrent_runs")
    assert runs > shipped["concurrency"]["runs"].pop("max_concurrent_runs")
    assert variant == shipped
    assert variant["run_monitoring"]["enabled"] is True


def _overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at one time."""
    edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    best = now = 0
    for _, step in edges:
        now += step
        best = max(best, now)
    return best


def _wait_for_runs(instance: dg.DagsterInstance, s: Site, daemon, backfill: str):
    deadline = time.monotonic() + BACKFILL_SECONDS
    while True:
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill}))
        if len(runs) == len(DAYS) and all(r.is_finished for r in runs):
            return runs
        assert daemon.poll() is None, s.log("daemon")
        assert time.monotonic() < deadline, (
            f"backfill not done in {BACKFILL_SECONDS} s: "
            f"{sorted((r.tags.get('dagster/partition'), r.status.value) for r in runs)}\n"
            + s.log("daemon")
        )
        time.sleep(1)


def test_partitioned_backfill_on_postgres_records_every_run_and_result(tmp_path, monkeypatch):
    with postgres_server() as pg:
        for key, value in pg.env.items():  # this process's instance reads them too
            monkeypatch.setenv(key, value)
        home = tmp_path / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text(VARIANT.read_text())
        code = tmp_path / "pg_backfill_location.py"
        code.write_text(CODE.format(step_seconds=STEP_SECONDS, job=JOB))
        workspace = workspace_file(tmp_path, code, LOCATION)
        instance = prepared_instance(home)
        s = Site(tmp_path, site_env(home, pg.env), location=LOCATION)
        try:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
            cli = subprocess.run(
                [str(BIN / "dagster"), "job", "backfill", "-w", str(workspace), "-j", JOB]
                + ["--partitions", ",".join(DAYS), "--noprompt"],
                env=s.env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert cli.returncode == 0, cli.stderr[-3000:]
            backfill = cli.stdout.split("Launched backfill job `")[1].split("`")[0]
            daemon = s.start([str(BIN / "dagster-daemon"), "run", "-w", str(workspace)], "daemon")
            runs = _wait_for_runs(instance, s, daemon, backfill)
            _check_recorded(instance, pg.url, runs)
        finally:
            s.stop()
            instance.dispose()
        assert not s.alive(), f"processes left running: {s.alive()}"
    assert not list(home.rglob("*.db")), "a SQLite file beside the Postgres instance"


def _check_recorded(instance: dg.DagsterInstance, url: str, runs: list[dg.DagsterRun]) -> None:
    """Every run succeeded, several at once; one materialization and one passed check per day;
    the database holds exactly these runs and events."""
    context = {r.tags.get("dagster/partition"): r.status.value for r in runs}
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}, context
    assert sorted(r.tags["dagster/partition"] for r in runs) == DAYS
    records = [instance.get_run_record_by_id(r.run_id) for r in runs]
    at_once = _overlap([(rec.start_time, rec.end_time) for rec in records])
    print(f"\npostgres backfill: {len(runs)} runs, at most {at_once} at once")
    assert at_once >= 3, f"{at_once} runs at once: {[(r.start_time, r.end_time) for r in records]}"

    key = dg.AssetKey("daily_numbers")
    for run in runs:
        day = run.tags["dagster/partition"]
        materialized = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day]), limit=10
        ).records
        assert [m.run_id for m in materialized] == [run.run_id], day
        meta = materialized[0].asset_materialization.metadata
        assert meta["rows"].value == int(day[-2:]) * 10
        checks = [
            e.dagster_event.event_specific_data
            for e in instance.all_logs(
                run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
            )
        ]
        assert [(c.check_name, c.passed, c.partition) for c in checks] == [
            ("daily_numbers_has_rows", True, day)
        ], (day, checks)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from runs")
        assert cur.fetchone()[0] == len(DAYS)
        cur.execute(
            "select count(*) from event_logs where dagster_event_type = 'ASSET_MATERIALIZATION'"
        )
        assert cur.fetchone()[0] == len(DAYS)
        cur.execute(
            "select count(*) from event_logs where dagster_event_type = 'ASSET_CHECK_EVALUATION'"
        )
        assert cur.fetchone()[0] == len(DAYS)
    conn.close()
