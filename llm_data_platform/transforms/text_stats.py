"""Per-row character statistics of chat text, with numpy over the Arrow value buffer: byte
classes, words, lines, repetition, keyboard mash, emoji runs, symbol soup — the raw signals
``quality.py`` turns into scores.

Made for throughput (issue 11): the bytes get one flag look-up (~1 ns a byte), and every
other dense pass is a comparison or a boolean operation (~0.1 ns); further look-ups and int64
work arrays are kept for the sparse positions a cheap mask picks (non-ASCII bytes,
punctuation, runs of a repeated byte, candidate key pairs, long consonant runs), and a
statistic a rule cannot use for a row is not computed for it. Per-row sums of a dense mask are
prefix popcounts of its packed bits, of sparse positions a ``searchsorted`` (``Counts`` in
``quality_chars.py``, with the character-level statistics). Rows are valid UTF-8 (Arrow's
``string`` contract). The unique-word ratio is ``quality_words.py``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from llm_data_platform.transforms.quality_chars import (
    CONT,
    DIGIT,
    LETTER,
    SPACE,
    SYMBOL,
    Counts,
    as_chars,
    char_stats,
)
from llm_data_platform.transforms.quality_words import unique_word_floor
from llm_data_platform.transforms.text_normalize import Utf8View, utf8_view

if TYPE_CHECKING:
    from llm_data_platform.transforms.quality import QualityConfig


def _byte_class_table() -> np.ndarray:
    """Class of a character by its first byte. Multi-byte characters are letters (accented
    Latin, Cyrillic, CJK...), except U+0080..U+00BF (lead 0xC2: "©", "«", "°"), U+2000..U+2FFF
    (lead 0xE2: punctuation, arrows, maths, box drawing) and 4-byte sequences (emoji; see
    ``_high_classes`` for the non-emoji ones), which count as symbols. ASCII bytes are
    classed by comparisons in ``text_stats``, the same classes as this table."""
    table = np.full(256, SYMBOL, dtype=np.uint8)
    table[ord("a") : ord("z") + 1] = LETTER
    table[ord("A") : ord("Z") + 1] = LETTER
    table[ord("0") : ord("9") + 1] = DIGIT
    table[[9, 10, 11, 12, 13, 32]] = SPACE
    table[0x80:0xC0] = CONT
    table[0xC3:0xF0] = LETTER
    table[0xE2] = SYMBOL
    return table


_BYTE_CLASS = _byte_class_table()
# Bit of each of the 32 ASCII punctuation characters (distinct kinds of symbols per row).
_PUNCT_BIT = np.zeros(256, dtype=np.uint32)
_PUNCT_BIT[[c for c in range(33, 127) if not chr(c).isalnum()]] = 1 << np.arange(
    32, dtype=np.uint32
)
# Brackets (left, right) and quotes, counted per row for ``unpaired``.
_PAIRED = b"()[]{}\"'"
_PAIRING = np.zeros(256, dtype=np.int64)
_PAIRING[list(_PAIRED)] = np.arange(1, len(_PAIRED) + 1)
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
# Byte flags: one table look-up per byte (~1 ns) gives every ASCII class the dense passes need.
F_LETTER, F_DIGIT, F_SPACE, F_CONSONANT, F_MASH, F_PUNCT, F_WORD_BREAK = (1 << k for k in range(7))


def _flag_table() -> np.ndarray:
    """Flags of each byte value (non-ASCII bytes have none: ``_high_classes`` classes them)."""
    table = np.zeros(256, dtype=np.uint8)
    letters = [c for c in range(128) if chr(c).isascii() and chr(c).isalpha()]
    table[letters] |= F_LETTER
    table[ord("0") : ord("9") + 1] |= F_DIGIT
    table[[9, 10, 11, 12, 13, 32]] |= F_SPACE
    table[[c for c in letters if chr(c).lower() not in "aeiouy"]] |= F_CONSONANT
    mash = set("".join(_MASH_BIGRAMS))
    table[[c for c in letters if chr(c).lower() in mash]] |= F_MASH
    table[[c for c in range(33, 127) if not chr(c).isalnum()]] |= F_PUNCT
    table[[9, 10, 32]] |= F_WORD_BREAK  # DuckDB's word separators (``quality_words``)
    return table


_FLAGS = _flag_table()


def _flag(flags: np.ndarray, flag: int) -> np.ndarray:
    return (flags & np.uint8(flag)) != 0


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
    # of those, equal to the one p before, for the best period p (0 where the rule does not
    # look: rows over unit_max_chars characters or under unit_min_chars unit characters)
    unit_repeats: np.ndarray
    # isolated, unpaired, symbol_kinds: 0 where symbol_soup does not look (see text_stats)
    isolated: np.ndarray  # letters/digits with no letter/digit on either side
    emoji_run: np.ndarray  # emoji right after an emoji (or its modifier)
    modifiers: np.ndarray  # VS16, ZWJ, skin tones: parts of an emoji, not characters
    unpaired: np.ndarray  # |( - )| + |[ - ]| + |{ - }| + odd " + odd '
    symbol_kinds: np.ndarray  # distinct ASCII punctuation + non-ASCII symbols
    consonant_letters: np.ndarray  # letters in runs of ``consonant_run``+ ASCII consonants
    lines: np.ndarray  # non-blank lines
    one_word_lines: np.ndarray  # lines of exactly one word
    # a lower bound of ``unique_word_ratio`` (float; 1.0 under UNIQUE_WORDS_MIN words)
    unique_floor: np.ndarray

    @property
    def visible(self) -> np.ndarray:
        """Characters that are not whitespace."""
        return self.chars - self.spaces


def _compact(view: Utf8View) -> tuple[np.ndarray, np.ndarray]:
    """The bytes of all rows back to back, and the row boundaries in them (n + 1 offsets).

    Arrow rows are already contiguous unless null slots own bytes (allowed, rare): only then is
    a copy made.
    """
    lengths = view.lengths
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if len(lengths) == 0:
        return view.data[:0], offsets
    first = int(view.starts[0])
    if np.array_equal(view.starts - first, offsets[:-1]):
        return view.data[first : first + int(offsets[-1])], offsets
    pieces = [view.data[a:b] for a, b in zip(view.starts, view.ends, strict=True)]
    return np.concatenate(pieces), offsets


def _shifted(mask: np.ndarray, k: int, fill: bool) -> np.ndarray:
    """``mask`` moved k items later: out[i] = mask[i - k], ``fill`` for the first k."""
    out = np.empty_like(mask)
    out[:k] = fill
    out[k:] = mask[: len(mask) - k]
    return out


def _high_classes(data: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Class of the non-ASCII bytes at ``high``; continuation bytes are ``CONT``."""
    cls = _BYTE_CLASS[data[high]]
    # 4-byte sequences: emoji live in U+1F000..U+1FFFF (F0 9F ..); others (rare CJK) are letters.
    four = np.flatnonzero(data[high] >= 0xF0)
    if len(four):
        at = high[four]
        nxt = at + 1 < len(data)
        is_cjk = np.zeros(len(four), dtype=bool)
        is_cjk[nxt] = data[at[nxt] + 1] != 0x9F
        cls[four[is_cjk]] = LETTER
    return cls


