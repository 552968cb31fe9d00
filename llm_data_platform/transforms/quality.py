"""Cheap quality heuristics for chat messages (Gopher/DataTrove-style, tuned for short text).

Character statistics are computed with numpy over the Arrow value buffer, one pass per
statistic over all bytes of the batch (a regex counting every character is ~10x slower). The
unique-word ratio needs tokens and runs as one DuckDB query over Arrow. No per-row Python.

Every signal becomes a component score in [0, 1] (1 = nothing wrong); ``quality_score`` is
their product, so two mild problems weigh like one serious one. A message is garbage when its
score is below ``min_score``; the reason is the component that pulled it down most. Components
are lenient with what chat normally looks like: one-word replies ("ok", "Thanks!"), questions,
code (``x = [i*i for i in range(10)]``), numbers ("42").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.transforms.text_normalize import (
    Utf8View,
    as_string_array,
    utf8_view,
)

EMPTY = "empty"
NO_LETTERS = "no_letters"
# Component reasons, in the column order of ``_components``.
COMPONENT_REASONS: tuple[str, ...] = (
    "low_alpha",
    "symbol_heavy",
    "char_repetition",
    "keyboard_mash",
    "long_words",
    "word_repetition",
)
GARBAGE_REASONS: tuple[str, ...] = (EMPTY, NO_LETTERS, *COMPONENT_REASONS)

DEFAULT_MIN_SCORE = 0.5
# Unique-word ratio is measured over the first N words of messages with at least M words.
_UNIQUE_WORDS_MIN = 8
_UNIQUE_WORDS_WINDOW = 200

# Byte classes of UTF-8 text.
_CONT, _LETTER, _DIGIT, _SPACE, _SYMBOL = 0, 1, 2, 3, 4


def _byte_class_table() -> np.ndarray:
    """Class of a character by its first byte. Multi-byte characters are letters (accented
    Latin, Cyrillic, CJK...), except U+0080..U+00BF (lead 0xC2: "©", "«", "°"), U+2000..U+2FFF
    (lead 0xE2: punctuation, arrows, maths, box drawing) and 4-byte sequences (emoji; see
    ``_byte_classes`` for the non-emoji ones), which count as symbols."""
    table = np.full(256, _SYMBOL, dtype=np.uint8)
    table[ord("a") : ord("z") + 1] = _LETTER
    table[ord("A") : ord("Z") + 1] = _LETTER
    table[ord("0") : ord("9") + 1] = _DIGIT
    table[[9, 10, 11, 12, 13, 32]] = _SPACE
    table[0x80:0xC0] = _CONT
    table[0xC3:0xF0] = _LETTER
    table[0xE2] = _SYMBOL
    return table


_BYTE_CLASS = _byte_class_table()

# Pairs of neighbouring keys on a QWERTY keyboard that are rare in real words: "asdkjh",
# "sdfsdf", "qwe", "zxcv" are full of them, English prose almost never has two in a message.
_MASH_BIGRAMS = ("sd", "df", "fd", "fg", "gf", "hj", "jh", "jk", "kj", "qw", "wq", "zx", "xz")
_MASH_BIGRAMS += ("cv", "vc", "vb")


def _mash_table() -> np.ndarray:
    table = np.zeros(1 << 16, dtype=bool)
    for pair in _MASH_BIGRAMS:
        for a in (pair[0], pair[0].upper()):
            for b in (pair[1], pair[1].upper()):
                table[(ord(a) << 8) | ord(b)] = True
    return table


_MASH_TABLE = _mash_table()


@dataclass(frozen=True)
class TextStats:
    """Per-row character statistics (numpy int64 arrays, 0 for null rows)."""

    chars: np.ndarray
    letters: np.ndarray
    digits: np.ndarray
    spaces: np.ndarray
    symbols: np.ndarray
    words: np.ndarray
    repeated: np.ndarray  # characters equal to the 3 before them (runs of 4+), ASCII non-digit
    mash_pairs: np.ndarray  # rare neighbouring-key letter pairs (overlapping)

    @property
    def visible(self) -> np.ndarray:
        """Characters that are not whitespace."""
        return self.chars - self.spaces


def _byte_classes(data: np.ndarray) -> np.ndarray:
    """Class of every byte; continuation bytes are ``_CONT`` and count as nothing."""
    cls = _BYTE_CLASS[data]
    # 4-byte sequences: emoji live in U+1F000..U+1FFFF (F0 9F ..); others (rare CJK) are letters.
    four = np.flatnonzero(data >= 0xF0)
    if len(four):
        nxt = four + 1 < len(data)
        is_cjk = np.zeros(len(four), dtype=bool)
        is_cjk[nxt] = data[four[nxt] + 1] != 0x9F
        cls[four[is_cjk]] = _LETTER
    return cls


def _compact(view: Utf8View) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The bytes of all rows back to back, each row's start in them, and its length.

    Arrow rows are already contiguous unless null slots own bytes (allowed, rare): only then is
    a copy made.
    """
    lengths = view.lengths
    row_starts = np.zeros(len(lengths), dtype=np.int64)
    if len(lengths) > 1:
        np.cumsum(lengths[:-1], out=row_starts[1:])
    if len(lengths) == 0:
        return view.data[:0], row_starts, lengths
    first = int(view.starts[0])
    if np.array_equal(view.starts - first, row_starts):
        return view.data[first : first + int(lengths.sum())], row_starts, lengths
    pieces = [view.data[a:b] for a, b in zip(view.starts, view.ends, strict=True)]
    return np.concatenate(pieces) if pieces else view.data[:0], row_starts, lengths


