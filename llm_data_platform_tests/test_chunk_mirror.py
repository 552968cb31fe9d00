"""The chunk mirror's storage: pages, non-ASCII text, missing fields, and its slot's keys."""

from __future__ import annotations

import threading

import pytest

from llm_data_platform.lib.chunk_mirror import ChunkMirror, MirrorSlot, to_row


class Pages:
    """A stand-in for a Chroma collection's paged ``get`` (offset/limit over fixed rows)."""

    def __init__(self, rows: list[tuple[str, str | None, dict | None]]):
        self.rows = rows
        self.calls = 0

    def get(self, include, limit, offset):
        self.calls += 1
        page = self.rows[offset : offset + limit]
        return {
            "ids": [r[0] for r in page],
            "documents": [r[1] for r in page],
            "metadatas": [r[2] for r in page],
        }

    def count(self) -> int:
        return len(self.rows)


ROWS = [
    (f"c{i}", f"text {i} — ünïcode ✓ {'x' * i}", {"doc_id": f"kb/{i // 3}", "version": i})
    for i in range(10)
] + [("none", None, None), ("partial", "t", {"title": "T", "heading_path": "A > B"})]


def test_rows_survive_pages_and_encoding_as_chroma_returned_them():
    collection = Pages(ROWS)
    mirror = ChunkMirror.build(collection, page_size=4)
    assert collection.calls == 4  # 12 rows in pages of 4, then an empty page ends it
    assert len(mirror) == len(ROWS) and "c3" in mirror and "nope" not in mirror
    for chunk_id, text, meta in ROWS:
        assert mirror.row(chunk_id) == to_row(text, meta)
    assert mirror.row("none") == ("", ("", "", "", "", ""))
    assert mirror.row("c7") == (ROWS[7][1], ("kb/2", "7", "", "", ""))
    assert mirror.row("nope") is None


def test_a_chunk_read_twice_means_the_collection_moved():
    with pytest.raises(ValueError, match="read twice"):
        ChunkMirror.build(Pages(ROWS[:3] + ROWS[:3]), page_size=3)


def test_the_slot_serves_only_the_key_it_was_built_for():
    slot = MirrorSlot(enabled=True)
    collection = Pages(ROWS)
    assert slot.get(("id", "v1"), collection, len(ROWS)) is None  # building
    assert slot.wait(10)
    assert len(slot.get(("id", "v1"), collection, len(ROWS))) == len(ROWS)
    assert slot.get(("id", "v2"), collection, len(ROWS)) is None  # v1's mirror is dropped
    assert slot.wait(10) and slot.get(("id", "v2"), collection, len(ROWS)) is not None
    assert slot.get(("id", "v3"), collection, len(ROWS) + 1) is None  # count disagrees
    assert not slot.wait(10) and "changed while it was mirrored" in slot.status()["error"]
    assert slot.get(("id", "v3"), collection, len(ROWS) + 1) is None  # not retried


def test_a_superseded_build_is_thrown_away():
    release = threading.Event()

    class Slow(Pages):
        def get(self, include, limit, offset):
            release.wait(10)
            return super().get(include, limit, offset)

    slot = MirrorSlot(enabled=True)
    slot.get(("id", "old"), Slow(ROWS), len(ROWS))
    slot.get(("id", "new"), Pages(ROWS[:5]), 5)
    assert slot.wait(10) and len(slot.get(("id", "new"), None, 5)) == 5
    release.set()
    assert len(slot.get(("id", "new"), None, 5)) == 5


def test_disabled_slot_never_builds():
    slot = MirrorSlot()
    assert slot.get(("id", "v1"), Pages(ROWS), len(ROWS)) is None
    status = slot.status()
    assert not status["enabled"] and not status["ready"] and not status["vectors"]
    assert status["chunks"] == status["buffer_bytes"] == status["vector_bytes"] == 0
