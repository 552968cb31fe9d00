"""Secrets without a fixed prefix, found by context (detect-secrets / gitleaks rule ideas).

- AWS secret access keys: 40 characters of ``[A-Za-z0-9/+]`` with an AWS word or an access
  key id ("AKIA...", already ``[SECRET]`` when this runs) in the 120 characters before, and
  mixed like a random key (not a 40-hex git SHA).
- Keyword assignments: ``token``, ``secret``, ``password``, ``api_key``, ``Bearer`` ... (with
  prefixes such as ``deploy_token``, ``STRIPE_SECRET_KEY``), a ":", "=", "is" or a space,
  then a value that looks random: at least 16 characters with a digit and enough entropy (a
  hex deploy token counts here, where a git SHA after "commit" does not), at least 12 with a
  digit for a ``Bearer`` token, at least 6 with a digit after "password:". Identifiers
  (``settings.SECRET_KEY``), words and placeholders are left alone.

Only the value is replaced; the keyword stays ("Authorization: Bearer [SECRET]").
"""

from __future__ import annotations

import math
import re
from collections import Counter

_B64 = "A-Za-z0-9/+"
AWS_SECRET_PATTERN = rf"(?:^|[^{_B64}=])[{_B64}]{{40}}(?:$|[^{_B64}=])"
# RE2: rows worth checking at all (a superset of what ``_AWS_CONTEXT`` accepts).
AWS_SECRET_ROWS = r"(?i)aws|akia|asia|\[SECRET\]|secret"
_AWS_CONTEXT = re.compile(
    r"(?i)aws|\bakia|\basia|\[SECRET\]|secret[ _-]?access|secret[ _-]?key|secretaccesskey"
)

_KEYWORD = (
    r"(?:bearer|(?:[A-Za-z0-9]+[_-])*(?:token|secret|password|passwd|pwd|passphrase"
    r"|api[_-]?key|apikey|access[_-]?key|secret[_-]?key|private[_-]?key|auth[_-]?key|key))"
)
_SEP = r"(?:[\"']?\s{0,3}(?:[:=]|=>|\bis\b|\bwas\b)?\s{0,3}[\"']?\s{0,3})(?:bearer\s+)?"
# The value must hold a digit (random tokens do; "key points", "token expires" don't): this
# keeps the candidate rows, which Python then checks, to a few.
_V = "A-Za-z0-9+/_.~=-"
KEYWORD_SECRET_PATTERN = rf"(?i)\b{_KEYWORD}\b{_SEP}[{_V}]*[0-9][{_V}]*"
_PARTS = re.compile(rf"(?i)^(?P<kw>{_KEYWORD})\b(?P<sep>{_SEP})(?P<val>.+)$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z_.]*$")  # settings.SECRET_KEY, os.environ, ...
_PLACEHOLDER = re.compile(r"(?i)x{4,}|\*{3,}|your[_-]|changeme|placeholder|redacted|dummy")


def entropy(s: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values()) if n else 0.0


def _looks_random(val: str, min_len: int) -> bool:
    if len(val) < min_len or _IDENTIFIER.match(val) or _PLACEHOLDER.search(val):
        return False
    if not re.search(r"[0-9]", val) or not re.search(r"[A-Za-z]", val):
        return False
    if _HEX.match(val):
        return len(val) >= 20 and entropy(val) >= 3.0
    return entropy(val) >= 3.0


def rewrite_aws_secret(m: re.Match[str], token: str) -> str | None:
    text = m.group(0)
    lead = 1 if text[:1] and not re.match(rf"[{_B64}]", text[0]) else 0
    trail = 1 if text[-1:] and not re.match(rf"[{_B64}]", text[-1]) else 0
    key = text[lead : len(text) - trail]
    if _HEX.match(key) or not _AWS_CONTEXT.search(m.string[max(0, m.start() - 120) : m.start()]):
        return None
    classes = sum(bool(re.search(c, key)) for c in ("[a-z]", "[A-Z]", "[0-9]", "[/+]"))
    if classes < 3 or entropy(key) < 4.0:
        return None
    return text[:lead] + token + text[len(text) - trail :]


def rewrite_keyword_secret(m: re.Match[str], token: str) -> str | None:
    parts = _PARTS.match(m.group(0))
    if parts is None:
        return None
    kw, sep, val = parts.group("kw").lower(), parts.group("sep"), parts.group("val")
    core = val.rstrip(".,;:'\"-=")
    if core.startswith("[") or _UUID.match(core) and kw == "key":
        return None
    bearer = "bearer" in kw or "bearer" in sep.lower()
    if bearer:
        ok = len(core) >= 12 and not _IDENTIFIER.match(core) and not _PLACEHOLDER.search(core)
    elif re.search(r"pass|pwd", kw) and re.search(r"[:=]", sep):
        ok = len(core) >= 6 and bool(re.search(r"[0-9!@#$%^&*]", core))
        ok = ok and not _PLACEHOLDER.search(core) and not _IDENTIFIER.match(core)
    else:
        ok = _looks_random(core, 16)
    if not ok:
        return None
    return m.group(0)[: len(parts.group("kw")) + len(sep)] + token + val[len(core) :]
