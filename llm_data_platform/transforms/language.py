"""Language identification with py3langid, offline (the model ships inside the package).

py3langid classifies one string at a time: a Python loop walks a byte-level DFA to collect
n-gram features, then a naive-Bayes dot product scores the languages. Here the same model runs
over the whole batch at once: the DFA walk advances every row one byte per numpy step (rows
sorted by length, so the active rows are a prefix), the features form a sparse matrix, and one
sparse x dense product scores every row. Results equal ``LanguageIdentifier.classify`` (a test
checks it). Measured on 160k distinct chat messages (~110 chars, 2 cores): 159k texts/s batched
vs 19k texts/s with ``classify`` in a loop. If scipy is missing, the per-row classifier is used.

The model is loaded once per process (~0.6 s); restricted variants share its arrays.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.transforms.pii import PLACEHOLDER_PATTERN
from llm_data_platform.transforms.text_normalize import (
    as_string_array,
    replace_regex_where,
    unicode_normalize,
    utf8_view,
)

if TYPE_CHECKING:  # py3langid is imported where used
    from py3langid.langid import LanguageIdentifier

UNDETERMINED = "und"

# Languages a chat product realistically sees. Restricting the candidates makes short
# messages far more accurate (the full model's 142 classes include many that short English or
# Spanish text can look like: "la", "an", "wa", "vec"...). Pass ``languages=None`` for all.
DEFAULT_LANGUAGES: tuple[str, ...] = (
    "ar", "bg", "bn", "ca", "cs", "da", "de", "el", "en", "es", "et", "fa", "fi", "fr", "he",
    "hi", "hr", "hu", "id", "it", "ja", "ko", "lt", "lv", "ms", "nl", "no", "pl", "pt", "ro",
    "ru", "sk", "sl", "sr", "sv", "ta", "th", "tl", "tr", "uk", "ur", "vi", "zh",
)  # fmt: skip

# Model labels that are not ISO 639-1 codes, mapped to their macro-language where one exists.
_TO_ISO_639_1 = {"ary": "ar", "arz": "ar", "yue": "zh", "wuu": "zh", "uzs": "uz", "nn": "no"}

# Text that says nothing about the language: PII placeholders, URLs, code.
_NOT_LANGUAGE = (
    r"(?s)```.*?```",  # fenced code blocks
    r"`[^`\n]*`",  # inline code
    r"\b(?:https?|ftp)://\S+|\bwww\.\S+",
    PLACEHOLDER_PATTERN,
)

DEFAULT_MAX_CHARS = 256  # the first sentences decide; longer text only costs time
_ROWS_PER_CHUNK = 8192  # bounds the (row, feature) buffers of the batched DFA walk


@dataclass(frozen=True)
class _NaiveBayes:
    """The model's arrays, as numpy, restricted to a set of languages."""

    nextmove: np.ndarray  # DFA transitions, indexed by rowbase[state] + byte
    rowbase: np.ndarray
    output: np.ndarray  # feature emitted on entering a state, -1 for none
    ptc: np.ndarray  # (features, classes) float32 log P(feature | class)
    prior: np.ndarray  # (classes,) float32 log P(class)
    classes: tuple[str, ...]
    alias_pairs: tuple[tuple[int, int], ...]  # (first, duplicate) columns of a repeated label


@functools.cache
def base_identifier() -> LanguageIdentifier:
    """py3langid's identifier over all languages, loaded once per process."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


@functools.lru_cache(maxsize=8)
def identifier(languages: tuple[str, ...] | None) -> LanguageIdentifier:
    """A per-row py3langid identifier restricted to ``languages`` (shares the base arrays)."""
    from py3langid.langid import LanguageIdentifier

    base = base_identifier()
    if languages is None:
        return base
    ptc, prior, classes = base._full_model
    restricted = LanguageIdentifier(
        ptc, prior, classes, base.tk_nextmove, base.tk_output, norm_probs=True, tk_row=base.tk_row
    )
    restricted.set_languages(list(languages))
    return restricted


@functools.lru_cache(maxsize=8)
def _naive_bayes(languages: tuple[str, ...] | None) -> _NaiveBayes:
    ident = identifier(languages)
    nextmove, rowbase, output = _shared_arrays()
    first: dict[str, int] = {}
    pairs = []
    for i, label in enumerate(ident.nb_classes):
        if label in first:
            pairs.append((first[label], i))
        else:
            first[label] = i
    return _NaiveBayes(
        nextmove=nextmove,
        rowbase=rowbase,
        output=output,
        ptc=np.asarray(ident.nb_ptc, dtype=np.float32),
        prior=np.asarray(ident.nb_pc, dtype=np.float32),
        classes=tuple(ident.nb_classes),
        alias_pairs=tuple(pairs),
    )


@functools.cache
def _shared_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DFA tables of the base model as numpy arrays (indexable in bulk). The 9.8M-entry
    transition table is a zero-copy view of py3langid's own array."""
    base = base_identifier()
    nextmove = np.frombuffer(base.tk_nextmove, dtype=np.dtype(base.tk_nextmove.typecode))
    rowbase = np.asarray(base.tk_row, dtype=np.int64) << 8
    output = np.asarray(base.tk_output, dtype=np.int64)
    return nextmove, rowbase, output


