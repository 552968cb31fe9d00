"""Text to shingle hashes, vectorised over a batch: the input of near-duplicate detection and
of decontamination.

1. Text is normalised for matching with Arrow kernels: NFKC, lower case, every run of
   characters that are not letters, digits or combining marks becomes one space.
2. Words are hashed to 64 bits with a polynomial hash evaluated for the whole batch at once
   from numpy prefix sums over the Arrow value buffer (no Python loop per word); k consecutive
   word hashes are combined into one shingle hash. A text with fewer than k words falls back to
   character k-grams of its normalised text (the only per-row Python, over short texts).

Texts are tokenized a block at a time (``SHINGLE_BLOCK``): the tokenizer's word lists cost
about 1 KB a text, so a day's texts are never split into words all at once.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.transforms.text_normalize import as_string_array, utf8_view

__all__ = ["SHINGLE_BLOCK", "normalize_for_matching", "shingle_hashes", "spaced_word_counts"]

# Runs of anything but letters, digits and combining marks (RE2 Unicode classes).
_NON_WORD = r"[^\p{L}\p{N}\p{M}]+"

_U64 = np.uint64
# Odd multiplier of the polynomial string hash (invertible mod 2^64) and its inverse.
_POLY = 0x100000001B3
_POLY_INV = pow(_POLY, -1, 1 << 64)
# Distinct salts so that a word, a word shingle and a character shingle never share a hash.
_SALT_CHAR = np.uint64(0x9E3779B97F4A7C15)
# Bytes of text whose word edges are found at once (byte-sized temporaries, in L2).
_EDGE_BLOCK_BYTES = 1 << 20
# Bytes of text hashed per block: 512 KB of uint64 prefix sums, in a core's L2 cache (2^16
# measured 1.9x faster than 2^22 on 10k support messages).
_HASH_BLOCK_BYTES = 1 << 16


def _as_text_array(texts: Sequence[str | None] | pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(texts, pa.Array | pa.ChunkedArray):
        return as_string_array(texts)
    return pa.array(list(texts), pa.string())


def normalize_for_matching(texts: Sequence[str | None] | pa.Array | pa.ChunkedArray) -> pa.Array:
    """NFKC, lower case, punctuation and whitespace runs -> one space, trimmed; null -> "".

    Two texts that differ only in case, punctuation or spacing normalise to the same string.
    """
    arr = pc.fill_null(_as_text_array(texts), "")
    non_ascii = pc.invert(pc.string_is_ascii(arr))
    if pc.any(non_ascii).as_py():  # NFKC leaves ASCII unchanged: normalise the other rows only
        nfkc = pc.utf8_normalize(arr.filter(non_ascii), "NFKC")
        arr = pc.replace_with_mask(arr, non_ascii, nfkc)
    arr = pc.utf8_lower(arr)
    arr = pc.replace_substring_regex(arr, _NON_WORD, " ")
    return pc.utf8_trim(arr, " ")


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (an avalanching bijection), element-wise, wrapping."""
    h = h ^ (h >> _U64(33))  # a new array: the rest works in place
    h *= _U64(0xFF51AFD7ED558CCD)
    h ^= h >> _U64(33)
    h *= _U64(0xC4CEB9FE1A85EC53)
    h ^= h >> _U64(33)
    return h


_POWERS: tuple[np.ndarray, np.ndarray] = (np.ones(1, _U64), np.ones(1, _U64))


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """P^i and P^-i mod 2^64 for i in [0, n] (at least; cached, grown in powers of two)."""
    global _POWERS
    pw, inv = _POWERS
    if len(pw) <= n:
        size = max(1 << 12, 1 << n.bit_length())
        pw = np.ones(size, dtype=_U64)
        inv = np.ones(size, dtype=_U64)
        np.cumprod(np.full(size - 1, _POLY, dtype=_U64), out=pw[1:])
        np.cumprod(np.full(size - 1, _POLY_INV, dtype=_U64), out=inv[1:])
        pw.flags.writeable = False
        inv.flags.writeable = False
        _POWERS = (pw, inv)
    return pw, inv


