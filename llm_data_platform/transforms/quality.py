"""Cheap quality heuristics for chat messages (Gopher/DataTrove-style, tuned for short text).

Character statistics are computed with numpy over the Arrow value buffer, one pass per
statistic over all bytes of the batch (a regex counting every character is ~10x slower). The
unique-word ratio needs tokens and runs as one DuckDB query over Arrow. The only per-row
Python is the boilerplate judge, on the rows an RE2 hint picks (see ``boilerplate`` below).

Every signal becomes a component score in [0, 1] (1 = nothing wrong); ``quality_score`` is
their product, so two mild problems weigh like one serious one. A message is garbage when its
score is below ``min_score``; the reason is the component that pulled it down most. Components
are lenient with what chat normally looks like: one-word replies ("ok", "Thanks!"), questions,
code (``x = [i*i for i in range(10)]``), numbers ("42").

Rules made for chat (thresholds in :class:`QualityConfig`), on top of the Gopher-style ones:

- ``repeated_units``: the same short unit again and again ("hahahahaha", "lol lol lol lol",
  "omg 😂😂😂😂😂😂") - the share of letters/emoji equal to the character ``p`` before, for
  the best period ``p`` (measured on code points, so 4-byte emoji and CJK count once);
- ``emoji_run``: emoji after emoji making up much of a message ("lol 😂😂😂😂😂 lol");
- ``one_word_lines``: floods of lines of one word each;
- ``symbol_soup``: mostly symbols, with letters and digits that stand alone ("a#b$c%d^e&f") or
  brackets and quotes that do not pair up (code pairs them: ``print({"a": [1, 2]})`` stays);
- ``keyboard_mash`` also catches consonant runs ("hdjsjsjdjd", "qwrtplkm");
- ``boilerplate``: e-mail signatures, legal disclaimers, auto-replies / out-of-office. A cheap
  RE2 hint over the whole batch picks the candidates; only those (12% of the benchmark's
  traffic, whose sign-offs and questions about out-of-office replies are there on purpose;
  ~0.45 s per 200k messages) are split into sentences in Python and judged: two boilerplate
  hits (a closing with a signature block under it is one) and at most
  ``boilerplate_max_other_words`` words outside boilerplate sentences make boilerplate. A
  question is never boilerplate ("How do I set up an out-of-office reply?").
"""

from __future__ import annotations

import re
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
    "repeated_units",
    "emoji_run",
    "one_word_lines",
    "symbol_soup",
    "boilerplate",
)
GARBAGE_REASONS: tuple[str, ...] = (EMPTY, NO_LETTERS, *COMPONENT_REASONS)

DEFAULT_MIN_SCORE = 0.5
# Unique-word ratio is measured over the first N words of messages with at least M words.
_UNIQUE_WORDS_MIN = 8
_UNIQUE_WORDS_WINDOW = 200


@dataclass(frozen=True)
class QualityConfig:
    """Thresholds of the chat rules. A ``*_start``/``*_end`` pair is a ramp: the component is 1
    at or below ``start``, 0 at or above ``end``, linear between; a message is garbage when the
    product of its components is below ``min_score`` (``CleaningConfig.min_quality_score``).

    Defaults were set on ``benchmarks/bench_quality.py`` (junk recall per family against normal
    chat in seven languages, code pastes, stack traces and URLs).
    """

    # repeated_units: share of the letters/emoji that repeat the character p before (best p
    # in 1..unit_max_period), for messages with at least unit_min_chars letters/emoji
    # ("hahaha" and "lol 😂😂" stay; "hahahahaha" goes).
    unit_max_period: int = 10
    unit_min_chars: int = 8
    unit_max_chars: int = 300
    unit_share_start: float = 0.45
    unit_share_end: float = 0.65
    # emoji_run: emoji that follow an emoji (skin tones, VS16 and ZWJ not counted), as a share
    # of the visible characters ("Thanks 🙏🙏🙏" stays, "omg 🎉🎉🎉🎉🎉" goes).
    emoji_run_start: float = 0.25
    emoji_run_end: float = 0.35
    # one_word_lines: at least this many lines of exactly one word, and their share of the
    # non-blank lines (a pasted list under a header line is fine below 8 items).
    one_word_min_lines: int = 8
    one_word_share_start: float = 0.7
    one_word_share_end: float = 0.85
    # keyboard_mash (consonant runs): share of the letters standing in runs of at least
    # consonant_run ASCII consonants (y counts as a vowel), for messages with at least
    # consonant_min_letters letters. 6 spares "https", "lengths", "strengths".
    consonant_run: int = 6
    consonant_min_letters: int = 6
    consonant_share_start: float = 0.3
    consonant_share_end: float = 0.5
    # symbol_soup: symbol share of the visible characters AND (share of letters/digits with no
    # letter/digit beside them, or at least soup_min_unpaired unpaired brackets/quotes, or
    # symbols of nearly all different kinds), for
    # messages with at least soup_min_chars visible characters.
    soup_min_chars: int = 8
    soup_symbol_start: float = 0.45
    soup_symbol_end: float = 0.55
    soup_isolated_start: float = 0.6
    soup_isolated_end: float = 0.8
    soup_min_unpaired: int = 2
    # ... or symbols that hardly repeat: at least soup_min_kinds symbols, nearly all distinct
    # (code repeats its few kinds: quotes, brackets, commas).
    soup_min_kinds: int = 6
    soup_kinds_share: float = 0.8
    # boilerplate: hits needed, and the most words allowed outside boilerplate sentences.
    boilerplate_min_hits: int = 2
    boilerplate_max_other_words: int = 3


