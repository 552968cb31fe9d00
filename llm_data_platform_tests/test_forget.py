"""Right to be forgotten, end to end: after a purge no byte of the user's messages remains
in any file under the lake, the landing folder, the micro-batches or Chroma, and a later
arrival of theirs is dropped at ingest."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
from datetime import datetime
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from llm_data_platform.privacy.requests import write_request
from llm_data_platform_tests.conftest import (
    DAYS,
    WEEK,
    graph_for,
    make_platform,
    materialize_daily,
    materialize_index,
    materialize_one,
    stage,
)

USER = "user-forget-me-4242"
MARKER = "zebraquartz"  # in every message of the user: survives normalising and redaction
OTHER_MARKER = "otterlagoon"  # another user's conversation in the same file: must stay


def _events(user: str, marker: str, conversation: str, day: str, n: int = 2) -> list[dict]:
    events = []
    for turn in range(n):
        role = "user" if turn % 2 == 0 else "assistant"
        content = (
            f"My {marker} router keeps dropping the connection every evening, what can I do?"
            if role == "user"
            else f"Restart the {marker} router, then update its firmware from the admin page "
            "and move it away from the microwave; that fixes most evening drops."
        )
        events.append(
            {
                "event_id": f"{conversation}-{turn}",
                "type": "message",
                "conversation_id": conversation,
                "turn": turn,
                "role": role,
                "content": content,
                "user_id": user,
                "timestamp": f"{day}T09:0{turn}:00Z",
            }
        )
    events.append(
        {
            "event_id": f"{conversation}-fb",
            "type": "feedback",
            "conversation_id": conversation,
            "rating": 5,
            "user_id": user,
            "timestamp": f"{day}T09:05:00Z",
        }
    )
    return events


def _land(platform, name: str, lines: list[str], gz: bool = False) -> Path:
    path = Path(platform.settings.landing_dir) / "conversations" / DAYS[0] / name
    path.parent.mkdir(parents=True, exist_ok=True)
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    arrived = datetime.fromisoformat(f"{DAYS[0]}T12:00:00+00:00").timestamp()
    os.utime(path, (arrived, arrived))  # landed that day: its unreadable lines are that day's
    return path


def _files_holding(roots: list[Path], needle: str) -> list[str]:
    """Every file under ``roots`` whose content holds ``needle``: Parquet files are read and
    every value searched, gzip files decompressed, anything else searched as bytes."""
    found = []
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if path.suffix == ".parquet":
                text = json.dumps(pq.read_table(path).to_pylist(), default=str)
                hit = needle in text
            else:
                data = path.read_bytes()
                if path.suffix == ".gz":
                    with contextlib.suppress(OSError, EOFError):
                        data = gzip.decompress(data)
                hit = needle.encode() in data
            if hit:
                found.append(str(path.relative_to(root.parent)))
    return found


MINE = {"conv-forget-1", "c-f2"} | {f"{c}-{t}" for c in ("conv-forget-1", "c-f2") for t in "01"}


def _index_keys(lake: Path) -> set[str]:
    """Every id the clean step's dedup index tables hold (hashes and signatures by event or
    conversation)."""
    keys: set[str] = set()
    for table in ("conversations_content_hashes", "conversations_near_dup_signatures"):
        for path in (lake / "clean" / table).rglob("*.parquet"):
            for row in pq.read_table(path).to_pylist():
                keys |= {row.get(k) for k in ("id", "event_id", "conversation_id")} - {None}
    return keys


def test_a_forgotten_user_leaves_no_byte_anywhere(tmp_path):
    platform = make_platform(tmp_path / "platform")
    # a real instance on disk: its run, event-log and compute-log storage are searched too
    dagster_home = Path(platform.env["DAGSTER_HOME"])
    platform.instance = dg.DagsterInstance.local_temp(str(dagster_home))
    mine = _events(USER, MARKER, "conv-forget-1", DAYS[0])
    other = _events("user-keep-1", OTHER_MARKER, "conv-keep-1", DAYS[0])
    _land(platform, "mixed.jsonl", [json.dumps(e) for e in mine + other])
    _land(
        platform,
        "mine.jsonl.gz",
        [json.dumps(e) for e in _events(USER, MARKER, "c-f2", DAYS[0])],
        gz=True,
    )
    _land(platform, "broken.jsonl", [f'{{"user_id": "{USER}", "content": "{MARKER} broken'])
    assert materialize_daily(platform, DAYS).success
    assert materialize_one(platform, "training_batches", WEEK).success
    assert materialize_index(platform).success

    lake = Path(platform.settings.lake_root)
    landing = Path(platform.settings.landing_dir)
    chroma = Path(platform.settings.chroma_path)
    roots = [lake, landing, chroma]
    before = _files_holding(roots, MARKER)
    # what the user wrote never entered Dagster's storage (previews show lengths, not text):
    # the event log cannot be purged by user, so nothing there has to be
    assert list(dagster_home.rglob("*.db")), "no instance storage was written"
    assert _files_holding([dagster_home], MARKER) == []
    # the user's text really is everywhere first: batches, raw, quarantine, clean, training
    for place in (
        "conversations_batches/",
        "conversations_batches_quarantine/",
        "raw_conversations/",
        "raw_conversations_quarantine/",
        "conversations_clean/",
        "training_examples/",
        "train.jsonl",
        "landing/conversations/",
    ):
        assert any(place in f for f in before), (place, before)
    batch_before = json.loads(
        (lake / "curated/training_batches" / f"week={WEEK}" / "manifest.json").read_text()
    )

    assert _index_keys(lake) & MINE, "the dedup index should hold the user's rows first"
    write_request(platform.settings.landing_dir, user_id=USER)
    purge = dg.materialize(
        graph_for(platform.settings),
        selection=["deletion_requests", "deletion_audit"],
        resources=platform.resources,
        instance=platform.instance,
    )
    assert purge.success
    assert _files_holding(roots, MARKER) == []
    # derived data too: the dedup index's hashes and MinHash signatures of their messages
    assert not _index_keys(lake) & MINE, "the user's rows are still in the dedup index"
    # the id itself is left only in the request and its audit, which are the record of it
    holding_id = _files_holding(roots, USER)
    assert holding_id and all(
        "deletion_requests" in f or "deletion_audit" in f for f in holding_id
    ), holding_id
    # the other user's conversation, in the same landing file, is untouched
    assert any("raw_conversations/" in f for f in _files_holding(roots, OTHER_MARKER))

    audit = purge.output_for_node("deletion_audit")
    removed: dict[tuple[str, str], int] = {}
    for r in audit.to_pylist():
        where = (r["location"], r["table"])
        removed[where] = removed.get(where, 0) + r["rows_removed"]
    assert removed[("landing", "conversations")] == 7  # 3 + 3 lines, and the broken one
    assert removed[("lake", "raw_conversations")] == 6  # 2 conversations x (2 turns + rating)
    manifest = json.loads(
        (lake / "curated/training_batches" / f"week={WEEK}" / "manifest.json").read_text()
    )
    assert manifest["deletions"][0]["examples_removed"] >= 1
    total = lambda m: sum(f["examples"] for f in m["files"].values())  # noqa: E731
    assert total(manifest) == total(batch_before) - manifest["deletions"][0]["examples_removed"]

    # a later arrival (and the rewritten landing files, which are new versions) is dropped at
    # ingest: staged runs write none of the user's rows
    _land(platform, "late.jsonl", [json.dumps(e) for e in _events(USER, MARKER, "c-late", DAYS[0])])
    staged = stage(platform)
    assert staged.success
    meta = [
        m.event_specific_data.materialization.metadata
        for m in staged.get_asset_materialization_events()
        if m.asset_key == dg.AssetKey("conversations_batches")
    ]
    assert meta[0]["forgotten_dropped"].value == 3  # its 2 messages and rating
    assert materialize_daily(platform, DAYS).success
    assert _files_holding([lake, chroma], MARKER) == []
    # the late file itself is an input the platform did not write: the next purge run (the
    # deletion_requests_sensor's, or `ldp forget` again) rewrites it too
    assert _files_holding([landing], MARKER) == ["landing/conversations/2026-01-05/late.jsonl"]
    again = dg.materialize(
        graph_for(platform.settings),
        selection=["deletion_requests", "deletion_audit"],
        resources=platform.resources,
        instance=platform.instance,
    )
    assert again.success
    assert _files_holding([*roots, dagster_home], MARKER) == []
