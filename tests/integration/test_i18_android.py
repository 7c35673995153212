"""Issue 18 with real parts: Mosquitto, the aiosmtpd sink, the fake of the Android gateway
app's local server (HTTP on 127.0.0.1), and the daemon as a subprocess.

What a user with `via: [android]` or `via: [android, smtp]` sees on `mqtt2sms/event`."""

from __future__ import annotations

import base64
import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.android import FakeAndroid

from .conftest import Mosquitto, Sink, base_config, running, wait_for

ALEX_E164 = "+15551234567"
ALEX_GATEWAY = "5551234567@tmomail.net"


@pytest.fixture
def phone() -> Iterator[FakeAndroid]:
    with FakeAndroid() as fake:
        yield fake


def android_section(fake: FakeAndroid, password: str | None = None, poll: str = "1s") -> str:
    return f"""
android:
  url: {fake.url}
  username: {fake.username}
  password: '{fake.password if password is None else password}'
  poll: {poll}
"""


def _alert(w: Any, message: str, to: str = "alex") -> None:
    w.publish("home/alerts/sms", json.dumps({"message": message, "to": to}))


def _secrets(fake: FakeAndroid, *passwords: str) -> list[str]:
    out = []
    for p in (fake.password, *passwords):
        out += [p, base64.b64encode(f"{fake.username}:{p}".encode()).decode()]
    return out


def test_a_text_via_android_reaches_the_phone_and_delivered_is_told(
    mosquitto: Mosquitto, sink: Sink, phone: FakeAndroid, daemon_factory: Any
) -> None:
    d = daemon_factory(
        base_config(
            mosquitto.port,
            sink.port,
            android_section(phone) + "defaults: {to: [alex], via: [android]}\n",
        )
    )
    w = running(d, mosquitto.port)
    try:
        _alert(w, "Smoke in the kitchen")
        sent = wait_for(lambda: w.states("sent"), 15, "a sent event")
        assert [(e["to"], e["via"]) for e in sent] == [("alex", "android")]
        [posted] = phone.posts()
        assert posted["phoneNumbers"] == [ALEX_E164]
        assert posted["textMessage"] == {"text": "Smoke in the kitchen"}
        assert posted["withDeliveryReport"] is True
        assert posted["id"]  # our text id: a resend after a crash is a 409, not a second text
        delivered = wait_for(lambda: w.states("delivered"), 15, "a delivered event")
        assert [(e["id"], e["via"]) for e in delivered] == [(sent[0]["id"], "android")]
        gets = [r for r in phone.requests if r.method == "GET" and r.path.startswith("/message/")]
        assert len(gets) >= 2 and all(r.path == f"/message/{posted['id']}" for r in gets)
        assert sink.mails == []
    finally:
        d.stop()
        w.close()
    log = d.logtext()
    for secret in _secrets(phone):
        assert secret not in log


def test_the_phone_off_moves_the_text_to_the_gateway_after_failover_after(
    mosquitto: Mosquitto, sink: Sink, daemon_factory: Any
) -> None:
    off = FakeAndroid(closed=True)  # nothing listens on its port
    d = daemon_factory(
        base_config(
            mosquitto.port,
            sink.port,
            android_section(off)
            + "defaults: {to: [alex], via: [android, smtp], failover_after: 2s}\n",
        )
    )
    w = running(d, mosquitto.port)
    try:
        start = time.monotonic()
        _alert(w, "Water leak")
        deferred = wait_for(lambda: w.states("deferred"), 10, "a deferred event (phone off)")
        assert deferred[0]["via"] == "android", deferred
        assert "connection refused" in str(deferred[0].get("error")), deferred
        assert sink.mails == []  # not before failover_after
        wait_for(lambda: len(sink.mails) >= 1, 20, "the text through the gateway")
        took = time.monotonic() - start
        [mail] = sink.mails
        assert mail.rcpts == [ALEX_GATEWAY] and "Water leak" in mail.body
        assert took >= 2.0, took
        sent = wait_for(lambda: w.states("sent"), 10, "a sent event")
        assert [(e["to"], e["via"]) for e in sent] == [("alex", "smtp")]
    finally:
        d.stop()
        w.close()
    log = d.logtext()
    for secret in _secrets(off):
        assert secret not in log


def test_a_wrong_password_is_refused_reported_never_logged_and_the_fix_sends(
    mosquitto: Mosquitto, sink: Sink, phone: FakeAndroid, daemon_factory: Any
) -> None:
    wrong = "wrong-Passw0rd-xyz"
    right = android_section(phone) + "defaults: {to: [alex], via: [android]}\n"
    d = daemon_factory(
        base_config(
            mosquitto.port,
            sink.port,
            android_section(phone, password=wrong) + "defaults: {to: [alex], via: [android]}\n",
        )
    )
    w = running(d, mosquitto.port)
    try:
        _alert(w, "Smoke")
        told = wait_for(
            lambda: [e for e in w.events if "401" in str(e.get("error"))],
            10,
            "the password refused",
        )
        assert told[0]["via"] == "android", told
        assert phone.posts() == []  # refused: nothing sent
        assert any(not r.authorized for r in phone.requests)
        events_then = json.dumps(w.events)
        d.write_config(base_config(mosquitto.port, sink.port, right))
        d.signal(signal.SIGHUP)
        sent = wait_for(lambda: w.states("sent"), 15, "the text sent with the right password")
        assert [(e["to"], e["via"]) for e in sent] == [("alex", "android")]
        assert [p["textMessage"]["text"] for p in phone.posts()] == ["Smoke"]
    finally:
        d.stop()
        w.close()
    log = d.logtext()
    assert "401" in log
    for secret in _secrets(phone, wrong):
        assert secret not in log
        assert secret not in events_then
        assert secret not in json.dumps(w.events)


def test_a_kill_between_the_phones_taking_a_text_and_our_record_of_it_sends_it_once(
    mosquitto: Mosquitto, sink: Sink, phone: FakeAndroid, daemon_factory: Any
) -> None:
    d = daemon_factory(
        base_config(
            mosquitto.port,
            sink.port,
            android_section(phone) + "defaults: {to: [alex], via: [android]}\n",
        )
    )
    w = running(d, mosquitto.port)
    try:
        phone.answer_delay = 3.0  # the phone takes the text; its 202 is slow
        _alert(w, "Smoke in the hall")
        wait_for(lambda: phone.messages, 10, "the phone has the text")
        d.kill()  # kill -9 before our record of the 202
        phone.answer_delay = 0.0
        d.start()
        wait_for(lambda: w.states("sent"), 20, "the text recorded as sent after the restart")
        posts = [r for r in phone.requests if r.method == "POST"]
        assert len(posts) == 2  # sent again with the same id ...
        assert len(phone.messages) == 1  # ... which the phone answers 409: one text
        assert {p.body["id"] for p in posts} == set(phone.messages)
    finally:
        d.stop()
        w.close()