class _RowSums:
    """Per-row sums of per-byte arrays over compacted rows (``np.add.reduceat``)."""

    def __init__(self, row_starts: np.ndarray, lengths: np.ndarray) -> None:
        self.nonempty = lengths > 0
        self.indices = row_starts[self.nonempty]
        self.n = len(lengths)

    def __call__(self, mask: np.ndarray) -> np.ndarray:
        out = np.zeros(self.n, dtype=np.int64)
        if len(self.indices):
            out[self.nonempty] = np.add.reduceat(mask.view(np.uint8), self.indices, dtype=np.int64)
        return out


def text_stats(arr: pa.Array) -> TextStats:
    """Character-class counts, word count, repetition and keyboard-mash pairs per row."""
    data, row_starts, lengths = _compact(utf8_view(arr))
    count = _RowSums(row_starts, lengths)
    cls = _byte_classes(data)
    n = len(data)
    # row_start[i]: byte i is the first of its row; within[k][i]: bytes i-k..i share a row.
    row_start = np.zeros(n, dtype=bool)
    row_start[row_starts[lengths > 0]] = True
    within1 = ~row_start
    within3 = within1.copy()
    within3[1:] &= within1[:-1]
    within3[2:] &= within1[:-2]
    within3[:3] = False

    is_space = cls == _SPACE
    prev_space = np.ones(n, dtype=bool)
    prev_space[1:] = is_space[:-1]
    word_start = ~is_space & (cls != _CONT) & (prev_space | row_start)

    same3 = np.zeros(n, dtype=bool)
    if n > 3:
        same3[3:] = (data[3:] == data[2:-1]) & (data[3:] == data[1:-2]) & (data[3:] == data[:-3])
    repeated = same3 & within3 & (data < 0x80) & ~is_space & (cls != _DIGIT)

    pairs = np.zeros(n, dtype=bool)
    if n > 1:
        pairs[1:] = _MASH_TABLE[(data[:-1].astype(np.uint16) << 8) | data[1:]]
    pairs &= within1

    return TextStats(
        chars=count(cls != _CONT),
        letters=count(cls == _LETTER),
        digits=count(cls == _DIGIT),
        spaces=count(is_space),
        symbols=count(cls == _SYMBOL),
        words=count(word_start),
        repeated=count(repeated),
        mash_pairs=count(pairs),
    )


