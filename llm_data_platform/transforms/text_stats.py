"""Per-row character statistics of chat text, with numpy over the Arrow value buffer: byte
classes, words, lines, repetition, keyboard mash, emoji runs, symbol soup — the raw signals
``quality.py`` turns into scores. One pass per statistic over all bytes of a batch (a regex
counting every character is ~10x slower); the unique-word ratio is one DuckDB query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.transforms.text_normalize import Utf8View, utf8_view

if TYPE_CHECKING:
    from llm_data_platform.transforms.quality import QualityConfig

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
# Bit of each of the 32 ASCII punctuation characters (distinct kinds of symbols per row).
_PUNCT_BIT = np.zeros(256, dtype=np.uint32)
_PUNCT_BIT[[c for c in range(33, 127) if not chr(c).isalnum()]] = 1 << np.arange(
    32, dtype=np.uint32
)
_RULE_CHARS = np.zeros(256, dtype=bool)
_RULE_CHARS[list(b"-=*_~+")] = True

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
    repeated: np.ndarray  # characters equal to the 3 before them (runs of 4+), see text_stats
    mash_pairs: np.ndarray  # rare neighbouring-key letter pairs (overlapping)
    unit_chars: np.ndarray  # letters and non-ASCII symbols (emoji), by code point
    unit_repeats: np.ndarray  # of those, equal to the one p before, for the best period p
    isolated: np.ndarray  # letters/digits with no letter/digit on either side
    emoji_run: np.ndarray  # emoji right after an emoji (or its modifier)
    modifiers: np.ndarray  # VS16, ZWJ, skin tones: parts of an emoji, not characters
    unpaired: np.ndarray  # |( - )| + |[ - ]| + |{ - }| + odd " + odd '
    symbol_kinds: np.ndarray  # distinct ASCII punctuation + non-ASCII symbols
    consonant_letters: np.ndarray  # letters in runs of ``consonant_run``+ ASCII consonants
    lines: np.ndarray  # non-blank lines
    one_word_lines: np.ndarray  # lines of exactly one word

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
    """Per-row sums of per-item arrays over compacted rows (``np.add.reduceat``)."""

    def __init__(self, row_starts: np.ndarray, lengths: np.ndarray) -> None:
        self.nonempty = lengths > 0
        self.indices = row_starts[self.nonempty]
        self.n = len(lengths)

    def __call__(self, mask: np.ndarray) -> np.ndarray:
        out = np.zeros(self.n, dtype=np.int64)
        if len(self.indices):
            values = mask.view(np.uint8) if mask.dtype == bool else mask
            out[self.nonempty] = np.add.reduceat(values, self.indices, dtype=np.int64)
        return out


def _code_points(data: np.ndarray, lead: np.ndarray) -> np.ndarray:
    """Code point of every character, given the positions of their first bytes."""
    cp = data[lead].astype(np.int32)
    multi = np.flatnonzero(cp >= 0xC0)  # ASCII (most of chat) is its own code point
    if len(multi) == 0:
        return cp
    first = cp[multi]
    size = 1 + (first >= 0xC0) + (first >= 0xE0) + (first >= 0xF0)
    value = first & np.array([0, 0x7F, 0x1F, 0x0F, 0x07], dtype=np.int32)[size]
    start, last = lead[multi], len(data) - 1
    for k in (1, 2, 3):
        more = size > k
        nxt = data[np.minimum(start + k, last)].astype(np.int32) & 0x3F
        value = np.where(more, (value << 6) | nxt, value)
    cp[multi] = value
    return cp


def _row_positions(lengths: np.ndarray) -> np.ndarray:
    """Position of every item inside its row (0 for the first item of a row)."""
    total = int(lengths.sum())
    starts = np.zeros(len(lengths), dtype=np.int64)
    if len(lengths) > 1:
        np.cumsum(lengths[:-1], out=starts[1:])
    return np.arange(total, dtype=np.int64) - np.repeat(starts, lengths)


def _char_stats(
    data: np.ndarray, cls: np.ndarray, chars: np.ndarray, config: QualityConfig
) -> tuple[np.ndarray, ...]:
    """Repeated units and isolated letters/digits, on code points (a 4-byte emoji is one)."""
    lead = np.flatnonzero(cls != _CONT)
    cp = _code_points(data, lead)
    ccls = cls[lead]
    pos = _row_positions(chars)
    count = _RowSums(np.cumsum(chars) - chars, chars)
    unit = (ccls == _LETTER) | ((ccls == _SYMBOL) & (cp >= 0x80))
    nc = len(cp)
    # Periods are looked for in messages up to unit_max_chars only (longer repetition is
    # word_repetition's or long_words'): long answers, most of the bytes, skip the loop.
    short = chars <= config.unit_max_chars
    in_short = np.repeat(short, chars)
    cp_s, pos_s, unit_s = cp[in_short], pos[in_short], unit[in_short]
    chars_s = chars[short]
    count_s = _RowSums(np.cumsum(chars_s) - chars_s, chars_s)
    best_s = np.zeros(len(chars_s), dtype=np.int64)
    same = np.zeros(len(cp_s), dtype=bool)
    for p in range(1, config.unit_max_period + 1):
        if p >= len(cp_s):
            break
        same[:p] = False
        np.equal(cp_s[p:], cp_s[:-p], out=same[p:])
        same[p:] &= pos_s[p:] >= p
        same &= unit_s
        np.maximum(best_s, count_s(same), out=best_s)
    best = np.zeros(len(chars), dtype=np.int64)
    best[short] = best_s
    alnum = (ccls == _LETTER) | (ccls == _DIGIT)
    beside = np.zeros(nc, dtype=bool)
    if nc > 1:
        continues = pos[1:] > 0  # character i+1 is in the row of character i
        beside[1:] = alnum[:-1] & continues
        beside[:-1] |= alnum[1:] & continues
    modifier = (cp == 0xFE0F) | (cp == 0x200D) | ((cp >= 0x1F3FB) & (cp <= 0x1F3FF))
    emoji = (ccls == _SYMBOL) & (cp >= 0x2000) & ~modifier
    after_emoji = np.zeros(nc, dtype=bool)
    if nc > 1:
        after_emoji[1:] = (emoji[:-1] | modifier[:-1]) & (pos[1:] > 0)
    return (
        count(unit),
        best,
        count(alnum & ~beside),
        count(emoji & after_emoji),
        count(modifier),
    )


_VOWELS = b"aeiouyAEIOUY"
_IS_CONSONANT = np.zeros(256, dtype=bool)
_IS_CONSONANT[ord("a") : ord("z") + 1] = True
_IS_CONSONANT[ord("A") : ord("Z") + 1] = True
_IS_CONSONANT[list(_VOWELS)] = False


def _consonant_run_letters(
    data: np.ndarray, byte_row_start: np.ndarray, count: _RowSums, run: int
) -> np.ndarray:
    """Letters standing in runs of ``run``+ ASCII consonants, per row."""
    n = len(data)
    index = np.arange(n, dtype=np.int64)
    cons = _IS_CONSONANT[data]
    last_break = np.maximum.accumulate(np.where(cons, -1, index)) if n else index
    last_break = np.maximum(last_break, byte_row_start - 1)
    length = np.where(cons, index - last_break, 0)
    return count(length >= run) + (run - 1) * count(length == run)


def _line_stats(
    is_nl: np.ndarray, row_start: np.ndarray, word_start: np.ndarray, n_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Non-blank lines and lines of exactly one word, per row."""
    line_start = row_start.copy()
    line_start[1:] |= is_nl[:-1]
    line_id = np.cumsum(line_start) - 1
    first_bytes = np.flatnonzero(line_start)
    words_per_line = np.bincount(line_id[word_start], minlength=len(first_bytes))
    row_of_line = np.cumsum(row_start)[first_bytes] - 1
    nonblank = np.bincount(row_of_line[words_per_line > 0], minlength=n_rows)
    one_word = np.bincount(row_of_line[words_per_line == 1], minlength=n_rows)
    return nonblank.astype(np.int64), one_word.astype(np.int64)