def _consonant_run_letters(
    cons: np.ndarray, row_start: np.ndarray, count: Counts, run: int
) -> np.ndarray:
    """Letters standing in runs of ``run``+ ASCII consonants (``cons``), per row: a run of
    L >= run ends a run of ``run`` at L - run + 1 positions (``tail``), the first of them
    once."""
    if run < 1:  # every byte stands in a run of 0+: the run formula of old, kept as it was
        return count.dense(cons) if run == 0 else np.diff(count.offsets)
    cont = cons & _shifted(cons, 1, False) & ~row_start  # byte i continues the run of i - 1
    tail = cons.copy()  # tail[i]: bytes i - run + 1 .. i are one run
    for k in range(run - 1):
        tail[k:] &= cont[: len(cont) - k]
        tail[:k] = False
    at = np.flatnonzero(tail)
    first = np.ones(len(at), dtype=bool)
    first[1:] = (at[1:] - 1 != at[:-1]) | ~cont[at[1:]]
    return count.sparse(at) + (run - 1) * count.sparse(at[first])


def _line_stats(
    data: np.ndarray, row_start: np.ndarray, word_at: np.ndarray, count: Counts
) -> tuple[np.ndarray, np.ndarray]:
    """Non-blank lines and lines of exactly one word, per row."""
    line_start = row_start.copy()
    line_start[1:] |= data[:-1] == 10
    lines_at = np.flatnonzero(line_start)
    words_per_line = np.diff(np.searchsorted(word_at, np.append(lines_at, len(data))))
    row_of_line = count.rows_of(lines_at)
    n_rows = len(count.offsets) - 1
    nonblank = np.bincount(row_of_line[words_per_line > 0], minlength=n_rows)
    one_word = np.bincount(row_of_line[words_per_line == 1], minlength=n_rows)
    return nonblank.astype(np.int64), one_word.astype(np.int64)


