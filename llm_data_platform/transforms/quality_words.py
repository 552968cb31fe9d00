"""The unique-word ratio of chat messages (distinct / all lower-cased words among the first
UNIQUE_WORDS_WINDOW, for messages of UNIQUE_WORDS_MIN+ words): exact in DuckDB, and a lower
bound in numpy over the Arrow value buffer that settles the word_repetition rule for ~98% of
the messages without DuckDB.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from llm_data_platform.transforms.text_stats import _Counts

# Unique-word ratio is measured over the first N words of messages with at least M words.
UNIQUE_WORDS_MIN = 8
UNIQUE_WORDS_WINDOW = 200


def _signature_buckets(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Bucket (0..255) of each ASCII word from its length and lower-cased first two and last
    two bytes: words equal in lower case share a bucket."""

    def lower(at: np.ndarray) -> np.ndarray:
        byte = data[at].astype(np.uint32)
        return byte + np.uint32(32) * ((byte - np.uint32(65)) < 26)

    h = (ends - starts).astype(np.uint32) * np.uint32(0x9E3779B1)
    h ^= lower(starts) | lower(np.minimum(starts + 1, ends - 1)) << 8
    h ^= lower(ends - 1) << 16 | lower(np.maximum(ends - 2, starts)) << 24
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> 13
    h *= np.uint32(0xC2B2AE35)
    return h >> 24


def unique_word_floor(
    data: np.ndarray, row_start: np.ndarray, high: np.ndarray, count: _Counts, words
) -> np.ndarray:
    """A lower bound of ``unique_word_ratio``, from the words DuckDB would see (split on space,
    newline and tab, the first UNIQUE_WORDS_WINDOW): occupied buckets of the ASCII words'
    signatures, over the words. Equal words share a bucket, so buckets <= distinct words;
    non-ASCII words stay out (their lower case may equal an ASCII word's)."""
    floor = np.ones(len(words), dtype=np.float64)
    if not (words >= UNIQUE_WORDS_MIN).any():
        return floor
    sep = (data == 32) | (data == 10) | (data == 9)
    first, last = ~sep, ~sep
    first[1:] &= sep[:-1] | row_start[1:]
    last[:-1] &= sep[1:] | row_start[1:]
    starts, ends = np.flatnonzero(first), np.flatnonzero(last) + 1
    rows = count.rows_of(starts)
    index = np.arange(len(starts)) - np.searchsorted(starts, count.offsets[:-1])[rows]
    keep = (index < UNIQUE_WORDS_WINDOW) & (words[rows] >= UNIQUE_WORDS_MIN)
    starts, ends, rows = starts[keep], ends[keep], rows[keep]
    ascii = np.searchsorted(high, ends) == np.searchsorted(high, starts)
    bucket = _signature_buckets(data, starts, ends)
    bit = np.left_shift(np.uint64(1), (bucket & 63).astype(np.uint64))
    segment = np.concatenate([[0], np.flatnonzero(np.diff(rows)) + 1])
    distinct = np.zeros(len(segment), dtype=np.int64)
    for word in range(4):
        part = np.where(ascii & ((bucket >> 6) == word), bit, np.uint64(0))
        distinct += np.bitwise_count(np.bitwise_or.reduceat(part, segment))
    present = rows[segment]
    floor[present] = distinct / count.sparse(starts)[present]
    return floor


def unique_word_ratio(arr: pa.Array, look: np.ndarray) -> np.ndarray:
    """Distinct/total lower-cased words among the first 200, for the rows in ``look`` (of 8+
    words: ``TextStats.words``); else 1.

    Low values mean spam-like repetition ("buy now buy now ..."). Windowed so long answers
    (whose vocabulary naturally saturates) are not penalised. ``TextStats.unique_floor`` bounds
    it from below: the caller asks only for the rows where the bound does not settle the rule.
    """
    ratio = np.ones(len(arr), dtype=np.float64)
    rows = np.flatnonzero(look)
    if len(rows) == 0:
        return ratio
    subset = pa.table({"row": pa.array(rows), "text": pc.take(arr, pa.array(rows))})
    # Words are split on any whitespace; the empty strings that indentation leaves between
    # spaces are not words (counted, they made indented code look like spam).
    query = f"""
        SELECT row, list_unique(w) / greatest(len(w), 1) AS ratio
        FROM (SELECT row, list_filter(string_split(
                              replace(replace(lower(text), chr(10), ' '), chr(9), ' '), ' '),
                              lambda x: x <> '')
                          [1:{UNIQUE_WORDS_WINDOW}] AS w
              FROM subset)
    """
    import duckdb  # imported where used: importing the code location must stay cheap

    with duckdb.connect() as con:
        con.register("subset", subset)
        result = con.sql(query).to_arrow_table()
    ratio[result["row"].to_numpy()] = result["ratio"].to_numpy(zero_copy_only=False)
    return ratio
