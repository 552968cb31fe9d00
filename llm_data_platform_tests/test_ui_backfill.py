"""Backfills as the UI shows them: the backfill page, read through the real webserver's GraphQL.

The issue: after ``dagster job backfill -m llm_data_platform -j daily_job ...`` the backfill
page was blank (GraphQL 500, ``KeyError: 'dagster/asset_partition_range_start'``).

Why: every daily asset has ``BackfillPolicy.single_run()`` (one run handles a whole date range,
so a backfill loads the embedding model once), so the jobs' partition sets carry a ranged
backfill policy, and ``dagster_graphql`` reads the partition statuses of a job backfill with
such a policy from the range tags of its runs (``_get_partition_run_data_for_ranged_job_backfill``
in ``dagster_graphql/schema/backfill.py``). ``dagster job backfill`` (Dagster 1.13) ignores
backfill policies: it submits one run per partition itself, tagged ``dagster/partition`` and
without range tags, and marks the backfill done. Nothing in the project can change what that
command launches; only ``max_partitions_per_run=1`` would make its page load, and that gives
up the one-run-per-range property (and ``dagster asset materialize --partition-range``).

The backfill that works is the one the UI itself launches: ``launchPartitionBackfill``, here
from the command line with ``ldp backfill`` (``backfill_args``); the daemon's backfill loop
honours the policy and submits one run for the range, with range tags. Both are tested here
against a temp DAGSTER_HOME (the project's dagster.yaml), a real ``dagster-webserver`` and a
real ``dagster-daemon run`` on 127.0.0.1, each in its own session and stopped by the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from llm_data_platform.definitions import defs
from llm_data_platform.defs.jobs import DAILY_ASSETS
from llm_data_platform_tests.conftest import DAYS, make_platform, platform_env
from llm_data_platform_tests.daemon import graphql_post

BIN = Path(sys.executable).parent
PROJECT = Path(__file__).resolve().parents[1]
JOB = "daily_job"
LOCATION = "llm_data_platform"  # `-m llm_data_platform`, `make dev` and workspace.yaml agree
REPOSITORY = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
START_SECONDS = 60  # webserver up
BACKFILL_SECONDS = 180  # daemon start → backfill done (its loop ticks every 30 s)
STOP_SECONDS = 30  # SIGTERM → SIGKILL
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def backfill_args(job: str, days: list[str]) -> list[str]:
    """The command users type for a backfill of ``job`` over ``days`` (the README's)."""
    return [str(BIN / "ldp"), "backfill", job, "--from", days[0], "--to", days[-1], "--json"]


# What the backfill page asks for (ui-core useBackfillDetailsQuery.tsx, BackfillFragments.tsx,
# with the counts and runs the backfill rows and tabs read).
BACKFILL_PAGE = """
query BackfillDetailsQuery($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill {
      id status timestamp endTimestamp numPartitions isAssetBackfill partitionSetName
      partitionNames hasCancelPermission hasResumePermission
      assetSelection { path }
      partitionSet { id name mode pipelineName }
      error { message }
      assetBackfillData {
        rootTargetedPartitions { partitionKeys ranges { start end } }
      }
      partitionStatuses { results { id partitionName runId runStatus runDuration } }
      partitionStatusCounts { runStatus count }
      cancelableRuns { runId status }
      runs { runId status tags { key value } }
    }
    ... on PythonError { message stack }
    ... on BackfillNotFoundError { message }
  }
}
"""
BACKFILLS_LIST = """
{
  partitionBackfillsOrError {
    __typename
    ... on PartitionBackfills {
      results { id status isAssetBackfill isValidSerialization numPartitions partitionSetName }
    }
    ... on PythonError { message }
  }
  runsFeedOrError(limit: 20, view: ROOTS) {
    __typename
    ... on RunsFeedConnection {
      results {
        __typename id runStatus
        ... on PartitionBackfill { backfillStatus: status numPartitions }
      }
    }
    ... on PythonError { message }
  }
}
"""
# The job's Partitions tab: for an asset job the UI draws asset partition health.
PARTITION_HEALTH = """
query PartitionHealthQuery($assetKey: AssetKeyInput!, $job: PipelineSelector!) {
  pipelineOrError(params: $job) { ... on Pipeline { isAssetJob } }
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      assetPartitionStatuses {
        ... on TimePartitionStatuses { ranges { status startKey endKey } }
      }
    }
  }
}
"""
RUN_STEPS = """
query($runId: ID!) {
  runOrError(runId: $runId) { ... on Run { stepStats { stepKey status } } }
}
"""
INSTIGATORS = """
query($r: RepositorySelector!) {
  sensorsOrError(repositorySelector: $r) { ... on Sensors { results { id name } } }
  schedulesOrError(repositorySelector: $r) { ... on Schedules { results { id name } } }
}
"""
STOP_SENSOR = "mutation($id: String) { stopSensor(id: $id) { __typename } }"
STOP_SCHEDULE = "mutation($id: String) { stopRunningSchedule(id: $id) { __typename } }"


# ---- processes and the webserver ------------------------------------------------------------


@dataclass
class Site:
    root: Path
    env: dict[str, str]
    procs: list[subprocess.Popen]
    url: str = ""

    def run(self, args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            args, env=self.env, cwd=self.root, capture_output=True, text=True, timeout=timeout
        )
        assert proc.returncode == 0, f"{args[:4]}: {proc.stderr[-3000:]}"
        return proc

    def start(self, args: list[str], name: str) -> subprocess.Popen:
        with open(self.root / f"{name}.log", "wb") as out:
            proc = subprocess.Popen(
                args,
                env=self.env,
                cwd=self.root,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as one, by its id
            )
        self.procs.append(proc)
        return proc

    def post(self, query: str, variables: dict | None = None) -> tuple[int, dict]:
        return graphql_post(self.url, query, variables, timeout=60)

    def ok(self, query: str, variables: dict | None = None) -> dict:
        status, body = self.post(query, variables)
        assert status == 200 and not body.get("errors"), (status, json.dumps(body)[:3000])
        return body["data"]

    def log(self, name: str, chars: int = 3000) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _session_members(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if fields[0] not in ("Z", "X") and int(fields[3]) == sid:
            pids.append(int(entry))
    return pids


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group the test started, SIGKILL after STOP_SECONDS; then any
    member of its session still alive (a code server or run worker) is killed by its pid."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=STOP_SECONDS)
    deadline = time.monotonic() + STOP_SECONDS
    while (left := _session_members(proc.pid)) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


@contextlib.contextmanager
def site(root: Path, env: dict[str, str]):
    """A temp DAGSTER_HOME with the project's dagster.yaml; processes stopped on exit."""
    home = Path(env["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text((PROJECT / "dagster.yaml").read_text())
    # the SQLite schema is created here, before several processes open it at once
    instance = dg.DagsterInstance.from_config(str(home))
    instance.get_runs(limit=1)
    instance.all_instigator_state()
    # the processes see only this test's settings: nothing inherited from LDP_/DAGSTER_
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("LDP_", "DAGSTER_"))} | env
    s = Site(root, full_env, [])
    try:
        yield s
    finally:
        for proc in reversed(s.procs):
            _stop(proc)


def start_webserver(s: Site) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    web = s.start(
        [str(BIN / "dagster-webserver"), "-m", LOCATION, "-h", "127.0.0.1", "-p", str(port)],
        "webserver",
    )
    s.url = f"http://127.0.0.1:{port}/graphql"
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        assert web.poll() is None, s.log("webserver")
        with contextlib.suppress(OSError, json.JSONDecodeError):
            status, body = s.post("{ version }")
            if status == 200 and body.get("data"):
                return
        time.sleep(0.25)
    raise AssertionError(f"webserver not up in {START_SECONDS} s:\n{s.log('webserver')}")


def stop_instigators(s: Site) -> None:
    """Sensors and schedules off (as in the UI), so that the daemon runs only the backfill:
    the staging below would otherwise set off the raw sensors' per-day runs of the same days."""
    data = s.ok(INSTIGATORS, {"r": REPOSITORY})
    for sensor in data["sensorsOrError"]["results"]:
        result = s.ok(STOP_SENSOR, {"id": sensor["id"]})["stopSensor"]
        assert result["__typename"] == "StopSensorMutationResult", (sensor["name"], result)
    for schedule in data["schedulesOrError"]["results"]:
        result = s.ok(STOP_SCHEDULE, {"id": schedule["id"]})["stopRunningSchedule"]
        assert result["__typename"] == "ScheduleStateResult", (schedule["name"], result)


def stage(s: Site) -> None:
    """Landing files → micro-batches (unpartitioned), so the raw days have something to read."""
    batches = ",".join(
        f"{st}_batches{q}" for st in ("conversations", "documents") for q in ("", "_quarantine")
    )
    s.run([str(BIN / "dagster"), "asset", "materialize", "-m", LOCATION, "--select", batches])


def tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["tags"]}


# ---- the tests ------------------------------------------------------------------------------


def test_daemon_backfill_of_daily_job_opens_in_the_ui(tmp_path):
    """The README's backfill command: one run for the whole range, and a backfill page, list
    and partition view without errors that show every day done by that run."""
    platform = make_platform(tmp_path)
    with site(tmp_path, platform.env) as s:
        stage(s)
        start_webserver(s)
        stop_instigators(s)

        launched = json.loads(s.run(backfill_args(JOB, DAYS)).stdout)
        assert launched["partitions"] == DAYS, launched
        backfill_id = launched["backfill_id"]

        daemon = s.start([str(BIN / "dagster-daemon"), "run", "-m", LOCATION], "daemon")
        deadline = time.monotonic() + BACKFILL_SECONDS
        while True:
            # the page loads at every stage of the backfill, not only at the end
            page = s.ok(BACKFILL_PAGE, {"backfillId": backfill_id})["partitionBackfillOrError"]
            assert page["__typename"] == "PartitionBackfill", page
            if page["status"] != "REQUESTED" and page["runs"] and not page["cancelableRuns"]:
                break
            assert daemon.poll() is None, s.log("daemon")
            assert time.monotonic() < deadline, (
                f"backfill not done in {BACKFILL_SECONDS} s: {json.dumps(page)[:2000]}\n"
                + s.log("daemon")
            )
            time.sleep(2)

        assert page["status"] == "COMPLETED_SUCCESS", (page, s.log("daemon"))
        assert page["error"] is None
        assert not page["isAssetBackfill"]
        assert page["partitionSetName"] == f"{JOB}_partition_set"
        assert page["partitionSet"]["pipelineName"] == JOB
        assert page["partitionNames"] == DAYS
        assert page["numPartitions"] == len(DAYS)

        # one run for the range (the embedding model loads once), tagged as a range
        assert len(page["runs"]) == 1, page["runs"]
        run = page["runs"][0]
        assert run["status"] == "SUCCESS"
        assert tags(run)[RANGE_START] == DAYS[0]
        assert tags(run)[RANGE_END] == DAYS[-1]
        assert "dagster/partition" not in tags(run)
        steps = s.ok(RUN_STEPS, {"runId": run["runId"]})["runOrError"]["stepStats"]
        embedding_steps = [st for st in steps if st["stepKey"] == "chunk_embeddings"]
        assert [st["status"] for st in embedding_steps] == ["SUCCESS"], steps

        # the overview: every day of the backfill, done by that run
        statuses = page["partitionStatuses"]["results"]
        assert [p["partitionName"] for p in statuses] == DAYS
        assert {(p["runId"], p["runStatus"]) for p in statuses} == {(run["runId"], "SUCCESS")}
        assert page["partitionStatusCounts"] == [{"runStatus": "SUCCESS", "count": len(DAYS)}]

        # the backfills list and the runs feed
        lists = s.ok(BACKFILLS_LIST)
        listed = {b["id"]: b for b in lists["partitionBackfillsOrError"]["results"]}
        assert listed[backfill_id]["status"] == "COMPLETED_SUCCESS"
        assert listed[backfill_id]["isValidSerialization"]
        feed = {e["id"]: e for e in lists["runsFeedOrError"]["results"]}
        assert feed[backfill_id]["backfillStatus"] == "COMPLETED_SUCCESS"

        # the job's Partitions tab (asset health, from the run's per-day materializations)
        job = {"pipelineName": JOB, **REPOSITORY}
        for asset in DAILY_ASSETS:
            health = s.ok(PARTITION_HEALTH, {"assetKey": {"path": [asset]}, "job": job})
            assert health["pipelineOrError"]["isAssetJob"]
            ranges = health["assetNodeOrError"]["assetPartitionStatuses"]["ranges"]
            assert {"status": "MATERIALIZED", "startKey": DAYS[0], "endKey": DAYS[-1]} in ranges, (
                asset,
                ranges,
            )


def test_dagster_job_backfill_of_a_single_run_job_still_breaks_the_backfill_page(tmp_path):
    """Why the README does not use ``dagster job backfill`` for these jobs (Dagster 1.13): it
    launches one run per day without range tags, and the page of a backfill whose job has a
    ranged backfill policy then fails. When an upgrade fixes this, this test fails: the README
    may then offer ``dagster job backfill`` again. No daemon: the runs it queued never start."""
    policy = defs.resolve_job_def(JOB).backfill_policy
    assert policy is not None and policy.max_partitions_per_run is None  # single_run

    env = platform_env(tmp_path)
    with site(tmp_path, env) as s:
        proc = s.run(
            [
                *(str(BIN / "dagster"), "job", "backfill", "-m", LOCATION, "-j", JOB),
                *("--partitions", ",".join(DAYS), "--noprompt"),
            ]
        )
        backfill_id = proc.stdout.split("Launched backfill job `")[1].split("`")[0]
        start_webserver(s)

        lists = s.ok(BACKFILLS_LIST)
        runs = dg.DagsterInstance.from_config(env["DAGSTER_HOME"]).get_runs(
            dg.RunsFilter(tags={"dagster/backfill": backfill_id})
        )
        assert sorted(r.tags.get("dagster/partition") for r in runs) == DAYS
        assert not any(RANGE_START in r.tags for r in runs)
        assert backfill_id in {b["id"] for b in lists["partitionBackfillsOrError"]["results"]}

        status, body = s.post(BACKFILL_PAGE, {"backfillId": backfill_id})
        assert status == 500, body
        failed = {tuple(e["path"][-1:]) for e in body["errors"]}
        assert failed == {("partitionStatuses",), ("partitionStatusCounts",)}, body["errors"]
        assert all(RANGE_START in e["message"] for e in body["errors"]), body["errors"]
