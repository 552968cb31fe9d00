"""PII redaction over Arrow string arrays with RE2 (Arrow compute kernels, C++).

Each kind of PII is one detector, applied in a fixed order to the output of the previous one:
the count of hits is taken with ``count_substring_regex`` and the hits are replaced with a
placeholder such as ``[EMAIL]``. Placeholders contain no digits, ``@`` or dots, so a later
detector (or a second pass of the whole redactor, as the clean-table PII check does) never
matches inside them.

RE2 has no look-around and cannot run a checksum, so a few detectors carry a Python
``rewrite`` function (Luhn and print groupings for cards, mod-97 for IBANs, context rules for
IPs). For those the RE2 pattern only finds *candidate* rows (``match_substring_regex``), and
Python's ``re`` with the rewrite function processes just those rows: rare in chat traffic, so
the hot path stays vectorised. Counts always report spans actually replaced, never rejected
candidates, so a re-scan of redacted text (the clean-table PII check) reports zero.

Kinds, in order: secret (vendor-prefixed tokens, PEM blocks, JWTs, webhook URLs, AWS keys,
and random values in a keyword, "<value> as the key" or URL-password context; see
``pii_secrets``), email, iban, card, ip (v4 and v6),
ssn (US, dashed), phone (international "+CC ..." and North-American with separators).
Ordinary numbers are left alone: years, versions ("3.11.7"), "1,000", line numbers, dates,
times, epoch seconds/milliseconds, ids, ISBNs, "1.2.3.4.5".
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.transforms.pii_address import ADDRESS_PATTERN, rewrite_address
from llm_data_platform.transforms.pii_phone import NATIONAL_PHONE_PATTERN, rewrite_national_phone
from llm_data_platform.transforms.pii_secrets import (
    AWS_SECRET_PATTERN,
    AWS_SECRET_ROWS,
    CONTEXT_SECRET_GATE,
    KEYWORD_SECRET_PATTERN,
    PREFIX_SECRET_PATTERN,
    URL_SECRET_PATTERN,
    VALUE_FIRST_SECRET_PATTERN,
    rewrite_aws_secret,
    rewrite_keyword_secret,
    rewrite_url_secret,
    rewrite_value_first_secret,
)
from llm_data_platform.transforms.text_normalize import as_string_array


@dataclass(frozen=True)
class PiiDetector:
    """One kind of PII: an RE2 pattern (see ``python_regex`` for Python) and its placeholder.

    ``rewrite``, when set, sees each candidate match and returns its replacement (the token, or
    a string with one or more tokens inside) or ``None`` to leave the match as it is.
    ``rows``, when set, is a second RE2 pattern a candidate row must also match (the context
    a rewrite needs, e.g. an AWS word near a 40-character key): fewer rows reach Python.
    ``gate``, when set, is an RE2 pattern shared by several detectors that matches a
    superset of their rows: it runs once per call (when the first of them runs) and each
    detector's own pattern then runs on those rows only, one full pass instead of several.
    ``fold_case``: the pattern is ``(?i)`` and its literals are lowercase, so Python scans the
    lowered row with the pattern minus the flag (``re`` is ~5x slower with IGNORECASE) and
    matches the original only where that scan found something.
    """

    kind: str
    pattern: str
    token: str
    rewrite: Callable[[re.Match[str], str], str | None] | None = None
    rows: str | None = None
    fold_case: bool = False
    gate: str | None = None

    def __post_init__(self) -> None:
        if self.fold_case and not self.pattern.startswith("(?i)"):
            raise ValueError(f"fold_case needs a (?i) pattern: {self.pattern[:40]!r}")


@dataclass(frozen=True)
class PiiResult:
    """Redacted text, spans replaced per kind, and spans replaced per row (int32, 0 for null)."""

    text: pa.Array
    counts: dict[str, int]
    per_row: pa.Array


def luhn_ok(digits: str) -> bool:
    """Luhn checksum, which every real payment card number satisfies (9 in 10 random don't)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_DIGIT_GROUP = re.compile(r"[0-9]+")


# How card numbers are printed: whole, or in these digit groups (Visa/Mastercard/Discover
# 4-4-4-4, Amex 4-6-5, Diners 4-6-4, 19-digit 4-4-4-4-3), in order of preference when a run of
# digit groups allows several readings.
_CARD_GROUPINGS: tuple[tuple[int, ...], ...] = ((4, 4, 4, 4), (4, 6, 5), (4, 6, 4), (4, 4, 4, 4, 3))


def _card_at(text: str, spans: list[tuple[int, int]], i: int) -> int | None:
    """Index of the last digit group of a card starting at group ``i``, or None.

    A card is one 13-19 digit group or a known grouping with one kind of separator, passes
    Luhn, and is not followed by ".<digit>" (then it is part of an IP address or a decimal).
    """

    def ok(j: int) -> bool:
        digits = "".join(text[a:b] for a, b in spans[i : j + 1])
        after = text[spans[j][1] : spans[j][1] + 2]
        if len(after) == 2 and after[0] == "." and after[1].isdigit():
            return False
        return luhn_ok(digits)

    first = spans[i][1] - spans[i][0]
    if 13 <= first <= 19:
        return i if ok(i) else None
    for grouping in _CARD_GROUPINGS:
        j = i + len(grouping) - 1
        if j >= len(spans):
            continue
        if any(spans[i + k][1] - spans[i + k][0] != n for k, n in enumerate(grouping)):
            continue
        separators = {text[spans[k][1] : spans[k + 1][0]] for k in range(i, j)}
        if len(separators) == 1 and ok(j):
            return j
    return None


def _rewrite_card(m: re.Match[str], token: str) -> str | None:
    """Redact every card inside a digit-run candidate, left to right.

    The RE2 candidate is any run of digits with single space/dash separators (it can hold an
    expiry date, a phone number, two cards), so cards are searched among its group-aligned
    sub-runs. The first group right after "+" belongs to a phone number.
    """
    text = m.group(0)
    spans = [(g.start(), g.end()) for g in _DIGIT_GROUP.finditer(text)]
    out: list[str] = []
    pos = 0  # next character of ``text`` not yet copied to ``out``
    i = 1 if m.start() > 0 and m.string[m.start() - 1] == "+" else 0
    while i < len(spans):
        j = _card_at(text, spans, i)
        if j is None:
            i += 1
            continue
        out += [text[pos : spans[i][0]], token]
        pos = spans[j][1]
        i = j + 1
    if not out:
        return None
    out.append(text[pos:])
    return "".join(out)


def _rewrite_iban(m: re.Match[str], token: str) -> str | None:
    """ISO 13616 mod-97 check: rejects almost every random letter/digit run."""
    iban = m.group(0).replace(" ", "")
    if not 15 <= len(iban) <= 34:
        return None
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return token if int(number) % 97 == 1 else None


def _ipv6_looks_real(candidate: str) -> bool:
    """Code has "::" too (``Foo::bar``, ``a[::1]``, ``arr[:, 1::2]``): an address candidate
    needs a digit and two hex groups, and a full 4-digit group unless it has four groups."""
    groups = [g for g in candidate.split(":") if g]
    if len(groups) < 2 or not any(ch.isdigit() for ch in candidate):
        return False
    return len(groups) >= 4 or max(len(g) for g in groups) == 4


def _rewrite_ip(m: re.Match[str], token: str) -> str | None:
    """A real address, not part of a longer dotted number ("1.2.3.4.5") nor code."""
    text, start, end = m.string, m.start(), m.end()
    candidate = m.group(0)
    before = text[start - 1] if start else ""
    if ":" in candidate:
        if before == ":" or not _ipv6_looks_real(candidate):
            return None
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            return None
        return token
    after = text[end : end + 2]
    if _VERSION_BEFORE.search(text[max(0, start - 24) : start]):
        return None  # AssemblyVersion("1.0.0.0"), "version 10.2.0.1", "v1.2.3.4"
    if before == "." or (len(after) == 2 and after[0] == "." and after[1].isdigit()):
        return None
    return token


_VERSION_BEFORE = re.compile(r"(?i)(?:version|\bver\.?|\bv)\W{0,4}$")

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"\b{_OCTET}(?:\.{_OCTET}){{3}}\b"
_H = r"[0-9A-Fa-f]{1,4}"
_IPV6 = rf"\b(?:(?:{_H}:){{7}}{_H}\b|(?:{_H}:){{1,7}}:(?:{_H}(?::{_H}){{0,6}}\b)?)"

# Order matters: secrets first (later patterns would cut a key into pieces and leave the rest),
# IBANs and cards before phones (their digit groups look like phone numbers).
DETECTORS: tuple[PiiDetector, ...] = (
    PiiDetector("secret", PREFIX_SECRET_PATTERN, "[SECRET]"),
    PiiDetector("secret", AWS_SECRET_PATTERN, "[SECRET]", rewrite_aws_secret, AWS_SECRET_ROWS),
    PiiDetector(
        "secret", URL_SECRET_PATTERN, "[SECRET]", rewrite_url_secret, gate=CONTEXT_SECRET_GATE
    ),
    PiiDetector(
        "secret",
        KEYWORD_SECRET_PATTERN,
        "[SECRET]",
        rewrite_keyword_secret,
        fold_case=True,
        gate=CONTEXT_SECRET_GATE,
    ),
    PiiDetector(
        "secret",
        VALUE_FIRST_SECRET_PATTERN,
        "[SECRET]",
        rewrite_value_first_secret,
        fold_case=True,
        gate=CONTEXT_SECRET_GATE,
    ),
    PiiDetector(
        "email",
        # Unicode letters allowed (RFC 6531), so "émile@..." is not cut to "é[EMAIL]". No
        # leading \b: RE2's \b is ASCII-only, and leftmost matching starts at the run's start.
        r"[\p{L}\p{N}][\p{L}\p{N}._%+-]*@[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?"
        r"(?:\.[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?)*\.[A-Za-z]{2,}\b",
        "[EMAIL]",
    ),
    PiiDetector(
        "iban",
        r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b",
        "[IBAN]",
        _rewrite_iban,
    ),
    PiiDetector("card", r"\b(?:[0-9][ -]?){12,}[0-9]\b", "[CARD]", _rewrite_card),
    PiiDetector("ip", rf"{_IPV6}|{_IPV4}", "[IP]", _rewrite_ip),
    PiiDetector(
        "ssn",  # US social security number, dashed, spaced or dotted; invalid areas excluded
        r"\b(?:00[1-9]|0[1-9][0-9]|[1-578][0-9]{2}|6[0-57-9][0-9]|66[0-57-9])"
        r"(?:-(?:0[1-9]|[1-9][0-9])-| (?:0[1-9]|[1-9][0-9]) |\.(?:0[1-9]|[1-9][0-9])\.)"
        r"(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})\b",
        "[SSN]",
    ),
    PiiDetector(
        "phone",
        # International: +CC then 3+ digit groups (>= 6 digits), e.g. +44 20 7946 0958,
        # +1 (415) 555-0199, +4915123456789.
        r"\+[0-9]{1,3}[ .-]?(?:\([0-9]{1,4}\)[ .-]?)?[0-9]{1,4}(?:[ .-]?[0-9]{2,4}){2,4}\b"
        # North American: (415) 555-0199, 415-555-0132, 415.555.0132, optional 1- prefix.
        # Separators are required, so 10-digit ids and epoch seconds are left alone.
        r"|(?:\b1[ .-]?)?"
        r"(?:\([0-9]{3}\) ?[0-9]{3}[ .-]|\b[0-9]{3}-[0-9]{3}-|\b[0-9]{3}\.[0-9]{3}\.)[0-9]{4}\b",
        "[PHONE]",
    ),
    PiiDetector("phone", NATIONAL_PHONE_PATTERN, "[PHONE]", rewrite_national_phone),
    PiiDetector("address", ADDRESS_PATTERN, "[ADDRESS]", rewrite_address),
)

PII_KINDS: tuple[str, ...] = tuple(dict.fromkeys(d.kind for d in DETECTORS))
PLACEHOLDER_PATTERN = r"\[(?:" + "|".join(dict.fromkeys(d.token[1:-1] for d in DETECTORS)) + r")\]"


def _redact_vectorised(text: pa.Array, det: PiiDetector) -> tuple[pa.Array, pa.Array]:
    """Count and replace with RE2 kernels; the replace pass runs on rows with a hit only."""
    counts = pc.fill_null(pc.count_substring_regex(text, det.pattern), 0)
    hit = pc.greater(counts, 0)
    rows = pc.indices_nonzero(hit)
    if len(rows) == 0:
        return text, counts
    replaced = pc.replace_substring_regex(pc.take(text, rows), det.pattern, det.token)
    return pc.replace_with_mask(text, hit, replaced), counts


_UNICODE_CLASS = re.compile(r"\[\\p\{L\}\\p\{N\}([^\]]*)\]")


def _unicode_class(m: re.Match[str]) -> str:
    rest = m.group(1)
    return "[^\\W_]" if not rest else f"[\\w{rest}]"


def python_regex(pattern: str) -> re.Pattern[str]:
    r"""The RE2 pattern as a Python ``re`` pattern with the same meaning.

    ``re.ASCII`` gives ``\b`` and ``\d`` RE2's ASCII meaning. A pattern with RE2's
    ``[\p{L}\p{N}...]`` (letters, digits, ...) is compiled in Unicode mode with that class
    written as ``\w`` (which adds "_"); such patterns must not rely on ASCII ``\b``/``\d``.
    """
    if "\\p{" not in pattern:
        return re.compile(pattern, re.ASCII)
    return re.compile(_UNICODE_CLASS.sub(_unicode_class, pattern))


_PY_PATTERNS = {d.pattern: python_regex(d.pattern) for d in DETECTORS if d.rewrite is not None}
_FOLDED: dict[str, re.Pattern[str]] = {}


def _folded(pattern: str) -> re.Pattern[str]:
    """The ``(?i)`` pattern without the flag, to scan lowered text."""
    if pattern not in _FOLDED:
        _FOLDED[pattern] = python_regex(pattern.removeprefix("(?i)"))
    return _FOLDED[pattern]


def _sub_folded(
    value: str, scan: re.Pattern[str], pattern: re.Pattern[str], repl: Callable[..., str]
) -> str:
    """``pattern.sub(repl, value)``, finding the matches with ``scan`` on ``value.lower()``
    (same positions: only called when lowering keeps the length)."""
    out: list[str] = []
    pos = 0
    for found in scan.finditer(value.lower()):
        m = pattern.match(value, found.start()) if found.start() >= pos else None
        if m is None:
            continue
        out += [value[pos : m.start()], repl(m)]
        pos = m.end()
    return "".join(out) + value[pos:] if out else value


def _rewrite_rows(values: list[str], det: PiiDetector) -> tuple[list[str], list[int]]:
    """Python ``re`` + the detector's rewrite over a few candidate rows."""
    pattern = _PY_PATTERNS.get(det.pattern) or python_regex(det.pattern)
    scan = _folded(det.pattern) if det.fold_case else None
    rewrite, token = det.rewrite, det.token
    assert rewrite is not None
    new_text: list[str] = []
    new_counts: list[int] = []
    for value in values:
        hits = 0

        def _sub(m: re.Match[str]) -> str:
            nonlocal hits
            replacement = rewrite(m, token)
            if replacement is None:
                return m.group(0)
            hits += replacement.count(token)  # candidates never contain a placeholder
            return replacement

        if scan is not None and len(value.lower()) == len(value):
            new_text.append(_sub_folded(value, scan, pattern, _sub))
        else:
            new_text.append(pattern.sub(_sub, value))
        new_counts.append(hits)
    return new_text, new_counts


def _matches(text: pa.Array, det: PiiDetector, gates: dict[str, pa.Array]) -> pa.Array:
    """Rows where the detector's RE2 pattern matches; with a ``gate``, tried on the gate's
    rows only. Exact: rows outside the gate match none of its detectors and none of them
    changes such a row, so the mask taken when the first one ran stays valid."""
    if det.gate is None:
        return pc.fill_null(pc.match_substring_regex(text, det.pattern), False)
    if det.gate not in gates:
        gates[det.gate] = pc.fill_null(pc.match_substring_regex(text, det.gate), False)
    gate = gates[det.gate]
    inside = pc.take(text, pc.indices_nonzero(gate))
    return pc.replace_with_mask(gate, gate, pc.match_substring_regex(inside, det.pattern))


def _redact_validated(
    text: pa.Array, det: PiiDetector, gates: dict[str, pa.Array] | None = None
) -> tuple[pa.Array, pa.Array]:
    """RE2 finds candidate rows; Python ``re`` + the rewrite function handles only those."""
    candidates = _matches(text, det, {} if gates is None else gates)
    if det.rows is not None:
        in_context = pc.fill_null(pc.match_substring_regex(text, det.rows), False)
        candidates = pc.and_(candidates, in_context)
    rows = pc.indices_nonzero(candidates)
    zeros = pa.array(np.zeros(len(text), dtype=np.int32))
    if len(rows) == 0:
        return text, zeros
    new_text, new_counts = _rewrite_rows(pc.take(text, rows).to_pylist(), det)
    text = pc.replace_with_mask(text, candidates, pa.array(new_text, pa.string()))
    counts = pc.replace_with_mask(zeros, candidates, pa.array(new_counts, pa.int32()))
    return text, counts


def redact_pii(
    arr: pa.Array | pa.ChunkedArray, detectors: tuple[PiiDetector, ...] = DETECTORS
) -> PiiResult:
    """Replace every detected PII span with its placeholder; count spans per kind and per row.

    Null rows stay null and count 0. ``counts`` has every detector's kind, zeros included.
    """
    text = as_string_array(arr)
    per_row = np.zeros(len(text), dtype=np.int32)
    counts: dict[str, int] = {}
    gates: dict[str, pa.Array] = {}  # gate pattern -> its mask, for this call
    for det in detectors:
        if det.rewrite is not None:
            text, row_counts = _redact_validated(text, det, gates)
        else:
            text, row_counts = _redact_vectorised(text, det)
        row_np = row_counts.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
        counts[det.kind] = counts.get(det.kind, 0) + int(row_np.sum())
        per_row += row_np
    return PiiResult(text=text, counts=counts, per_row=pa.array(per_row, pa.int32()))
