"""Processes of a real Dagster site for a test: webserver, daemon, CLI runs, in their own sessions.

What the daemon tests share (test_dead_runs.py, test_postgres_instance.py): ``Site`` starts each
process in a new session, knows every process it started (sessions and descendants, by start
time, so a reused pid is never taken for ours), SIGKILLs a tree of its own on purpose, talks
to the webserver's GraphQL on loopback, and stops everything it started — by pid, never by name.
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
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

BIN = Path(sys.executable).parent
STOP_SECONDS = 20  # SIGTERM → SIGKILL
START_SECONDS = 60  # webserver up

LAUNCH = """
mutation($p: ExecutionParams!) {
  launchRun(executionParams: $p) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


# ---- processes ------------------------------------------------------------------------------


def process_stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, session id, start time) of a live process, None when it is gone or a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[3]), int(fields[19])


def process_rss(pid: int) -> int:
    """Resident bytes of a live process; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def process_cmdline(pid: int, chars: int = 160) -> str:
    """The command line of a process (to name it in a report); "?" when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\x00", b" ").decode(errors="replace").strip()[:chars]


def _table() -> dict[int, tuple[int, int, int]]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := process_stat(int(entry))) is not None:
            out[int(entry)] = stat
    return out


def _descendants(root: int, table: dict[int, tuple[int, int, int]]) -> set[int]:
    found = {root}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _, _) in table.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grew = True
    return found - {root}


@dataclass
class Site:
    root: Path
    env: dict[str, str]
    location: str = ""  # the code location's name, for launches
    procs: list[subprocess.Popen] = field(default_factory=list)
    seen: dict[int, int] = field(default_factory=dict)  # pid → start time: ours, not reused
    url: str = ""

    def start(self, args: list[str], name: str) -> subprocess.Popen:
        with open(self.root / f"{name}.log", "wb") as out:
            proc = subprocess.Popen(
                args,
                env=self.env,
                cwd=self.root,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own session and group: found and stopped by its id
            )
        self.procs.append(proc)
        return proc

    def ours(self) -> set[int]:
        """Every live process this test started: its sessions, and their descendants."""
        table = _table()
        roots = {p.pid for p in self.procs}
        found = {pid for pid, (_, sid, _) in table.items() if sid in roots} | (roots & set(table))
        for pid in list(found):
            found |= _descendants(pid, table)
        for pid in found:
            self.seen.setdefault(pid, table[pid][2])
        return found

    def alive(self) -> list[int]:
        self.ours()
        return [
            pid
            for pid, started in self.seen.items()
            if (stat := process_stat(pid)) is not None and stat[2] == started
        ]

    def kill_tree(self, pid: int) -> list[int]:
        """SIGKILL a process this test started and every descendant, the parent first (as a
        machine that loses the process would: nothing left to report the children)."""
        table = _table()
        assert pid in self.ours(), f"pid {pid} is not a process this test started"
        tree = [pid, *sorted(_descendants(pid, table))]
        for victim in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        return tree

    def stop(self) -> None:
        """SIGTERM to each session's group, SIGKILL after STOP_SECONDS; then any process of
        ours still alive (a code server or run worker that left the group) by its pid."""
        self.ours()
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_SECONDS)
        deadline = time.monotonic() + STOP_SECONDS
        while (left := self.alive()) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)

    def post(self, query: str, variables: dict | None = None) -> tuple[int, dict]:
        return graphql_post(self.url, query, variables)

    def launch(self, job: str) -> str:
        """A run through the queue, as the UI's Launch button does."""
        repository = {"repositoryLocationName": self.location, "repositoryName": "__repository__"}
        params = {"selector": {**repository, "jobName": job}, "runConfigData": {}}
        status, body = self.post(LAUNCH, {"p": params})
        result = (body.get("data") or {}).get("launchRun") or {}
        assert status == 200 and result.get("__typename") == "LaunchRunSuccess", (job, body)
        return result["run"]["runId"]

    def log(self, name: str, chars: int = 3000) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def start_webserver(self, workspace: Path) -> subprocess.Popen:
        """``dagster-webserver`` on a free loopback port, waited for until GraphQL answers."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/graphql"
        web = self.start(
            [str(BIN / "dagster-webserver"), "-w", str(workspace), "-h", "127.0.0.1"]
            + ["-p", str(port)],
            "webserver",
        )
        deadline = time.monotonic() + START_SECONDS
        while True:
            assert web.poll() is None, self.log("webserver")
            with contextlib.suppress(OSError, json.JSONDecodeError):
                status, body = self.post("{ version }")
                if status == 200 and body.get("data"):
                    return web
            assert time.monotonic() < deadline, f"webserver not up:\n{self.log('webserver')}"
            time.sleep(0.25)


def graphql_post(
    url: str, query: str, variables: dict | None = None, timeout: float = 30
) -> tuple[int, dict]:
    """(HTTP status, JSON body) of one GraphQL request to a webserver on loopback."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def project_site(root: Path, env: dict[str, str], dagster_yaml: Path) -> Path:
    """The project's code location as a site under ``root``: DAGSTER_HOME (``env``'s) with
    ``dagster_yaml`` as its instance file, and a workspace.yaml loading the package; returns
    the workspace file."""
    home = Path(env["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(dagster_yaml.read_text())
    workspace = root / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n      module_name: llm_data_platform\n"
        "      location_name: llm_data_platform\n"
    )
    return workspace


def workspace_file(root: Path, code: Path, location: str) -> Path:
    """A workspace.yaml loading one Python file as the code location ``location``."""
    workspace = root / "workspace.yaml"
    workspace.write_text(
        "load_from:\n"
        "  - python_file:\n"
        f"      relative_path: {code.name}\n"
        f"      location_name: {location}\n"
    )
    return workspace


PROJECT_POOLS = (
    "chroma",
    "embedding_model",
    "lake_purge",
    "stage_conversations",
    "stage_documents",
)


def prepared_instance(home: Path, pools: tuple[str, ...] = ()) -> dg.DagsterInstance:
    """The instance of ``home`` with its schema and its pools' limit rows (the project's and
    ``pools``, limit 1 as the shipped default) created here, before several processes open it
    at once: two processes creating SQLite's tables race, and on PostgreSQL two runs creating
    a pool's default limit at once fail one of them (UniqueViolation on concurrency_limits,
    Dagster 1.13, seen in CI)."""
    instance = dg.DagsterInstance.from_config(str(home))
    instance.get_runs(limit=1)
    instance.all_instigator_state()
    for pool in (*PROJECT_POOLS, *pools):
        instance.event_log_storage.set_concurrency_slots(pool, 1)
    return instance


def site_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the site's processes: nothing inherited from LDP_/DAGSTER_."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LDP_", "DAGSTER_"))}
    return env | {"DAGSTER_HOME": str(home)} | (extra or {})
