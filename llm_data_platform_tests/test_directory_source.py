"""The directory source: a folder of HTML / Markdown / text files → documents landing files."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import pydoc
from datetime import UTC, datetime
from pathlib import Path

import pytest

from llm_data_platform.sources import SyncReport, default_state_path, sync_directory
from llm_data_platform.sources import directory as directory_module
from llm_data_platform.streaming.parse import parse_batch
from llm_data_platform.transforms.records import content_version, parse_timestamp

MTIME = datetime(2026, 1, 6, 10, 0, tzinfo=UTC)
SYNC_1 = datetime(2026, 1, 6, 12, 0, tzinfo=UTC)
SYNC_2 = datetime(2026, 1, 7, 9, 0, tzinfo=UTC)
SYNC_3 = datetime(2026, 1, 8, 9, 0, tzinfo=UTC)

MARKDOWN = """---
layout: page
---

```python
# not a heading: a comment in a code block
```

## Getting started

Install the package, then run the command line tool once.
"""
RST = """Release notes
=============

Version 2 removes the legacy importer.
"""


def _write(path: Path, content: str | bytes, when: datetime = MTIME) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    os.utime(path, (when.timestamp(), when.timestamp()))
    return path


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    _write(
        root / "guide" / "index.html",
        "<html><head><title>The &amp; Guide</title></head>"
        "<body><h1>Guide</h1><p>Welcome to the guide.</p></body></html>",
    )
    _write(root / "guide" / "start.md", MARKDOWN)
    _write(root / "notes.txt", "Plain notes about the product.\n")
    _write(root / "CHANGES.rst", RST)
    _write(root / "logo.png", b"\x89PNG\r\n\x1a\n\x00\x00")  # not a knowledge-base format
    _write(root / ".hidden" / "secret.md", "# hidden\n")  # hidden folders are not walked
    return root


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    return tmp_path / "landing"


def _events(report: SyncReport) -> list[dict]:
    assert report.landing_file is not None
    with open(report.landing_file, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _landing_files(landing: Path) -> list[Path]:
    return sorted((landing / "documents").iterdir())


ALL_IDS = ["CHANGES.rst", "guide/index.html", "guide/start.md", "notes.txt"]


def test_first_sync_upserts_every_document(kb: Path, landing: Path):
    report = sync_directory(kb, landing, now=SYNC_1)

    assert report.upserts == ALL_IDS
    assert report.deletes == [] and report.unchanged == 0 and report.skipped == []
    assert report.ignored == 1  # logo.png
    assert _landing_files(landing) == [Path(report.landing_file)]  # no temp file left behind
    name = os.path.basename(report.landing_file)
    assert name.startswith("dirsync-20260106T120000") and name.endswith(".jsonl")
    content_hash = hashlib.sha256(Path(report.landing_file).read_bytes()).hexdigest()
    assert content_hash[:16] in name
    assert report.state_path == default_state_path(kb, landing)
    assert report.state_path.startswith(str(landing / ".state" / "directory-"))

    events = {e["doc_id"]: e for e in _events(report)}
    assert sorted(events) == ALL_IDS
    html = events["guide/index.html"]
    assert html["op"] == "upsert" and html["format"] == "html"
    assert html["title"] == "The & Guide"
    assert html["source_uri"] == (kb / "guide" / "index.html").resolve().as_uri()
    assert parse_timestamp(html["updated_at"]) == MTIME
    assert events["guide/start.md"]["format"] == "markdown"
    assert events["guide/start.md"]["title"] == "Getting started"
    assert events["guide/start.md"]["content"] == MARKDOWN
    assert events["notes.txt"]["format"] == "text"
    assert events["notes.txt"]["title"] == "notes.txt"
    assert events["CHANGES.rst"]["title"] == "Release notes"
    for event in events.values():
        raw = (kb / event["doc_id"]).read_bytes()
        expected = hashlib.sha256(
            f"{event['doc_id']}\n{hashlib.sha256(raw).hexdigest()}\nupsert".encode()
        ).hexdigest()
        assert event["event_id"] == expected


def test_lines_parse_into_valid_raw_document_rows(kb: Path, landing: Path):
    (kb / "gone.md").write_text("# Soon gone\n")
    sync_directory(kb, landing, now=SYNC_1)
    (kb / "gone.md").unlink()
    report = sync_directory(kb, landing, now=SYNC_2)
    assert report.deletes == ["gone.md"]

    for path in _landing_files(landing):
        lines = [(i, line) for i, line in enumerate(path.read_bytes().splitlines(), start=1)]
        parsed = parse_batch("documents", lines, path.name, SYNC_2)
        assert parsed.quarantine.num_rows == 0 and parsed.rows.num_rows == len(lines)
        for row in parsed.rows.to_pylist():
            if row["op"] == "upsert":
                assert row["version"] and row["content"] is not None and row["format"]
            else:
                assert row["op"] == "delete" and row["version"] is None
    no_format = b'{"event_id": "x", "doc_id": "y", "op": "upsert", "updated_at": "2026-01-06"}'
    rejected = parse_batch("documents", [(1, no_format)], "f", SYNC_2).quarantine
    assert rejected["reason"].to_pylist() == [
        "field 'format' must be one of ['html', 'markdown', 'text']"
    ]


def test_no_change_writes_no_landing_file(kb: Path, landing: Path):
    first = sync_directory(kb, landing, now=SYNC_1)
    state_before = Path(first.state_path).read_bytes()

    again = sync_directory(kb, landing, now=SYNC_2)
    assert again.landing_file is None
    assert again.upserts == [] and again.deletes == [] and again.unchanged == 4
    assert _landing_files(landing) == [Path(first.landing_file)]
    assert Path(first.state_path).read_bytes() == state_before

    # a touch (new mtime, same bytes) is not a change either, nor is a full re-hash
    os.utime(kb / "notes.txt", (SYNC_2.timestamp(), SYNC_2.timestamp()))
    touched = sync_directory(kb, landing, now=SYNC_3)
    assert touched.landing_file is None and touched.unchanged == 4
    rehashed = sync_directory(kb, landing, now=SYNC_3, rehash=True)
    assert rehashed.landing_file is None and rehashed.unchanged == 4


def test_changed_file_is_one_upsert(kb: Path, landing: Path):
    first = sync_directory(kb, landing, now=SYNC_1)
    old = {e["doc_id"]: e for e in _events(first)}["notes.txt"]
    _write(kb / "notes.txt", "Plain notes about the product, revised.\n", SYNC_2)

    report = sync_directory(kb, landing, now=SYNC_2)
    assert report.upserts == ["notes.txt"] and report.deletes == [] and report.unchanged == 3
    [event] = _events(report)
    assert event["content"] == "Plain notes about the product, revised.\n"
    assert parse_timestamp(event["updated_at"]) == SYNC_2  # the file's new mtime
    assert event["event_id"] != old["event_id"]
    assert content_version(event["content"]) != content_version(old["content"])


def test_deleted_file_is_one_delete(kb: Path, landing: Path):
    sync_directory(kb, landing, now=SYNC_1)
    (kb / "guide" / "start.md").unlink()

    report = sync_directory(kb, landing, now=SYNC_2)
    assert report.upserts == [] and report.deletes == ["guide/start.md"]
    [event] = _events(report)
    assert event["op"] == "delete" and event["doc_id"] == "guide/start.md"
    assert parse_timestamp(event["updated_at"]) == SYNC_2
    assert "content" not in event
    # deleted once: the next sync has nothing to say
    assert sync_directory(kb, landing, now=SYNC_3).landing_file is None


def test_rename_is_delete_plus_upsert(kb: Path, landing: Path):
    sync_directory(kb, landing, now=SYNC_1)
    os.rename(kb / "notes.txt", kb / "guide" / "notes.txt")  # keeps its mtime

    report = sync_directory(kb, landing, now=SYNC_2)
    assert report.deletes == ["notes.txt"] and report.upserts == ["guide/notes.txt"]
    ops = {e["doc_id"]: e["op"] for e in _events(report)}
    assert ops == {"notes.txt": "delete", "guide/notes.txt": "upsert"}

    # renamed back with its old mtime: the re-created document must be newer than its delete,
    # or the latest-event-wins rule downstream would keep it deleted
    os.rename(kb / "guide" / "notes.txt", kb / "notes.txt")
    back = sync_directory(kb, landing, now=SYNC_3)
    assert back.upserts == ["notes.txt"] and back.deletes == ["guide/notes.txt"]
    upsert = next(e for e in _events(back) if e["op"] == "upsert")
    assert parse_timestamp(upsert["updated_at"]) > SYNC_2


def test_bad_files_are_skipped_with_their_reason(kb: Path, landing: Path):
    _write(kb / "blob.txt", b"\x00\x01\x02binary\x00")
    _write(kb / "latin1.md", "# Caf\xe9\n".encode("latin-1"))
    _write(kb / "big.md", "# Big\n" + "x" * 2000)
    _write(
        kb / "declared.html",
        '<html><head><meta charset="iso-8859-1"><title>Caf\xe9</title></head></html>'.encode(
            "latin-1"
        ),
    )

    report = sync_directory(kb, landing, now=SYNC_1, max_bytes=1000)
    skipped = dict(report.skipped)
    assert set(skipped) == {"blob.txt", "latin1.md", "big.md"}
    assert skipped["blob.txt"].startswith("binary file")
    assert "not valid UTF-8" in skipped["latin1.md"]
    assert "too large" in skipped["big.md"]
    assert "declared.html" in report.upserts  # its declared charset decodes it
    title = {e["doc_id"]: e["title"] for e in _events(report)}["declared.html"]
    assert title == "Café"

    # still skipped (and reported) next time, never deleted; fixed files then go through
    again = sync_directory(kb, landing, now=SYNC_2, max_bytes=1000)
    assert dict(again.skipped).keys() == skipped.keys() and again.deletes == []
    _write(kb / "latin1.md", "# Café\n", SYNC_3)
    fixed = sync_directory(kb, landing, now=SYNC_3, max_bytes=1000)
    assert fixed.upserts == ["latin1.md"]


def test_unreadable_file_is_skipped_not_deleted(kb: Path, landing: Path, monkeypatch):
    sync_directory(kb, landing, now=SYNC_1)
    _write(kb / "notes.txt", "changed\n", SYNC_2)
    real_read = directory_module.read_contained

    def read(root: str, rel: str, limit: int) -> bytes:
        if rel.endswith("notes.txt"):  # what chmod 0 does, even when the tests run as root
            raise PermissionError(13, "Permission denied", rel)
        return real_read(root, rel, limit)

    monkeypatch.setattr(directory_module, "read_contained", read)
    report = sync_directory(kb, landing, now=SYNC_2)
    assert report.deletes == [] and report.upserts == [] and report.landing_file is None
    assert dict(report.skipped) == {"notes.txt": "unreadable: Permission denied"}

    monkeypatch.setattr(directory_module, "read_contained", real_read)
    assert sync_directory(kb, landing, now=SYNC_3).upserts == ["notes.txt"]


def test_prefix_and_missing_root(kb: Path, landing: Path, tmp_path: Path):
    report = sync_directory(kb, landing, tmp_path / "state.json", now=SYNC_1, prefix="kb/")
    assert report.upserts == [f"kb/{d}" for d in ALL_IDS]
    (kb / "notes.txt").unlink()
    report = sync_directory(kb, landing, tmp_path / "state.json", now=SYNC_2, prefix="kb")
    [event] = _events(report)
    assert event["doc_id"] == "kb/notes.txt"
    assert event["source_uri"] == (kb / "notes.txt").resolve().as_uri()
    with pytest.raises(NotADirectoryError):
        sync_directory(tmp_path / "nope", landing)


def test_not_before_lifts_old_files_into_the_partition_range(kb: Path, landing: Path):
    floor = datetime(2026, 1, 5, tzinfo=UTC)
    _write(kb / "ancient.md", "# Ancient\n", datetime(2019, 5, 1, tzinfo=UTC))
    report = sync_directory(kb, landing, now=SYNC_1, not_before=floor)
    dates = {e["doc_id"]: parse_timestamp(e["updated_at"]) for e in _events(report)}
    assert dates["ancient.md"] == floor and dates["notes.txt"] == MTIME


def test_command_line(kb: Path, landing: Path, capsys):
    assert directory_module.main([str(kb), str(landing), "--prefix", "kb"]) == 0
    assert "4 upserts, 0 deletes" in capsys.readouterr().out
    assert directory_module.main([str(kb), str(landing), "--prefix", "kb", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["unchanged"] == 4 and printed["landing_file"] is None


def test_crash_before_state_write_resends_the_same_events(kb: Path, landing: Path, monkeypatch):
    sync_directory(kb, landing, now=SYNC_1)
    _write(kb / "notes.txt", "new notes\n", SYNC_2)
    (kb / "CHANGES.rst").unlink()

    def crash(path, data):
        raise OSError("power cut")

    with monkeypatch.context() as m:
        m.setattr(directory_module, "_atomic_write_json", crash)
        with pytest.raises(OSError, match="power cut"):
            sync_directory(kb, landing, now=SYNC_2)
    landed = [p for p in _landing_files(landing) if "20260107" in p.name]
    assert len(landed) == 1  # the landing file was durably written before the crash
    lost = [json.loads(line) for line in landed[0].read_text().splitlines()]

    resent = sync_directory(kb, landing, now=SYNC_3)
    assert resent.upserts == ["notes.txt"] and resent.deletes == ["CHANGES.rst"]
    assert {e["event_id"] for e in _events(resent)} == {e["event_id"] for e in lost}
    assert sync_directory(kb, landing, now=SYNC_3).landing_file is None


def test_landing_folder_sees_only_finished_files(kb: Path, landing: Path):
    from llm_data_platform.resources.landing import LandingFolderResource

    report = sync_directory(kb, landing, now=SYNC_1)
    stray = landing / "documents" / ".dirsync-half-written.jsonl.tmp"
    stray.write_text("{")
    files = LandingFolderResource(path=str(landing)).list_files("documents")
    assert [f.path for f in files] == [report.landing_file]


# --------------------------------------------------------------------------------------------
# end to end: a synced folder of real pydoc pages through raw_documents and documents_clean

PAGES = {"textwrap": "dedent", "shlex": "split", "fnmatch": "fnmatchcase"}


def _pydoc_page(module_name: str) -> str:
    module = importlib.import_module(module_name)
    doc = pydoc.HTMLDoc()
    return doc.page(f"module {module_name}", doc.docmodule(module))


def test_synced_directory_flows_through_raw_and_clean(tmp_path: Path):
    import dagster as dg

    from llm_data_platform.definitions import build_resources
    from llm_data_platform_tests.conftest import graph_for, platform_env, settings_for

    env = platform_env(tmp_path / "platform")
    settings = settings_for(env)
    resources = build_resources(settings)
    lake = resources["lake"]

    kb = tmp_path / "kb"
    for name in PAGES:
        _write(kb / "stdlib" / f"{name}.html", _pydoc_page(name))
    _write(kb / "faq.md", "# FAQ\n\n## Is it offline?\n\nYes, it needs no network.\n")
    first = sync_directory(kb, settings.landing_dir, now=SYNC_1)
    assert len(first.upserts) == 4
    (kb / "stdlib" / "fnmatch.html").unlink()
    second = sync_directory(kb, settings.landing_dir, now=SYNC_2)
    assert second.deletes == ["stdlib/fnmatch.html"] and second.upserts == []

    staged = dg.materialize(
        graph_for(settings),
        selection=dg.AssetSelection.assets("documents_batches", "documents_batches_quarantine"),
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert staged.success
    result = dg.materialize(
        graph_for(settings),
        selection=dg.AssetSelection.assets(
            "raw_documents",
            "raw_documents_quarantine",
            "documents_clean",
            "documents_clean_dropped",
        ),
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": SYNC_1.date().isoformat(),
            "dagster/asset_partition_range_end": SYNC_2.date().isoformat(),
        },
    )
    assert result.success

    raw = lake.read_partition("raw", "raw_documents", MTIME.date().isoformat())
    assert sorted(raw["doc_id"].to_pylist()) == sorted(first.upserts)
    quarantine = lake.read_partition("raw", "raw_documents_quarantine", MTIME.date().isoformat())
    assert quarantine is None or quarantine.num_rows == 0

    clean = lake.read_partition("clean", "documents_clean", SYNC_1.date().isoformat())
    rows = {r["doc_id"]: r for r in clean.to_pylist()}
    assert sorted(rows) == sorted(first.upserts)
    for name, function in PAGES.items():
        row = rows[f"stdlib/{name}.html"]
        assert not row["is_deleted"] and row["format"] == "html"
        assert row["title"] == f"Python: module {name}"
        assert row["source_uri"] == (kb / "stdlib" / f"{name}.html").resolve().as_uri()
        text = row["text"]
        assert function in text and "<td" not in text and "&nbsp;" not in text
        first_doc_line = importlib.import_module(name).__doc__.strip().splitlines()[0]
        assert first_doc_line.strip() in text
    assert "Yes, it needs no network." in rows["faq.md"]["text"]

    tombstones = lake.read_partition("clean", "documents_clean", SYNC_2.date().isoformat())
    [tomb] = tombstones.to_pylist()
    assert tomb["doc_id"] == "stdlib/fnmatch.html" and tomb["is_deleted"]
    assert tomb["text"] is None and tomb["version"] is None


def test_ingest_docs_says_which_partitions_it_landed(kb: Path, tmp_path: Path, monkeypatch, capsys):
    """A user is told the document days the new landing file holds, and what to run."""
    from llm_data_platform.cli import main
    from llm_data_platform_tests.conftest import platform_env

    for name, value in platform_env(tmp_path / "home").items():
        monkeypatch.setenv(name, value)  # the CLI is a process started with this environment
    assert main(["ingest-docs", str(kb)]) == 0
    printed = capsys.readouterr().out
    day = MTIME.date().isoformat()
    assert f"document day(s) {day}" in printed
    assert f"--partition {day} --select raw_documents" in printed
