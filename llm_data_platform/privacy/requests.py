"""``ldp forget``: a deletion request written to the landing folder, then applied."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import uuid
from datetime import UTC, datetime

REQUESTS_STREAM = "deletion_requests"


def write_request(
    landing_dir: str, user_id: str | None = None, conversation_id: str | None = None
) -> tuple[str, str]:
    """One request file (atomic: hidden temp name, renamed); returns (request id, path)."""
    if not user_id and not conversation_id:
        raise ValueError("name a user (--user) or a conversation (--conversation) to forget")
    now = datetime.now(UTC)
    request_id = f"del-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    line = {"request_id": request_id, "requested_at": now.isoformat()}
    line.update(
        {k: v for k, v in (("user_id", user_id), ("conversation_id", conversation_id)) if v}
    )
    folder = os.path.join(landing_dir, REQUESTS_STREAM)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{request_id}.jsonl")
    fd, tmp = tempfile.mkstemp(prefix=".request.", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
    os.replace(tmp, path)
    return request_id, path


def cmd_forget(args: argparse.Namespace) -> int:
    import dagster as dg

    from llm_data_platform.definitions import defs
    from llm_data_platform.settings import load_settings

    settings = load_settings()
    request_id, path = write_request(settings.landing_dir, args.user, args.conversation)
    print(f"request {request_id} written to {path}")
    if args.no_run:
        print("not applied now: the deletion_requests_sensor applies it (`make dev`).")
        return 0
    result = defs.resolve_job_def("forget_job").execute_in_process(
        instance=dg.DagsterInstance.get(), raise_on_error=False
    )
    if not result.success:
        print(f"the purge failed; see run {result.run_id} in the Dagster UI")
        return 1
    audit = result.output_for_node("deletion_audit")
    mine = audit.filter(audit["purged_at"] == audit["purged_at"][-1]) if audit.num_rows else audit
    print(f"purged: {sum(mine['rows_removed'].to_pylist())} rows from {mine.num_rows} files")
    for row in mine.to_pylist():
        print(
            f"  {row['location']:<8} {row['table']:<34} {row['partition']:<28} "
            f"{row['rows_removed']:>6}"
        )
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("forget", help="forget a user or a conversation everywhere (a purge run)")
    p.add_argument("--user", help="user id to forget")
    p.add_argument("--conversation", help="conversation id to forget")
    p.add_argument("--no-run", action="store_true", help="only write the request")
    p.set_defaults(func=cmd_forget)
