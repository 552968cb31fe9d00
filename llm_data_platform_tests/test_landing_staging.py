"""Landing files → raw micro-batches: what ``stage_file`` and ``read_lines`` promise, on real files.

Every test writes real files (plain and gzip) into a landing folder under ``tmp_path``, stages
them into a local lake of real Parquet files and reads the day back with ``read_day_detailed``.
The file proves that:

- a bad file (corrupt gzip, a gzip still being written, a gzip bomb, a 1 GiB line, NUL bytes,
  invalid UTF-8) becomes quarantine rows naming it, with the reason, while the good files beside
  it land whole — and the bomb and the huge line are read in bounded memory;
- line numbers are 1-based physical lines (blank lines skipped but counted);
- a file version is staged once, by content: a rewrite keeping size and mtime is re-read, a
  completed half-written line leaves no stale quarantine row, an unchanged or merely touched
  file writes nothing;
- events dated outside the partition bounds are quarantined under a day inside them;
- a file staged in several parts is read back once, and a new version removes every old part;
- a concatenated (multi-member) gzip is read whole;
- the reader's caps (line length, line count) and the documents stream's 8 MB line hold exactly.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import os
import resource
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from llm_data_platform.resources.lake import LakeResource
from llm_data_platform.streaming.landing_source import (
    StagedFile,
    list_files,
    read_ledger,
    stage_file,
    stat_file,
)
from llm_data_platform.streaming.line_reader import ReadLimits, read_lines
from llm_data_platform.streaming.microbatch import batch_table_names, read_day_detailed
from llm_data_platform.transforms.records import STREAMS
from llm_data_platform_tests.conftest import time_bound

STREAM = "conversations"
DAY = date(2026, 1, 5)
BOUNDS = (date(2026, 1, 1), date(2026, 1, 31))
MB = 1 << 20
RSS_GROWTH_LIMIT_MB = 300


def noon(day: date) -> float:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC).timestamp()


# ---- helpers -----------------------------------------------------------------------------------
def event(event_id: str, when: date = DAY, **over) -> bytes:
    """One valid conversations-stream event line (no newline)."""
    body = {
        "event_id": event_id,
        "type": "message",
        "conversation_id": f"c-{event_id}",
        "turn": 0,
        "role": "user",
        "content": f"text of {event_id}",
        "user_id": "u1",
        "timestamp": f"{when.isoformat()}T10:00:00Z",
        **over,
    }
    return json.dumps(body).encode()


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:03d}" for i in range(n)]


def jsonl(lines: Iterable[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def land(root: Path, key: str, data: bytes, mtime: float = noon(DAY)) -> Path:
    """Write a landing file with a fixed mtime (its arrival time, hence its arrival day)."""
    path = root.joinpath(*key.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def land_gzip(root: Path, key: str, parts: Iterable[bytes], mtime: float = noon(DAY)) -> Path:
    """Write a gzip landing file piece by piece (never the whole content in memory)."""
    path = root.joinpath(*key.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", compresslevel=1) as out:
        for part in parts:
            out.write(part)
    os.utime(path, (mtime, mtime))
    return path


def stage(lake: LakeResource, root: Path, key: str, **kwargs) -> StagedFile:
    kwargs.setdefault("bounds", BOUNDS)
    return stage_file(lake, STREAM, str(root), key, **kwargs)


def stage_folder(lake: LakeResource, root: Path, **kwargs) -> dict[str, StagedFile]:
    return {f.key: stage(lake, root, f.key, **kwargs) for f in list_files(str(root))}


def source(key: str) -> str:
    return f"{STREAM}/{key}"


def lake_days(lake: LakeResource) -> list[str]:
    """Every day folder of the stream's micro-batch tables (events and quarantine)."""
    found: set[str] = set()
    for table in batch_table_names(STREAM):
        found.update(lake.list_partitions_any("raw", table, "dt"))
    return sorted(found)


def everything(lake: LakeResource) -> tuple[list[dict], list[dict]]:
    """(events, quarantine rows) of every day, each row with its ``dt``."""
    rows: list[dict] = []
    quarantine: list[dict] = []
    for day in lake_days(lake):
        read = read_day_detailed(lake, STREAM, day)
        rows += [{**r, "dt": day} for r in read.rows.to_pylist()]
        quarantine += [{**q, "dt": day} for q in read.quarantine.to_pylist()]
    return rows, quarantine


