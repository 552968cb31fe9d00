"""National-format phone numbers (no country code), validated with ``phonenumbers``.

The RE2 candidate is broad: a trunk "0" then 8-11 more digits in groups ("07700 900123",
"020 7946 0958", "06 12 34 56 78", "098765 43210", "030 12345678", "089/1234567"), or a
Brazilian "(11) 91234-5678". Python then rejects dates ("02.01.2026") and numbers named as
something else ("order 0123456789", "meeting ID ..."), and accepts a candidate that
``phonenumbers.is_valid_number`` takes for one of the regions below (Google's metadata of
allocated ranges), or, with a phone word nearby ("call", "tel", "Handy", ...), one it takes
as a possible number. UK drama ranges (07700 900xxx, 01632 960xxx), used in examples and
sometimes real, count as valid.
"""

from __future__ import annotations

import functools
import re

NATIONAL_PHONE_PATTERN = (
    r"\(0?[1-9][0-9]\) ?9?[0-9]{4}[ -]?[0-9]{4}\b"
    # Not right after a digit, ".", ":", "/" or "-" (dates, times, versions, ids): the
    # character before is part of the match, and the rewrite puts it back.
    r"|(?:^|[^0-9.:/_-])0 ?[1-9][0-9]{0,4}(?:[ ./-]?[0-9]{2,8}){1,4}\b"
)

# Tried in this order; the first region whose metadata validates the number wins.
REGIONS: tuple[str, ...] = ("GB", "FR", "DE", "IN", "BR", "IT", "NL", "BE", "ES", "AT", "CH")

_DATE = re.compile(r"^[0-9]{1,2}([./-])[0-9]{1,2}\1[0-9]{2,4}$")
_NOT_A_PHONE = re.compile(
    r"(?i)(?:\b(?:order|invoice|id|ids|ref|reference|ticket|tracking|account|acct|serial|sku"
    r"|isbn|iban|meeting|zoom|passcode|pin|otp|code|build|version|v|port|zip|postcode|plz"
    r"|batch|lot|case|claim|customer|user|row|line|page|policy|no)\b|#)[^a-z0-9]{0,4}$"
)
_PHONE_WORD = re.compile(
    r"(?i)\b(?:call|calls|phone|tel|telephone|mobile|mob|cell|ring|text|sms|whatsapp|contact"
    r"|reach|number|fax|handy|telefon|telefonnummer|rufnummer|portable|t[ée]l[ée]phone|num[ée]ro"
    r"|celular|telefone|contato|whats|móvil|movil|teléfono|ligue|appelle[zr]?|anrufen)\b"
)
_UK_DRAMA = re.compile(r"^(?:07700900[0-9]{3}|01632960[0-9]{3}|0207946[0-9]{4}|0113496[0-9]{4})$")


@functools.cache
def _phonenumbers():  # imported on first candidate only (module import costs ~0.1 s)
    import phonenumbers

    return phonenumbers


def is_national_phone(candidate: str, context: str = "") -> bool:
    """A national-format number of one of ``REGIONS`` (``context``: the text just before)."""
    digits = re.sub(r"[^0-9]", "", candidate)
    if not 9 <= len(digits) <= 12:
        return False
    if _DATE.match(candidate) or _NOT_A_PHONE.search(context[-30:]):
        return False
    if _UK_DRAMA.match(digits):
        return True
    pn = _phonenumbers()
    brazil = candidate.startswith("(")
    regions = ("BR",) if brazil else REGIONS
    worded = bool(_PHONE_WORD.search(context[-60:]))
    for region in regions:
        try:
            number = pn.parse(candidate, region)
        except pn.NumberParseException:
            continue
        if pn.is_valid_number(number) or (worded and pn.is_possible_number(number)):
            return True
    return False


def rewrite_national_phone(m: re.Match[str], token: str) -> str | None:
    text, candidate = m.string, m.group(0)
    lead = "" if candidate[0] in "0(" else candidate[0]
    start = m.start() + len(lead)
    if start and text[start - 1] == "+":  # "+0..." belongs to an international number
        return None
    after = text[m.end() : m.end() + 2]
    if len(after) == 2 and after[0] in ".:-/" and after[1].isdigit():
        return None
    context = text[max(0, start - 60) : start]
    return lead + token if is_national_phone(candidate[len(lead) :], context) else None