DEFAULT_QUALITY = QualityConfig()

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


def text_stats(arr: pa.Array, config: QualityConfig = DEFAULT_QUALITY) -> TextStats:
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


def _ramp_down(x: np.ndarray, start: float, end: float) -> np.ndarray:
    """1 below ``start``, 0 above ``end``, linear between."""
    return np.clip((end - x) / (end - start), 0.0, 1.0)


# Cheap RE2 hint over the whole batch: rows that might hold boilerplate (the Python judge in
# ``_boilerplate_scores`` only sees these).
_BOILERPLATE_HINT = (
    r"(?i)regards|sincerely|cheers|yours (?:truly|faithfully)|grüße|cordialement|saludos|"
    r"atentamente|office|automatic|thank you for your|on (?:annual |parental )?leave|my return|"
    r"i return|liability|in error|viruses|"
    r"vertraulich|dringend|mensaje|votre message|nachricht|away|vacation|holiday|"
    r"auto-?reply|confidential|intended|privileged|unsubscribe|"
    r"sent from my|get outlook|disclaimer|absen|außer haus|abwesen|vacaciones|ausente|"
    r"\[PHONE\]|\[EMAIL\]|tel:|phone:|mobile:|(?m:^-- ?$)"
)
# One hit per match; a sentence with a hit (and no question mark) is boilerplate.
_BOILERPLATE = re.compile(
    r"""(?imx)
      ^\s*(?:--+|__+)\s*$
    | ^\s*(?:best|kind|warm|warmest|many\s+thanks\s+and|thanks\s+and)?\s*regards\b
    | ^\s*(?:sincerely|cheers|best\s+wishes|yours\s+(?:truly|faithfully|sincerely)|
            mit\s+freundlichen\s+grüßen|viele\s+grüße|cordialement|bien\s+à\s+vous|
            saludos(?:\s+cordiales)?|un\s+saludo|atentamente)\b
    | \b(?:tel|phone|mobile|mob|fax|cell|direct|e-?mail|web)\s*[:.]
    | ^\s*(?:https?://|www\.)\S+\s*$
    | sent\s+from\s+my\s+\w+ | get\s+outlook\s+for
    | confidential | intended\s+(?:solely\s+|only\s+)*for | intended\s+recipient | addressee
    | received\s+this\s+(?:e-?mail|message|communication)?\s*in\s+error
    | notify\s+the\s+sender | privileged | unauthori[sz]ed | prohibited | disclos
    | \bviruses\b | liability | views\s+(?:or\s+opinions\s+)?expressed | legally\s+binding
    | unsubscribe | you\s+are\s+receiving\s+this | this\s+(?:e-?mail|message)\s+was\s+sent
    | out[\s-]+of[\s-]+(?:the[\s-]+)?office | automatic\s+reply | auto-?reply
    | (?:i\s+am|i'm)\s+(?:currently\s+)?(?:away|out|on\s+(?:annual\s+|parental\s+)?leave|
          on\s+vacation|on\s+holiday|travell?ing)
    | limited\s+access\s+to | (?:upon|on|after|when)\s+(?:my|i)\s+return | in\s+my\s+absence
    | for\s+urgent\s+(?:matters|issues|requests|enquiries|inquiries)
    | (?:will|shall)\s+(?:be\s+)?(?:back|return(?:ing)?)\s+(?:on|in|to)\b
    | (?:reply|respond|get\s+back)\s+to\s+(?:you|your\s+(?:e-?mail|message))
    | thank\s+you\s+for\s+your\s+(?:e-?mail|message)
    | vertraulich | in\s+dringenden\s+fällen | wenden\s+sie\s+sich\s+an
    | gracias\s+por\s+su\s+mensaje | merci\s+(?:de|pour)\s+votre\s+message
    | danke\s+für\s+ihre\s+nachricht
    | abwesen | außer\s+haus | automatische\s+antwort | ich\s+bin\s+(?:bis|vom)
    | réponse\s+automatique | je\s+suis\s+absent | de\s+retour\s+le
    | fuera\s+de\s+la\s+oficina | respuesta\s+automática
    | estaré\s+(?:fuera|ausente|de\s+vacaciones)
    """
)
_SENTENCES = re.compile(r"\n+|(?<=[.!;])\s+")


