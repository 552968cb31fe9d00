"""Street addresses (US, UK, DE, FR, ES) as one RE2 candidate pattern plus a Python check.

Rules, not a statistical parser: a libpostal model (``address-finder``, ~2 GB of data) would
parse any address but is far too heavy to ship with a redactor that must run offline in CI;
``usaddress`` and friends cover the US only. Addresses in chat follow a few national shapes,
and each shape is anchored by something ordinary prose rarely has:

- English (US/UK): house number, one to three capitalised words and a street type ("742
  Evergreen Terrace", "12 Baker St."), then an optional unit ("Apt 4B", "Suite 210"), city,
  and a US state + ZIP or a UK postcode; a UK "Flat 3," may come first. Accepted with a unit,
  a ZIP/postcode, a context word before it ("live at", "address", "ship to", ...), or when
  the street type ends the phrase.
- German: "<Name>straße 12a" or "<Name> Straße 12", then a 5-digit PLZ and a city.
- French: "12 bis, rue de la Paix", then a 5-digit code postal and a city.
- Spanish: "Calle de Alcalá, 45, 3º B", then a 5-digit código postal and a city.

The German, French and Spanish shapes need the postcode and city, so the pattern alone
decides; the English shape is checked by :func:`rewrite_address`.
"""

from __future__ import annotations

import re

_UP = "A-ZÀ-ÖØ-Þ"
_LETTER = "A-Za-zÀ-ÖØ-öø-ÿß"
_W = rf"[{_UP}][{_LETTER}'’.-]*"  # a capitalised word ("Evergreen", "Saint-Germain", "St.")
_CITY = rf"{_W}(?:[ -](?:(?:sur|am|an|de|del|la|le|les|en|im|upon|on)[ -])?{_W}){{0,2}}"
_PLZ = r"[0-9]{5}"

_EN_TYPE = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Way"
    r"|Terrace|Ter|Parkway|Pkwy|Circle|Cir|Highway|Hwy|Square|Sq|Close|Crescent|Gardens|Grove"
    r"|Mews|Row|Hill|Walk|Parade)"
)
_EN_UNIT = r"(?:Apt|Apartment|Suite|Ste|Unit|Floor|Fl|Room|Rm|#)\.? ?#?[0-9A-Za-z-]{1,6}\b"
_UK_POSTCODE = r"[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}\b"
_US_ZIP = r"[A-Z]{2},? [0-9]{5}(?:-[0-9]{4})?\b"
_EN = (
    rf"(?P<flat>\b(?:Flat|Apartment|Apt|Unit|Suite) [0-9]+[A-Z]?,? )?"
    rf"\b[0-9]{{1,6}}[A-Z]?(?: [NSEW]\.?)?(?: {_W}){{1,3}} {_EN_TYPE}\b\.?"
    r"(?: (?:NW|NE|SW|SE|N|S|E|W)\b\.?)?"
    rf"(?P<unit>,? {_EN_UNIT})?"
    rf"(?P<zip>,? {_CITY},? (?:{_US_ZIP}|{_UK_POSTCODE})|,? {_UK_POSTCODE})?"
)
_DE = (
    rf"\b(?:[{_UP}][{_LETTER}-]*(?:straße|strasse|str\.|weg|platz|allee|gasse|ring|damm|ufer)"
    rf"|{_W} (?:Straße|Strasse|Str\.|Weg|Platz|Allee|Gasse|Ring|Damm|Ufer))"
    rf" [0-9]{{1,4}}[a-z]?(?:-[0-9]{{1,4}})?,? (?:D-)?{_PLZ} {_CITY}"
)
_FR_TYPE = (
    r"(?:[Rr]ue|[Aa]venue|[Aa]v\.|[Bb]oulevard|[Bb]d|[Pp]lace|[Aa]ll[ée]e|[Ii]mpasse|[Cc]hemin"
    r"|[Qq]uai|[Rr]oute|[Cc]ours|[Ss]quare)"
)
_FR_LINK = r"(?:de la |de l'|de l’|du |des |de |d'|d’|la |le |les )?"
_FR = (
    rf"\b[0-9]{{1,4}}(?: ?(?:bis|ter))?,? {_FR_TYPE} {_FR_LINK}{_W}(?: {_FR_LINK}{_W}){{0,3}}"
    rf",? {_PLZ} {_CITY}"
)
_ES_TYPE = r"(?:Calle|C/|Avenida|Avda\.|Av\.|Paseo|Plaza|Pza\.|Carrer|Camino|Ronda|Travesía|Calle)"
_ES_LINK = r"(?:de la |de los |de las |del |de |d'|la |el )?"
_ES = (
    rf"\b{_ES_TYPE} ?{_ES_LINK}{_W}(?: {_ES_LINK}{_W}){{0,3}},? (?:nº ?|n\.º ?|núm\. ?|no ?)?"
    rf"[0-9]{{1,4}}(?:,? [0-9]{{1,2}}[º°]? ?[A-Z0-9]?(?:ª|º)?)?,? {_PLZ} {_CITY}"
)

ADDRESS_PATTERN = rf"(?P<en>{_EN})|{_DE}|{_FR}|{_ES}"

# Words that, just before a bare "12 Baker Street", say it is somebody's address.
_CONTEXT = re.compile(
    r"(?i)\b(?:address|addr|live|lives|living|located|location|ship|shipping|deliver|delivery"
    r"|send|mail|post|moved?|stay|staying|office|home|visit|at|on|to|from)\b[^.\n]{0,12}$"
)
_ENDS_PHRASE = re.compile(r"[,.;:!?)\]\n]|$| (?:and|or|in|near|next|but|is|was)\b")


def rewrite_address(m: re.Match[str], token: str) -> str | None:
    """German, French and Spanish shapes carry a postcode: always an address. An English one
    needs a unit, a ZIP/postcode, a "Flat n," prefix, a context word, or to end the phrase."""
    if m.group("en") is None:
        return token
    if m.group("flat") or m.group("unit") or m.group("zip"):
        return token
    text = m.string
    before = text[max(0, m.start() - 40) : m.start()]
    if _CONTEXT.search(before):
        return token
    if _ENDS_PHRASE.match(text, m.end()):
        return token if re.search(r"[0-9]", m.group(0)) else None
    return None
