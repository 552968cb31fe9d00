"""Secrets: tokens with a vendor prefix, PEM blocks and JWTs, and random values found by their
context (the rule families of gitleaks and detect-secrets, written for RE2 + a Python check).

- ``PREFIX_SECRET_PATTERN`` (RE2 only, vectorised): formats a vendor fixes, one alternative
  per family in ``PREFIXED``: the prefix and the body's alphabet and length make a false hit
  on ordinary text or code vanishingly rare, so no context is needed.
- AWS secret access keys: 40 characters of ``[A-Za-z0-9/+]`` with an AWS word or an access
  key id ("AKIA...", already ``[SECRET]`` when this runs) in the 120 characters before, and
  mixed like a random key (not a 40-hex git SHA).
- Context, three forms, a detector each behind one shared RE2 pass (``CONTEXT_SECRET_GATE``;
  one Python pattern of three alternatives scanned 3x slower than each on its own rows):
  a keyword then a value (``KEYWORD_SECRET_PATTERN``): ``token``, ``secret``, ``password``,
  ``api_key``, ``webhook``, ``credentials``, ``Bearer``/``Basic`` ... with prefixes and
  camelCase (``deploy_token``, ``STRIPE_SECRET_KEY``, ``accessToken``, ``AccountKey``), a
  ":", "=", "is" or a space, then a value that looks random: at least 16 characters with a
  digit and enough entropy (a hex deploy token counts here, where a git SHA after "commit"
  does not), at least 12 for a ``Bearer`` token, at least 6 after "password:" or
  "--password";
  a value then what it is (``VALUE_FIRST_SECRET_PATTERN``): "<value> as the stripe key";
  a URL's password (``URL_SECRET_PATTERN``): ``scheme://user:<password>@host``.
  Identifiers (``settings.SECRET_KEY``), words and placeholders are left alone.

Only the value is replaced; the keyword stays ("Authorization: Bearer [SECRET]").
"""

from __future__ import annotations

import math
import re
from collections import Counter

