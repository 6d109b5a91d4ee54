"""Personal-information detectors and the typed-placeholder scrub.

Every detector is offline and pure Python: regular expressions, with a checksum where the format has one
(Luhn for card numbers, mod-97 for IBANs) so that random digit runs are not reported. Person names use the
US Census first- and last-name lists that the `names` package ships; without it only honorific patterns
("Dr. Jane Roe") are found. Precision is favoured over recall where the two conflict: a phone number must
look like one (separators, a leading "+" or a "phone:" cue), not merely be ten digits.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

PLACEHOLDERS = {
    "email": "[EMAIL]",
    "phone": "[PHONE]",
    "street_address": "[ADDRESS]",
    "credit_card": "[CREDIT_CARD]",
    "us_ssn": "[NATIONAL_ID]",
    "uk_nino": "[NATIONAL_ID]",
    "iban": "[IBAN]",
    "ip_address": "[IP_ADDRESS]",
    "person_name": "[PERSON]",
}


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    type: str


# ---------------------------------------------------------------------------------------------- checksums


def luhn_ok(digits: str) -> bool:
    """Luhn mod-10: double every second digit from the right (minus 9 if > 9); the sum must end in 0."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_brand(digits: str) -> str | None:
    """Issuer by IIN prefix and length; None when no major network issues such a number."""
    n, p2, p4 = len(digits), int(digits[:2]), int(digits[:4])
    if digits[0] == "4" and n in (13, 16, 19):
        return "visa"
    if (51 <= p2 <= 55 or 2221 <= p4 <= 2720) and n == 16:
        return "mastercard"
    if p2 in (34, 37) and n == 15:
        return "amex"
    if (digits.startswith("6011") or p2 == 65 or 644 <= int(digits[:3]) <= 649) and 16 <= n <= 19:
        return "discover"
    if 3528 <= p4 <= 3589 and 16 <= n <= 19:
        return "jcb"
    if (300 <= int(digits[:3]) <= 305 or p2 in (36, 38)) and n == 14:
        return "diners"
    if p2 == 62 and 16 <= n <= 19:
        return "unionpay"
    return None


def iban_ok(iban: str) -> bool:
    """ISO 13616 mod-97: move the first four characters to the end, letters → 10..35, the number mod 97 is 1."""
    s = iban.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


# ---------------------------------------------------------------------------------------------- patterns

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b")

_PHONE_NANP = re.compile(
    r"(?<![\w+])(?:\+?1[ .-]?)?(?:\([2-9]\d{2}\)[ .-]?|[2-9]\d{2}[ .-])[2-9]\d{2}[ .-]\d{4}(?![\w-])"
)
_PHONE_INTL = re.compile(r"(?<![\w+])\+[1-9]\d{0,2}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?![\w-])")
_PHONE_CUE = re.compile(
    r"\b(?:phone|tel|telephone|mobile|cell|fax|call me at|text me at)\b\s*(?:no\.?|number|#)?\s*[:.]?\s*"
    r"(\(?\d[\d ().-]{5,18}\d)(?![\w-])",
    re.IGNORECASE,
)

_STREET_SUFFIX = (
    r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Terrace|Way|"
    r"Circle|Cir|Highway|Hwy|Parkway|Pkwy|Square|Sq|Close|Crescent|Gardens|Row|Trail|Alley"
)
_ADDRESS = re.compile(
    r"\b\d{1,6}[A-Z]?\s+(?:(?:N|S|E|W|North|South|East|West)\.?\s+)?(?:[A-Z][a-z']+\.?\s+){1,3}"
    rf"(?:{_STREET_SUFFIX})\b"
    r"(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|Flat|#)\.?\s*#?[\w-]{1,6})?"
    r"(?:,\s+[A-Z][a-z]+(?:\s[A-Z][a-z]+)*,?\s+[A-Z]{2}\s+\d{5}(?:-\d{4})?)?"
)
_PO_BOX = re.compile(r"\bP\.?\s?O\.?\s+Box\s+\d{1,6}\b", re.IGNORECASE)

