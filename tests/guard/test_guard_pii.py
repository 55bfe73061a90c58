"""PII recognisers: validation (Luhn, mod-97) and the masks."""

import pytest

from lmforge.guard import GuardPolicy, check_output
from lmforge.guard.pii import find_cards, find_ibans, find_ips, iban_valid, luhn_valid

REDACT = GuardPolicy(pii="redact")


@pytest.mark.parametrize(
    "number, valid",
    [
        ("4111 1111 1111 1111", True),
        ("4111-1111-1111-1111", True),
        ("378282246310005", True),  # 15 digits
        ("4111 1111 1111 1112", False),  # last digit off
        ("0000 0000 0000 0001", False),
        ("1234", False),  # too short
        ("4111 1111 1111 111a", False),
    ],
)
def test_luhn(number, valid):
    assert luhn_valid(number) is valid
    assert bool(find_cards(f"card {number} ok")) is valid


@pytest.mark.parametrize(
    "iban, valid",
    [
        ("GB82 WEST 1234 5698 7654 32", True),
        ("GB82WEST12345698765432", True),
        ("DE89 3704 0044 0532 0130 00", True),
        ("GB00 WEST 1234 5698 7654 32", False),  # wrong check digits
        ("GB82 WEST 1234 5698 7654 3", False),  # wrong length for GB
        ("XX82 WEST 1234 5698 7654 32", False),  # unknown country
    ],
)
def test_iban_mod97(iban, valid):
    assert iban_valid(iban) is valid
    assert bool(find_ibans(f"pay {iban} THANKS")) is valid


def test_iban_followed_by_capitals_keeps_its_own_span():
    text = "Pay GB82 WEST 1234 5698 7654 32 NOW"
    [f] = find_ibans(text)
    assert text[f.start : f.end] == "GB82 WEST 1234 5698 7654 32"


@pytest.mark.parametrize(
    "text, masked",
    [
        ("Call me on 415-555-0132 tonight.", "Call me on [PHONE] tonight."),
        ("Mail ana.b+x@example.co.uk now", "Mail [EMAIL] now"),
        ("Card: 4111 1111 1111 1111.", "Card: [CARD]."),
        ("IBAN GB82WEST12345698765432", "IBAN [IBAN]"),
        ("From 203.0.113.9 and 2001:db8::1", "From [IP] and [IP]"),
        ("Hi, my name is Ada Lovelace.", "Hi, my name is [NAME]."),
        ("Ring +44 20 7946 0321 or (212) 555-0187", "Ring [PHONE] or [PHONE]"),
    ],
)
def test_masks(text, masked):
    assert check_output(text, REDACT).text == masked


@pytest.mark.parametrize(
    "text",
    [
        "Python 3.11.4 was released",
        "meet at 10:30:00",
        "999.1.1.1 is not an address",
        "order 1234 5678 shipped",
        "I am happy to help",
        "0000 0000 0000 0001 fails Luhn",
    ],
)
def test_no_false_match(text):
    assert check_output(text, REDACT).findings == []


def test_ip_validation():
    assert not find_ips("256.1.1.1") and find_ips("255.1.1.1")