def _row_blocks(starts: np.ndarray, ends: np.ndarray, budget: int) -> Iterator[tuple[int, int]]:
    """Consecutive row ranges whose byte (or item) span is at most `budget` (a bigger row is a
    block on its own)."""
    n = len(starts)
    r0 = 0
    while r0 < n:
        r1 = int(np.searchsorted(ends, starts[r0] + budget, side="right"))
        r1 = max(r1, r0 + 1)
        yield r0, r1
        r0 = r1


def _hash_strings(arr: pa.Array) -> np.ndarray:
    """A 64-bit hash of every string of a ``string`` array, computed for the whole array at once.

    h(s) = fmix64(sum_j (s_j + 1) * P^j + len(s) * C), where the sum for every row comes from a
    prefix sum over the shared byte buffer, re-based with the inverse power of the row's start.
    Deterministic across runs, processes and platforms (no PYTHONHASHSEED).
    """
    if len(arr) == 0:
        return np.zeros(0, dtype=_U64)
    view = utf8_view(as_string_array(arr))
    return _poly_hash(view.data, view.starts, view.ends)


@dataclass
class _Tokens:
    texts: pa.Array  # the input texts, nulls as ""
    n_words: np.ndarray  # int64 per row
    word_hashes: np.ndarray  # uint64, all rows' words back to back

    @functools.cached_property
    def normalized(self) -> pa.Array:
        """The normalised texts, computed only when asked for (decontamination, short texts)."""
        return normalize_for_matching(self.texts)


def _is_word_byte(data: np.ndarray) -> np.ndarray:
    """``data`` in [0-9A-Za-z]: for ASCII text, ``normalize_for_matching`` keeps exactly these
    bytes (letters lower-cased) and makes every other byte a separator. In uint8 arithmetic:
    bit 5 lower-cases a letter and is already set in a digit (a lookup table is 2x slower)."""
    low = data | np.uint8(0x20)
    low -= np.uint8(ord("a"))
    word = low < 26
    digit = data - np.uint8(ord("0"))
    word |= digit < 10
    return word


def _poly_hash(
    data: np.ndarray, starts: np.ndarray, ends: np.ndarray, lower: bool = False
) -> np.ndarray:
    """``_hash_strings`` of the byte ranges ``data[starts[i]:ends[i]]`` (sorted, disjoint);
    ``lower``: of ASCII word bytes lower-cased (``| 0x20``: the byte tokenizer's words).
    Blocks of ``_HASH_BLOCK_BYTES`` through one buffer, so the prefix sums stay in cache and
    the bytes are widened once (no separate cast, +1 and multiply temporaries)."""
    out = np.empty(len(starts), dtype=_U64)
    pw, inv = _powers(_HASH_BLOCK_BYTES)
    buf = np.zeros(_HASH_BLOCK_BYTES + 1, dtype=_U64)
    for r0, r1 in _row_blocks(starts, ends, _HASH_BLOCK_BYTES):
        b0, b1 = int(starts[r0]), int(ends[r1 - 1])
        length = b1 - b0
        if length > _HASH_BLOCK_BYTES:  # one word longer than a block
            pw, inv = _powers(length)
            prefix = np.zeros(length + 1, dtype=_U64)
        else:
            prefix = buf[: length + 1]
        body = prefix[1:]
        chunk = data[b0:b1] | np.uint8(0x20) if lower else data[b0:b1]
        np.add(chunk, _U64(1), out=body, dtype=_U64)
        np.multiply(body, pw[:length], out=body)
        np.cumsum(body, out=body)
        s, e = starts[r0:r1] - b0, ends[r0:r1] - b0
        h = prefix[e]
        h -= prefix[s]
        h *= inv[s]
        out[r0:r1] = h
    lengths = (ends - starts).astype(_U64)
    lengths *= _U64(0xD6E8FEB86659FD93)
    out ^= lengths
    return _fmix64(out)


