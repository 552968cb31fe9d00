"""Exact deduplication: content hashes and keep-first masks, vectorised.

Measured on 200k chat messages (2 cores): DuckDB ``md5`` over the Arrow column 0.09 s, a
``hashlib.md5`` loop 0.17 s (plus conversion), so hashing runs in DuckDB. Keep-first masks are
an Arrow ``group_by`` + ``min`` over a row index (hash aggregation in C++).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.transforms.text_normalize import as_string_array, replace_regex_where

_ROW = "__row_index"


def hash_key_text(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The text that is hashed: lower-cased, every whitespace run one space, trimmed.

    So messages that differ only in case or spacing (replays through another client, a retyped
    prompt) share a hash. Callers normalise Unicode first (``normalize_text``).
    """
    text = pc.utf8_lower(as_string_array(arr))
    text = replace_regex_where(text, r"\s{2,}|[\t\n\r\f\v]", " ")
    return pc.utf8_trim_whitespace(text)


def content_hash(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Stable hex md5 (32 chars) of ``hash_key_text``; null in, null out.

    md5 is used as a fingerprint, not for security: stable across versions and platforms and
    the same as ``hashlib.md5(text.encode()).hexdigest()``.
    """
    import duckdb  # imported where used: importing the code location must stay cheap

    keys = pa.table({"k": hash_key_text(arr)})
    with duckdb.connect() as con:
        con.register("keys", keys)
        out = con.sql("SELECT md5(k) AS h FROM keys").to_arrow_table()
    return as_string_array(out["h"])


def first_occurrence_mask(table: pa.Table, columns: Sequence[str]) -> pa.Array:
    """True for the first row (in table order) of each distinct combination of ``columns``.

    Nulls compare equal, as in SQL ``GROUP BY``: callers that want null keys kept distinct
    OR the mask with their own ``is_null`` test.
    """
    if not columns:
        raise ValueError("first_occurrence_mask needs at least one column")
    n = table.num_rows
    if n == 0:
        return pa.array([], pa.bool_())
    keyed = table.select(list(columns)).append_column(_ROW, pa.array(np.arange(n, dtype=np.int64)))
    firsts = keyed.group_by(list(columns), use_threads=True).aggregate([(_ROW, "min")])
    mask = np.zeros(n, dtype=bool)
    mask[firsts[f"{_ROW}_min"].to_numpy()] = True
    return pa.array(mask)