def _boilerplate_one(text: str, config: QualityConfig) -> float:
    """1 = not boilerplate, 0 = boilerplate (see the module doc)."""
    hits = other_words = signature_lines = 0
    in_signature = 0  # up to 4 short lines after a hit ("Best regards,") are the signature
    for sentence in _SENTENCES.split(text):
        words = len(sentence.split())
        if not words:
            continue
        found = 0 if sentence.rstrip().endswith("?") else len(_BOILERPLATE.findall(sentence))
        if found:
            hits += found
            in_signature = 4
        elif in_signature and words <= 6:
            in_signature -= 1
            signature_lines += 1
            # name, title, company under a closing: a signature block is one more hit
            hits += signature_lines == 2
        else:
            in_signature = 0
            other_words += words
    boiler = (
        hits >= config.boilerplate_min_hits and other_words <= config.boilerplate_max_other_words
    )
    return 0.0 if boiler else 1.0


def _boilerplate_scores(arr: pa.Array, config: QualityConfig) -> np.ndarray:
    """Per row; RE2 picks the candidates over the batch, Python judges only those."""
    score = np.ones(len(arr), dtype=np.float64)
    if len(arr) == 0:
        return score
    hint = pc.fill_null(pc.match_substring_regex(arr, _BOILERPLATE_HINT), False)
    rows = np.flatnonzero(hint.to_numpy(zero_copy_only=False))
    for row, text in zip(rows, pc.take(arr, pa.array(rows)).to_pylist(), strict=True):
        score[row] = _boilerplate_one(text, config)
    return score


def _components(
    stats: TextStats, uniq: np.ndarray, boilerplate: np.ndarray, config: QualityConfig
) -> np.ndarray:
    """Component scores, one column per ``COMPONENT_REASONS`` entry."""
    visible = np.maximum(stats.visible, 1).astype(np.float64)
    alpha = stats.letters / visible
    low_alpha = np.where(stats.visible >= 20, np.clip(alpha / 0.2, 0.0, 1.0), 1.0)
    symbol_share = stats.symbols / visible
    symbol_heavy = _ramp_down(symbol_share, 0.5, 0.95)
    char_repetition = _ramp_down(stats.repeated / visible, 0.3, 0.65)
    mash_density = stats.mash_pairs / np.maximum(stats.letters, 1)
    keyboard_mash = np.where(stats.mash_pairs >= 2, _ramp_down(mash_density, 0.1, 0.25), 1.0)
    consonants = _ramp_down(
        stats.consonant_letters / np.maximum(stats.letters, 1),
        config.consonant_share_start,
        config.consonant_share_end,
    )
    consonants = np.where(stats.letters >= config.consonant_min_letters, consonants, 1.0)
    keyboard_mash = np.minimum(keyboard_mash, consonants)
    mean_word_len = stats.visible / np.maximum(stats.words, 1)
    long_words = _ramp_down(mean_word_len, 40.0, 100.0)
    word_repetition = np.clip((uniq - 0.1) / 0.2, 0.0, 1.0)
    units = _ramp_down(
        stats.unit_repeats / np.maximum(stats.unit_chars, 1),
        config.unit_share_start,
        config.unit_share_end,
    )
    units = np.where(stats.unit_chars >= config.unit_min_chars, units, 1.0)
    one_word = _ramp_down(
        stats.one_word_lines / np.maximum(stats.lines, 1),
        config.one_word_share_start,
        config.one_word_share_end,
    )
    one_word = np.where(stats.one_word_lines >= config.one_word_min_lines, one_word, 1.0)
    alnum = np.maximum(stats.letters + stats.digits, 1)
    loose = 1.0 - _ramp_down(
        stats.isolated / alnum, config.soup_isolated_start, config.soup_isolated_end
    )
    diverse = (stats.symbols >= config.soup_min_kinds) & (
        stats.symbol_kinds >= config.soup_kinds_share * stats.symbols
    )
    loose = np.where((stats.unpaired >= config.soup_min_unpaired) | diverse, 1.0, loose)
    soupy = 1.0 - _ramp_down(symbol_share, config.soup_symbol_start, config.soup_symbol_end)
    soup = np.where(stats.visible >= config.soup_min_chars, 1.0 - soupy * loose, 1.0)
    emoji_run = _ramp_down(
        stats.emoji_run / np.maximum(stats.visible - stats.modifiers, 1),
        config.emoji_run_start,
        config.emoji_run_end,
    )
    return np.column_stack(
        [
            low_alpha,
            symbol_heavy,
            char_repetition,
            keyboard_mash,
            long_words,
            word_repetition,
            units,
            emoji_run,
            one_word,
            soup,
            boilerplate,
        ]
    )


