"""Bounded memory of the clean step: a day's dropped rows and dedup index are written as the
chunks go (files in the work directory, committed whole), not held to the day's end, and
the results are those of holding them."""

from __future__ import annotations

import posixpath
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm_data_platform.defs.conversations.dedup_history import (
    CONTENT_HASHES,
    NEAR_DUP_SIGNATURES,
)
from llm_data_platform.transforms.conversation_cleaning import CleaningConfig, clean_conversations
from llm_data_platform.transforms.cross_dedup import SIGNATURES, DedupConfig, DedupState
from llm_data_platform.transforms.dedup_index import SignatureIndex
from llm_data_platform.transforms.near_dedup import NearDupParams
from llm_data_platform.transforms.table_sink import TableSink
from llm_data_platform_tests.conftest import graph_for, platform_env, settings_for
from llm_data_platform_tests.test_conversation_cleaning import message, raw_table
from llm_data_platform_tests.test_dedup_history import A, B, _near

DAY = "2026-01-05"
C = (
    "The dashboard shows the wrong time zone for every chart since we moved the account to "
    "the new workspace, and changing the setting in the profile does not change anything"
)


def _day() -> pa.Table:
    """Twelve one-message conversations: originals, exact and near copies, junk, empties,
    in an order that spreads the copies over chunks of two conversations."""
    texts = [A, "asdkjh qwe!!! ###$$$", B, A.upper(), C, _near(B), "  ", _near(A), B, C.lower()]
    texts += ["????????", "Thanks, that fixed it."]
    return raw_table(
        [message(f"m{i:02d}", t, conversation=f"c{i:02d}", line=i) for i, t in enumerate(texts)]
    )


def _platform(root: Path):
    from llm_data_platform.definitions import build_resources

    settings = settings_for(platform_env(root))
    resources = build_resources(settings)
    resources["lake"].write_partition("raw", "raw_conversations", DAY, _day())
    return settings, resources


def _clean_day(settings, resources) -> dg.ExecuteInProcessResult:
    selection = dg.AssetSelection.assets("conversations_clean", "conversations_clean_dropped")
    result = dg.materialize(
        graph_for(settings),
        selection=selection.without_checks(),
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        partition_key=DAY,
    )
    assert result.success
    return result


def _metadata(result, asset: str) -> dict:
    (mat,) = [
        m
        for m in result.asset_materializations_for_node("clean_raw_conversations")
        if m.asset_key == dg.AssetKey(asset)
    ]
    return {k: v.value for k, v in mat.metadata.items()}


def _reasons(dropped: pa.Table) -> dict[str, str]:
    return dict(zip(dropped["event_id"].to_pylist(), dropped["reason"].to_pylist(), strict=True))


def test_dropped_rows_written_per_chunk_all_reach_the_dropped_table_and_the_commit(
    tmp_path, monkeypatch
):
    monkeypatch.setattr("llm_data_platform.lib.cleaning.CHUNK_ROWS", 2)
    settings, resources = _platform(tmp_path)
    result = _clean_day(settings, resources)
    lake = resources["lake"]
    clean = lake.read_partition("clean", "conversations_clean", DAY)
    dropped = lake.read_partition("clean", "conversations_clean_dropped", DAY)
    clean_meta = _metadata(result, "conversations_clean")
    assert clean_meta["chunks"] >= 5  # the day went through many chunks

    # every raw row is in exactly one of the two tables, and what one pass over the whole
    # day drops is what the chunks dropped, reason for reason
    one_pass = clean_conversations(_day(), CleaningConfig())
    expected = _reasons(one_pass.dropped)
    got = _reasons(dropped)
    assert got == expected
    assert len(got) >= 6  # junk, empty, exact and near copies across chunks
    assert {"duplicate_content_elsewhere", "near_duplicate"} <= set(got.values())
    assert sorted(clean["event_id"].to_pylist() + list(got)) == _day()["event_id"].to_pylist()
    assert dropped.schema.equals(one_pass.dropped.schema)

    meta = _metadata(result, "conversations_clean_dropped")
    assert meta["dropped_rows"] == meta["dagster/row_count"] == dropped.num_rows
    assert meta["dropped_preview"].count("\n") == 1 + 5  # header, rule, the first five rows
    assert "m01" in meta["dropped_preview"]  # the first chunk's junk is the first row
    # the committed index is the day's kept messages, written as they were kept
    hashes = lake.read_partition("clean", CONTENT_HASHES, DAY)
    signatures = lake.read_partition("clean", NEAR_DUP_SIGNATURES, DAY)
    kept_long = set(clean["event_id"].to_pylist()) - {"m11"}  # "Thanks" is under 20 words
    assert set(hashes["event_id"].to_pylist()) == kept_long
    assert set(signatures["id"].to_pylist()) == kept_long
    assert signatures.schema.equals(SIGNATURES)