def _punctuation_stats(
    data: np.ndarray, punct: np.ndarray, count: Counts, high, hcls
) -> tuple[np.ndarray, np.ndarray]:
    """Unpaired brackets and quotes, and distinct kinds of symbols, per row."""
    at = np.flatnonzero(punct)
    value, rows = data[at], count.rows_of(at)
    n_rows = len(count.offsets) - 1

    pairing = _PAIRING[value]  # 1 + index in _PAIRED, 0 for the other punctuation
    of = pairing > 0
    per_row = np.bincount(
        rows[of] * len(_PAIRED) + pairing[of] - 1, minlength=n_rows * len(_PAIRED)
    ).reshape(n_rows, len(_PAIRED))
    per_row = per_row.astype(np.int64)
    unpaired = np.zeros(n_rows, dtype=np.int64)
    for pair in range(3):  # (), [], {}
        unpaired += np.abs(per_row[:, 2 * pair] - per_row[:, 2 * pair + 1])
    unpaired += per_row[:, 6] % 2 + per_row[:, 7] % 2  # " and '
    kinds = np.zeros(n_rows, dtype=np.int64)
    if len(at):
        segment = np.flatnonzero(np.diff(rows)) + 1
        segment = np.concatenate([[0], segment])
        bits = np.bitwise_or.reduceat(_PUNCT_BIT[value], segment)
        kinds[rows[segment]] = np.bitwise_count(bits)
    kinds += count.sparse(high[(hcls == SYMBOL) & (data[high] >= 0xC0)])
    return unpaired, kinds


def _repeated(data, space, digit, row_start, count: Counts) -> np.ndarray:
    """Characters equal to the 3 bytes before them in the same row: ASCII, not whitespace nor
    digits, nor the characters of rules and underlines ("-----", "=====", "***", "___",
    "~~~", "+---+": headings and tables that people paste)."""
    if len(data) <= 3:
        return np.zeros(len(count.offsets) - 1, dtype=np.int64)
    equal = data[1:] == data[:-1]  # equal[j]: byte j + 1 equals byte j
    at = np.flatnonzero(equal[2:] & equal[1:-1] & equal[:-2]) + 3
    keep = ~(row_start[at] | row_start[at - 1] | row_start[at - 2])
    keep &= (data[at] < 0x80) & ~space[at] & ~digit[at] & ~_RULE_CHARS[data[at]]
    return count.sparse(at[keep])


def _mash_pairs(data, maybe, row_start, count: Counts) -> np.ndarray:
    """Rare neighbouring-key letter pairs (overlapping), per row; ``maybe``: the letters of
    those pairs."""
    at = np.flatnonzero(maybe[1:] & maybe[:-1]) + 1
    pair = (data[at - 1].astype(np.uint16) << 8) | data[at]
    return count.sparse(at[_MASH_TABLE[pair] & ~row_start[at]])


def text_stats(arr: pa.Array, config: QualityConfig) -> TextStats:
    """Character-class counts, words, lines, repetition and keyboard-mash signals per row."""
    data, offsets = _compact(utf8_view(arr))
    count = Counts(offsets)
    lengths = np.diff(offsets)
    row_start = np.zeros(len(data), dtype=bool)
    row_start[offsets[:-1][lengths > 0]] = True
    flags = _FLAGS[data]
    letter, digit, space = (_flag(flags, f) for f in (F_LETTER, F_DIGIT, F_SPACE))
    high = np.flatnonzero(data >= 0x80)
    hcls = _high_classes(data, high)
    letters = count.dense(letter) + count.sparse(high[hcls == LETTER])
    digits, spaces = count.dense(digit), count.dense(space)
    chars = lengths - count.sparse(high[hcls == CONT])
    # a word starts at a non-space after a space or at its row's start
    word_start = ~space
    word_start[1:] &= space[:-1] | row_start[1:]
    word_at = np.flatnonzero(word_start)
    symbols, visible = chars - letters - digits - spaces, chars - spaces
    # symbol_soup looks at isolated, unpaired and symbol_kinds only where the symbol share
    # passes soup_symbol_start (at or below it the rule gives 1 whatever they are; the same
    # division as quality's): elsewhere they are left 0
    soup = (visible >= config.soup_min_chars) & (
        symbols / np.maximum(visible, 1) > config.soup_symbol_start
    )
    punct = _flag(flags, F_PUNCT)
    if not soup.all():
        punct &= np.repeat(soup, lengths)
    unpaired, kinds = _punctuation_stats(data, punct, count, high, hcls)
    kinds[~soup] = 0
    unit_chars, unit_repeats, isolated, emoji_run, modifiers = char_stats(
        as_chars(data, offsets, letter, digit, high, hcls), soup, config
    )
    lines, one_word = _line_stats(data, row_start, word_at, count)
    words = count.sparse(word_at)
    return TextStats(
        chars=chars,
        letters=letters,
        digits=digits,
        spaces=spaces,
        symbols=symbols,
        words=words,
        repeated=_repeated(data, space, digit, row_start, count),
        mash_pairs=_mash_pairs(data, _flag(flags, F_MASH), row_start, count),
        unit_chars=unit_chars,
        unit_repeats=unit_repeats,
        isolated=isolated,
        emoji_run=emoji_run,
        modifiers=modifiers,
        unpaired=unpaired,
        symbol_kinds=kinds,
        consonant_letters=_consonant_run_letters(
            _flag(flags, F_CONSONANT), row_start, count, config.consonant_run
        ),
        lines=lines,
        one_word_lines=one_word,
        unique_floor=unique_word_floor(
            data, _flag(flags, F_WORD_BREAK), row_start, high, count, words
        ),
    )