SCORE_BLOCK_BYTES = 16 << 20  # text scored at once: the per-byte work arrays (~27 B a byte)


def quality_signals(
    arr: pa.Array | pa.ChunkedArray,
    min_score: float = DEFAULT_MIN_SCORE,
    config: QualityConfig = DEFAULT_QUALITY,
) -> pa.Table:
    """``quality_score`` (float32, 0..1) and ``garbage_reason`` (null when score >= min_score).

    Null input rows give a null score and a null reason (not a message: nothing to judge).
    Rows are scored in blocks of about ``SCORE_BLOCK_BYTES`` of text: every signal is
    row-local, so the result is the same, and memory follows the block, not the chunk
    (100k long messages at once held +4 GB).
    """
    text = as_string_array(arr)
    if len(text) == 0:
        return _signals_of_block(text, min_score, config)
    offsets = np.frombuffer(text.buffers()[1], np.int32, len(text) + 1, text.offset)
    offsets = offsets - offsets[0]
    cuts = np.searchsorted(offsets, np.arange(SCORE_BLOCK_BYTES, offsets[-1], SCORE_BLOCK_BYTES))
    bounds = [0, *sorted({int(c) for c in cuts} - {0, len(text)}), len(text)]
    if len(bounds) == 2:
        return _signals_of_block(text, min_score, config)
    blocks = [
        _signals_of_block(text.slice(a, b - a), min_score, config)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    return pa.concat_tables(blocks)


def _signals_of_block(text: pa.Array, min_score: float, config: QualityConfig) -> pa.Table:
    stats = text_stats(text, config)
    components = _components(
        stats,
        unique_word_ratio(text, stats.words),
        _boilerplate_scores(text, config),
        config,
    )
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


def conversation_quality(
    conversation_id: pa.Array | pa.ChunkedArray,
    quality_score: pa.Array | pa.ChunkedArray,
    garbage_reason: pa.Array | pa.ChunkedArray,
) -> pa.Table:
    """Per conversation: ``messages`` scored, ``junk_messages``, ``junk_share`` and
    ``mean_score`` (over all its scored messages, junk included). Rows with a null score
    (feedback) are left out; a conversation with no scored message is absent."""
    table = pa.table(
        {
            "conversation_id": conversation_id,
            "score": quality_score,
            "junk": pc.cast(pc.is_valid(garbage_reason), pa.int64()),
        }
    ).filter(pc.is_valid(quality_score))
    grouped = table.group_by("conversation_id").aggregate(
        [("score", "count"), ("junk", "sum"), ("score", "mean")]
    )
    messages = grouped["score_count"]
    return pa.table(
        {
            "conversation_id": grouped["conversation_id"],
            "messages": messages,
            "junk_messages": grouped["junk_sum"],
            "junk_share": pc.divide(pc.cast(grouped["junk_sum"], pa.float64()), messages),
            "mean_score": grouped["score_mean"],
        }
    )
