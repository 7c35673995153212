"""The pure parts of a Twilio call: the inline TwiML, the ring timeout, the status mapping."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from mqtt2sms.transports.base import CallResult
from mqtt2sms.transports.twilio import (
    SAY_LIMIT,
    call_outcome,
    ring_timeout,
    say_text,
    twiml,
)


def spoken(xml: str) -> list[tuple[str, str | None, dict[str, str]]]:
    """(tag, text, attributes) of each verb in a TwiML document, which must parse."""
    root = ET.fromstring(xml)
    assert root.tag == "Response"
    return [(el.tag, el.text, dict(el.attrib)) for el in root]


# -- TwiML ----------------------------------------------------------------------------------


def test_twiml_says_the_text_twice_with_a_pause_between() -> None:
    xml = twiml("Smoke in the kitchen. Code 417.")
    assert spoken(xml) == [
        ("Say", "Smoke in the kitchen. Code 417.", {}),
        ("Pause", None, {"length": "1"}),
        ("Say", "Smoke in the kitchen. Code 417.", {}),
    ]


def test_twiml_escapes_what_xml_would_read_as_markup() -> None:
    said = """Temp < 5 & door > open: "garage" 'north' </Say><Hangup/>"""
    xml = twiml(said)
    [(_, first, _), _, (_, second, _)] = spoken(xml)
    assert first == second == said  # read back exactly, no verb smuggled in
    for entity in ("&lt;", "&amp;", "&gt;", "&quot;", "&apos;"):
        assert entity in xml
    assert "<Hangup" not in xml


def test_twiml_drops_what_xml_cannot_hold_and_keeps_one_line() -> None:
    xml = twiml("Water\x00 leak\x07\n\tin\r\nthe \ufffebasement\x1b")
    [(_, first, _), *_] = spoken(xml)
    assert first == "Water leak in the basement"


def test_an_empty_text_still_says_something() -> None:
    [(_, first, _), *_] = spoken(twiml("  \n "))
    assert first == "Alert"


@pytest.mark.parametrize("said", ["&" * 5000, "'" * 5000, "x" * 20000, "a <b> " * 2000])
def test_twiml_stays_well_under_twilios_4000_characters(said: str) -> None:
    xml = twiml(said)
    assert len(xml) <= 2 * SAY_LIMIT + len(twiml("")) - 2 * len("Alert") < 4000 // 2
    [(_, first, _), _, (_, second, _)] = spoken(xml)  # never an entity cut in half
    assert first == second
    assert first is not None and first.endswith("...")
    assert said.startswith(first[:-3].rstrip())


def test_say_text_is_not_cut_when_it_fits() -> None:
    text = "y" * SAY_LIMIT
    assert say_text(text) == text
    assert say_text(text + "z").endswith("...")
    assert len(say_text("&" * SAY_LIMIT)) <= SAY_LIMIT


# -- Timeout ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ring_for", "timeout"), [(30.0, 30), (29.6, 30), (2.0, 2), (0.2, 1), (0.0, 1), (900.0, 600)]
)
def test_ring_for_becomes_whole_seconds_in_twilios_range(ring_for: float, timeout: int) -> None:
    assert ring_timeout(ring_for) == timeout


# -- status -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["queued", "initiated", "ringing", "in-progress", "", "new"])
def test_a_call_still_going_has_no_outcome_yet(status: str) -> None:
    assert call_outcome({"status": status}, answered=False) is None
    assert call_outcome({"status": status}, answered=True) is None


@pytest.mark.parametrize(
    ("call", "answered", "outcome"),
    [
        ({"status": "completed", "duration": "0"}, True, "answered"),
        ({"status": "completed", "duration": "14"}, False, "answered"),
        ({"status": "completed", "duration": "0"}, False, "no-answer"),
        ({"status": "completed", "duration": None}, False, "no-answer"),
        ({"status": "busy"}, False, "busy"),
        ({"status": "no-answer"}, False, "no-answer"),
        ({"status": "failed"}, False, "failed"),
        ({"status": "canceled"}, False, "canceled"),
    ],
)
def test_a_final_status_maps_to_an_outcome(
    call: dict[str, Any], answered: bool, outcome: str
) -> None:
    result = call_outcome(call, answered)
    assert isinstance(result, CallResult) and result.outcome == outcome
    assert call["status"] in result.detail


def test_an_answered_call_says_how_long_it_lasted() -> None:
    result = call_outcome({"status": "completed", "duration": "14"}, answered=True)
    assert result == CallResult("answered", "completed, 14 s")


def test_a_failed_call_carries_twilios_code_and_words() -> None:
    result = call_outcome(
        {"status": "failed", "error_code": 32009, "error_message": "carrier said no"}, False
    )
    assert result is not None and result.outcome == "failed"
    assert "32009" in result.detail and "carrier said no" in result.detail
