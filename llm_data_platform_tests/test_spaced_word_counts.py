"""``shingles.spaced_word_counts``: the word counts of two ``count_substring`` passes, from
the value buffer."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.transforms import shingles


def _reference(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Spaces + newlines + 1, 0 when empty: the definition the cross dedup counts words by."""
    text = pc.fill_null(texts, "")
    spaces = pc.count_substring(text, " ").to_numpy(zero_copy_only=False)
    lines = pc.count_substring(text, "\n").to_numpy(zero_copy_only=False)
    empty = pc.equal(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False)
    return np.where(empty, 0, spaces + lines + 1)


TEXTS = [
    "one two three",
    "",
    None,
    "line one\nline two ",
    " leading space",
    "trailing newline\n",
    "naïve café — ok",
    "x",
    "",
    "a\n\nb  c",
    "",
    None,
]


def test_equal_to_count_substring(monkeypatch):
    arr = pa.array(TEXTS * 50, pa.string())
    assert np.array_equal(shingles.spaced_word_counts(arr), _reference(arr))
    monkeypatch.setattr(shingles, "_COUNT_BLOCK_BYTES", 7)  # many blocks, rows across ends
    assert np.array_equal(shingles.spaced_word_counts(arr), _reference(arr))


def test_sliced_chunked_and_trailing_empty_rows():
    chunked = pa.chunked_array([pa.array(TEXTS, pa.string()), pa.array(["end ", "", ""])])
    for texts in (chunked, chunked.slice(3), pa.array(TEXTS, pa.string()).slice(2, 7)):
        assert np.array_equal(shingles.spaced_word_counts(texts), _reference(texts))
    empty = pa.array([], pa.string())
    assert len(shingles.spaced_word_counts(empty)) == 0
    assert np.array_equal(shingles.spaced_word_counts(pa.array(["", None])), [0, 0])


def test_null_slot_with_bytes_counts_zero():
    """Arrow does not promise that a null slot is empty: its bytes count for nothing."""
    values = pa.array(["a b", "hidden words here", "c d e"], pa.string())
    _, offsets, data = values.buffers()
    validity = pa.array([True, False, True]).buffers()[1]
    arr = pa.Array.from_buffers(pa.string(), 3, [validity, offsets, data], null_count=1)
    assert arr.to_pylist() == ["a b", None, "c d e"]
    assert np.array_equal(shingles.spaced_word_counts(arr), [2, 0, 3])
