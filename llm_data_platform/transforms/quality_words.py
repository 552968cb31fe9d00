"""The unique-word ratio of chat messages (distinct / all lower-cased words among the first
UNIQUE_WORDS_WINDOW, for messages of UNIQUE_WORDS_MIN+ words): exact in DuckDB, and a lower
bound in numpy over the Arrow value buffer that settles the word_repetition rule for ~98% of
the messages without DuckDB.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    import duckdb

    from llm_data_platform.transforms.quality_chars import Counts

# Unique-word ratio is measured over the first N words of messages with at least M words.
UNIQUE_WORDS_MIN = 8
UNIQUE_WORDS_WINDOW = 200
_BUCKETS = 256  # of the word signatures in ``unique_word_floor`` (``_signature_buckets``)
_TABLE_ROWS = 1 << 16  # rows of the bucket table at once


def _signature_buckets(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Bucket (0..255) of each ASCII word from its length and its first and last bytes, each
    ``| 0x20``: that folds the case of letters (and a few symbols together, which only makes
    the bound lower), so words equal in lower case share a bucket."""
    h = data[starts].astype(np.uint32)
    h |= data[ends - 1].astype(np.uint32) << 8
    h |= np.uint32(0x2020)
    h ^= (ends - starts).astype(np.uint32) * np.uint32(0x9E3779B1)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> 13
    h *= np.uint32(0xC2B2AE35)
    return h >> 24  # _BUCKETS


def unique_word_floor(
    data: np.ndarray, sep: np.ndarray, row_start, high: np.ndarray, count: Counts, words
) -> np.ndarray:
    """A lower bound of ``unique_word_ratio``, from the words DuckDB would see (split on
    ``sep``: space, newline and tab; the first UNIQUE_WORDS_WINDOW): occupied buckets of the
    ASCII words' signatures, over the words. Equal words share a bucket, so buckets <=
    distinct words; non-ASCII words stay out (their lower case may equal an ASCII word's)."""
    floor = np.ones(len(words), dtype=np.float64)
    if not (words >= UNIQUE_WORDS_MIN).any():
        return floor
    first, last = ~sep, ~sep
    first[1:] &= sep[:-1] | row_start[1:]
    last[:-1] &= sep[1:] | row_start[1:]
    starts, ends = np.flatnonzero(first), np.flatnonzero(last) + 1
    per_row = count.sparse(starts)
    look = words >= UNIQUE_WORDS_MIN
    # the looked-at rows, numbered 0.. in order, and the window of each
    rank = np.cumsum(look) - 1
    keep = np.repeat(look, per_row)
    if (per_row[look] > UNIQUE_WORDS_WINDOW).any():
        index = np.arange(len(starts)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
        keep &= index < UNIQUE_WORDS_WINDOW
    rows = np.repeat(rank, per_row)[keep]
    # a non-ASCII byte is never a separator: it stands in the last word started before it
    ascii = np.ones(len(starts), dtype=bool)
    ascii[np.searchsorted(starts, high, side="right") - 1] = False
    starts, ends, ascii = starts[keep], ends[keep], ascii[keep]
    rows, bucket = rows[ascii], _signature_buckets(data, starts[ascii], ends[ascii])
    distinct = np.zeros(int(look.sum()), dtype=np.int64)
    for first_row in range(0, len(distinct), _TABLE_ROWS):  # a table of at most 16 MB
        a, b = np.searchsorted(rows, [first_row, first_row + _TABLE_ROWS])
        seen = np.zeros((min(_TABLE_ROWS, len(distinct) - first_row), _BUCKETS), dtype=bool)
        seen[rows[a:b] - first_row, bucket[a:b]] = True
        distinct[first_row : first_row + len(seen)] = seen.sum(axis=1)
    floor[look] = distinct / np.minimum(per_row[look], UNIQUE_WORDS_WINDOW)
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
    with _DUCKDB_LOCK:
        con = _connection()
        con.register("subset", subset)
        try:
            result = con.sql(query).to_arrow_table()
        finally:
            con.unregister("subset")
    ratio[result["row"].to_numpy()] = result["ratio"].to_numpy(zero_copy_only=False)
    return ratio


# One in-memory DuckDB for the process (opening one costs ~40 ms, a query here ~1 ms: per
# 4 MB block that was most of the ratio's time); blocks in threads take turns on it.
_DUCKDB_LOCK = threading.Lock()
_DUCKDB: dict[int, duckdb.DuckDBPyConnection] = {}  # by process id: a fork opens its own


def _connection() -> duckdb.DuckDBPyConnection:
    import duckdb  # imported where used: importing the code location must stay cheap

    pid = os.getpid()
    if pid not in _DUCKDB:  # the parent's stays as it is (closing it in a fork is unsafe)
        _DUCKDB[pid] = duckdb.connect()
    return _DUCKDB[pid]
