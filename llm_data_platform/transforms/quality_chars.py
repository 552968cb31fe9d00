"""Counting per row over items laid out row after row (``Counts``), and the character-level
statistics of ``text_stats``: repeated units, isolated letters/digits, emoji runs. Text is
turned into characters only where it has non-ASCII bytes (ASCII bytes are their own code
points), and the period loop of repeated units runs on the short rows only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from llm_data_platform.transforms.quality import QualityConfig

# Byte classes of UTF-8 text.
CONT, LETTER, DIGIT, SPACE, SYMBOL = 0, 1, 2, 3, 4
# Bits of a byte before bit position k (packed bits are big-endian), k = 0..7.
_HIGH_BITS = np.array([0, 0x80, 0xC0, 0xE0, 0xF0, 0xF8, 0xFC, 0xFE], dtype=np.uint8)


class Counts:
    """Per-row counts over items laid out row after row (``offsets``: n + 1 boundaries)."""

    def __init__(self, offsets: np.ndarray) -> None:
        self.offsets = offsets
        self.q, self.high = offsets >> 3, _HIGH_BITS[offsets & 7]

    def dense(self, mask: np.ndarray) -> np.ndarray:
        """Trues per row of a boolean mask: prefix popcounts of its packed bits."""
        bits = np.packbits(mask)
        bits = np.append(bits, np.uint8(0))  # the byte of the last boundary
        prefix = np.zeros(len(bits) + 1, dtype=np.int64)
        np.cumsum(np.bitwise_count(bits), out=prefix[1:])
        at = prefix[self.q] + np.bitwise_count(bits[self.q] & self.high)
        return np.diff(at)

    def sparse(self, positions: np.ndarray) -> np.ndarray:
        """Positions per row, from sorted positions of items."""
        return np.diff(np.searchsorted(positions, self.offsets))

    def rows_of(self, positions: np.ndarray) -> np.ndarray:
        """Row of every position, from sorted positions (a search per row, not per item)."""
        return np.repeat(np.arange(len(self.offsets) - 1), self.sparse(positions))


def _code_points(data: np.ndarray, lead: np.ndarray) -> np.ndarray:
    """Code points of the multi-byte characters whose first bytes are at ``lead``."""
    first = data[lead].astype(np.int32)
    size = 1 + (first >= 0xC0) + (first >= 0xE0) + (first >= 0xF0)
    value = first & np.array([0, 0x7F, 0x1F, 0x0F, 0x07], dtype=np.int32)[size]
    last = len(data) - 1
    for k in (1, 2, 3):
        more = size > k
        nxt = data[np.minimum(lead + k, last)].astype(np.int32) & 0x3F
        value = np.where(more, (value << 6) | nxt, value)
    return value


@dataclass(frozen=True)
class Chars:
    """The text as characters (code points; the bytes themselves for ASCII-only text)."""

    cp: np.ndarray
    offsets: np.ndarray  # n + 1 row boundaries in characters
    letter: np.ndarray
    digit: np.ndarray
    high_symbol: np.ndarray  # non-ASCII symbols (emoji, "©", arrows...)


def _unit_repeats(chars: Chars, unit: np.ndarray, look: np.ndarray, periods: int) -> np.ndarray:
    """Of the units of the rows in ``look``, those equal to the unit p before (same row), for
    the best period p in 1..periods."""
    lengths = np.diff(chars.offsets)
    best = np.zeros(len(lengths), dtype=np.int64)
    if not look.any():
        return best
    if look.all():
        cp, unit_s, lengths_s = chars.cp, unit, lengths
    else:
        keep = np.repeat(look, lengths)
        cp, unit_s, lengths_s = chars.cp[keep], unit[keep], lengths[look]
    offsets = np.zeros(len(lengths_s) + 1, dtype=np.int64)
    np.cumsum(lengths_s, out=offsets[1:])
    count = Counts(offsets)
    starts = np.zeros(len(cp), dtype=bool)
    starts[offsets[:-1][lengths_s > 0]] = True
    best_s = np.zeros(len(lengths_s), dtype=np.int64)
    in_row = ~starts  # in_row[i]: no row starts in (i - p, i]
    same = np.zeros(len(cp), dtype=bool)
    for p in range(1, periods + 1):
        if p >= len(cp):
            break
        if p > 1:
            in_row[p - 1 :] &= ~starts[: len(cp) - p + 1]
        same[:p] = False
        np.equal(cp[p:], cp[:-p], out=same[p:])
        same &= in_row
        same &= unit_s
        np.maximum(best_s, count.dense(same), out=best_s)
    best[look] = best_s
    return best


def _isolated(chars: Chars, soup: np.ndarray) -> np.ndarray:
    """Letters/digits with no letter/digit on either side (same row), for the rows in
    ``soup``; 0 elsewhere."""
    isolated = np.zeros(len(soup), dtype=np.int64)
    if not soup.any():
        return isolated
    lengths = np.diff(chars.offsets)
    alnum = chars.letter | chars.digit
    if not soup.all():
        alnum, lengths = alnum[np.repeat(soup, lengths)], lengths[soup]
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    continues = np.ones(len(alnum), dtype=bool)  # character i is in the row of i - 1
    continues[offsets[:-1][lengths > 0]] = False
    beside = np.zeros(len(alnum), dtype=bool)
    if len(alnum) > 1:
        beside[1:] = alnum[:-1] & continues[1:]
        beside[:-1] |= alnum[1:] & continues[1:]
    isolated[soup] = Counts(offsets).dense(alnum & ~beside)
    return isolated


def char_stats(chars: Chars, soup: np.ndarray, config: QualityConfig) -> tuple[np.ndarray, ...]:
    """Repeated units, isolated letters/digits and emoji runs, on characters (a 4-byte emoji
    is one)."""
    count = Counts(chars.offsets)
    lengths = np.diff(chars.offsets)
    n = len(chars.cp)
    starts = np.zeros(n, dtype=bool)
    starts[chars.offsets[:-1][lengths > 0]] = True
    unit = chars.letter | chars.high_symbol
    unit_chars = count.dense(unit)
    # Periods are looked for in messages up to unit_max_chars only (longer repetition is
    # word_repetition's or long_words'): long answers, most of the bytes, skip the loop.
    look = (lengths <= config.unit_max_chars) & (unit_chars >= config.unit_min_chars)
    best = _unit_repeats(chars, unit, look, config.unit_max_period)
    # emoji and their modifiers are all non-ASCII: looked at where the code point is
    high = np.flatnonzero(chars.cp >= 0x80)
    cp = chars.cp[high]
    modifier = (cp == 0xFE0F) | (cp == 0x200D) | ((cp >= 0x1F3FB) & (cp <= 0x1F3FF))
    emoji = chars.high_symbol[high] & (cp >= 0x2000) & ~modifier
    after = np.zeros(len(high), dtype=bool)
    if len(high) > 1:
        after[1:] = (emoji[:-1] | modifier[:-1]) & (high[:-1] == high[1:] - 1)
        after[1:] &= ~starts[high[1:]]
    return (
        unit_chars,
        best,
        _isolated(chars, soup),
        count.sparse(high[emoji & after]),
        count.sparse(high[modifier]),
    )


def as_chars(
    data: np.ndarray, offsets: np.ndarray, letter: np.ndarray, digit: np.ndarray, high, hcls
) -> Chars:
    """Bytes to characters: the bytes less their continuation bytes, and the multi-byte
    characters (at most the non-ASCII bytes) decoded in place."""
    if len(high) == 0:
        return Chars(data, offsets, letter, digit, np.zeros(len(data), dtype=bool))
    is_cont = hcls == CONT
    cont, lead, lead_cls = high[is_cont], high[~is_cont], hcls[~is_cont]
    keep = np.ones(len(data), dtype=bool)
    keep[cont] = False
    cp = data[keep].astype(np.int32)
    at = lead - np.searchsorted(cont, lead)  # their places among the characters
    cp[at] = _code_points(data, lead)
    letter_c = letter[keep]
    letter_c[at[lead_cls == LETTER]] = True
    high_symbol = np.zeros(len(cp), dtype=bool)
    high_symbol[at[lead_cls == SYMBOL]] = True
    char_offsets = offsets - np.searchsorted(cont, offsets)
    return Chars(cp, char_offsets, letter_c, digit[keep], high_symbol)