_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")

_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_SSN_CUE = re.compile(
    r"\b(?:SSN|social security(?: number| no\.?)?)\s*[:#]?\s*((?!000|666|9\d\d)\d{3} ?(?!00)\d{2} ?(?!0000)\d{4})\b",
    re.IGNORECASE,
)
_NINO = re.compile(r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")

_IPV4 = re.compile(
    r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d.]|\.\d)"
)
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){1,7}(?::|(?::[0-9A-Fa-f]{1,4}){1,7}|[0-9A-Fa-f]{1,4})(?![\w:])")

_TITLE_NAME = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame)\.?\s+[A-Z][a-z]+(?:[ -][A-Z][a-z]+)?\b")
# A lookahead, so that "Contact Thomas Lee" tries "Contact Thomas" and then "Thomas Lee" (finditer alone
# would consume "Thomas" in the first pair).
_CAP_PAIR = re.compile(r"\b(?=([A-Z][a-z]{1,15})\s+(?:[A-Z]\.\s+)?([A-Z][a-z]{1,20}(?:-[A-Z][a-z]{1,20})?)\b)")
_CUE_NAME = re.compile(
    r"\b(?:my name is|i am called|name:)\s+([A-Z][a-z]{1,15}(?:\s+[A-Z][a-z]{1,20}){1,2})\b", re.IGNORECASE
)

# Capitalised words that follow a first name in place, team and organisation names (Virginia Beach,
# Grant Park, Christian Church): with them the pair is not a person.
_NOT_SURNAMES = frozenset(
    "street road avenue park beach river lake bay island church college university school hospital county city "
    "hall center centre valley mountain hill hills station airport bank day square bridge tower castle museum "
    "library garden gardens falls springs heights institute foundation company group press times post news "
    "hotel house court field fields highway way point port harbor harbour creek forest state states".split()
)


SURNAME_MAX_RANK = 20_000
"""Surnames past this census rank are mostly rare words too ("Catholic" ranks 74,286, "Monica" 22,050);
leaving them out keeps "Roman Catholic" and "Santa Monica" from reading as people (covers ~78% of people)."""


@lru_cache(maxsize=1)
def _census_names() -> tuple[frozenset[str], frozenset[str]] | None:
    """First names (female + male) and the commoner surnames from the `names` package's US Census lists."""
    try:
        import importlib.resources as resources

        base = resources.files("names")
    except (ImportError, ModuleNotFoundError):
        return None

    def read(fname: str, max_rank: int | None = None) -> frozenset[str]:
        text = (base / fname).read_text(encoding="ascii", errors="ignore")
        rows = [line.split() for line in text.splitlines() if line.strip()]
        return frozenset(r[0].title() for r in rows if max_rank is None or int(r[-1]) <= max_rank)

    try:
        first = read("dist.female.first") | read("dist.male.first")
        last = read("dist.all.last", SURNAME_MAX_RANK)
    except (FileNotFoundError, OSError, ValueError, IndexError):
        return None
    return first, last


def person_name_backend() -> str:
    """Which person-name detector runs: "census-gazetteer+honorifics" or "honorifics-only"."""
    return "census-gazetteer+honorifics" if _census_names() else "honorifics-only"


# ---------------------------------------------------------------------------------------------- detection


def _emails(text: str) -> Iterable[Span]:
    for m in _EMAIL.finditer(text):
        yield Span(m.start(), m.end(), "email")


def _phones(text: str) -> Iterable[Span]:
    for rx in (_PHONE_NANP, _PHONE_INTL):
        for m in rx.finditer(text):
            n = sum(c.isdigit() for c in m.group())
            if 10 <= n <= 15:
                yield Span(m.start(), m.end(), "phone")
    for m in _PHONE_CUE.finditer(text):
        n = sum(c.isdigit() for c in m.group(1))
        if 7 <= n <= 15:
            yield Span(m.start(1), m.end(1), "phone")


