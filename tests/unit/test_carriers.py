"""The gateway table and phone numbers."""

from __future__ import annotations

import pytest

from mqtt2sms import carriers
from mqtt2sms.carriers import CARRIERS, gateway_address, lookup, normalize_number, suggest


@pytest.mark.parametrize(
    ("number", "cc", "e164"),
    [
        ("+1 (555) 123-4567", "1", "+15551234567"),
        ("555-123-4567", "1", "+15551234567"),
        ("5551234567", "1", "+15551234567"),
        ("15551234567", "1", "+15551234567"),
        ("1-555-123-4567", "1", "+15551234567"),
        ("(555) 123.4567", "+1", "+15551234567"),
        ("  5551234567  ", "1", "+15551234567"),
        ("+44 7700 900123", "1", "+447700900123"),
        ("07700 900123", "44", "+447700900123"),
        ("0015551234567", "44", "+15551234567"),
    ],
)
def test_normalize_number_good(number: str, cc: str, e164: str) -> None:
    assert normalize_number(number, cc) == e164


@pytest.mark.parametrize(
    ("number", "cc", "words"),
    [
        ("", "1", "empty"),
        ("call me", "1", "letters"),
        ("555-CALL-NOW", "1", "letters"),
        ("5551234567x12", "1", "letters"),
        ("555-1234", "1", "7 digits"),
        ("555123456789", "1", "12 digits"),
        ("25551234567", "1", "11 digits"),
        ("+1 555 123 456", "1", r"\+1 number"),
        ("+4412", "1", "international"),
        ("555#1234567", "1", "characters"),
        ("5551234567", "abc", "country code"),
    ],
)
def test_normalize_number_bad(number: str, cc: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        normalize_number(number, cc)


def test_gateway_address_wants_the_national_number() -> None:
    assert gateway_address("+1 (555) 123-4567", "tmobile", "1") == "5551234567@tmomail.net"
    assert gateway_address("5557654321", "verizon", "1") == "5557654321@vtext.com"
    assert gateway_address("15557654321", CARRIERS["bell"], "1") == "5557654321@txt.bell.ca"


def test_gateway_address_refuses_unknown_carrier_and_foreign_number() -> None:
    with pytest.raises(ValueError, match="unknown carrier"):
        gateway_address("5551234567", "nope", "1")
    with pytest.raises(ValueError, match=r"\+1 numbers"):
        gateway_address("+447700900123", "tmobile", "1")


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("tmobile", "tmobile"),
        ("T-Mobile", "tmobile"),
        ("t mobile", "tmobile"),
        ("AT&T", "att"),
        ("at&t", "att"),
        ("ATT", "att"),
        ("Google Fi", "googlefi"),
        ("google-fi", "googlefi"),
        ("U.S. Cellular", "uscellular"),
        ("Metro by T-Mobile", "metropcs"),
        ("Virgin Plus", "virginca"),
        ("Straight Talk", "straighttalk"),
    ],
)
def test_lookup_aliases(name: str, key: str) -> None:
    found = lookup(name)
    assert found is not None
    assert found.key == key


def test_lookup_unknown_and_suggest() -> None:
    assert lookup("nosuchcarrier") is None
    assert suggest("tmobil") == "tmobile"
    assert suggest("verison") == "verizon"
    assert suggest("zzzzzzzz") is None


def test_statuses_are_honest() -> None:
    assert CARRIERS["att"].status == carriers.SHUT_DOWN
    assert CARRIERS["att"].domain == "txt.att.net"
    assert "2025-06-17" in CARRIERS["att"].note
    assert CARRIERS["sprint"].status == carriers.SHUT_DOWN
    assert CARRIERS["rogers"].status == carriers.SHUT_DOWN
    assert CARRIERS["verizon"].status == carriers.UNVERIFIED
    assert "retire" in CARRIERS["verizon"].note
    assert CARRIERS["tmobile"].status == carriers.ACTIVE
    assert CARRIERS["tmobile"].note


def test_table_is_well_formed() -> None:
    expected = {
        "tmobile": "tmomail.net",
        "verizon": "vtext.com",
        "uscellular": "email.uscc.net",
        "cricket": "sms.cricketwireless.net",
        "googlefi": "msg.fi.google.com",
        "mint": "tmomail.net",
        "boost": "sms.myboostmobile.com",
        "metropcs": "mymetropcs.com",
        "visible": "vtext.com",
        "bell": "txt.bell.ca",
        "telus": "msg.telus.com",
        "rogers": "pcs.rogers.com",
    }
    for key, domain in expected.items():
        assert CARRIERS[key].domain == domain
    for key, carrier in CARRIERS.items():
        assert carrier.key == key
        assert carrier.status in carriers.STATUSES
        assert carrier.country in ("US", "CA")
        assert carrier.digits == 10
        if carrier.status == carriers.SHUT_DOWN:
            assert carrier.alternative
    for key in ("consumercellular", "republic", "ting", "xfinity", "straighttalk", "tracfone"):
        assert CARRIERS[key].country == "US"
    for key in ("fido", "koodo", "virginca", "freedom"):
        assert CARRIERS[key].country == "CA"


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        CARRIERS["x"] = CARRIERS["att"]  # type: ignore[index]