def _chunks() -> list[pa.Table]:
    day = _day()
    return [day.slice(i, 3) for i in range(0, day.num_rows, 3)]


def test_a_spilled_state_decides_and_persists_what_an_in_memory_one_does(tmp_path):
    held, spilled = DedupState(DedupConfig()), DedupState(DedupConfig(), spill_dir=str(tmp_path))
    for chunk in _chunks():
        a = clean_conversations(chunk, CleaningConfig(dedup_state=held))
        b = clean_conversations(chunk, CleaningConfig(dedup_state=spilled))
        assert a.dropped.equals(b.dropped)
    hashes, signatures = held.day_tables()
    hash_file, signature_file = spilled.day_files()
    assert Path(signature_file).parent == tmp_path
    assert pq.read_table(hash_file).equals(hashes)
    assert pq.read_table(signature_file).equals(signatures)
    assert signatures.num_rows == len(held.messages) == len(spilled.messages) > 0
    with pytest.raises(ValueError):
        spilled.next_day()  # its files are the caller's: a new state per day


def test_table_sink_in_memory_and_spilled_agree_and_an_empty_one_has_the_schema(tmp_path):
    schema = pa.schema([("id", pa.string()), ("n", pa.int64())])
    parts = [pa.table({"id": ["a", "b"], "n": [1, 2]}, schema=schema)] * 3
    held, spilled = TableSink(schema), TableSink(schema, str(tmp_path / "t.parquet"))
    for part in parts:
        held.append(part)
        spilled.append(part)
    assert held.rows == spilled.rows == 6
    assert spilled.table().equals(held.table())
    assert pq.ParquetFile(spilled.finish()).metadata.num_row_groups == 3
    with pytest.raises(ValueError):
        spilled.append(parts[0])
    empty = TableSink(schema, str(tmp_path / "e.parquet"))
    assert pq.read_table(empty.finish()).schema.equals(schema)
    assert empty.table().num_rows == 0


def test_a_table_sink_takes_its_schema_from_the_first_table_and_keeps_a_preview(tmp_path):
    """The dropped rows' sink: no schema given, the first rows kept as a copy (not a slice of
    a chunk), a sink that never got a table refuses to make an empty file."""
    part = pa.table({"id": ["a", "b", "c"], "n": [1, 2, 3]})
    sink = TableSink(path=str(tmp_path / "d.parquet"), head_rows=5)
    for _ in range(3):
        sink.append(part)
    assert sink.schema.equals(part.schema) and sink.rows == 9
    assert sink.head.to_pydict() == {"id": ["a", "b", "c", "a", "b"], "n": [1, 2, 3, 1, 2]}
    head_text = sink.head.column("id").chunk(0).buffers()[2].address
    assert head_text != part.column("id").chunk(0).buffers()[2].address  # a copy
    assert pq.read_table(sink.finish()).num_rows == 9
    with pytest.raises(ValueError, match="no schema"):
        TableSink(path=str(tmp_path / "never.parquet")).finish()


