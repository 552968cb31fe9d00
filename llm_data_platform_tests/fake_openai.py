"""A local HTTP server on 127.0.0.1 that speaks the OpenAI endpoints the platform uses.

Shared by the tests of embeddings, grounded answers and fine-tuning. It runs in a thread and
answers:

* ``POST /v1/embeddings`` — vectors that encode each input's position ("text N" -> 3*[N+1, 1],
  deliberately unnormalised and returned out of order);
* ``POST /v1/chat/completions`` — a canned answer citing [1], after checking that the prompt
  holds ``expect_in_prompt``;
* ``POST /v1/files`` (multipart upload), ``POST /v1/fine_tuning/jobs``,
  ``GET /v1/fine_tuning/jobs/{id}`` and ``GET /v1/fine_tuning/jobs/{id}/events`` — a job
  that goes validating_files -> running -> succeeded over ``polls_to_finish`` retrievals, or
  fails as OpenAI's do when ``job_error`` is set (an invalid training file).

Failures on demand: ``fail`` answers every request with (status, error); ``fail_on[path]``
answers that path's next requests with the listed (status, error) pairs, one per request
(a 429 then success tests the client's retries). It records the Authorization header of every
request and, given ``required_key``, answers 401 to any other (echoing the key it got, as
OpenAI's own 401 does in part).
"""

from __future__ import annotations

import email.parser
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