def of(items: list[dict], key: str) -> list[dict]:
    return sorted(
        (r for r in items if r["source_file"] == source(key)), key=lambda r: r["source_line"]
    )


def event_ids(items: list[dict], key: str) -> list[str]:
    return [r["event_id"] for r in of(items, key)]


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``folder``: (mtime_ns, sha256 of its bytes)."""
    return {
        str(p.relative_to(folder)): (
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in folder.rglob("*")
        if p.is_file()
    }


def batch_files(lake_root: Path) -> set[str]:
    return {str(p.relative_to(lake_root)) for p in lake_root.rglob("*.parquet")}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


GOOD_FILES = {"good/plain.jsonl": ids("plain", 20), "good/packed.jsonl.gz": ids("packed", 20)}


def land_good_files(root: Path) -> None:
    for key, good_ids in GOOD_FILES.items():
        data = jsonl(event(e) for e in good_ids)
        land(root, key, gzip.compress(data) if key.endswith(".gz") else data)


def assert_good_files_landed(rows: list[dict], quarantine: list[dict]) -> None:
    for key, expected in GOOD_FILES.items():
        assert event_ids(rows, key) == expected, key
        assert [r["source_line"] for r in of(rows, key)] == list(range(1, len(expected) + 1))
        assert of(quarantine, key) == [], key


@pytest.fixture
def lake(tmp_path: Path) -> LakeResource:
    return LakeResource(root=str(tmp_path / "lake"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "landing"
    folder.mkdir()
    return folder


# ---- 1. bad files beside good ones -------------------------------------------------------------
@dataclass
class BadFile:
    key: str
    data: bytes
    kept: list[str]  # the file's events that must land, in line order
    rejected: dict[int, str]  # line -> reason prefix: exactly the file's quarantine rows
    records: dict[int, str] = field(default_factory=dict)  # line -> original text kept


def corrupt_gzip() -> BadFile:
    """Garbage in the middle: a byte-aligned point (full flush), then bytes that are not deflate
    (0xFF reads as a block of reserved type 3: "invalid block type")."""
    before, after = ids("pre", 30), ids("post", 30)
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    data = (
        packer.compress(jsonl(event(e) for e in before))
        + packer.flush(zlib.Z_FULL_FLUSH)
        + b"\xff" * 64
        + packer.compress(jsonl(event(e) for e in after))
        + packer.flush()
    )
    reason = "corrupt gzip: Error -3 while decompressing data: invalid block type"
    return BadFile("bad/corrupt.jsonl.gz", data, before, {len(before) + 1: reason})


def truncated_gzip() -> BadFile:
    """A gzip still being written: cut at 60 % of its bytes."""
    all_ids = ids("cut", 200)
    whole = gzip.compress(jsonl(event(e) for e in all_ids))
    data = whole[: len(whole) * 6 // 10]
    readable = zlib.decompressobj(wbits=31).decompress(data)  # what the cut leaves, per zlib
    complete = readable.count(b"\n")
    assert 0 < complete < len(all_ids)
    tail = readable[readable.rindex(b"\n") + 1 :].decode()
    return BadFile(
        "bad/writing.jsonl.gz",
        data,
        all_ids[:complete],
        {complete + 1: "truncated gzip: the file ends before its end marker"},
        {complete + 1: tail},
    )


def nul_bytes() -> BadFile:
    lines = [
        event("nul-ok-1"),
        event("nul-in-string", content="te\x00xt").replace(b"\\u0000", b"\x00"),
        event("nul-after-object") + b"\x00",
        b"\x00\x00\x00\x00",
        event("nul-between-tokens").replace(b', "role"', b',\x00"role"'),
        event("nul-ok-2"),
    ]
    assert all(b"\x00" in line for line in lines[1:5])
    return BadFile(
        "bad/nul.jsonl",
        jsonl(lines),
        ["nul-ok-1", "nul-ok-2"],
        dict.fromkeys(range(2, 6), "invalid JSON: "),
        {2: lines[1].decode(), 4: "\x00\x00\x00\x00"},
    )


def invalid_utf8() -> BadFile:
    broken = [b"caf\xe9", b"\x80lone", b"over\xc0\xaflong", b"\xed\xa0\x80cesu", b"cut\xe2\x82"]
    lines = [
        event("utf-ok-1", content="café ✓"),
        *(event(f"utf-bad-{i}").replace(b"text of", junk) for i, junk in enumerate(broken)),
        event("utf-ok-2"),
    ]
    return BadFile(
        "bad/latin1.jsonl.gz",
        gzip.compress(jsonl(lines)),
        ["utf-ok-1", "utf-ok-2"],
        dict.fromkeys(range(2, 2 + len(broken)), "not valid UTF-8 at byte "),
    )


@pytest.mark.parametrize(
    "make_bad", [corrupt_gzip, truncated_gzip, nul_bytes, invalid_utf8], ids=lambda f: f.__name__
)
def test_a_bad_file_is_quarantined_by_name_and_the_good_files_land(lake, root, make_bad):
    land_good_files(root)
    bad = make_bad()
    land(root, bad.key, bad.data)

    results = stage_folder(lake, root)
    rows, quarantine = everything(lake)

    assert set(results) == {*GOOD_FILES, bad.key}
    assert all(r.status == "staged" for r in results.values())
    assert_good_files_landed(rows, quarantine)
    # every quarantine row names the bad file, and each says why
    assert {q["source_file"] for q in quarantine} == {source(bad.key)}
    mine = of(quarantine, bad.key)
    assert len(mine) == len(bad.rejected)
    for row, prefix in zip(mine, bad.rejected.values(), strict=True):
        assert row["reason"].startswith(prefix), row
    assert event_ids(rows, bad.key) == bad.kept  # the lines before the damage are kept
    assert [q["source_line"] for q in mine] == list(bad.rejected)
    records = {q["source_line"]: q["record"] for q in mine}
    for line, text in bad.records.items():
        assert records[line] == text
    staged = results[bad.key]
    assert (staged.rows, staged.quarantined) == (len(bad.kept), len(bad.rejected))


def test_gzip_bomb_stops_at_max_bytes_in_bounded_memory(lake, root):
    land_good_files(root)
    head = ids("bomb", 5)
    zeros = b"\x00" * MB
    land_gzip(root, "bad/bomb.jsonl.gz", itertools.chain([jsonl(map(event, head))], [zeros] * 200))
    assert os.path.getsize(root / "bad" / "bomb.jsonl.gz") < 2 * MB  # 200 MB inflated

    before = peak_rss_mb()
    with time_bound(30, "staging a hostile file"):
        results = stage_folder(lake, root, limits=ReadLimits(max_bytes=20 * MB))
    growth = peak_rss_mb() - before
    rows, quarantine = everything(lake)

    assert_good_files_landed(rows, quarantine)
    assert event_ids(rows, "bad/bomb.jsonl.gz") == head
    (row,) = of(quarantine, "bad/bomb.jsonl.gz")
    assert row["reason"].startswith(f"more than {20 * MB} bytes decompressed (a gzip bomb?)")
    assert row["source_line"] > len(head)
    assert results["bad/bomb.jsonl.gz"].quarantined == 1
    assert growth < RSS_GROWTH_LIMIT_MB, f"peak RSS grew by {growth:.0f} MB"


def test_a_one_gib_line_is_one_quarantine_row_in_bounded_memory(lake, root):
    land_good_files(root)
    before_ids, after_ids = ids("before", 3), ids("after", 3)
    start = b'{"event_id": "huge", "type": "message", "content": "'
    block, blocks = b"a" * MB, 1024
    key = "bad/huge.jsonl.gz"
    land_gzip(
        root,
        key,
        itertools.chain(
            [jsonl(map(event, before_ids)) + start],
            itertools.repeat(block, blocks),
            [b'"}\n' + jsonl(map(event, after_ids))],
        ),
    )
    assert os.path.getsize(root / "bad" / "huge.jsonl.gz") < 10 * MB
    length = len(start) + blocks * len(block) + 2

    before = peak_rss_mb()
    with time_bound(30, "staging a hostile file"):
        results = stage_folder(lake, root)  # the stream's default limits: lines up to 1 MB
    growth = peak_rss_mb() - before
    rows, quarantine = everything(lake)

    assert_good_files_landed(rows, quarantine)
    assert event_ids(rows, key) == before_ids + after_ids  # reading goes on after the line
    assert [r["source_line"] for r in of(rows, key)] == [1, 2, 3, 5, 6, 7]
    (row,) = of(quarantine, key)
    assert row["source_line"] == 4
    assert row["reason"] == f"line of {length} bytes exceeds 1000000; skipped"
    assert row["record"].startswith(start.decode()) and len(row["record"]) <= 10_000
    assert results[key].quarantined == 1
    assert growth < RSS_GROWTH_LIMIT_MB, f"peak RSS grew by {growth:.0f} MB"


# ---- 2. line numbers ---------------------------------------------------------------------------
LINES_WITH_BLANKS = [
    event("n-1"),
    b"",
    b"   ",
    event("n-4") + b"\r",  # CRLF
    b"\t",
    b"not json",
    event("n-7"),
]


@pytest.mark.parametrize("key", ["numbers.jsonl", "numbers.jsonl.gz"])
def test_line_numbers_are_physical_and_blank_lines_are_skipped_but_counted(lake, root, key):
    data = b"\n".join(LINES_WITH_BLANKS)  # the last line has no newline
    land(root, key, gzip.compress(data) if key.endswith(".gz") else data)

    (chunk,) = read_lines(io.BufferedReader(io.BytesIO(data)), "numbers.jsonl")
    assert chunk.numbers == [1, 4, 6, 7]
    assert chunk.values[1] == event("n-4")  # the \r of CRLF is not part of the line
    assert chunk.rejected == []

    stage(lake, root, key)
    rows, quarantine = everything(lake)
    assert [(r["event_id"], r["source_line"]) for r in of(rows, key)] == [
        ("n-1", 1),
        ("n-4", 4),
        ("n-7", 7),
    ]
    assert [(q["source_line"], q["record"]) for q in of(quarantine, key)] == [(6, "not json")]
    assert of(quarantine, key)[0]["reason"].startswith("invalid JSON")


# ---- 3.-5. one staging per content version -----------------------------------------------------
def test_a_rewrite_with_the_same_size_and_mtime_is_staged_again(lake, root):
    key = "rewritten.jsonl"
    old_ids, new_ids = ids("old", 10), ids("new", 10)
    path = land(root, key, jsonl(map(event, old_ids)))
    first = stage(lake, root, key)
    old_stat = path.stat()

    path.write_bytes(jsonl(map(event, new_ids)))  # same length: the ids differ, not their size
    os.utime(path, ns=(old_stat.st_atime_ns, old_stat.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (
        old_stat.st_size,
        old_stat.st_mtime_ns,
    )
    second = stage(lake, root, key)

    assert first.status == second.status == "staged"
    assert second.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    assert second.content_hash != first.content_hash
    assert read_ledger(lake, STREAM, key)["content_hash"] == second.content_hash
    day = read_day_detailed(lake, STREAM, DAY)
    assert sorted(day.rows["event_id"].to_pylist()) == new_ids
    assert day.batches == sorted(second.batches)
    assert not set(first.batches) & set(day.batches)


def test_a_completed_half_written_line_leaves_no_quarantine_row(lake, root):
    key = "growing.jsonl"
    done = [event("g-0"), event("g-1"), event("g-2")]
    last = event("g-3", when=date(2026, 1, 6))
    half = last[: len(last) // 2]
    path = land(root, key, jsonl(done) + half, mtime=noon(DAY))

    first = stage(lake, root, key)
    rows, quarantine = everything(lake)
    assert event_ids(rows, key) == ["g-0", "g-1", "g-2"]
    (row,) = of(quarantine, key)
    assert (row["source_line"], row["record"], row["dt"]) == (4, half.decode(), "2026-01-05")
    assert row["reason"].startswith("invalid JSON")

    with open(path, "ab") as f:  # the writer finishes the line, a day later
        f.write(last[len(half) :] + b"\n")
    os.utime(path, (noon(date(2026, 1, 7)),) * 2)
    second = stage(lake, root, key)
    rows, quarantine = everything(lake)

    assert (first.status, second.status) == ("staged", "staged")
    assert of(quarantine, key) == []  # in no day at all
    assert quarantine == []
    assert event_ids(rows, key) == ["g-0", "g-1", "g-2", "g-3"]
    assert (of(rows, key)[3]["source_line"], of(rows, key)[3]["dt"]) == (4, "2026-01-06")
    assert "2026-01-05" in second.days  # the superseded version's day is to be rebuilt


def test_an_unchanged_or_touched_file_is_not_staged_again(lake, root, tmp_path):
    key = "steady.jsonl.gz"
    path = land(root, key, gzip.compress(jsonl(map(event, ids("s", 12)))))
    lake_root = tmp_path / "lake"
    first = stage(lake, root, key)
    after_first = snapshot(lake_root)
    assert first.status == "staged" and batch_files(lake_root)

    again = stage(lake, root, key)
    assert again.status == "unchanged"
    assert (again.content_hash, again.batches) == (first.content_hash, first.batches)
    assert snapshot(lake_root) == after_first  # nothing written, not even the ledger

    os.utime(path, (noon(date(2026, 1, 9)),) * 2)  # touched: new mtime, same bytes
    touched = stage(lake, root, key)
    assert touched.status == "unchanged"
    assert (touched.content_hash, touched.batches) == (first.content_hash, first.batches)
    after_touch = snapshot(lake_root)
    assert set(after_touch) == set(after_first)
    parquet = {p for p in after_first if p.endswith(".parquet")}
    assert {p: after_touch[p] for p in parquet} == {p: after_first[p] for p in parquet}
    # the ledger now knows the touched version: the next look needs no re-hash
    assert read_ledger(lake, STREAM, key)["version"] == stat_file(str(root), key).version
    day = read_day_detailed(lake, STREAM, DAY)
    assert day.rows.num_rows == 12 and day.duplicates == 0


# ---- 6. partition bounds -----------------------------------------------------------------------
def test_events_outside_the_bounds_are_quarantined_under_a_day_inside(lake, root):
    key = "dates.jsonl"
    first_day, last_day = date(2026, 1, 3), date(2026, 1, 10)
    lines = [
        event("in-range"),
        event("too-early", when=date(2025, 12, 25)),
        event("too-late", when=date(2026, 2, 1)),
        b"{garbage",  # dated by its arrival (Jan 20), itself outside the bounds
    ]
    land(root, key, jsonl(lines), mtime=noon(date(2026, 1, 20)))

    result = stage(lake, root, key, bounds=(first_day, last_day))
    rows, quarantine = everything(lake)

    assert lake_days(lake) == ["2026-01-03", "2026-01-05", "2026-01-10"]
    assert [(r["event_id"], r["dt"]) for r in rows] == [("in-range", "2026-01-05")]
    got = [(q["source_line"], q["dt"], q["reason"]) for q in of(quarantine, key)]
    assert [(line, dt) for line, dt, _ in got] == [
        (2, "2026-01-03"),
        (3, "2026-01-10"),
        (4, "2026-01-10"),
    ]
    outside = "event day outside the partitioned range: "
    assert got[0][2].startswith(outside) and "2025-12-25" in got[0][2]
    assert got[1][2].startswith(outside) and "2026-02-01" in got[1][2]
    assert got[2][2].startswith("invalid JSON")
    assert of(quarantine, key)[0]["record"] == lines[1].decode()  # the original line, kept
    assert len(rows) + len(quarantine) == len(lines)  # nothing lost
    assert result.reasons == Counter(
        {"event day outside the partitioned range": 2, "invalid JSON": 1}
    )


# ---- 7. multi-part staging ---------------------------------------------------------------------
def test_a_file_staged_in_parts_reads_back_once_and_a_new_version_removes_every_part(
    lake, root, tmp_path
):
    key = "parts.jsonl"
    limits = ReadLimits(chunk_lines=10)
    all_ids = ids("p", 36)
    path = land(root, key, jsonl(map(event, all_ids[:35])))
    lake_root = tmp_path / "lake"
    events_table, _ = batch_table_names(STREAM)

    first = stage(lake, root, key, limits=limits)
    assert len(first.batches) == 4 and len(set(first.batches)) == 4
    assert [b[-6:] for b in first.batches] == ["-00000", "-00001", "-00002", "-00003"]
    assert batch_files(lake_root) == {
        f"raw/{events_table}/dt={DAY}/{name}.parquet" for name in first.batches
    }
    day = read_day_detailed(lake, STREAM, DAY)
    assert sorted(day.rows["event_id"].to_pylist()) == all_ids[:35]
    assert (day.received_rows, day.duplicates) == (35, 0)
    assert day.batches == sorted(first.batches)

    with open(path, "ab") as f:  # a new version: one more line
        f.write(jsonl([event(all_ids[35])]))
    second = stage(lake, root, key, limits=limits)

    assert second.status == "staged" and len(second.batches) == 4
    assert not set(first.batches) & set(second.batches)
    assert batch_files(lake_root) == {
        f"raw/{events_table}/dt={DAY}/{name}.parquet" for name in second.batches
    }
    day = read_day_detailed(lake, STREAM, DAY)
    assert sorted(day.rows["event_id"].to_pylist()) == all_ids
    assert (day.received_rows, day.duplicates) == (36, 0)


# ---- 8. concatenated gzip ----------------------------------------------------------------------
def test_a_multi_member_gzip_is_read_whole(lake, root):
    key = "multi.jsonl.gz"
    lines = [event(e) for e in ids("m", 6)]
    split = len(lines[2]) // 2  # one line spans two members
    data = (
        gzip.compress(jsonl(lines[:2]) + lines[2][:split])
        + gzip.compress(lines[2][split:] + b"\n" + jsonl(lines[3:4]))
        + gzip.compress(b"")  # an empty member
        + gzip.compress(jsonl(lines[4:]))
        + b"\x00" * 512  # zero padding after the last member
    )
    land(root, key, data)

    result = stage(lake, root, key)
    rows, quarantine = everything(lake)

    assert [(r["event_id"], r["source_line"]) for r in of(rows, key)] == [
        (e, i) for i, e in enumerate(ids("m", 6), start=1)
    ]
    assert quarantine == []
    assert (result.rows, result.quarantined) == (6, 0)


# ---- caps of the reader and of the streams -----------------------------------------------------
def test_a_line_over_max_line_bytes_is_rejected_even_inside_one_read_block():
    lines = [event("cap-1"), event("cap-2", content="x" * 2_000), event("cap-3")]
    data = jsonl(lines)
    assert len(data) < MB  # the whole file is one read block

    chunks = list(read_lines(io.BytesIO(data), "cap.jsonl", ReadLimits(max_line_bytes=1_000)))

    assert [n for c in chunks for n in c.numbers] == [1, 3]
    rejected = [(n, reason) for c in chunks for n, _, reason in c.rejected]
    assert rejected == [(2, f"line of {len(lines[1])} bytes exceeds 1000; skipped")]


def test_a_file_of_exactly_max_lines_lines_is_read_whole():
    limits = ReadLimits(max_lines=5)
    exact = jsonl(event(e) for e in ids("l", 5))
    over = jsonl(event(e) for e in ids("l", 6))

    def read(data: bytes) -> tuple[list[int], list[tuple[int, str]]]:
        chunks = list(read_lines(io.BytesIO(data), "lines.jsonl", limits))
        numbers = [n for c in chunks for n in c.numbers]
        return numbers, [(n, reason) for c in chunks for n, _, reason in c.rejected]

    assert read(over) == ([1, 2, 3, 4, 5], [(6, "more than 5 lines; the rest not read")])
    assert read(exact.rstrip(b"\n")) == ([1, 2, 3, 4, 5], [])
    assert read(exact) == ([1, 2, 3, 4, 5], [])  # no line 6 to complain about


def test_a_document_line_within_the_documents_stream_limit_is_an_event(lake, root):
    limit = STREAMS["documents"].max_line_bytes
    content = "d" * 2_000_000  # over the conversations limit, well under the documents one
    assert STREAMS["conversations"].max_line_bytes < len(content) < limit
    doc = {
        "event_id": "doc-big",
        "doc_id": "big",
        "op": "upsert",
        "format": "text",
        "content": content,
        "updated_at": "2026-01-05T10:00:00Z",
    }
    land(root, "docs.jsonl", jsonl([json.dumps(doc).encode()]))

    result = stage_file(lake, "documents", str(root), "docs.jsonl", bounds=BOUNDS)

    assert (result.rows, result.quarantined, dict(result.reasons)) == (1, 0, {})
    day = read_day_detailed(lake, "documents", DAY)
    assert day.rows["event_id"].to_pylist() == ["doc-big"]
    assert len(day.rows["content"][0].as_py()) == len(content)