def test_the_signature_index_keeps_the_low_8_bits_and_corrects_their_chance_agreements():
    params = NearDupParams(threshold=0.5, shingle=2, num_perm=128)
    rng = np.random.default_rng(3)
    sig = rng.integers(0, 2**32, (2_000, 128), dtype=np.uint64).astype(np.uint32)
    index = SignatureIndex(params)
    index.add(sig, pa.array([f"e{i}" for i in range(len(sig))]), False)
    assert index.segments[0].signatures.dtype == np.uint8
    # queries that share 80 of 128 values with their original (J = 0.625), the other 48
    # different 32-bit values: their low bytes still agree once in 256
    query = rng.integers(0, 2**32, sig.shape, dtype=np.uint64).astype(np.uint32)
    query[query == sig] += np.uint32(1)
    shared = rng.permutation(128)[:80]  # spread over the bands
    query[:, shared] = sig[:, shared]
    best, ids, _ = index.match(query)
    assert ids.to_pylist() == [f"e{i}" for i in range(len(sig))]
    low_bytes_equal = (query.astype(np.uint8) == sig.astype(np.uint8)).mean(axis=1)
    assert (low_bytes_equal > 80 / 128).sum() > 300  # chance agreements of the low bytes
    assert np.allclose(best, (low_bytes_equal - 1 / 256) / (1 - 1 / 256))  # taken out
    assert abs(float(best.mean()) - 80 / 128) < 0.002
    assert np.allclose(index.match(sig)[0], 1.0)  # an exact copy estimates 1.0


def test_the_day_is_sorted_to_a_file_before_its_first_chunk_is_read(tmp_path, monkeypatch):
    from llm_data_platform.lib.cleaning import _sorted_day
    from llm_data_platform.resources.lake import DATA_FILE, LakeResource

    monkeypatch.setattr("llm_data_platform.lib.cleaning.CHUNK_ROWS", 4)
    lake = LakeResource(root=str(tmp_path / "lake"))
    day = _day().sort_by([("event_time", "descending")])  # not in read order
    lake.write_partition("raw", "raw_conversations", DAY, day)
    source = posixpath.join(lake.partition_path("raw", "raw_conversations", DAY), DATA_FILE)
    order = ["conversation_id", "event_time", "event_id"]
    workdir = tmp_path / "work"
    workdir.mkdir()
    batches = _sorted_day(lake, source, order, str(workdir))
    first = next(batches)
    # DuckDB is done (and closed) once the first chunk comes: the whole day is in the file
    assert pq.ParquetFile(workdir / "sorted.parquet").metadata.num_rows == day.num_rows
    got = pa.Table.from_batches([first, *batches])
    assert first.num_rows == 4
    assert (
        got["event_id"].to_pylist()
        == day.sort_by([(c, "ascending") for c in order])["event_id"].to_pylist()
    )
    lake.write_partition("raw", "raw_conversations", "2026-01-06", day.slice(0, 0))
    empty = posixpath.join(lake.partition_path("raw", "raw_conversations", "2026-01-06"), DATA_FILE)
    assert list(_sorted_day(lake, empty, order, str(workdir))) == []


def test_a_chunk_of_messages_only_is_not_copied_by_each_step_that_reads_its_text():
    from llm_data_platform.transforms.conversation_cleaning import _message_content, _scatter

    day = _day()
    is_msg, content = _message_content(day)
    assert content.buffers()[2].address == day["content"].chunk(0).buffers()[2].address
    replaced = _scatter(pa.nulls(day.num_rows, pa.string()), is_msg, content)
    assert replaced.buffers()[2].address == content.buffers()[2].address
    # with a feedback row among them, the message rows' text and the scatter back are exact
    mixed = day.set_column(1, "event_type", pa.array(["feedback"] + ["message"] * 11))
    is_msg, content = _message_content(mixed)
    assert content.to_pylist() == day["content"].to_pylist()[1:]
    back = _scatter(pa.nulls(day.num_rows, pa.string()), is_msg, content)
    assert back.to_pylist() == [None, *day["content"].to_pylist()[1:]]
