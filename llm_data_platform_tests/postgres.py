"""A real PostgreSQL server for a test: its own cluster in a temp dir, on 127.0.0.1, a free port.

``initdb`` + ``pg_ctl`` from Debian's ``postgresql`` package (``.ci/run`` installs it). The
server refuses to run as root, so as root it runs as the ``postgres`` user the package
creates; the data dir lives outside pytest's root-only temp dir so that user can reach it.
Password authentication (scram) on TCP, so the credentials Dagster reads from the environment
are really used. ``pg_ctl stop`` on exit stops this cluster only (its own pid file).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

USER = "ldp"
PASSWORD = "ldp-test-password"
DATABASE = "dagster"


def _bin(name: str) -> str:
    """The newest installed server binary (Debian keeps them off PATH)."""
    found = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4])
    )
    path = found[-1] if found else shutil.which(name)
    if not path:
        raise RuntimeError(f"{name} not found: `apt-get install -y postgresql` (.ci/run does it)")
    return path


def available() -> bool:
    try:
        _bin("initdb")
        _bin("pg_ctl")
    except RuntimeError:
        return False
    return True


def _as_server_user() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Postgres:
    port: int
    data: Path

    @property
    def env(self) -> dict[str, str]:
        """What deploy/dagster.postgres.yaml reads."""
        return {
            "DAGSTER_PG_USERNAME": USER,
            "DAGSTER_PG_PASSWORD": PASSWORD,
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_DB": DATABASE,
            "DAGSTER_PG_PORT": str(self.port),
        }

    @property
    def url(self) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"


def _run(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{args[:3]} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    """Start a cluster with database ``dagster`` owned by ``ldp``; stop and delete it after."""
    root = Path(tempfile.mkdtemp(prefix="ldp-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    pwfile = root / "pw"
    pwfile.write_text(PASSWORD + "\n")
    runner = _as_server_user()
    if runner:
        owner = pwd.getpwnam("postgres")
        for path in (root, sockets, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    _run(
        [*runner, _bin("initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}"]
        + ["--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync"]
    )
    options = (
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off"
    )
    _run(
        [*runner, _bin("pg_ctl"), "-D", str(data), "-w", "-t", "60", "-l", str(root / "log")]
        + ["-o", options, "start"]
    )
    try:
        _run([*runner, _bin("createdb"), "-h", str(sockets), "-p", str(port), "-U", USER, DATABASE])
        yield Postgres(port, data)
    finally:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            _run([*runner, _bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)