def _features(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, model: _NaiveBayes):
    """Sparse (rows x features) matrix of n-gram counts, by walking all rows' DFAs at once."""
    from scipy import sparse

    n = len(starts)
    order = np.argsort(-lengths, kind="stable")
    sorted_len, sorted_start = lengths[order], starts[order]
    state = np.zeros(n, dtype=np.int64)
    rows, feats = [], []
    max_len = int(sorted_len[0]) if n else 0
    active = np.searchsorted(-sorted_len, -np.arange(max_len), side="left")
    for pos in range(max_len):
        k = int(active[pos])
        byte = data[sorted_start[:k] + pos]
        s = model.nextmove[model.rowbase[state[:k]] + byte]
        state[:k] = s
        f = model.output[s]
        hit = np.flatnonzero(f >= 0)
        rows.append(order[hit])
        feats.append(f[hit])
    row_idx = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    feat_idx = np.concatenate(feats) if feats else np.zeros(0, np.int64)
    counts = sparse.csr_matrix(
        (np.ones(len(row_idx), dtype=np.float32), (row_idx, feat_idx)),
        shape=(n, model.ptc.shape[0]),
    )
    return counts  # the COO -> CSR conversion has summed duplicate (row, feature) pairs


def _classify_batch(text: pa.Array, model: _NaiveBayes) -> tuple[np.ndarray, np.ndarray]:
    """Best class index and its probability for every row (same maths as ``classify``)."""
    view = utf8_view(text)
    lengths = view.lengths
    scores = np.zeros((len(text), len(model.classes)), dtype=np.float32)
    for lo in range(0, len(text), _ROWS_PER_CHUNK):
        hi = min(lo + _ROWS_PER_CHUNK, len(text))
        counts = _features(view.data, view.starts[lo:hi], lengths[lo:hi], model)
        counts.data = np.log1p(counts.data)
        chunk = np.asarray(counts @ model.ptc, dtype=np.float32) + model.prior
        featureless = np.diff(counts.indptr) == 0
        chunk[featureless] = 0.0  # py3langid: no features -> uniform distribution
        scores[lo:hi] = chunk
    # Softmax with temperature sqrt(bytes), as py3langid does with norm_probs=True.
    scores *= (1.0 / np.sqrt(np.maximum(lengths, 1))).astype(np.float32)[:, None]
    scores -= scores.max(axis=1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=1, keepdims=True)
    for i, j in model.alias_pairs:
        scores[:, i] += scores[:, j]
        scores[:, j] = 0.0
    best = scores.argmax(axis=1)
    return best, scores[np.arange(len(best)), best]


def _classify_per_row(text: pa.Array, languages: tuple[str, ...] | None):
    """Fallback without scipy: py3langid's own per-row classifier."""
    ident = identifier(languages)
    classes = {label: i for i, label in reversed(list(enumerate(ident.nb_classes)))}
    best, conf = [], []
    for value in text.to_pylist():
        label, p = ident.classify(value)
        best.append(classes[label])
        conf.append(p)
    return np.asarray(best, dtype=np.int64), np.asarray(conf, dtype=np.float32)


def detection_text(arr: pa.Array, max_chars: int = DEFAULT_MAX_CHARS) -> pa.Array:
    """What the classifier sees: no code, URLs or PII placeholders, whitespace collapsed,
    first ``max_chars`` characters, NFC, all-caps text lower-cased (as py3langid does)."""
    text = arr
    for pattern in _NOT_LANGUAGE:
        text = replace_regex_where(text, pattern, " ")
    text = pc.utf8_trim_whitespace(replace_regex_where(text, r"\s{2,}|[\t\n\r\f\v]", " "))
    text = pc.utf8_slice_codeunits(text, 0, max_chars)
    text = unicode_normalize(text, "NFC")
    return pc.if_else(pc.fill_null(pc.utf8_is_upper(text), False), pc.utf8_lower(text), text)


def classify_texts(
    text: pa.Array, languages: tuple[str, ...] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Index into the model's classes and confidence for already-prepared text (no nulls)."""
    try:
        import scipy  # noqa: F401
    except ImportError:
        return _classify_per_row(text, languages)
    return _classify_batch(text, _naive_bayes(languages))


def model_classes(languages: tuple[str, ...] | None) -> tuple[str, ...]:
    """The model's raw labels for a language set (what ``classify_texts`` indexes)."""
    return _naive_bayes(languages).classes


def _iso_639_1(label: str) -> str:
    label = _TO_ISO_639_1.get(label, label)
    return label if len(label) == 2 else UNDETERMINED


def detect_language(
    arr: pa.Array | pa.ChunkedArray,
    min_chars: int = 20,
    languages: Sequence[str] | None = DEFAULT_LANGUAGES,
    min_confidence: float = 0.0,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> pa.Array:
    """ISO 639-1 code per row; "und" for null text, text under ``min_chars`` characters (after
    removing code, URLs and PII placeholders) or a best guess below ``min_confidence``.

    Each distinct text is classified once (chat repeats itself).
    """
    text = detection_text(as_string_array(arr), max_chars)
    long_enough = pc.fill_null(pc.greater_equal(pc.utf8_length(text), min_chars), False)
    candidates = pc.filter(text, long_enough)
    distinct = pc.unique(candidates)
    best, conf = classify_texts(distinct, tuple(languages) if languages is not None else None)
    classes = model_classes(tuple(languages) if languages is not None else None)
    codes = np.array([_iso_639_1(label) for label in classes], dtype=object)[best]
    codes[conf < min_confidence] = UNDETERMINED
    per_candidate = pc.take(pa.array(codes, pa.string()), pc.index_in(candidates, distinct))
    result = pa.array(np.full(len(text), UNDETERMINED, dtype=object), pa.string())
    return pc.replace_with_mask(result, long_enough, per_candidate)
