"""Staging asks who is forgotten before every micro-batch: the answer is read from the lake
once, and again only when a new request changed the table."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pyarrow as pa

from llm_data_platform.privacy.subjects import KEY, REQUESTS, TABLE, ZONE, load_subjects
from llm_data_platform.resources.lake import LakeResource


def _requests(*users: str) -> pa.Table:
    now = datetime(2026, 1, 5, tzinfo=UTC)
    rows = [
        {"request_id": f"r{i}", "user_id": u, "conversation_id": None, "requested_at": now}
        for i, u in enumerate(users)
    ]
    return pa.Table.from_pylist(rows, schema=REQUESTS)


def test_subjects_are_read_once_until_the_table_changes(tmp_path, monkeypatch):
    lake = LakeResource(root=str(tmp_path))
    reads: list[str] = []
    real = LakeResource.read_partition

    def counting(self, zone, table, key, *args, **kwargs):
        reads.append(table)
        return real(self, zone, table, key, *args, **kwargs)

    monkeypatch.setattr(LakeResource, "read_partition", counting)
    assert not load_subjects(lake) and reads == []  # no table yet: nothing to read

    lake.write_partition(ZONE, TABLE, KEY, _requests("u-1"))
    for _ in range(50):  # fifty micro-batches of one run
        assert load_subjects(lake).user_ids == {"u-1"}
    assert reads == [TABLE]

    lake.write_partition(ZONE, TABLE, KEY, _requests("u-1", "u-2"))
    path = os.path.join(lake.partition_path(ZONE, TABLE, KEY), "data.parquet")
    os.utime(path, ns=(1, 1))  # a rewrite is seen even if the clock did not move
    assert load_subjects(lake).user_ids == {"u-1", "u-2"}
    assert reads == [TABLE, TABLE]
