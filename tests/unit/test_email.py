"""build_email: pure, and no header ever carries a line break or control character."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqtt2sms.errors import PermanentDeliveryError, TemporaryDeliveryError
from mqtt2sms.transports.base import OutgoingText
from mqtt2sms.transports.smtp import build_email, parse_from

NOW = datetime(2026, 11, 3, 7, 30, tzinfo=timezone(timedelta(hours=-5)))
TO = "5551234567@vtext.com"
HEADERS = {"From", "To", "Date", "Message-ID", "MIME-Version", "Content-Type"}


def build(
    body: str = "Leak in the basement", subject: str | None = None, address: str = TO
) -> bytes:
    text = OutgoingText("42", address, body, subject)
    return build_email(text, "House <house@example.org>", NOW, "example.org").as_bytes()


def parse(raw: bytes) -> EmailMessage:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_headers_and_7bit_body() -> None:
    raw = build()
    msg = parse(raw)
    assert set(msg.keys()) == HEADERS | {"Content-Transfer-Encoding"}
    assert msg["From"] == "House <house@example.org>"
    assert msg["To"] == TO
    assert msg["Date"] == "Tue, 03 Nov 2026 07:30:00 -0500"
    assert msg["Message-ID"] == "<42@example.org>"
    assert msg["Content-Transfer-Encoding"] == "7bit"
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content() == "Leak in the basement\r\n"
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")


def test_message_id_is_stable_and_safe() -> None:
    text = OutgoingText("a b<c>@d", TO, "x")
    first = build_email(text, "h@example.org", NOW, "example.org")
    again = build_email(text, "h@example.org", NOW + timedelta(hours=1), "example.org")
    assert first["Message-ID"] == again["Message-ID"] == "<a-b-c--d@example.org>"


def test_subject_only_when_set() -> None:
    assert "Subject" not in parse(build(subject=None))
    assert "Subject" not in parse(build(subject=""))
    assert "Subject" not in parse(build(subject="\r\n \t"))
    assert parse(build(subject="Alarm")).get("Subject") == "Alarm"


def test_long_ascii_line_stays_7bit() -> None:
    body = "x" * 600
    msg = parse(build(body=body))
    assert msg["Content-Transfer-Encoding"] == "7bit"
    assert msg.get_content() == body + "\r\n"


def test_non_ascii_body_is_quoted_printable_utf8() -> None:
    msg = parse(build(body="Température 31 °C 🔥"))
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert msg.get_content_charset() == "utf-8"
    assert msg.get_content().strip() == "Température 31 °C 🔥"


def test_injection_attempts_stay_inside_their_header() -> None:
    raw = build(subject="hi\r\nBcc: evil@x", body="b\r\nBcc: evil@x")
    msg = parse(raw)
    assert "Bcc" not in msg
    assert msg["Subject"] == "hi Bcc: evil@x"


@pytest.mark.parametrize(
    "address", [TO + "\r\nBcc: evil@x", "a@b, c@d", "Name <a@b.c>", "nobody", "a@", " ", "é@x.y"]
)
def test_bad_address_is_permanent(address: str) -> None:
    with pytest.raises(PermanentDeliveryError):
        build(address=address)


def test_control_characters_are_stripped_from_the_address() -> None:
    assert parse(build(address="555\x001234567@vtext.com\r\n"))["To"] == TO


def test_bad_from_is_a_transport_error() -> None:
    with pytest.raises(TemporaryDeliveryError) as info:
        build_email(OutgoingText("1", TO, "x"), "a@b, c@d", NOW, "b")
    assert info.value.scope == "transport"
    assert parse_from("House <house@example.org>") == ("House", "house@example.org")


@given(subject=st.text(), body=st.text(), text_id=st.text(min_size=1))
def test_no_header_carries_control_characters(subject: str, body: str, text_id: str) -> None:
    text = OutgoingText(text_id, TO, body, subject)
    built = build_email(text, "house@example.org", datetime(2026, 1, 1, tzinfo=UTC), "x.org")
    for name, value in built.items():
        assert not any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in str(value)), name
    raw = built.as_bytes()
    head = raw.split(b"\r\n\r\n", 1)[0]
    # every physical header line is a new field or a folded continuation of one
    names = [line.split(b":", 1)[0] for line in head.split(b"\r\n") if line[:1] not in b" \t"]
    expected = {b"From", b"To", b"Date", b"Message-ID", b"MIME-Version", b"Content-Type"}
    expected |= {b"Content-Transfer-Encoding"} | ({b"Subject"} if "Subject" in built else set())
    assert sorted(names) == sorted(expected)
    parsed = parse(raw)
    assert parsed.get_all("To") == [TO]
    if "Subject" in built:  # what was meant arrives, only the whitespace may differ
        assert parsed["Subject"].split() == built["Subject"].split()