def _addresses(text: str) -> Iterable[Span]:
    for rx in (_ADDRESS, _PO_BOX):
        for m in rx.finditer(text):
            yield Span(m.start(), m.end(), "street_address")


def _cards(text: str) -> Iterable[Span]:
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and card_brand(digits) and luhn_ok(digits):
            yield Span(m.start(), m.end(), "credit_card")


def _ssns(text: str) -> Iterable[Span]:
    for m in _SSN.finditer(text):
        yield Span(m.start(), m.end(), "us_ssn")
    for m in _SSN_CUE.finditer(text):
        yield Span(m.start(1), m.end(1), "us_ssn")


def _ninos(text: str) -> Iterable[Span]:
    for m in _NINO.finditer(text):
        yield Span(m.start(), m.end(), "uk_nino")


def _ibans(text: str) -> Iterable[Span]:
    for m in _IBAN.finditer(text):
        if iban_ok(m.group()):
            yield Span(m.start(), m.end(), "iban")


def _ips(text: str) -> Iterable[Span]:
    for m in _IPV4.finditer(text):
        yield Span(m.start(), m.end(), "ip_address")
    if "::" in text or text.count(":") >= 7:
        for m in _IPV6.finditer(text):
            s = m.group()
            if ("::" in s or s.count(":") == 7) and sum(c not in ":" for c in s) >= 4:
                try:
                    ipaddress.IPv6Address(s)
                except ValueError:
                    continue
                yield Span(m.start(), m.end(), "ip_address")


def _person_names(text: str) -> Iterable[Span]:
    for m in _TITLE_NAME.finditer(text):
        yield Span(m.start(), m.end(), "person_name")
    for m in _CUE_NAME.finditer(text):
        yield Span(m.start(1), m.end(1), "person_name")
    census = _census_names()
    if census is None:
        return
    first, last = census
    for m in _CAP_PAIR.finditer(text):
        given, family = m.group(1), m.group(2)
        surname = family.split("-", 1)[0]
        if given in first and surname in last and surname.lower() not in _NOT_SURNAMES:
            yield Span(m.start(1), m.end(2), "person_name")


_DETECTORS = {
    "email": _emails,
    "phone": _phones,
    "street_address": _addresses,
    "credit_card": _cards,
    "us_ssn": _ssns,
    "uk_nino": _ninos,
    "iban": _ibans,
    "ip_address": _ips,
    "person_name": _person_names,
}

# When spans overlap, the more specific (checksummed / structured) type wins.
_PRIORITY = {
    t: i
    for i, t in enumerate(
        ("email", "iban", "credit_card", "us_ssn", "uk_nino", "ip_address", "phone", "street_address", "person_name")
    )
}


def detect(text: str, types: Iterable[str]) -> list[Span]:
    """Non-overlapping PII spans in `text`, sorted by position.

    Overlaps are resolved by type priority, then by length (a card number inside a longer phone-like run is
    one card, an e-mail's local part is not also a name).
    """
    found: list[Span] = []
    for t in types:
        found.extend(_DETECTORS[t](text))
    if len(found) <= 1:
        return found
    found.sort(key=lambda s: (_PRIORITY[s.type], -(s.end - s.start), s.start))
    kept: list[Span] = []
    for s in found:
        if all(s.end <= k.start or s.start >= k.end for k in kept):
            kept.append(s)
    kept.sort(key=lambda s: s.start)
    return kept


def scrub(text: str, spans: list[Span]) -> str:
    """Replace each span with its typed placeholder ([EMAIL], [PHONE], ...); `spans` sorted, non-overlapping."""
    if not spans:
        return text
    out, pos = [], 0
    for s in spans:
        out.append(text[pos : s.start])
        out.append(PLACEHOLDERS[s.type])
        pos = s.end
    out.append(text[pos:])
    return "".join(out)
