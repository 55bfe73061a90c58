"""Personal data in text: emails, phone numbers, card numbers (Luhn), IBANs (mod-97), IP
addresses and names, found by patterns with validation, all local.

Why not presidio-analyzer: we tried it (`pip install presidio-analyzer`, 2.2.x). Its default
`AnalyzerEngine()` downloads a spaCy model (en_core_web_lg) at run time, which fails offline;
spaCy's own models are not published on PyPI (only third-party re-uploads are). With a blank
spaCy pipeline its pattern recognisers do work, but then it finds no names either, its email
and URL recognisers try to fetch the public-suffix list from the network on first use, and it
brings spaCy, thinc and ~370 MB of dependencies for a dozen regular expressions. So lmforge
writes its pattern recognisers itself, here, with the same validations (Luhn, mod-97,
`ipaddress`) and a small trigger-phrase recogniser for names ("my name is ...", "Dr ...").

Each recogniser also gives a `tail` pattern: a regex anchored at the end of a text that
matches any unfinished prefix of what it recognises. The stream redactor holds back the
earliest such tail, so that a phone number split across deltas is still masked.
"""

from __future__ import annotations

import ipaddress
import re

from lmforge.guard.detectors import register
from lmforge.guard.finding import Finding

# -- validation -------------------------------------------------------------------------


def luhn_valid(number: str) -> bool:
    """The Luhn checksum of a card number (spaces and dashes ignored; 13-19 digits)."""
    digits = [int(c) for c in number if c.isdigit()]
    if len(digits) != sum(c not in " -" for c in number) or not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# ISO 13616 lengths of the countries whose IBANs we accept (the SEPA area and a few more).
IBAN_LENGTHS = {
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18,
    "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GI": 23, "GR": 27, "HR": 21, "HU": 28,
    "IE": 22, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31,
    "NL": 18, "NO": 15, "PL": 28, "PT": 25, "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
    "TR": 26, "UA": 29,
}  # fmt: skip


def iban_valid(iban: str) -> bool:
    """Country length and the ISO 7064 mod-97 check of an IBAN (spaces ignored)."""
    compact = iban.replace(" ", "").upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]+", compact):
        return False
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rotated = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rotated)) % 97 == 1


# -- recognisers ------------------------------------------------------------------------

EMAIL = re.compile(
    r"(?<![\w.+%-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![\w@-])"
)
PHONE = re.compile(
    r"(?<![\w+])(?<!\d[ .-])(?:"
    r"\+\d{1,3}[ .-]?(?:\(0?\d{1,4}\)[ .-]?)?\d{1,5}(?:[ .-]?\d{2,5}){1,4}"  # +44 20 7946 0321
    r"|\(\d{3}\)[ .-]?\d{3}[ .-]?\d{4}"  # (415) 555-0132
    r"|\d{3}[.-]\d{3}[.-]\d{4}"  # 415-555-0132, 415.555.0132
    r"|0\d{2,4}[ .-]?\d{3,4}[ .-]?\d{3,4}"  # 020 7946 0321, 07700 900123
    r")(?![\w])(?![ .-]\d)"  # not part of a longer run of digit groups
)
CARD = re.compile(r"(?<![\w.+-])\d(?:[ -]?\d){12,18}(?![\w])")
IBAN = re.compile(r"(?<![\w])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![\w])")
IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")
NAME_WORD = r"[A-Z][a-z]+(?:['-][A-Z]?[a-z]+)?"
NAME = re.compile(
    r"(?:\b(?i:my name is|my name's|i am|i'm|call me|name:|signed|regards,|sincerely,)"
    r"|\b(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?)\s+"
    rf"(?P<name>{NAME_WORD}(?: {NAME_WORD}){{0,2}})(?![\w'-])"
)
# Capitalised words that follow "I am" and the like but are not names.
NOT_NAMES = frozenset(
    [
        "I",
        "A",
        "An",
        "The",
        "This",
        "That",
        "It",
        "Here",
        "There",
        "Sorry",
        "Happy",
        "Glad",
        "Fine",
        "Not",
        "Very",
        "So",
        "Just",
        "Also",
        "Still",
        "Now",
        "Going",
        "Looking",
        "Trying",
        "Working",
        "Ready",
        "Sure",
        "Afraid",
        "Back",
        "Done",
        "New",
        "Tired",
        "Busy",
        "Interested",
        "English",
        "French",
        "German",
        "Spanish",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Please",
        "Thanks",
        "Thank",
        "Hello",
        "Hi",
        "Dear",
        "Team",
        "All",
        "Everyone",
        "Sir",
        "Madam",
        "Customer",
        "Support",
        "Admin",
        "User",
    ]
)