def unique_word_ratio(arr: pa.Array, words: np.ndarray) -> np.ndarray:
    """Distinct/total lower-cased words among the first 200, for rows with 8+ words; else 1.

    Low values mean spam-like repetition ("buy now buy now ..."). Windowed so long answers
    (whose vocabulary naturally saturates) are not penalised.
    """
    ratio = np.ones(len(arr), dtype=np.float64)
    rows = np.flatnonzero(words >= _UNIQUE_WORDS_MIN)
    if len(rows) == 0:
        return ratio
    subset = pa.table({"row": pa.array(rows), "text": pc.take(arr, pa.array(rows))})
    # Normalised text separates words by single spaces and newlines (indentation adds a few
    # empty "words", which only makes the ratio more lenient).
    query = f"""
        SELECT row, list_unique(w) / len(w) AS ratio
        FROM (SELECT row, string_split(replace(lower(text), chr(10), ' '), ' ')
                          [1:{_UNIQUE_WORDS_WINDOW}] AS w
              FROM subset)
    """
    import duckdb  # imported where used: importing the code location must stay cheap

    with duckdb.connect() as con:
        con.register("subset", subset)
        result = con.sql(query).to_arrow_table()
    ratio[result["row"].to_numpy()] = result["ratio"].to_numpy(zero_copy_only=False)
    return ratio


def _ramp_down(x: np.ndarray, start: float, end: float) -> np.ndarray:
    """1 below ``start``, 0 above ``end``, linear between."""
    return np.clip((end - x) / (end - start), 0.0, 1.0)


def _components(stats: TextStats, uniq: np.ndarray) -> np.ndarray:
    """Component scores, one column per ``COMPONENT_REASONS`` entry."""
    visible = np.maximum(stats.visible, 1).astype(np.float64)
    alpha = stats.letters / visible
    low_alpha = np.where(stats.visible >= 20, np.clip(alpha / 0.2, 0.0, 1.0), 1.0)
    symbol_heavy = _ramp_down(stats.symbols / visible, 0.5, 0.95)
    char_repetition = _ramp_down(stats.repeated / visible, 0.3, 0.65)
    mash_density = stats.mash_pairs / np.maximum(stats.letters, 1)
    keyboard_mash = np.where(stats.mash_pairs >= 2, _ramp_down(mash_density, 0.1, 0.25), 1.0)
    mean_word_len = stats.visible / np.maximum(stats.words, 1)
    long_words = _ramp_down(mean_word_len, 40.0, 100.0)
    word_repetition = np.clip((uniq - 0.1) / 0.2, 0.0, 1.0)
    return np.column_stack(
        [low_alpha, symbol_heavy, char_repetition, keyboard_mash, long_words, word_repetition]
    )


def quality_signals(
    arr: pa.Array | pa.ChunkedArray, min_score: float = DEFAULT_MIN_SCORE
) -> pa.Table:
    """``quality_score`` (float32, 0..1) and ``garbage_reason`` (null when score >= min_score).

    Null input rows give a null score and a null reason (not a message: nothing to judge).
    """
    text = as_string_array(arr)
    stats = text_stats(text)
    components = _components(stats, unique_word_ratio(text, stats.words))
    score = components.prod(axis=1) if len(text) else np.zeros(0)
    reason_index = components.argmin(axis=1) if len(text) else np.zeros(0, dtype=np.int64)
    reasons = np.array(COMPONENT_REASONS, dtype=object)[reason_index]

    no_letters = (stats.letters == 0) & (stats.digits == 0)
    empty = stats.visible == 0
    score = np.where(no_letters | empty, 0.0, score)
    reasons = np.where(no_letters, NO_LETTERS, reasons)
    reasons = np.where(empty, EMPTY, reasons)

    is_null = pc.is_null(text).to_numpy(zero_copy_only=False)
    garbage = (score < min_score) & ~is_null
    return pa.table(
        {
            "quality_score": pa.array(score.astype(np.float32), mask=is_null),
            "garbage_reason": pa.array(np.where(garbage, reasons, None), pa.string()),
        }
    )
