"""Cheap quality heuristics for chat messages (Gopher/DataTrove-style, tuned for short text).

Character statistics come from ``text_stats.py`` (numpy over the Arrow value buffer; the
unique-word ratio from ``quality_words.py``, DuckDB only where a numpy bound does not settle
it). The only per-row Python is the boilerplate judge (``quality_boilerplate.py``), on the rows
an RE2 hint picks (see ``boilerplate`` below).

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
  ~0.2 CPU s per 200k messages) are split into sentences in Python and judged: two boilerplate
  hits (a closing with a signature block under it is one) and at most
  ``boilerplate_max_other_words`` words outside boilerplate sentences make boilerplate. A
  question is never boilerplate ("How do I set up an out-of-office reply?").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.transforms.quality_boilerplate import boilerplate_scores
from llm_data_platform.transforms.quality_words import UNIQUE_WORDS_MIN, unique_word_ratio
from llm_data_platform.transforms.text_normalize import as_string_array
from llm_data_platform.transforms.text_stats import TextStats, text_stats
from llm_data_platform.transforms.threads import pool_map

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


def _ramp_down(x: np.ndarray, start: float, end: float) -> np.ndarray:
    """1 below ``start``, 0 above ``end``, linear between."""
    return np.clip((end - x) / (end - start), 0.0, 1.0)


def _word_repetition(uniq: np.ndarray) -> np.ndarray:
    return np.clip((uniq - 0.1) / 0.2, 0.0, 1.0)


def _unique_words(text: pa.Array, stats: TextStats) -> np.ndarray:
    """The unique-word ratio where it can pull the score down, its lower bound elsewhere:
    where the bound already gives word_repetition 1, so does the ratio (DuckDB is asked
    about ~1% of the rows)."""
    uniq = stats.unique_floor
    look = (stats.words >= UNIQUE_WORDS_MIN) & (_word_repetition(uniq) < 1.0)
    if not look.any():
        return uniq
    return np.where(look, unique_word_ratio(text, look), uniq)


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
    word_repetition = _word_repetition(uniq)
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


SCORE_BLOCK_BYTES = 2 << 20  # text scored at once: 2-4 MB of work arrays stay in cache
# Blocks scored side by side: numpy, Arrow and DuckDB release the GIL for their work, only
# the boilerplate judge (a few % of the rows) holds it. The platform runs on 2 cores.
SCORE_THREADS = 2


def quality_signals(
    arr: pa.Array | pa.ChunkedArray,
    min_score: float = DEFAULT_MIN_SCORE,
    config: QualityConfig = DEFAULT_QUALITY,
) -> pa.Table:
    """``quality_score`` (float32, 0..1) and ``garbage_reason`` (null when score >= min_score).

    Null input rows give a null score and a null reason (not a message: nothing to judge).
    Rows are scored in blocks of about ``SCORE_BLOCK_BYTES`` of text, ``SCORE_THREADS`` at a
    time: every signal is row-local, so the result is the same, and memory follows the
    blocks, not the chunk (100k long messages at once held +4 GB).
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
    blocks = [text.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    scored = pool_map(lambda b: _signals_of_block(b, min_score, config), blocks, SCORE_THREADS)
    return pa.concat_tables(scored)


def _signals_of_block(text: pa.Array, min_score: float, config: QualityConfig) -> pa.Table:
    stats = text_stats(text, config)
    components = _components(
        stats,
        _unique_words(text, stats),
        boilerplate_scores(text, config),
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