# Vendor formats: (family, RE2 pattern); each starts at a word boundary (see below).
PREFIXED: tuple[tuple[str, str], ...] = (
    (
        "openai/anthropic",
        r"sk-(?:proj-|ant-(?:api|admin)[0-9]{2}-|ant-|svcacct-)?[A-Za-z0-9_-]{20,}",
    ),
    ("aws access key id", r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}"),
    ("stripe", r"(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{20,}|whsec_[A-Za-z0-9+/=]{24,}"),
    ("github", r"gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}"),
    ("gitlab", r"gl(?:pat|dt|rt|ptt|soat|cbt|ft|imt|agent)-[0-9A-Za-z_-]{20,}"),
    ("slack", r"xox[abposre]-[A-Za-z0-9-]{10,}|xapp-[0-9]-[A-Za-z0-9-]{10,}"),
    ("google", r"AIza[0-9A-Za-z_-]{35}|ya29\.[0-9A-Za-z_-]{20,}|GOCSPX-[0-9A-Za-z_-]{24,}"),
    ("twilio api key", r"SK[0-9a-f]{32}"),
    ("sendgrid", r"SG\.[0-9A-Za-z_-]{16,32}\.[0-9A-Za-z_-]{16,64}"),
    ("npm", r"npm_[A-Za-z0-9]{36}"),
    ("pypi", r"pypi-AgE[A-Za-z0-9_-]{50,}"),
    ("hugging face", r"hf_[A-Za-z0-9]{30,}"),
    ("shopify", r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"),
    ("digitalocean", r"do[opr]_v1_[a-f0-9]{64}"),
    ("databricks", r"dapi[a-f0-9]{32}(?:-[0-9])?"),
    ("atlassian", r"ATATT3[A-Za-z0-9_=-]{40,}"),
    ("mailgun", r"key-[0-9a-f]{32}"),
    ("square", r"sq0(?:atp|csp)-[0-9A-Za-z_-]{22,}|EAAA[0-9A-Za-z_-]{60,}"),
    ("telegram bot", r"[0-9]{8,10}:AA[0-9A-Za-z_-]{33}"),
    ("jwt", r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*"),
)
# Webhook URLs are secrets as a whole (the path is the credential).
_WEBHOOK_URLS = (
    r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_+-]{20,}"
    r"|https://(?:discord(?:app)?\.com)/api/webhooks/[0-9]+/[A-Za-z0-9_-]{30,}"
)
# PEM/PGP private key blocks, or a pasted block whose END line is missing (its body then).
_PEM_LABEL = r"[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?"
_PEM = (
    rf"-----BEGIN {_PEM_LABEL}-----(?:[\s\S]*?-----END {_PEM_LABEL}-----"
    r"|(?:[A-Za-z0-9+/=:, -]*\r?\n)*[A-Za-z0-9+/=\r\n\\]{40,})"  # \\: "\n" escaped in JSON
)
PREFIX_SECRET_PATTERN = (
    f"{_PEM}|{_WEBHOOK_URLS}|\\b(?:" + "|".join(p for _, p in PREFIXED) + r")(?:\b|$)"
)

_B64 = "A-Za-z0-9/+"
AWS_SECRET_PATTERN = rf"(?:^|[^{_B64}=])[{_B64}]{{40}}(?:$|[^{_B64}=])"
# RE2: rows worth checking at all (a superset of what ``_AWS_CONTEXT`` accepts).
AWS_SECRET_ROWS = r"(?i)aws|akia|asia|\[SECRET\]|secret"
_AWS_CONTEXT = re.compile(
    r"(?i)aws|\bakia|\basia|\[SECRET\]|secret[ _-]?access|secret[ _-]?key|secretaccesskey"
)

_WORDS = (
    r"token|secret|password|passwd|pwd|passphrase|api[_-]?key|apikey|access[_-]?key"
    r"|secret[_-]?key|private[_-]?key|auth[_-]?key|key|webhook|credentials?|authorization"
)
# The keyword is matched where its last word starts ("deploy_token" from "token", camelCase
# "accessToken", "AccountKey", "X-Api-Key"): a lazy prefix before it made Python's scan 2x
# slower; ``_keyword_start`` reads the prefix back for the rewrite.
_KEYWORD = rf"(?:bearer|{_WORDS})"
_SCHEME = r"(?:bearer|basic|token)\s+"
_SEP = rf"(?:[\"']?\s{{0,3}}(?:[:=]|=>|\bis\b|\bwas\b)?\s{{0,3}}[\"']?\s{{0,3}})(?:{_SCHEME})?"
# The value must hold a digit (random tokens do; "key points", "token expires" don't): this
# keeps the candidate rows, which Python then checks, to a few.
_V = "A-Za-z0-9+/_.~=-"
_V_NO_DIGIT = "A-Za-z+/_.~=-"  # up to the first digit: one way to match, no backtracking
_SIGNS = "!@#$%^*"  # in passwords ("P@ssw0rd", "Winter2026!"); not "&", a query's separator
KEYWORD_SECRET_PATTERN = rf"(?i){_KEYWORD}\b{_SEP}[{_SIGNS}{_V_NO_DIGIT}]*[0-9][{_SIGNS}{_V}]*"
# "<value> as the stripe key", "<value> is my password": a bounded value after a non-value
# character (linear in Python too), "as"/"is", up to three words, a keyword noun.
_NOUN = r"key|token|secret|password|passphrase|credentials?"
VALUE_FIRST_SECRET_PATTERN = (
    rf"(?i)(?:^|[^{_V}])[{_V_NO_DIGIT}]{{0,80}}[0-9][{_V}]{{0,80}}\s+(?:as|is|was)\s+"
    rf"(?:[A-Za-z_-]+\s+){{0,3}}?(?:{_NOUN})\b"
)
# scheme://user:password@host (databases, brokers, HTTP basic auth in a URL), matched from
# the literal "://" (RE2 then skips to each ":" instead of trying every position)
URL_SECRET_PATTERN = r"://[^\s:/@]{0,64}:[^\s/@]{1,128}@"

# One RE2 pass over all rows for the three context forms (each flag scoped to its group);
# each form's own pattern then runs on the rows this matched only (see ``PiiDetector.gate``).
CONTEXT_SECRET_GATE = "|".join(
    f"(?:{p})" for p in (URL_SECRET_PATTERN, KEYWORD_SECRET_PATTERN, VALUE_FIRST_SECRET_PATTERN)
)

_PARTS = re.compile(rf"(?i)^(?P<kw>{_KEYWORD})\b(?P<sep>{_SEP})(?P<val>.+)$")
_BACK_PARTS = re.compile(rf"(?i)^(?P<lead>[^{_V}]?)(?P<val>[{_V}]+)(?P<rest>\s+\S.*)$", re.S)
_URL_PARTS = re.compile(r"^(?P<head>://[^\s:/@]*:)(?P<val>[^\s/@]+)@$")
_KEYWORD_PREFIX = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9_-]*)?$")  # not "--" of a flag
_PUBLIC = re.compile(r"public|publishable|pub[_-]?key")  # public keys are meant to be shared
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z_.]*$")  # settings.SECRET_KEY, os.environ, ...
_PLACEHOLDER = re.compile(
    r"(?i)x{4,}|\*{3,}|your[_-]|changeme|placeholder|redacted|dummy|example\.com|<[^>]*>"
    r"|\$\{|\{\{"
)