CANNED_ANSWER = "Use a try statement with an except clause for the exception [1]."
QUOTA = (
    429,
    {
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "type": "insufficient_quota",
        "param": None,
        "code": "insufficient_quota",
    },
)
RATE_LIMIT = (
    429,
    {
        "message": "Rate limit reached for requests. Please try again in 1s.",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    },
)
BAD_KEY = (
    401,
    {
        "message": "Incorrect API key provided: sk-bad. You can find your API key at ...",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    },
)
INVALID_FILE = {
    "code": "invalid_training_file",
    "message": "The job failed due to an invalid training file. Invalid file format.",
    "param": "training_file",
}


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict]] = []
        self.expect_in_prompt: list[str] = []
        self.fail: tuple[int, dict] | None = None
        self.fail_on: dict[str, list[tuple[int, dict]]] = {}
        self.problems: list[str] = []
        self.authorizations: list[str | None] = []
        self.required_key: str | None = None
        self.files: dict[str, dict] = {}  # id -> {"filename", "purpose", "data"}
        self.jobs: dict[str, dict] = {}
        self.polls_to_finish = 2
        self.job_error: dict | None = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- routing ---------------------------------------------------------------------------
    def answer(self, method: str, path: str, headers, body: bytes) -> tuple[int, dict]:
        parsed = self._parse(headers, body) if method == "POST" else {}
        self.requests.append((path, parsed))
        presented = headers.get("Authorization")
        self.authorizations.append(presented)
        if self.required_key and presented != f"Bearer {self.required_key}":
            message = f"Incorrect API key provided: {presented}."
            error = {"message": message, "type": "invalid_request_error"}
            return 401, {"error": {**error, "code": "invalid_api_key"}}
        if self.fail:
            return self.fail[0], {"error": self.fail[1]}
        route = path.split("?", 1)[0]
        if self.fail_on.get(route):
            status, error = self.fail_on[route].pop(0)
            return status, {"error": error}
        if method == "POST" and route == "/v1/embeddings":
            return self.embeddings(parsed)
        if method == "POST" and route == "/v1/chat/completions":
            return self.chat(parsed)
        if method == "POST" and route == "/v1/files":
            return self.upload(parsed)
        if method == "POST" and route == "/v1/fine_tuning/jobs":
            return self.create_job(parsed)
        parts = route.strip("/").split("/")  # v1 fine_tuning jobs ID [events]
        if method == "GET" and parts[:3] == ["v1", "fine_tuning", "jobs"] and len(parts) >= 4:
            job = self.jobs.get(parts[3])
            if job is None:
                return 404, {"error": {"message": f"No such job: {parts[3]}", "code": None}}
            return self.job_events(job) if parts[4:] == ["events"] else self.poll(job)
        return 404, {"error": {"message": f"no route {method} {route}"}}

    @staticmethod
    def _parse(headers, body: bytes) -> dict:
        kind = headers.get("Content-Type", "")
        if kind.startswith("multipart/form-data"):
            message = email.parser.BytesParser().parsebytes(
                f"Content-Type: {kind}\r\n\r\n".encode() + body
            )
            fields = {}
            for part in message.get_payload():
                name = part.get_param("name", header="content-disposition")
                filename = part.get_filename()
                data = part.get_payload(decode=True)
                fields[name] = {"filename": filename, "data": data} if filename else data.decode()
            return fields
        return json.loads(body) if body else {}

    # -- embeddings and chat ---------------------------------------------------------------
    def embeddings(self, body: dict) -> tuple[int, dict]:
        inputs = body["input"]
        if len(inputs) > 2048:
            self.problems.append(f"{len(inputs)} inputs in one request")
            return 400, {"error": {"message": "'input' : maximum 2048 items", "type": "x"}}
        # input "text N" -> 3 * [N + 1, 1]: the direction encodes N, the norm is not 1
        data = [
            {"object": "embedding", "index": i, "embedding": [3.0 * (int(t.split()[-1]) + 1), 3.0]}
            for i, t in enumerate(inputs)
        ]
        usage = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
        payload = {"object": "list", "data": data[::-1], "model": body["model"], "usage": usage}
        return 200, payload

    def chat(self, body: dict) -> tuple[int, dict]:
        prompt = "\n".join(m["content"] for m in body["messages"])
        missing = [t for t in self.expect_in_prompt if t not in prompt]
        if missing:
            self.problems.append(f"prompt lacks {len(missing)} retrieved chunk texts")
            return 400, {"error": {"message": "prompt lacks the retrieved chunks", "type": "x"}}
        message = {"role": "assistant", "content": CANNED_ANSWER}
        return 200, {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": len(prompt) // 4,
                "completion_tokens": 12,
                "total_tokens": len(prompt) // 4 + 12,
            },  # fmt: skip
        }

    def prompts(self) -> list[str]:
        return [
            "\n".join(m["content"] for m in body["messages"])
            for path, body in self.requests
            if path == "/v1/chat/completions"
        ]

    # -- files and fine-tuning jobs --------------------------------------------------------
    def upload(self, fields: dict) -> tuple[int, dict]:
        file = fields.get("file")
        if not isinstance(file, dict) or fields.get("purpose") != "fine-tune":
            return 400, {"error": {"message": "file and purpose=fine-tune required"}}
        for number, line in enumerate(file["data"].decode().splitlines(), start=1):
            try:
                json.loads(line)["messages"]
            except (ValueError, KeyError, TypeError):
                message = f"Invalid file format: line {number} is not a chat example."
                return 400, {"error": {"message": message, "code": "invalid_file_format"}}
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = {"purpose": fields["purpose"], **file}
        return 200, {
            "id": file_id,
            "object": "file",
            "bytes": len(file["data"]),
            "created_at": int(time.time()),
            "filename": file["filename"],
            "purpose": "fine-tune",
            "status": "processed",
        }

    def create_job(self, body: dict) -> tuple[int, dict]:
        for key in ("training_file", "validation_file"):
            if body.get(key) and body[key] not in self.files:
                message = f"invalid {key}: {body[key]} does not exist"
                return 400, {"error": {"message": message, "param": key, "code": None}}
        job_id = f"ftjob-{len(self.jobs) + 1}"
        self.jobs[job_id] = {
            "id": job_id,
            "object": "fine_tuning.job",
            "model": body["model"],
            "created_at": int(time.time()),
            "training_file": body["training_file"],
            "validation_file": body.get("validation_file"),
            "suffix": body.get("suffix"),
            "status": "validating_files",
            "fine_tuned_model": None,
            "finished_at": None,
            "error": None,
            "trained_tokens": None,
            "result_files": [],
            "hyperparameters": {"n_epochs": "auto"},
            "organization_id": "org-test",
            "seed": 1,
            "polls": 0,
            "events": ["Validating training file"],
        }
        return 200, self._public(self.jobs[job_id])

    def poll(self, job: dict) -> tuple[int, dict]:
        job["polls"] += 1
        if job["status"] in ("validating_files", "running"):
            if self.job_error and job["polls"] >= 1:
                job.update(status="failed", error=self.job_error, finished_at=int(time.time()))
                job["events"].append(self.job_error["message"])
            elif job["polls"] >= self.polls_to_finish:
                data = self.files[job["training_file"]]["data"]
                job.update(
                    status="succeeded",
                    finished_at=int(time.time()),
                    fine_tuned_model=f"ft:{job['model']}:org-test:{job['suffix']}:abc123",
                    trained_tokens=len(data.split()),
                )
                job["events"].append("The job has successfully completed")
            else:
                job["status"] = "running"
                job["events"].append(f"Step {job['polls']}/{self.polls_to_finish}")
        return 200, self._public(job)

    @staticmethod
    def job_events(job: dict) -> tuple[int, dict]:
        events = [
            {
                "id": f"ftevent-{i}",
                "object": "fine_tuning.job.event",
                "created_at": int(time.time()),
                "level": "error"
                if job["status"] == "failed" and i == len(job["events"]) - 1
                else "info",
                "message": message,
                "type": "message",
            }
            for i, message in enumerate(job["events"])
        ][::-1]  # newest first, as OpenAI lists them
        return 200, {"object": "list", "data": events, "has_more": False}

    @staticmethod
    def _public(job: dict) -> dict:
        return {k: v for k, v in job.items() if k not in ("polls", "events", "suffix")}


def _handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._send(*fake.answer("POST", self.path, self.headers, body))

        def do_GET(self) -> None:  # noqa: N802
            self._send(*fake.answer("GET", self.path, self.headers, b""))

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if status == 429:  # as OpenAI does; the client waits this long before a retry
                self.send_header("retry-after-ms", "10")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    return Handler


@contextmanager
def serving(fake: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """Run ``fake`` on its port for the block; stopped and closed after."""
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        fake.thread.join(timeout=5)


@pytest.fixture(name="fake_openai")
def fake_openai_server():
    """The server for one test (import this into a test module to use ``fake_openai``)."""
    with serving(FakeOpenAI()) as fake:
        yield fake
