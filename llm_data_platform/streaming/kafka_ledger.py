"""The Kafka ingest's ledger: one JSON entry per batch, so a crash never writes a batch twice.

An entry is ``writing`` while a batch's files are written, ``written`` once they are durable
(its offsets not yet committed) and, with ``keep_committed_ledger``, ``committed`` until a
sensor has requested runs for its event days (``pending_days``, then ``acknowledge``).
"""

from __future__ import annotations

import json
import logging
import posixpath
from typing import TYPE_CHECKING

from llm_data_platform.streaming.kafka_config import OFFSET_WIDTH, KafkaSourceConfig
from llm_data_platform.streaming.microbatch import ZONE, batch_table_names, safe_identity

if TYPE_CHECKING:
    from llm_data_platform.resources.lake import LakeResource

# the logger these messages have always gone to
log = logging.getLogger("llm_data_platform.streaming.kafka_source")


def _ledger_path(lake: LakeResource, config: KafkaSourceConfig, partition: int, first: int) -> str:
    events_table, _ = batch_table_names(config.stream)
    return lake.path(
        ZONE,
        events_table,
        "_ledger",
        "kafka",
        safe_identity(config.group_id),
        safe_identity(config.topic),
        f"p={partition}",
        f"{first:0{OFFSET_WIDTH}d}.json",
    )


def _ledger_read(lake: LakeResource, path: str) -> dict | None:
    data = lake.read_bytes(path)
    return json.loads(data) if data else None


def _ledger_delete(lake: LakeResource, path: str) -> None:
    fs, _ = lake.filesystem()
    try:
        fs.delete_file(path)
    except (FileNotFoundError, OSError):  # already gone; a stale entry below the offset is inert
        log.debug("ledger entry %s not deleted", path)


def _ledger_done(lake: LakeResource, config: KafkaSourceConfig, path: str, entry: dict) -> None:
    """A batch's offsets are committed: drop its entry, or keep it for ``pending_days``."""
    if config.keep_committed_ledger:
        done = {**entry, "topic": config.topic, "state": "committed"}
        lake.write_bytes(path, json.dumps(done).encode())
    else:
        _ledger_delete(lake, path)


def _ledger_entries(lake: LakeResource, config: KafkaSourceConfig) -> list[tuple[str, dict]]:
    import pyarrow.fs as pafs

    folder = posixpath.dirname(posixpath.dirname(_ledger_path(lake, config, 0, 0)))
    fs, _ = lake.filesystem()
    infos = fs.get_file_info(pafs.FileSelector(folder, recursive=True, allow_not_found=True))
    out = []
    for info in sorted(infos, key=lambda i: i.path):
        if info.type == pafs.FileType.File and info.base_name.endswith(".json"):
            entry = _ledger_read(lake, info.path)
            if entry is not None:
                out.append((info.path, entry))
    return out


def _settle_committed_entries(
    lake: LakeResource, config: KafkaSourceConfig, offsets: dict[int, tuple[int, int, int]]
) -> None:
    """Entries of batches whose offsets were committed just before a crash: settle them
    (``offsets``: partition -> (committed or -1, low, high), as ``_offsets`` gives them)."""
    for path, entry in _ledger_entries(lake, config):
        committed = offsets.get(entry.get("partition"), (-1, 0, 0))[0]
        if entry.get("state") != "committed" and 0 <= entry["last"] < committed:
            if entry.get("state") == "written":
                _ledger_done(lake, config, path, entry)
            else:
                _ledger_delete(lake, path)


def pending_days(lake: LakeResource, config: KafkaSourceConfig) -> dict[str, list[str]]:
    """Event day → identities of committed batches not yet acknowledged (with
    ``keep_committed_ledger``): the daily partitions a sensor still has to request."""
    out: dict[str, list[str]] = {}
    for _, entry in _ledger_entries(lake, config):
        if entry.get("state") == "committed":
            for day in entry.get("days", {}):
                out.setdefault(day, []).append(entry["identity"])
    return {day: sorted(ids) for day, ids in sorted(out.items())}


def acknowledge(lake: LakeResource, config: KafkaSourceConfig, identities: set[str]) -> int:
    """Forget committed batches whose runs have been requested; returns how many."""
    done = 0
    for path, entry in _ledger_entries(lake, config):
        if entry.get("state") == "committed" and entry.get("identity") in identities:
            _ledger_delete(lake, path)
            done += 1
    return done
