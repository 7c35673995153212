"""The pure parts of transports/twilio.py: status mapping, error words, received texts."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from mqtt2sms.transports.twilio import (
    STATES,
    describe_error,
    explain,
    new_inbound,
    parse_date,
    report_for,
)

# Twilio's Message status values (Message resource docs); receiving/received are inbound.
OUTBOUND = [
    "queued", "sending", "sent", "delivered", "undelivered", "failed", "read", "canceled",
    "accepted", "scheduled", "partially_delivered",
]  # fmt: skip


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("queued", "pending"),
        ("accepted", "pending"),
        ("scheduled", "pending"),
        ("sending", "pending"),
        ("sent", "pending"),
        ("delivered", "delivered"),
        ("read", "delivered"),
        ("undelivered", "undelivered"),
        ("failed", "undelivered"),
        ("canceled", "undelivered"),
        ("something-new", "pending"),
        ("", "pending"),
    ],
)
def test_status_mapping(status: str, state: str) -> None:
    assert report_for({"status": status}, "SM1").state == state


def test_every_documented_outbound_status_is_mapped() -> None:
    assert set(OUTBOUND) <= set(STATES)


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (30003, "unreachable"),
        (30005, "unknown"),
        (30006, "landline"),
        (30007, "filtered"),
        (30032, "toll-free"),
        (30034, "10DLC"),
        (30532, "personal use"),
    ],
)
def test_undelivered_reports_name_the_code_and_its_meaning(code: int, words: str) -> None:
    report = report_for({"status": "undelivered", "error_code": code}, "SM1")
    assert report.state == "undelivered" and report.remote_id == "SM1"
    assert str(code) in report.detail and words in report.detail


def test_an_unknown_error_code_keeps_twilios_message() -> None:
    report = report_for(
        {"status": "failed", "error_code": "30999", "error_message": "Something odd"}, "SM1"
    )
    assert report.detail == "failed: Twilio 30999: Something odd"


def test_a_failed_report_without_a_code_says_its_status() -> None:
    assert report_for({"status": "failed", "error_code": None}, "SM1").detail == "failed"


def test_describe_error_uses_code_message_and_detail() -> None:
    body = {
        "code": 20003,
        "message": "Authenticate",
        "detail": "Your AccountSid or AuthToken was incorrect.",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    words = describe_error(401, body)
    assert words is not None
    assert words.startswith("Twilio 20003: authentication failed")
    assert "AuthToken was incorrect" in words


def test_describe_error_of_21610_says_stop_and_start() -> None:
    words = describe_error(400, {"code": 21610, "message": "Attempt to send"}) or ""
    assert "STOP" in words and "START" in words and "21610" in words


@pytest.mark.parametrize("body", [None, "oops", [], {"foo": 1}])
def test_describe_error_of_a_body_that_is_not_twilios(body: Any) -> None:
    assert describe_error(500, body) is None


def test_explain_does_not_repeat_the_same_words() -> None:
    assert explain(20429, "Too Many Requests") == "Twilio 20429: too many requests"


def test_parse_date() -> None:
    assert parse_date("Fri, 13 Aug 2010 01:16:24 +0000") == dt.datetime(
        2010, 8, 13, 1, 16, 24, tzinfo=dt.UTC
    )
    assert parse_date(None) is None
    assert parse_date("yesterday") is None
    assert parse_date("") is None


def msg(sid: str, second: int, *, direction: str = "inbound", **kw: Any) -> dict[str, Any]:
    date = f"Sat, 05 Dec 2026 12:00:{second:02d} +0000"
    return {
        "sid": sid,
        "from": "+15551230001",
        "to": "+15550001111",
        "body": f"text {sid}",
        "direction": direction,
        "status": "received" if direction == "inbound" else "delivered",
        "date_sent": date,
        "date_created": date,
    } | kw


def test_first_look_takes_the_mark_and_returns_nothing() -> None:
    got, mark = new_inbound([msg("SM2", 2), msg("SM1", 1)], None)
    assert got == [] and mark.startswith("SM2@")


def test_later_looks_return_only_new_inbound_texts_oldest_first() -> None:
    _, mark = new_inbound([msg("SM1", 1)], None)
    page = [msg("SM4", 4), msg("SM3", 3, direction="outbound-api"), msg("SM2", 2), msg("SM1", 1)]
    got, mark2 = new_inbound(page, mark)
    assert [(r.remote_id, r.text) for r in got] == [("SM2", "text SM2"), ("SM4", "text SM4")]
    assert got[0].sender == "+15551230001"
    assert got[0].at == dt.datetime(2026, 12, 5, 12, 0, 2, tzinfo=dt.UTC)
    assert mark2.startswith("SM4@")
    assert new_inbound(page, mark2) == ([], mark2)


def test_an_empty_first_look_makes_every_later_text_new() -> None:
    got, mark = new_inbound([], None)
    assert got == []
    got, _ = new_inbound([msg("SM1", 1)], mark)
    assert [r.remote_id for r in got] == ["SM1"]


def test_a_mark_whose_message_is_gone_stops_at_its_date() -> None:
    _, mark = new_inbound([msg("SM5", 5)], None)
    page = [msg("SM7", 7), msg("SM6", 6), msg("SM3", 3)]  # SM5 deleted
    got, _ = new_inbound(page, mark)
    assert [r.remote_id for r in got] == ["SM6", "SM7"]


def test_a_message_still_receiving_is_not_stepped_over() -> None:
    _, mark = new_inbound([msg("SM1", 1)], None)
    page = [msg("SM4", 4), msg("SM3", 3, status="receiving"), msg("SM2", 2), msg("SM1", 1)]
    got, mark2 = new_inbound(page, mark)
    assert [r.remote_id for r in got] == ["SM2"]
    assert mark2.startswith("SM2@")
    page[1] = msg("SM3", 3)
    got, _ = new_inbound(page, mark2)
    assert [r.remote_id for r in got] == ["SM3", "SM4"]


def test_a_mark_that_cannot_be_read_still_stops_at_its_sid() -> None:
    got, mark = new_inbound([msg("SM2", 2), msg("SM1", 1)], "SM1@not-a-date")
    assert [r.remote_id for r in got] == ["SM2"] and mark.startswith("SM2@")
