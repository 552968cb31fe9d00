"""The boilerplate rule of the quality filter: e-mail signatures, legal disclaimers,
auto-replies / out-of-office (see ``quality.py``'s module doc for what makes boilerplate).

A cheap RE2 hint over the whole batch picks the candidate rows; the judge, in Python, splits
those into sentences and counts ``_BOILERPLATE`` hits. It stops as soon as the verdict cannot
change, and skips the regex on sentences that hold none of the literals every hit needs
(``_HITS``): a long answer costs a sentence or two, not a ``findall`` per sentence.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from llm_data_platform.transforms.quality import QualityConfig

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
# (literal, pattern) pairs that cover every ``_BOILERPLATE`` alternative: a literal the
# alternative needs and, where the literal is common, the alternative itself, unanchored, to
# search the lower-cased sentence with. Under IGNORECASE a letter of the pattern matches just
# the characters whose ``lower()`` it is, but for "ſ", "İ" and "ı" (sentences holding those
# go to ``findall``), and lower-casing keeps \s, \w and \b as they were; so a sentence no pair
# finds has no hit: ``findall`` (~100 us on a long sentence) runs on the others only.
_WILL_BE_BACK = r"(?:will|shall)\s+(?:be\s+)?(?:back|return(?:ing)?)\s+(?:on|in|to)\b"
_GET_BACK = r"(?:reply|respond|get\s+back)\s+to\s+(?:you|your\s+(?:e-?mail|message))"
_AWAY = (
    r"(?:i\s+am|i'm)\s+(?:currently\s+)?(?:away|out|on\s+(?:annual\s+|parental\s+)?leave|"
    r"on\s+vacation|on\s+holiday|travell?ing)"
)
_HITS: tuple[tuple[str, re.Pattern[str] | None], ...] = tuple(
    (literal, re.compile(pattern) if pattern else None)
    for literal, pattern in (
        *((word, "") for word in ("regards", "sincerely", "cheers", "wishes", "yours")),
        *((word, "") for word in ("cordialement", "saludo", "atentamente", "confidential")),
        *((word, "") for word in ("addressee", "privileged", "prohibited", "disclos")),
        *((word, "") for word in ("liability", "unsubscribe", "vertraulich", "abwesen")),
        *((word, word + r"\s*[:.]") for word in ("tel", "phone", "fax", "cell", "direct")),
        ("mob", r"mob(?:ile)?\s*[:.]"),
        ("mail", r"mail\s*[:.]"),
        ("web", r"web\s*[:.]"),
        ("--", r"^\s*--+\s*$"),
        ("__", r"^\s*__+\s*$"),
        ("http", r"^\s*https?://\S+\s*$"),
        ("www.", r"^\s*www\.\S+\s*$"),
        ("sent", r"sent\s+from\s+my\s+\w+|this\s+(?:e-?mail|message)\s+was\s+sent"),
        ("outlook", r"get\s+outlook\s+for"),
        ("intended", r"intended\s+(?:(?:solely\s+|only\s+)*for|recipient)"),
        ("error", r"received\s+this\s+(?:e-?mail|message|communication)?\s*in\s+error"),
        ("notify", r"notify\s+the\s+sender"),
        ("unauthori", r"unauthori[sz]ed"),
        ("viruses", r"\bviruses\b"),
        ("expressed", r"views\s+(?:or\s+opinions\s+)?expressed"),
        ("legally", r"legally\s+binding"),
        ("receiving", r"you\s+are\s+receiving\s+this"),
        ("office", r"out[\s-]+of[\s-]+(?:the[\s-]+)?office"),
        ("auto", r"automatic\s+reply|auto-?reply|automatische\s+antwort"),
        ("am", _AWAY),
        ("i'm", _AWAY),
        ("limited", r"limited\s+access\s+to"),
        ("return", r"(?:upon|on|after|when)\s+(?:my|i)\s+return"),
        ("absence", r"in\s+my\s+absence"),
        ("urgent", r"for\s+urgent\s+(?:matters|issues|requests|enquiries|inquiries)"),
        ("will", _WILL_BE_BACK),
        ("shall", _WILL_BE_BACK),
        *((word, _GET_BACK) for word in ("reply", "respond", "back")),
        ("thank", r"thank\s+you\s+for\s+your\s+(?:e-?mail|message)"),
        ("wenden", r"wenden\s+sie\s+sich\s+an"),
        ("gracias", r"gracias\s+por\s+su\s+mensaje"),
        ("merci", r"merci\s+(?:de|pour)\s+votre\s+message"),
        ("bin", r"ich\s+bin\s+(?:bis|vom)"),
        ("absent", r"je\s+suis\s+absent"),
        ("retour", r"de\s+retour\s+le"),
        ("oficina", r"fuera\s+de\s+la\s+oficina"),
        ("grüß", None),
        ("dringenden", None),
        ("bien", r"bien\s+à\s+vous"),
        ("danke", r"danke\s+für\s+ihre\s+nachricht"),
        ("außer", r"außer\s+haus"),
        ("réponse", r"réponse\s+automatique"),
        ("respuesta", r"respuesta\s+automática"),
        ("estaré", r"estaré\s+(?:fuera|ausente|de\s+vacaciones)"),
    )
)
# Any of the literals, in one scan: most sentences hold none, and then no pattern can match
_ANY_LITERAL = re.compile("|".join(sorted({re.escape(lit) for lit, _ in _HITS}, key=len)[::-1]))
# Characters that IGNORECASE matches with a letter they do not lower-case to.
_UNFOLDED = ("\u017f", "\u0130", "\u0131")


def _may_hit(sentence: str) -> bool:
    """False only where ``_BOILERPLATE`` cannot match (see ``_HITS``)."""
    if not sentence.isascii() and any(c in sentence for c in _UNFOLDED):
        return True
    low = sentence.lower()
    if _ANY_LITERAL.search(low) is None:
        return False
    return any(
        literal in low and (pattern is None or pattern.search(low) is not None)
        for literal, pattern in _HITS
    )


def _sentences(text: str) -> Iterator[str]:
    """``_SENTENCES.split(text)``, one piece at a time (the judge mostly stops early)."""
    at = 0
    for gap in _SENTENCES.finditer(text):
        yield text[at : gap.start()]
        at = gap.end()
    yield text[at:]


def _count_hits(sentence: str, most: int) -> int:
    """``len(_BOILERPLATE.findall(sentence))``, counted up to ``most``: the verdict only asks
    whether the hits reach ``boilerplate_min_hits`` and whether a sentence has one, so the
    scan stops there (a hit near the start of a long sentence ends it)."""
    found = 0
    for _ in _BOILERPLATE.finditer(sentence):
        found += 1
        if found >= most:
            break
    return found


def _boilerplate_one(text: str, config: QualityConfig) -> float:
    """1 = not boilerplate, 0 = boilerplate (see the module doc). Words outside boilerplate
    only ever add up: past ``boilerplate_max_other_words`` the verdict is 1 whatever follows,
    so the judge stops there (a long answer costs one or two sentences, not all of them)."""
    hits = other_words = signature_lines = 0
    in_signature = 0  # up to 4 short lines after a hit ("Best regards,") are the signature
    # words are counted up to ``most``: past it a sentence is no signature line and, outside
    # boilerplate, ends the judging all the same
    most = max(7, config.boilerplate_max_other_words + 1)
    for sentence in _sentences(text):
        words = len(sentence.split(maxsplit=most))
        if not words:
            continue
        found = 0
        if not sentence.rstrip().endswith("?") and _may_hit(sentence):
            found = _count_hits(sentence, max(1, config.boilerplate_min_hits - hits))
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
            if other_words > config.boilerplate_max_other_words:
                return 1.0
    boiler = (
        hits >= config.boilerplate_min_hits and other_words <= config.boilerplate_max_other_words
    )
    return 0.0 if boiler else 1.0


def boilerplate_scores(arr: pa.Array, config: QualityConfig) -> np.ndarray:
    """Per row; RE2 picks the candidates over the batch, Python judges only those."""
    score = np.ones(len(arr), dtype=np.float64)
    if len(arr) == 0:
        return score
    hint = pc.fill_null(pc.match_substring_regex(arr, _BOILERPLATE_HINT), False)
    rows = np.flatnonzero(hint.to_numpy(zero_copy_only=False))
    for row, text in zip(rows, pc.take(arr, pa.array(rows)).to_pylist(), strict=True):
        score[row] = _boilerplate_one(text, config)
    return score
