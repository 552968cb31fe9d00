"""One commit per partition across a step's tables: a process killed at any point leaves them
wholly old or, once recovered, wholly new — never one new and the other old."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pyarrow as pa

from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.resources.lake_commit import COMMITS_DIR, recover_commits
from llm_data_platform_tests.conftest import DAYS, make_platform, materialize_daily

TABLES = ("main_table", "side_table")


def _version(lake: LakeResource, table: str) -> set[str]:
    found = lake.read_partition("clean", table, "2026-01-05")
    return set(found["v"].to_pylist()) if found is not None else set()


def _write_old(lake: LakeResource) -> None:
    for table in TABLES:
        lake.write_partition("clean", table, "2026-01-05", pa.table({"v": ["old"]}))


def _crash_script(root: Path, kill_at: str) -> str:
    """A process that commits new versions of both tables and SIGKILLs itself at ``kill_at``:
    during the second staged write, or after the first of the two moves."""
    return textwrap.dedent(
        f"""
        import os, signal
        import pyarrow as pa
        from llm_data_platform.resources import lake as lake_mod, lake_commit
        from llm_data_platform.resources.lake import LakeResource

        lake = LakeResource(root={str(root)!r})
        die = lambda: os.kill(os.getpid(), signal.SIGKILL)
        if {kill_at!r} == "second_write":
            calls = []
            real_write = lake_mod.LakeResource.write_bytes
            def write_bytes(self, path, data, report_as=None):
                calls.append(path)
                if len(calls) == 2:
                    die()
                return real_write(self, path, data, report_as)
            lake_mod.LakeResource.write_bytes = write_bytes
        else:
            real_replace, moved = os.replace, []
            def replace(src, dst):
                if os.path.basename(dst) == "data.parquet":  # a pending file's move
                    if moved:
                        die()
                    moved.append(src)
                return real_replace(src, dst)
            lake_commit.os.replace = replace
        commit = lake.commit()
        for table in {list(TABLES)!r}:
            path = lake.partition_path("clean", table, "2026-01-05") + "/data.parquet"
            commit.add_table(path, pa.table({{"v": ["new"]}}))
        commit.apply()
        """
    )


def _run_crashing(root: Path, kill_at: str) -> None:
    script = _crash_script(root, kill_at)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr.decode()[-2000:]


def test_commit_is_invisible_until_applied_then_whole(tmp_path):
    lake = LakeResource(root=str(tmp_path))
    _write_old(lake)
    commit = lake.commit()
    for table in TABLES:
        path = lake.partition_path("clean", table, "2026-01-05") + "/data.parquet"
        commit.add_table(path, pa.table({"v": ["new"]}))
    # staged, not committed: every reader — a partition read, a dataset scan — sees the old
    assert [_version(lake, t) for t in TABLES] == [{"old"}, {"old"}]
    assert lake.dataset("clean", "main_table").to_table()["v"].to_pylist() == ["old"]
    commit.apply()
    assert [_version(lake, t) for t in TABLES] == [{"new"}, {"new"}]
    assert not list((tmp_path / COMMITS_DIR).glob("*.json"))


def test_killed_before_the_commit_point_leaves_both_old(tmp_path):
    lake = LakeResource(root=str(tmp_path))
    _write_old(lake)
    _run_crashing(tmp_path, "second_write")
    assert recover_commits(lake) == 0
    assert [_version(lake, t) for t in TABLES] == [{"old"}, {"old"}]


def test_killed_between_the_moves_is_rolled_forward_by_the_next_run(tmp_path):
    lake = LakeResource(root=str(tmp_path))
    _write_old(lake)
    _run_crashing(tmp_path, "second_move")
    # the dead process left one table new and the other old, and its commit record
    assert sorted(_version(lake, t).pop() for t in TABLES) == ["new", "old"]
    records = list((tmp_path / COMMITS_DIR).glob("*.json"))
    assert len(records) == 1 and len(json.loads(records[0].read_text())["moves"]) == 2

    @dg.asset
    def anything(lake: LakeResource) -> None:
        """Any run with the lake: its setup finishes the dead run's commit first."""

    result = dg.materialize([anything], resources={"lake": lake})
    assert result.success
    assert [_version(lake, t) for t in TABLES] == [{"new"}, {"new"}]
    assert not list((tmp_path / COMMITS_DIR).glob("*.json"))


def test_a_clean_run_killed_after_its_commit_point_recovers_whole(tmp_path):
    """The real clean step, in its own process, killed after the commit record: the clean
    day and its dropped rows are both absent until the next run, then both there and
    reconciled with the raw day."""
    platform = make_platform(tmp_path)
    raw = materialize_daily(platform, DAYS[:1], dg.AssetSelection.assets("raw_conversations"))
    assert raw.success
    script = textwrap.dedent(
        f"""
        import os, signal
        import dagster as dg
        from llm_data_platform.definitions import build_resources, graph
        from llm_data_platform.resources import lake_commit
        from llm_data_platform.settings import load_settings

        lake_commit._roll_forward = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
        settings = load_settings(dict(os.environ))
        dg.materialize(
            graph(settings),
            selection=dg.AssetSelection.assets(
                "conversations_clean", "conversations_clean_dropped"
            ),
            resources=build_resources(settings),
            partition_key={DAYS[0]!r},
        )
        """
    )
    env = {**os.environ, **platform.env}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=300)
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    lake = platform.resources["lake"]
    tables = ("conversations_clean", "conversations_clean_dropped")
    assert [lake.read_partition("clean", t, DAYS[0]) for t in tables] == [None, None]

    assert recover_commits(lake) == 1
    clean, dropped = (lake.read_partition("clean", t, DAYS[0]) for t in tables)
    received = lake.read_partition("raw", "raw_conversations", DAYS[0]).num_rows
    assert clean.num_rows > 0 and dropped.num_rows > 0
    assert clean.num_rows + dropped.num_rows == received
