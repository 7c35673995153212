"""What a received text becomes on <base>/received (polling.received_body): pure."""

from __future__ import annotations

import datetime as dt

import pytest

from mqtt2sms.config import Config, parse_config
from mqtt2sms.polling import received_body
from mqtt2sms.transports.base import ReceivedText

AT = dt.datetime(2026, 12, 5, 6, 0, tzinfo=dt.UTC)


def config(received: str) -> Config:
    text = f"""
contacts:
  alex: {{number: "+1 (555) 123-4567", carrier: tmobile}}
  sam: {{email: "5557654321@vtext.com"}}
received: {received}
state_dir: /nonexistent
"""
    return parse_config(text, "config.yaml", {}).config


@pytest.mark.parametrize("sender", ["+15551234567", "5551234567", "15551234567"])
def test_a_contact_is_known_in_any_form_and_said_in_e164(sender: str) -> None:
    body = received_body(config("contacts"), "modem", ReceivedText(sender, "ok 417"), AT)
    assert body == {
        "from": "+15551234567",
        "contact": "alex",
        "text": "ok 417",
        "via": "modem",
        "at": "2026-12-05T06:00:00+00:00",
    }


def test_a_gateway_contact_is_known_by_the_digits_of_its_address() -> None:
    body = received_body(config("contacts"), "twilio", ReceivedText("+15557654321", "hi"), AT)
    assert body is not None and body["contact"] == "sam"


def test_strangers_only_with_all_and_nothing_with_none() -> None:
    rx = ReceivedText("+15559990000", "who is this", AT)
    assert received_body(config("contacts"), "android", rx, AT) is None
    body = received_body(config("all"), "android", rx, AT)
    assert body is not None and body["contact"] is None and body["from"] == "+15559990000"
    alex = ReceivedText("+15551234567", "hi")
    assert received_body(config("none"), "android", alex, AT) is None


def test_a_short_code_sender_stays_as_it_is() -> None:
    body = received_body(config("all"), "twilio", ReceivedText("TWILIO", "code 12"), AT)
    assert body is not None and body["from"] == "TWILIO" and body["contact"] is None
