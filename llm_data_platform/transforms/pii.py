"""PII redaction over Arrow string arrays with RE2 (Arrow compute kernels, C++).

Each kind of PII is one detector, applied in a fixed order to the output of the previous one:
the count of hits is taken with ``count_substring_regex`` and the hits are replaced with a
placeholder such as ``[EMAIL]``. Placeholders contain no digits, ``@`` or dots, so a later
detector (or a second pass of the whole redactor, as the clean-table PII check does) never
matches inside them.

RE2 has no look-around and cannot run a checksum, so a few detectors carry a Python
``validate`` function (Luhn for cards, mod-97 for IBANs, context rules for IPs). For those the
RE2 pattern only finds *candidate* rows, and Python's ``re`` with the validator rewrites just
those rows: rare in chat traffic, so the hot path stays vectorised. Counts always report the
spans actually replaced, never rejected candidates.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from llm_data_platform.transforms.text_normalize import as_string_array


@dataclass(frozen=True)
class PiiDetector:
    """One kind of PII: an RE2 pattern (also valid Python ``re``), its placeholder and,
    optionally, a validator that sees each candidate match and says whether to redact it."""

    kind: str
    pattern: str
    token: str
    validate: Callable[[re.Match[str]], bool] | None = None


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


def _card_ok(m: re.Match[str]) -> bool:
    """Luhn-valid, not written as an international phone number (+CC ...)."""
    start = m.start()
    if start and m.string[start - 1] == "+":
        return False
    digits = re.sub(r"\D", "", m.group(0))
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _iban_ok(m: re.Match[str]) -> bool:
    """ISO 13616 mod-97 check: rejects almost every random letter/digit run."""
    iban = m.group(0).replace(" ", "")
    if not 15 <= len(iban) <= 34:
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def _ip_ok(m: re.Match[str]) -> bool:
    """A real address, not part of a longer dotted number ("1.2.3.4.5") or code like
    ``Foo::bar`` / ``a[::1]`` (IPv6 needs a digit and two hex groups)."""
    text, start, end = m.string, m.start(), m.end()
    candidate = m.group(0)
    if ":" in candidate:
        groups = [g for g in candidate.split(":") if g]
        if len(groups) < 2 or not any(ch.isdigit() for ch in candidate):
            return False
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            return False
        return not (start and text[start - 1] in ":[.")
    if start and text[start - 1] in ".":
        return False
    return not (end + 1 < len(text) + 1 and text[end : end + 1] == "." and text[end + 1 : end + 2].isdigit())


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"\b{_OCTET}(?:\.{_OCTET}){{3}}\b"
_H = r"[0-9A-Fa-f]{1,4}"
_IPV6 = rf"(?:{_H}:){{7}}{_H}\b|(?:{_H}:){{1,7}}:(?:{_H}(?::{_H}){{0,6}}\b)?"

# Order matters: secrets before emails (tokens can contain "@"-free base64 that later patterns
# would cut up), cards and IBANs before phones (their digit groups look like phone numbers).
DETECTORS: tuple[PiiDetector, ...] = (
    PiiDetector(
        "secret",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"
        r"|\b(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"
        r"|AKIA[0-9A-Z]{16}"
        r"|gh[pousr]_[A-Za-z0-9]{36,}"
        r"|github_pat_[A-Za-z0-9_]{22,}"
        r"|xox[abprs]-[A-Za-z0-9-]{10,}"
        r"|AIza[0-9A-Za-z_-]{35}"
        r"|eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})",
        "[SECRET]",
    ),
    PiiDetector(
        "email",
        r"\b[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}\b",
        "[EMAIL]",
    ),
    PiiDetector(
        "iban",
        r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b",
        "[IBAN]",
        _iban_ok,
    ),
    PiiDetector("card", r"\b(?:[0-9][ -]?){12,18}[0-9]\b", "[CARD]", _card_ok),
    PiiDetector("ip", rf"{_IPV6}|{_IPV4}", "[IP]", _ip_ok),
    PiiDetector(
        "ssn",  # US social security number, dashed form, with the invalid areas excluded
        r"\b(?:00[1-9]|0[1-9][0-9]|[1-578][0-9]{2}|6[0-57-9][0-9]|66[0-57-9])"
        r"-(?:0[1-9]|[1-9][0-9])-(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})\b",
        "[SSN]",
    ),
    PiiDetector(
        "phone",
        # International: +CC then 3+ digit groups (>= 6 digits), e.g. +44 20 7946 0958,
        # +1 (415) 555-0199, +4915123456789.
        r"\+[0-9]{1,3}[ .-]?(?:\([0-9]{1,4}\)[ .-]?)?[0-9]{1,4}(?:[ .-]?[0-9]{2,4}){2,5}\b"
        # North American: (415) 555-0199, 415-555-0132, 415.555.0132, optional 1- prefix.
        # Separators are required, so 10-digit ids and epoch seconds are left alone.
        r"|(?:\b1[ .-]?)?(?:\([0-9]{3}\) ?[0-9]{3}[ .-]|\b[0-9]{3}-[0-9]{3}-|\b[0-9]{3}\.[0-9]{3}\.)"
        r"[0-9]{4}\b",
        "[PHONE]",
    ),
)

PII_KINDS: tuple[str, ...] = tuple(d.kind for d in DETECTORS)
PLACEHOLDER_PATTERN = r"\[(?:" + "|".join(d.token[1:-1] for d in DETECTORS) + r")\]"


def _redact_vectorised(text: pa.Array, det: PiiDetector) -> tuple[pa.Array, pa.Array]:
    """Count and replace with RE2 kernels; the replace pass runs on rows with a hit only."""
    counts = pc.fill_null(pc.count_substring_regex(text, det.pattern), 0)
    hit = pc.greater(counts, 0)
    rows = pc.indices_nonzero(hit)
    if len(rows) == 0:
        return text, counts
    replaced = pc.replace_substring_regex(pc.take(text, rows), det.pattern, det.token)
    return pc.replace_with_mask(text, hit, replaced), counts


def _compiled(det: PiiDetector) -> re.Pattern[str]:
    # re.ASCII gives \b and \d the same (ASCII) meaning they have in RE2.
    return re.compile(det.pattern, re.ASCII)


_PY_PATTERNS = {d.kind: _compiled(d) for d in DETECTORS if d.validate is not None}


def _redact_validated(text: pa.Array, det: PiiDetector) -> tuple[pa.Array, pa.Array]:
    """RE2 finds candidate rows; Python ``re`` + the validator rewrites only those rows."""
    candidates = pc.fill_null(pc.match_substring_regex(text, det.pattern), False)
    rows = pc.indices_nonzero(candidates)
    zeros = pa.array([0] * len(text), pa.int32()) if len(text) else pa.array([], pa.int32())
    if len(rows) == 0:
        return text, zeros
    pattern, validate = _PY_PATTERNS[det.kind], det.validate
    assert validate is not None
    new_text: list[str] = []
    new_counts: list[int] = []
    for value in pc.take(text, rows).to_pylist():
        hits = 0

        def _sub(m: re.Match[str]) -> str:
            nonlocal hits
            if validate(m):
                hits += 1
                return det.token
            return m.group(0)

        new_text.append(pattern.sub(_sub, value))
        new_counts.append(hits)
    text = pc.replace_with_mask(text, candidates, pa.array(new_text, pa.string()))
    counts = pc.replace_with_mask(zeros, candidates, pa.array(new_counts, pa.int32()))
    return text, counts


def redact_pii(
    arr: pa.Array | pa.ChunkedArray, detectors: tuple[PiiDetector, ...] = DETECTORS
) -> PiiResult:
    """Replace every detected PII span with its placeholder; count spans per kind and per row."""
    text = as_string_array(arr)
    per_row = pc.cast(pc.fill_null(pc.multiply(pc.utf8_length(text), 0), 0), pa.int32())
    counts: dict[str, int] = {}
    for det in detectors:
        step = _redact_validated if det.validate is not None else _redact_vectorised
        text, row_counts = step(text, det)
        row_counts = pc.cast(row_counts, pa.int32())
        counts[det.kind] = int(pc.sum(row_counts).as_py() or 0)
        per_row = pc.add(per_row, row_counts)
    return PiiResult(text=text, counts=counts, per_row=pc.cast(per_row, pa.int32()))