def text_stats(arr: pa.Array, config: QualityConfig) -> TextStats:
    """Character-class counts, words, lines, repetition and keyboard-mash signals per row."""
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
    # ASCII non-digit, except the characters of rules and underlines ("-----", "=====", "***",
    # "___", "~~~", "+---+": headings and tables that people paste).
    repeated = same3 & within3 & (data < 0x80) & ~is_space & (cls != _DIGIT) & ~_RULE_CHARS[data]

    pairs = np.zeros(n, dtype=bool)
    if n > 1:
        pairs[1:] = _MASH_TABLE[(data[:-1].astype(np.uint16) << 8) | data[1:]]
    pairs &= within1

    chars = count(cls != _CONT)
    unit_chars, unit_repeats, isolated, emoji_run, modifiers = _char_stats(data, cls, chars, config)
    unpaired = np.zeros(len(lengths), dtype=np.int64)
    for left, right in ("()", "[]", "{}"):
        unpaired += np.abs(count(data == ord(left)) - count(data == ord(right)))
    for quote in "\"'":
        unpaired += count(data == ord(quote)) % 2
    kinds = np.zeros(len(lengths), dtype=np.int64)
    if n:
        nonempty = lengths > 0
        bits = np.bitwise_or.reduceat(_PUNCT_BIT[data], row_starts[nonempty])
        kinds[nonempty] = np.bitwise_count(bits)
    kinds += count((cls == _SYMBOL) & (data >= 0xC0))
    byte_row_start = np.repeat(row_starts, lengths)
    lines, one_word = _line_stats(data == 10, row_start, word_start, len(lengths))
    return TextStats(
        chars=chars,
        letters=count(cls == _LETTER),
        digits=count(cls == _DIGIT),
        spaces=count(is_space),
        symbols=count(cls == _SYMBOL),
        words=count(word_start),
        repeated=count(repeated),
        mash_pairs=count(pairs),
        unit_chars=unit_chars,
        unit_repeats=unit_repeats,
        isolated=isolated,
        emoji_run=emoji_run,
        modifiers=modifiers,
        unpaired=unpaired,
        symbol_kinds=kinds,
        consonant_letters=_consonant_run_letters(data, byte_row_start, count, config.consonant_run),
        lines=lines,
        one_word_lines=one_word,
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
    # Words are split on any whitespace; the empty strings that indentation leaves between
    # spaces are not words (counted, they made indented code look like spam).
    query = f"""
        SELECT row, list_unique(w) / greatest(len(w), 1) AS ratio
        FROM (SELECT row, list_filter(string_split(
                              replace(replace(lower(text), chr(10), ' '), chr(9), ' '), ' '),
                              lambda x: x <> '')
                          [1:{_UNIQUE_WORDS_WINDOW}] AS w
              FROM subset)
    """
    import duckdb  # imported where used: importing the code location must stay cheap

    with duckdb.connect() as con:
        con.register("subset", subset)
        result = con.sql(query).to_arrow_table()
    ratio[result["row"].to_numpy()] = result["ratio"].to_numpy(zero_copy_only=False)
    return ratio