# Tails: any unfinished prefix of a match, at the very end of the text (see the module doc).
TAIL = re.compile(
    r"(?:"
    r"[+(]?\d[\d ().-]*"  # digits and separators: phones, cards, IPv4, IBAN digit groups
    r"|[+(]"  # the first character of a phone number
    r"|[A-Za-z0-9._%+-]+(?:@[A-Za-z0-9.-]*)?"  # a word, maybe an email being written
    r"|[A-Z]{2}\d{2}[ A-Z0-9]*"  # an IBAN in groups of four
    r"|[0-9A-Fa-f]*:[0-9A-Fa-f:]*"  # an IPv6 address
    r"|\b(?:(?i:my name is|my name's|i am|i'm|call me|name:|signed|regards,|sincerely,)"
    r"|(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?)\s*(?:[A-Z][A-Za-z'-]*\s?){0,3}"  # a name being introduced
    r")$"
)


def _finding(detector: str, kind: str, start: int, end: int, reason: str) -> Finding:
    return Finding("pii", detector, kind, start, end, 1.0, reason)


@register("pii-email", "pii")
def find_emails(text: str) -> list[Finding]:
    """Email addresses (local@domain.tld)."""
    return [
        _finding("pii-email", "email", m.start(), m.end(), "email address")
        for m in EMAIL.finditer(text)
    ]


@register("pii-phone", "pii")
def find_phones(text: str) -> list[Finding]:
    """Phone numbers: international (+CC), North American and national (0...) forms, 7-15 digits."""
    found = []
    for m in PHONE.finditer(text):
        digits = sum(c.isdigit() for c in m.group())
        # Not a phone: too short/long, or a dotted group that is really an IPv4 address.
        if 7 <= digits <= 15 and not IPV4.fullmatch(m.group()):
            found.append(_finding("pii-phone", "phone", m.start(), m.end(), "phone number"))
    return found


@register("pii-card", "pii")
def find_cards(text: str) -> list[Finding]:
    """Payment card numbers: 13-19 digits (spaced or dashed) that pass the Luhn check."""
    return [
        _finding("pii-card", "card", m.start(), m.end(), "card number (Luhn valid)")
        for m in CARD.finditer(text)
        if luhn_valid(m.group())
    ]


@register("pii-iban", "pii")
def find_ibans(text: str) -> list[Finding]:
    """IBANs, compact or in groups of four, that pass the country length and mod-97 check."""
    found = []
    for m in IBAN.finditer(text):
        # The pattern is greedy: a trailing word in capitals may have joined; drop words from
        # the end until the rest validates.
        candidate = m.group()
        while candidate and not iban_valid(candidate):
            candidate = candidate[: candidate.rfind(" ")] if " " in candidate else ""
        if candidate:
            end = m.start() + len(candidate)
            found.append(_finding("pii-iban", "iban", m.start(), end, "IBAN (mod-97 valid)"))
    return found


@register("pii-ip", "pii")
def find_ips(text: str) -> list[Finding]:
    """IPv4 and IPv6 addresses (validated by `ipaddress`)."""
    found = []
    for pattern in (IPV4, IPV6):
        for m in pattern.finditer(text):
            try:
                ipaddress.ip_address(m.group())
            except ValueError:
                continue
            found.append(_finding("pii-ip", "ip", m.start(), m.end(), "IP address"))
    return found


@register("pii-name", "pii")
def find_names(text: str) -> list[Finding]:
    """Person names introduced by a phrase ("my name is", "I'm", "Dr", "regards,")."""
    found = []
    for m in NAME.finditer(text):
        words = m.group("name").split(" ")
        while words and words[-1] in NOT_NAMES:
            words.pop()
        if words and words[0] not in NOT_NAMES:
            start = m.start("name")
            end = start + len(" ".join(words))
            found.append(_finding("pii-name", "name", start, end, "person name"))
    return found


def tail_start(text: str) -> int:
    """Where the unfinished tail of `text` that could still grow into personal data begins
    (`len(text)` if none could)."""
    m = TAIL.search(text)
    return m.start() if m else len(text)
