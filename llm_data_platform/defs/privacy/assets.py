"""Privacy domain: deletion requests, and the purge of the forgotten users' data.

``ldp forget --user U`` (or a JSONL line dropped into the landing folder's
``deletion_requests/``) makes a request; ``deletion_requests`` reads every request and the
conversations each forgotten user has in the lake; ``deletion_audit`` purges them from every
file (lake tables and side tables, weekly training files, landing inputs) and records what
it removed where. From the moment ``deletion_requests`` is written, staging drops any later
arrival of a forgotten user before it is written.
"""

import json
import os
from datetime import UTC, datetime

import dagster as dg
import pyarrow as pa

from llm_data_platform.lib.metadata import preview_markdown
from llm_data_platform.privacy.purge import (
    conversations_of_users,
    purge_lake_tables,
    purge_landing,
    purge_training_batches,
)
from llm_data_platform.privacy.requests import REQUESTS_STREAM
from llm_data_platform.privacy.subjects import (
    KEY,
    REQUESTS,
    TABLE,
    ZONE,
    load_subjects,
    subjects_of,
)
from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.resources.landing import LandingFolderResource

AUDIT = pa.schema(
    [
        ("purge_id", pa.string()),
        ("requests", pa.string()),  # request ids applied, comma-separated
        ("location", pa.string()),  # lake | landing
        ("table", pa.string()),
        ("partition", pa.string()),
        ("path", pa.string()),
        ("rows_removed", pa.int64()),
        ("purged_at", pa.timestamp("us", tz="UTC")),
    ]
)


def _parse_request(line: str, where: str) -> dict:
    request = json.loads(line)
    if not isinstance(request, dict):
        raise ValueError("not a JSON object")
    user, conversation = request.get("user_id"), request.get("conversation_id")
    if not (isinstance(user, str) and user) and not (
        isinstance(conversation, str) and conversation
    ):
        raise ValueError("names neither a user_id nor a conversation_id")
    requested_at = datetime.fromisoformat(
        str(request.get("requested_at") or datetime.now(UTC).isoformat()).replace("Z", "+00:00")
    )
    return {
        "request_id": str(request.get("request_id") or f"{where}"),
        "user_id": user or None,
        "conversation_id": conversation or None,
        "requested_at": requested_at.astimezone(UTC),
        "source_file": where.rsplit(":", 1)[0],
    }


def read_requests(folder: str) -> tuple[list[dict], list[str]]:
    """Every request line under ``folder``; (requests, problems with file:line and reason)."""
    requests, problems = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(f for f in filenames if f.endswith(".jsonl") and f[0] != "."):
            path = os.path.join(dirpath, name)
            key = os.path.relpath(path, folder)
            with open(path, encoding="utf-8", errors="replace") as f:
                for number, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    try:
                        requests.append(_parse_request(line, f"{key}:{number}"))
                    except (ValueError, TypeError) as exc:
                        problems.append(f"{key}:{number}: {exc}")
    return requests, problems


@dg.asset(
    group_name="privacy",
    kinds={"parquet"},
    metadata={"lake_zone": "raw"},
    description="Every deletion request (a user or a conversation to forget), with each "
    "forgotten user's conversations found in the lake. Staging drops later arrivals of these.",
)
def deletion_requests(
    context: dg.AssetExecutionContext, lake: LakeResource, landing: LandingFolderResource
) -> pa.Table:
    requests, problems = read_requests(os.path.join(landing.path, REQUESTS_STREAM))
    for problem in problems:
        context.log.warning(f"deletion request not understood: {problem}")
    unique = {r["request_id"]: r for r in requests}
    rows = list(unique.values())
    asked = subjects_of(pa.Table.from_pylist(rows, schema=REQUESTS))
    for conversation in sorted(conversations_of_users(lake, asked.user_ids)):
        rows.append({"request_id": "expanded", "conversation_id": conversation})
    table = pa.Table.from_pylist(rows, schema=REQUESTS)
    context.add_output_metadata(
        {
            "requests": len(unique),
            "users": len(asked.user_ids),
            "conversations": len(subjects_of(table).conversation_ids),
            "not_understood": len(problems),
            "problems": dg.MetadataValue.json(problems[:20]),
        }
    )
    return table


@dg.asset(
    group_name="privacy",
    kinds={"parquet"},
    metadata={"lake_zone": "audit"},
    deps=[deletion_requests],
    pool="lake_purge",
    description="What each purge removed, where and when: one row per file rewritten.",
)
def deletion_audit(
    context: dg.AssetExecutionContext, lake: LakeResource, landing: LandingFolderResource
) -> pa.Table:
    """Applies every request so far (a request already applied finds nothing: idempotent)."""
    subjects = load_subjects(lake)
    requests = lake.read_partition(ZONE, TABLE, KEY)
    named = requests["request_id"].to_pylist() if requests is not None else []
    request_ids = sorted({r for r in named if r and r != "expanded"})
    now = datetime.now(UTC)
    removals, removed_lines = purge_lake_tables(lake, subjects) if subjects else ([], {})
    removals += purge_training_batches(
        lake, removed_lines, request_ids, now.isoformat(), subjects.conversation_ids
    )
    removals += purge_landing(landing.path, "conversations", subjects) if subjects else []
    purge_id = now.strftime("%Y%m%dT%H%M%S%fZ")
    new = pa.Table.from_pylist(
        [
            {
                "purge_id": purge_id,
                "requests": ",".join(request_ids),
                "location": r.location,
                "table": r.table,
                "partition": r.partition,
                "path": r.path,
                "rows_removed": r.rows,
                "purged_at": now,
            }
            for r in removals
        ],
        schema=AUDIT,
    )
    previous = lake.read_partition("audit", "deletion_audit", "all")
    audit = pa.concat_tables([previous.cast(AUDIT), new]) if previous is not None else new
    by_table: dict[str, int] = {}
    for r in removals:
        by_table[f"{r.location}:{r.table}"] = by_table.get(f"{r.location}:{r.table}", 0) + r.rows
    context.add_output_metadata(
        {
            "requests_applied": len(request_ids),
            "files_rewritten": len(removals),
            "rows_removed": sum(r.rows for r in removals),
            "removed_by_table": dg.MetadataValue.json(by_table),
            "preview": dg.MetadataValue.md(
                preview_markdown(new.select(["location", "table", "partition", "rows_removed"]))
            ),
        }
    )
    return audit


forget_job = dg.define_asset_job(
    "forget_job",
    selection=[deletion_requests, deletion_audit],
    description="Apply deletion requests: forget users and conversations everywhere.",
)