def _word_edges(data: np.ndarray, row_starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the runs of word bytes of ``data``, a run cut where a row starts
    (``row_starts``, offsets into ``data``)."""
    word = _is_word_byte(data).view(np.int8)
    # +1 where a word starts, -1 just past its end; rows are contiguous in the buffer, so a
    # word byte that starts a row after a word byte is both (2)
    edge = np.diff(word, prepend=np.int8(0), append=np.int8(0))
    row_starts = row_starts[(row_starts > 0) & (row_starts < len(data))]
    glued = row_starts[(word[row_starts] != 0) & (word[row_starts - 1] != 0)]
    edge[glued] = 2
    return np.flatnonzero(edge > 0), np.flatnonzero((edge < 0) | (edge == 2))


def _ascii_words(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(words per row, word hashes) straight from the value buffer: a word is a run of
    [A-Za-z0-9] within a row (other bytes separate), hashed lower-cased. On the rows of
    ``_fast_rows`` these are exactly the hashes of ``normalize_for_matching``, a split and
    ``_hash_strings``, without the Unicode regex and NFKC (most of the cost). Word edges are
    found ~1 MB of whole rows at a time: the byte-sized temporaries stay in cache."""
    view = utf8_view(as_string_array(arr))
    n = len(view.starts)
    if n == 0 or int(view.ends[-1]) == int(view.starts[0]):
        return np.zeros(n, np.int64), np.zeros(0, _U64)
    b0, b1 = int(view.starts[0]), int(view.ends[-1])
    found_starts, found_ends = [], []
    for r0, r1 in _row_blocks(view.starts, view.ends, _EDGE_BLOCK_BYTES):
        c0, c1 = int(view.starts[r0]), int(view.ends[r1 - 1])
        starts, ends = _word_edges(view.data[c0:c1], view.starts[r0:r1] - c0)
        found_starts.append(starts + (c0 - b0))
        found_ends.append(ends + (c0 - b0))
    starts, ends = np.concatenate(found_starts), np.concatenate(found_ends)
    per_row = np.diff(np.searchsorted(starts, np.append(view.starts - b0, b1 - b0)))
    data = view.data[b0:b1]
    return per_row.astype(np.int64), _poly_hash(data, starts, ends, lower=True)


def _regex_words(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(words per row, word hashes) through ``normalize_for_matching`` (any Unicode text)."""
    norm = normalize_for_matching(arr)
    split = pc.split_pattern(norm, " ")
    n_words = pc.list_value_length(split).to_numpy(zero_copy_only=False).astype(np.int64)
    empty = pc.equal(norm, "").to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(split)
    if empty.any():  # "" splits into [""]; normalised non-empty rows have no empty words
        n_words[empty] = 0
        flat = flat.filter(pc.not_equal(flat, ""))
    return n_words, _hash_strings(flat)


_PURE_SEPARATOR: dict[int, bool] = {}


def _pure_separator(cp: int) -> bool:
    """Whether a code point, and everything NFKC turns it into, is neither a letter, a digit
    nor a mark: then normalising for matching makes it a separator and nothing else (curly
    quotes, dashes, ellipses, emoji; not "™", which NFKC spells "TM")."""
    found = _PURE_SEPARATOR.get(cp)
    if found is None:
        text = unicodedata.normalize("NFKC", chr(cp))
        found = all(unicodedata.category(c)[0] not in "LNM" for c in text)
        _PURE_SEPARATOR[cp] = found
    return found


def _fast_rows(arr: pa.Array) -> np.ndarray:
    """Rows that the byte tokenizer reads exactly: ASCII, or whose non-ASCII characters are
    all pure separators (see ``_pure_separator``), which it treats as spaces."""
    fast = pc.string_is_ascii(arr).to_numpy(zero_copy_only=False)
    if fast.all():
        return fast
    other = np.flatnonzero(~fast)
    view = utf8_view(as_string_array(arr.take(pa.array(other, pa.int64()))))
    base = int(view.starts[0])
    data = view.data[base : int(view.ends[-1])]  # uint8: only lead bytes are widened below
    lead = np.flatnonzero(data >= 0xC0)
    follow = [data[np.minimum(lead + k, len(data) - 1)].astype(np.int64) & 0x3F for k in (1, 2, 3)]
    b1, b2, b3 = follow
    first = data[lead].astype(np.int64)
    cp = np.where(
        first >= 0xF0,
        ((first & 0x07) << 18) | (b1 << 12) | (b2 << 6) | b3,
        np.where(
            first >= 0xE0, ((first & 0x0F) << 12) | (b1 << 6) | b2, ((first & 0x1F) << 6) | b1
        ),
    )
    uniques, inverse = np.unique(cp, return_inverse=True)
    pure = np.array([_pure_separator(int(c)) for c in uniques], bool)
    row = np.searchsorted(view.ends - base, lead, side="right")
    impure = np.zeros(len(other), bool)
    impure[row[~pure[inverse]]] = True
    fast[other[~impure]] = True
    return fast


def _gather_segments(counts: np.ndarray, src_start: np.ndarray, src: np.ndarray) -> np.ndarray:
    """Row i's ``counts[i]`` values ``src[src_start[i]:src_start[i] + counts[i]]``, rows back
    to back: one gather instead of a stable sort of the values by row."""
    dst_start = np.cumsum(counts) - counts
    index = np.repeat(src_start - dst_start, counts)
    index += np.arange(len(index), dtype=np.int64)
    return src[index]


def _tokenize(texts: Sequence[str | None] | pa.Array | pa.ChunkedArray) -> _Tokens:
    arr = pc.fill_null(_as_text_array(texts), "")
    fast = _fast_rows(arr)
    if fast.all():
        n_words, hashes = _ascii_words(arr)
        return _Tokens(arr, n_words, hashes)
    if not fast.any():
        n_words, hashes = _regex_words(arr)
        return _Tokens(arr, n_words, hashes)
    # the byte tokenizer reads every row (cheaper than copying the fast ones out); the other
    # rows' words come from the regex and replace theirs
    a_words, a_hashes = _ascii_words(arr)
    u_words, u_hashes = _regex_words(arr.filter(pa.array(~fast)))
    n_words = a_words.copy()
    n_words[~fast] = u_words
    src_start = np.cumsum(a_words) - a_words
    src_start[~fast] = len(a_hashes) + np.cumsum(u_words) - u_words
    hashes = _gather_segments(n_words, src_start, np.concatenate([a_hashes, u_hashes]))
    return _Tokens(arr, n_words, hashes)


def _word_shingles(tokens: _Tokens, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(shingles per row, hashes) of every run of k consecutive words within a row, in row
    order: the runs that would cross into the next row are masked per row (the last k - 1
    word positions of each), not per word."""
    w = tokens.word_hashes
    counts = np.maximum(tokens.n_words - (k - 1), 0)
    m = len(w) - k + 1
    if m <= 0:
        return np.zeros_like(counts), np.zeros(0, _U64)
    h = w[:m].copy()
    for j in range(1, k):
        h = _fmix64(h)
        h ^= w[j : m + j]
    h ^= _U64(k)
    h = _fmix64(h)
    if k == 1:
        return counts, h
    row_end = np.cumsum(tokens.n_words)
    valid = np.ones(m, bool)
    for j in range(1, k):  # the run starting j words before its row's end crosses it
        start = row_end - j
        start = start[(tokens.n_words >= j) & (start < m)]
        valid[start] = False
    return counts, h[valid]


def _word_ngrams(tokens: _Tokens, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, hash) of every run of k consecutive words within a row, in row order."""
    counts, hashes = _word_shingles(tokens, k)
    return np.repeat(np.arange(len(counts), dtype=np.int64), counts), hashes


def _char_ngrams(tokens: _Tokens, k: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(count per row of ``rows``, hashes) of the character k-grams of the normalised text of
    `rows` (the whole text when shorter than k characters), sorted and distinct per row."""
    texts = normalize_for_matching(pc.take(tokens.texts, pa.array(rows, pa.int64())))
    texts = texts.to_pylist()
    grams: list[str] = []
    counts = np.zeros(len(rows), dtype=np.int64)
    for i, text in enumerate(texts):
        here = {text[j : j + k] for j in range(len(text) - k + 1)} or {text}
        grams.extend(sorted(here))
        counts[i] = len(here)
    return counts, _fmix64(_hash_strings(pa.array(grams, pa.string())) ^ _SALT_CHAR)


SHINGLE_BLOCK = 20_000  # texts tokenized at once (the tokenizer's lists cost ~1 KB a text)


def shingle_hashes(
    texts: Sequence[str | None] | pa.Array | pa.ChunkedArray, shingle: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """64-bit shingle hashes of every text: (offsets, hashes), text i owning
    ``hashes[offsets[i]:offsets[i + 1]]``.

    Word `shingle`-grams of the normalised text; character `shingle`-grams for a text with
    fewer words; nothing for a text that is empty after normalisation.
    """
    if shingle < 1:
        raise ValueError("shingle must be >= 1")
    if len(texts) > SHINGLE_BLOCK:  # in blocks: the tokenizer's intermediates stay bounded
        parts = [
            shingle_hashes(texts[start : start + SHINGLE_BLOCK], shingle)
            for start in range(0, len(texts), SHINGLE_BLOCK)
        ]
        base = np.cumsum([0] + [len(h) for _, h in parts[:-1]])
        offsets = np.concatenate([[0]] + [o[1:] + b for (o, _), b in zip(parts, base, strict=True)])
        return offsets.astype(np.int64), np.concatenate([h for _, h in parts])
    tokens = _tokenize(texts)
    counts, hashes = _word_shingles(tokens, shingle)
    short = np.flatnonzero((tokens.n_words > 0) & (tokens.n_words < shingle))
    if len(short):  # rows without word shingles take character ones, in row order
        c_counts, c_hashes = _char_ngrams(tokens, shingle, short)
        src_start = np.cumsum(counts) - counts
        counts[short] = c_counts
        src_start[short] = len(hashes) + np.cumsum(c_counts) - c_counts
        hashes = _gather_segments(counts, src_start, np.concatenate([hashes, c_hashes]))
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets, hashes


_COUNT_BLOCK_BYTES = 1 << 20  # bytes of text a separator count reads at once


def spaced_word_counts(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Words as runs between single spaces and newlines (text as ``normalize_text`` leaves
    it): spaces + newlines + 1, 0 for an empty or null text. The same numbers as two
    ``pc.count_substring`` passes, 15x cheaper: one byte comparison and a ``reduceat`` per
    block of ~1 MB over the value buffer."""
    view = utf8_view(as_string_array(texts))
    counts = np.zeros(len(view.starts), np.int64)
    for r0, r1 in _row_blocks(view.starts, view.ends, _COUNT_BLOCK_BYTES):
        b0, b1 = int(view.starts[r0]), int(view.ends[r1 - 1])
        if b1 == b0:
            continue
        data = view.data[b0:b1]
        # a trailing False: the starts of empty rows at the block's end stay in range
        sep = np.zeros(len(data) + 1, bool)
        np.equal(data, ord(" "), out=sep[:-1])
        sep[:-1] |= data == ord("\n")
        counts[r0:r1] = np.add.reduceat(sep, view.starts[r0:r1] - b0, dtype=np.int32)
    return np.where(view.ends == view.starts, 0, counts + 1)
