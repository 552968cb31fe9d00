"""`ldp ask` through a running `ldp serve`: the server holds the model and the index warm, so
a question costs milliseconds instead of a model load (~10 s, ~21 s on a loaded machine).

Which server: ``LDP_API_URL`` when set; else the one this project's own `ldp serve`
announced in ``<LDP_HOME>/.ldp_serve.json`` (its URL and pid, removed when it stops), so a
server of another project on the same port is never asked. A server that does not answer
``/health`` within a fraction of a second is treated as absent and the caller searches in
its own process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # retrieval imports Chroma and Dagster: not for `ldp` commands that never ask
    from llm_data_platform.retrieval import Hit

PROBE_SECONDS = 0.3
SEARCH_SECONDS = 30.0
ANNOUNCE_FILE = ".ldp_serve.json"


@contextlib.contextmanager
def announced(home: str, url: str) -> Iterator[None]:
    """While the block runs, ``home``'s `ldp ask` finds this server."""
    path = os.path.join(home, ANNOUNCE_FILE)
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump({"url": url, "pid": os.getpid()}, f)
    os.replace(tmp, path)
    # uvicorn re-raises SIGTERM once it has shut down, to the handler installed before it:
    # this one turns it into SystemExit, so the announcement is removed on the way out
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        with contextlib.suppress(OSError):
            os.unlink(path)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def announced_url(home: str) -> str | None:
    """The URL this project's running `ldp serve` announced; None if none runs."""
    try:
        with open(os.path.join(home, ANNOUNCE_FILE)) as f:
            entry = json.load(f)
        os.kill(int(entry["pid"]), 0)  # gone: a server killed before it could clean up
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return str(entry["url"])


class ServerError(RuntimeError):
    """The server answered, but not with hits (a bad filter, no index, a wrong token)."""


def _request(url: str, token: str, body: dict | None, timeout: float) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) URL
        return json.loads(response.read())


def running_server(base_url: str, token: str) -> dict[str, Any] | None:
    """The server's /health when an `ldp serve` answers at ``base_url``; None otherwise."""
    if not base_url.startswith(("http://", "https://")):
        return None
    try:
        health = _request(f"{base_url.rstrip('/')}/health", token, None, PROBE_SECONDS)
    except (OSError, ValueError):  # refused, timed out, 401/503, not JSON
        return None
    is_ours = isinstance(health, dict) and health.get("status") == "ok"
    return health if is_ours and "index_version" in health else None


def search_remote(
    base_url: str,
    token: str,
    question: str,
    k: int,
    where: dict | None,
    hybrid: bool | None,
) -> list[Hit]:
    body = {"question": question, "k": k, "where": where, "hybrid": hybrid}
    try:
        got = _request(f"{base_url.rstrip('/')}/search", token, body, SEARCH_SECONDS)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise ServerError(f"{base_url} refused the search ({exc.code}): {detail}") from exc
    from llm_data_platform.retrieval import Hit

    return [Hit(**hit) for hit in got["hits"]]
