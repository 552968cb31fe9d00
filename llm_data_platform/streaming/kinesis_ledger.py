"""The Kinesis ingest's durable state in the lake: a checkpoint per shard, a ledger per batch.

Kinesis keeps no consumer positions (the KCL puts them in DynamoDB); here they live in the
lake, beside the micro-batches they describe, so "durable" means one thing for both:

    raw/<stream>_batches/_checkpoints/kinesis/<consumer>/<stream name>/<shard>.json
    raw/<stream>_batches/_ledger/kinesis/<consumer>/<stream name>/<shard>/<after>.json

A checkpoint names the last sequence number whose batch is in the lake. A ledger entry is
keyed by the checkpoint its batch starts after (``after``; ``start`` from the trim horizon):
``writing`` while its files are written (the range ``first..last`` is fixed, so a re-read
writes the same files), ``written`` once they are durable (the checkpoint not yet advanced)
and, with ``keep_committed_ledger``, ``committed`` until a sensor has requested runs for its
event days (``pending_days``, then ``acknowledge``). Every write is atomic (temp + rename, or
one PUT on S3).
"""

from __future__ import annotations

import json
import logging
import posixpath
from typing import TYPE_CHECKING

from llm_data_platform.streaming.microbatch import ZONE, batch_table_names, safe_identity

if TYPE_CHECKING:
    from llm_data_platform.resources.lake import LakeResource

log = logging.getLogger(__name__)

START = "start"  # ``after`` of a shard's first batch: nothing checkpointed yet


def _folder(lake: LakeResource, stream: str, kind: str, consumer: str, name: str) -> str:
    events_table, _ = batch_table_names(stream)
    return lake.path(
        ZONE, events_table, kind, "kinesis", safe_identity(consumer), safe_identity(name)
    )


def checkpoint_path(lake: LakeResource, stream: str, consumer: str, name: str, shard: str) -> str:
    folder = _folder(lake, stream, "_checkpoints", consumer, name)
    return posixpath.join(folder, f"{safe_identity(shard)}.json")


def ledger_path(
    lake: LakeResource, stream: str, consumer: str, name: str, shard: str, after: str | None
) -> str:
    folder = _folder(lake, stream, "_ledger", consumer, name)
    return posixpath.join(folder, safe_identity(shard), f"{after or START}.json")


def _read_json(lake: LakeResource, path: str) -> dict | None:
    data = lake.read_bytes(path)
    return json.loads(data) if data else None


def read_checkpoint(
    lake: LakeResource, stream: str, consumer: str, name: str, shard: str
) -> str | None:
    """The last sequence number of the shard staged durably, None before the first batch."""
    entry = _read_json(lake, checkpoint_path(lake, stream, consumer, name, shard))
    return entry["sequence"] if entry else None


def write_checkpoint(
    lake: LakeResource, stream: str, consumer: str, name: str, shard: str, sequence: str
) -> None:
    path = checkpoint_path(lake, stream, consumer, name, shard)
    lake.write_bytes(path, json.dumps({"shard": shard, "sequence": sequence}).encode())


def read_entry(lake: LakeResource, path: str) -> dict | None:
    return _read_json(lake, path)


def write_entry(lake: LakeResource, path: str, entry: dict) -> None:
    lake.write_bytes(path, json.dumps(entry).encode())


def delete_entry(lake: LakeResource, path: str) -> None:
    fs, _ = lake.filesystem()
    try:
        fs.delete_file(path)
    except (FileNotFoundError, OSError):  # already gone: an entry behind the checkpoint is inert
        log.debug("ledger entry %s not deleted", path)


def settle_entry(lake: LakeResource, path: str, entry: dict, keep: bool) -> None:
    """The checkpoint passed the batch: keep it as ``committed`` (for ``pending_days``) or
    drop it."""
    if keep:
        write_entry(lake, path, {**entry, "state": "committed"})
    else:
        delete_entry(lake, path)


def ledger_entries(
    lake: LakeResource, stream: str, consumer: str, name: str
) -> list[tuple[str, dict]]:
    """(path, entry) of every ledger entry of the stream, in path order."""
    import pyarrow.fs as pafs

    folder = _folder(lake, stream, "_ledger", consumer, name)
    fs, _ = lake.filesystem()
    infos = fs.get_file_info(pafs.FileSelector(folder, recursive=True, allow_not_found=True))
    out = []
    for info in sorted(infos, key=lambda i: i.path):
        if info.type == pafs.FileType.File and info.base_name.endswith(".json"):
            entry = read_entry(lake, info.path)
            if entry is not None:
                out.append((info.path, entry))
    return out


def settle_passed_entries(
    lake: LakeResource,
    stream: str,
    consumer: str,
    name: str,
    checkpoints: dict[str, str | None],
    keep: bool,
) -> None:
    """Entries of batches the checkpoint passed just before a crash (it died between the
    checkpoint and the entry's update): settle them as the run would have."""
    for path, entry in ledger_entries(lake, stream, consumer, name):
        done = checkpoints.get(entry.get("shard"))
        if entry.get("state") == "committed" or done is None:
            continue
        if int(entry["last"]) <= int(done):
            if entry.get("state") == "written":
                settle_entry(lake, path, entry, keep)
            else:
                delete_entry(lake, path)


def pending_days(lake: LakeResource, stream: str, consumer: str, name: str) -> dict[str, list[str]]:
    """Event day → identities of checkpointed batches not yet acknowledged: the daily
    partitions a staging run still has to report."""
    out: dict[str, list[str]] = {}
    for _, entry in ledger_entries(lake, stream, consumer, name):
        if entry.get("state") == "committed":
            for day in entry.get("days", {}):
                out.setdefault(day, []).append(entry["identity"])
    return {day: sorted(ids) for day, ids in sorted(out.items())}


def acknowledge(
    lake: LakeResource, stream: str, consumer: str, name: str, identities: set[str]
) -> int:
    """Forget committed batches whose days are on record; returns how many."""
    done = 0
    for path, entry in ledger_entries(lake, stream, consumer, name):
        if entry.get("state") == "committed" and entry.get("identity") in identities:
            delete_entry(lake, path)
            done += 1
    return done
