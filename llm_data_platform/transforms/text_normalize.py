"""Unicode and whitespace normalisation of chat text, vectorised over Arrow string arrays.

Every step but one is an Arrow compute kernel (RE2 regexes and utf8proc, run in C++ over the
whole array). The exception is mojibake repair: ftfy has no vectorised equivalent, so a cheap
RE2 pattern flags the few rows that *could* be mojibake and ftfy runs on those rows only.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def __getattr__(name: str) -> ModuleType:
    # ftfy is imported where used (importing the code location must stay cheap); the module
    # attribute ``ftfy`` still resolves, lazily, for callers that reach it through this module
    if name == "ftfy":
        import ftfy

        return ftfy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# UTF-8 decoded as Latin-1 / Windows-1252 turns each multi-byte sequence into a lead character
# in U+00C2..U+00F4 ("Ã", "â", "ð"...) followed by a character that is the cp1252/latin-1
# rendering of a continuation byte 0x80..0xBF. Rows without such a pair cannot be mojibake of
# this kind, so ftfy (pure Python, per row) only ever sees flagged rows.
_CP1252_CONTINUATION = (
    r"\x{80}-\x{BF}\x{152}\x{153}\x{160}\x{161}\x{178}\x{17D}\x{17E}\x{192}\x{2C6}\x{2DC}"
    r"\x{2013}\x{2014}\x{2018}-\x{201A}\x{201C}-\x{201E}\x{2020}-\x{2022}\x{2026}\x{2030}"
    r"\x{2039}\x{203A}\x{20AC}\x{2122}"
)
MOJIBAKE_HINT = r"[\x{C2}-\x{F4}][" + _CP1252_CONTINUATION + r"]"

# Every line-break convention becomes "\n" (CRLF, CR, VT, FF, NEL, LS, PS).
_LINE_BREAKS = r"\r\n?|[\x{0B}\x{0C}\x{85}\x{2028}\x{2029}]"

# Invisible characters with no content: C0/C1 controls (except \t and \n), soft hyphen,
# zero-width space, word joiner and invisible operators, BOM, bidi embedding/override/isolate
# controls and marks, Mongolian vowel separator, interlinear annotation marks, and Unicode
# "tag" characters (used to smuggle hidden instructions into LLM prompts).
# ZWJ/ZWNJ (U+200C/U+200D) are kept on purpose: they carry meaning in emoji sequences and in
# Persian and Indic scripts.
_INVISIBLE = (
    r"[\x{00}-\x{08}\x{0E}-\x{1F}\x{7F}-\x{9F}\x{AD}\x{180E}\x{200B}\x{200E}\x{200F}"
    r"\x{202A}-\x{202E}\x{2060}-\x{2064}\x{2066}-\x{2069}\x{FEFF}\x{FFF9}-\x{FFFB}"
    r"\x{E0000}-\x{E007F}]+"
)

# Horizontal whitespace left after NFKC (which already maps NBSP, en/em spaces, ideographic
# space... to U+0020).
_HSPACE = r"[ \t\x{1680}]"
# Trailing horizontal whitespace at the end of a line (also empties whitespace-only lines).
_TRAILING_SPACE = _HSPACE + r"+\n"
# A run of 2+ spaces, or any tab, *after* a visible character: collapsed to one space.
# Leading indentation is deliberately kept, because assistant answers contain code blocks
# whose meaning depends on it.
_INNER_SPACE_RUN = r"([^ \t\x{1680}\n])(?:[\t\x{1680}]" + _HSPACE + r"*| " + _HSPACE + r"+)"
_PARAGRAPH_GAP = r"\n{3,}"


@dataclass(frozen=True)
class Utf8View:
    """Zero-copy numpy view of an Arrow string array: row i is ``data[starts[i]:ends[i]]``."""

    data: np.ndarray  # uint8, the shared value buffer
    starts: np.ndarray  # int64 byte offsets into ``data``
    ends: np.ndarray  # int64

    @property
    def lengths(self) -> np.ndarray:
        """Byte length of every row (0 for nulls)."""
        return self.ends - self.starts


def as_string_array(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous ``string`` array, whatever chunking or string flavour came in."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], pa.string())
    if arr.type != pa.string():
        arr = arr.cast(pa.string())
    return arr


def utf8_view(arr: pa.Array) -> Utf8View:
    """Expose the value buffer and row offsets of a ``string`` array to numpy (no copy).

    Lets byte-level statistics (character classes, DFA walks) run as numpy operations over the
    whole batch instead of a Python loop per row.
    """
    if arr.type != pa.string():
        raise TypeError(f"expected a pa.string() array, got {arr.type}")
    n = len(arr)
    _validity, offsets_buf, data_buf = arr.buffers()
    if n == 0 or offsets_buf is None:
        empty = np.zeros(n, dtype=np.int64)
        return Utf8View(np.zeros(0, dtype=np.uint8), empty, empty.copy())
    offsets = np.frombuffer(offsets_buf, dtype=np.int32)[arr.offset : arr.offset + n + 1]
    offsets = offsets.astype(np.int64)
    data = (
        np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    )
    starts, ends = offsets[:-1], offsets[1:]
    if arr.null_count:
        # Null slots normally have zero length, but Arrow does not promise it.
        valid = pc.is_valid(arr).to_numpy(zero_copy_only=False)
        ends = np.where(valid, ends, starts)
    return Utf8View(data, starts, ends)


def count_changed(before: pa.Array, after: pa.Array) -> int:
    """Number of rows whose value differs (null vs null counts as unchanged)."""
    differs = pc.not_equal(before, after)
    return int(pc.sum(pc.fill_null(differs, False)).as_py() or 0)


def replace_regex_where(arr: pa.Array, pattern: str, replacement: str) -> pa.Array:
    """``replace_substring_regex`` on the rows that match only.

    A match test is several times cheaper than a replace pass, and most patterns hit few rows.
    """
    hit = pc.fill_null(pc.match_substring_regex(arr, pattern), False)
    rows = pc.indices_nonzero(hit)
    if len(rows) == 0:
        return arr
    if len(rows) == len(arr):
        return pc.replace_substring_regex(arr, pattern, replacement)
    replaced = pc.replace_substring_regex(pc.take(arr, rows), pattern, replacement)
    return pc.replace_with_mask(arr, hit, replaced)


def unicode_normalize(arr: pa.Array, form: str) -> pa.Array:
    """``utf8_normalize`` on non-ASCII rows only (ASCII text is invariant under NFC/NFKC)."""
    non_ascii = pc.fill_null(pc.invert(pc.string_is_ascii(arr)), False)
    rows = pc.indices_nonzero(non_ascii)
    if len(rows) == 0:
        return arr
    normalised = pc.utf8_normalize(pc.take(arr, rows), form)
    return pc.replace_with_mask(arr, non_ascii, normalised)


def fix_mojibake(arr: pa.Array) -> pa.Array:
    """Repair UTF-8-read-as-cp1252 mojibake with ftfy, on the rows a regex flags only."""
    flagged = pc.fill_null(pc.match_substring_regex(arr, MOJIBAKE_HINT), False)
    rows = pc.indices_nonzero(flagged)
    if len(rows) == 0:
        return arr
    import ftfy

    fixed = [ftfy.fix_encoding(text) for text in pc.take(arr, rows).to_pylist()]
    return pc.replace_with_mask(arr, flagged, pa.array(fixed, pa.string()))


def unify_line_breaks(arr: pa.Array) -> pa.Array:
    """Every line-break convention becomes a single ``\\n``."""
    return replace_regex_where(arr, _LINE_BREAKS, "\n")


def remove_invisible(arr: pa.Array) -> pa.Array:
    """Drop control, zero-width, bidi and tag characters (see ``_INVISIBLE``)."""
    return replace_regex_where(arr, _INVISIBLE, "")


def collapse_whitespace(arr: pa.Array) -> pa.Array:
    """Collapse space runs to one space, keep single newlines, at most one blank line, strip.

    Leading indentation of a line is kept (code blocks); trailing spaces are removed.
    """
    arr = replace_regex_where(arr, _TRAILING_SPACE, "\n")
    arr = replace_regex_where(arr, _INNER_SPACE_RUN, r"\1 ")
    arr = replace_regex_where(arr, _PARAGRAPH_GAP, "\n\n")
    return pc.utf8_trim_whitespace(arr)


def normalize_text(arr: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, int]:
    """Fix mojibake, NFKC, drop invisible characters, tidy whitespace; nulls stay null.

    Returns the normalised ``string`` array and how many rows it changed. The order matters:
    ftfy needs the text before NFKC rewrites the characters that betray the bad decoding, and
    controls are removed after ftfy because C1 controls are often part of mojibake.
    """
    original = as_string_array(arr)
    out = fix_mojibake(original)
    out = unicode_normalize(out, "NFKC")
    out = unify_line_breaks(out)
    out = remove_invisible(out)
    out = collapse_whitespace(out)
    return out, count_changed(original, out)