def entropy(s: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values()) if n else 0.0


def _looks_random(val: str, min_len: int) -> bool:
    """A generated value, not a word, identifier, version or date: letters and digits mixed
    with enough entropy (hex needs 20+ characters: shorter hex runs are ids and colours)."""
    if len(val) < min_len or _IDENTIFIER.match(val) or _PLACEHOLDER.search(val):
        return False
    if not re.search(r"[0-9]", val) or not re.search(r"[A-Za-z]", val):
        return False
    if _HEX.match(val):
        return len(val) >= 20 and entropy(val) >= 3.0
    return entropy(val) >= 3.0


def rewrite_aws_secret(m: re.Match[str], token: str) -> str | None:
    """The 40-character key in an AWS context, mixed like a random key; None otherwise."""
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


def _password_ok(core: str) -> bool:
    """A password after "password:" is short and human: 6+ characters with a digit or sign."""
    ok = len(core) >= 6 and bool(re.search(r"[0-9!@#$%^&*]", core))
    return ok and not _PLACEHOLDER.search(core) and not _IDENTIFIER.match(core)


def _keyword_start(m: re.Match[str]) -> int:
    """Where the keyword of a match begins, its prefix included ("deploy_" of "deploy_token")."""
    before = m.string[max(0, m.start() - 40) : m.start()]
    prefix = _KEYWORD_PREFIX.search(before)
    return m.start() - (len(prefix.group(0)) if prefix else 0)


def rewrite_keyword_secret(m: re.Match[str], token: str) -> str | None:
    """keyword, separator, value: the value replaced when it passes its keyword's test."""
    parts = _PARTS.match(m.group(0))
    if parts is None:
        return None
    start = _keyword_start(m)
    kw = (m.string[start : m.start()] + parts.group("kw")).lower()
    sep, val = parts.group("sep"), parts.group("val")
    core = val.rstrip(".,;:'\"-")
    if core.startswith("[") or _PUBLIC.search(kw) or _UUID.match(core) and kw.endswith("key"):
        return None
    flag = m.string[max(0, start - 2) : start] == "--"  # --password s3cret!
    if re.search(r"(?i)bearer|basic|token\s", sep) or kw == "bearer":
        ok = len(core) >= 12 and not _IDENTIFIER.match(core) and not _PLACEHOLDER.search(core)
    elif re.search(r"pass|pwd", kw) and (re.search(r"[:=]|\bis\b", sep) or flag):
        ok = _password_ok(core)
    else:
        ok = _looks_random(core, 16)
    if not ok:
        return None
    return m.group(0)[: len(parts.group("kw")) + len(sep)] + token + val[len(core) :]


def rewrite_value_first_secret(m: re.Match[str], token: str) -> str | None:
    """ "<value> as the stripe key": the value replaced when it looks random (hex not before
    "key": "<sha> is the key change" names a commit)."""
    back = _BACK_PARTS.match(m.group(0))
    if back is None:
        return None
    val = back.group("val")
    core = val.rstrip(".,;:'\"-")
    if not _looks_random(core, 16) or _HEX.match(core) and m.group(0).lower().endswith("key"):
        return None
    return back.group("lead") + token + val[len(core) :] + back.group("rest")


def rewrite_url_secret(m: re.Match[str], token: str) -> str | None:
    """The password of ``scheme://user:password@``, unless a placeholder or redacted."""
    url = _URL_PARTS.match(m.group(0))
    if url is None or _PLACEHOLDER.search(url.group("val")) or url.group("val")[0] == "[":
        return None
    return url.group("head") + token + "@"
