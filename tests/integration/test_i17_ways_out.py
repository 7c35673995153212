"""Issue 17 with real parts: Mosquitto, the aiosmtpd sink, the fake Twilio (HTTP on
127.0.0.1), the fake modem on a pty, and the daemon as a subprocess.

What a user with `via: [smtp, twilio]` or a USB modem sees on `mqtt2sms/event`."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.modem import FakeModem
from tests.fakes.twilio import FakeTwilio

from .conftest import Mosquitto, Sink, Watcher, base_config, running, wait_for

ALEX_E164 = "+15551234567"
ALEX_GATEWAY = "5551234567@tmomail.net"


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as tw:
        yield tw


def twilio_section(tw: FakeTwilio, poll: str = "1s") -> str:
    return f"""
twilio:
  account_sid: {tw.account_sid}
  auth_token: {tw.auth_token}
  from: "{tw.number}"
  api_base: {tw.url}
  poll: {poll}
"""


def config(mosquitto: Mosquitto, smtp_port: int | None, extra: str) -> str:
    return base_config(mosquitto.port, smtp_port, extra)


def _events(w: Watcher, text_id: str) -> list[dict[str, Any]]:
    with w.lock:
        return [e for e in w.events if e.get("id") == text_id]


def _alert(w: Watcher, message: str, to: str = "alex") -> None:
    w.publish("home/alerts/sms", json.dumps({"message": message, "to": to}))


def test_a_gateway_refusal_moves_the_text_to_twilio_and_delivered_is_told(
    mosquitto: Mosquitto, sink: Sink, twilio: FakeTwilio, daemon_factory: Any
) -> None:
    sink.handler.reject_rcpt.add(ALEX_GATEWAY)
    d = daemon_factory(
        config(
            mosquitto,
            sink.port,
            twilio_section(twilio) + "defaults: {to: [alex], via: [smtp, twilio]}\n",
        )
    )
    w = running(d, mosquitto.port)
    try:
        _alert(w, "Smoke in the kitchen")
        sent = wait_for(lambda: w.states("sent"), 15, "a sent event")
        assert [(e["to"], e["via"]) for e in sent] == [("alex", "twilio")]
        [message] = twilio.sent()
        assert (message["to"], message["from"], message["body"]) == (
            ALEX_E164,
            twilio.number,
            "Smoke in the kitchen",
        )
        assert sink.mails == []  # the gateway refused it
        delivered = wait_for(lambda: w.states("delivered"), 15, "a delivered event")
        assert [(e["id"], e["via"]) for e in delivered] == [(sent[0]["id"], "twilio")]
        # the fake moved queued -> sent -> delivered, one step per GET of the message
        gets = [r for r in twilio.requests if r.method == "GET" and message["sid"] in r.path]
        assert len(gets) >= 2
    finally:
        d.stop()
        w.close()
    assert twilio.auth_token not in d.logtext()


def test_an_smtp_outage_moves_the_text_to_twilio_after_failover_after(
    mosquitto: Mosquitto, twilio: FakeTwilio, daemon_factory: Any
) -> None:
    sink = Sink()  # never started: the gateway's relay is down
    d = daemon_factory(
        config(
            mosquitto,
            sink.port,
            twilio_section(twilio)
            + "defaults: {to: [alex], via: [smtp, twilio], failover_after: 2s}\n",
        )
    )
    w = running(d, mosquitto.port)
    try:
        start = time.monotonic()
        _alert(w, "Water leak")
        wait_for(lambda: w.states("deferred"), 10, "a deferred event (smtp down)")
        assert twilio.sent() == []  # not before failover_after
        sent = wait_for(lambda: w.states("sent"), 20, "a sent event through twilio")
        took = time.monotonic() - start
        assert [(e["to"], e["via"]) for e in sent] == [("alex", "twilio")]
        assert took >= 2.0, took
        assert [m["body"] for m in twilio.sent()] == ["Water leak"]
        wait_for(lambda: w.states("delivered"), 15, "a delivered event")
    finally:
        d.stop()
        w.close()
    assert twilio.auth_token not in d.logtext()


def test_an_undelivered_report_moves_the_text_to_the_next_way_out(
    mosquitto: Mosquitto, sink: Sink, twilio: FakeTwilio, daemon_factory: Any
) -> None:
    twilio.script(ALEX_E164, ["sent", ("undelivered", 30003)])
    d = daemon_factory(
        config(
            mosquitto,
            sink.port,
            twilio_section(twilio) + "defaults: {to: [alex], via: [twilio, smtp]}\n",
        )
    )
    w = running(d, mosquitto.port)
    try:
        _alert(w, "Door open")
        wait_for(lambda: len(sink.mails) >= 1, 20, "the text through the gateway")
        [mail] = sink.mails
        assert mail.rcpts == [ALEX_GATEWAY] and "Door open" in mail.body
        [message] = twilio.sent()
        text_id = w.states("sent")[0]["id"]
        wait_for(lambda: len(w.states("sent")) >= 2, 10, "the second sent event")
        events = _events(w, text_id)
        states = [(e["state"], e.get("via")) for e in events]
        assert states[0] == ("sent", "twilio"), states
        undelivered = [e for e in events if e["state"] == "undelivered"]
        assert undelivered and undelivered[0]["via"] == "twilio", events
        assert "30003" in str(undelivered[0].get("error")), undelivered
        assert ("sent", "smtp") in states, states
        assert states.index(("sent", "smtp")) > states.index(("undelivered", "twilio"))
        assert message["status"] == "undelivered"
    finally:
        d.stop()
        w.close()
    assert twilio.auth_token not in d.logtext()


def test_the_twilio_token_never_reaches_the_log(
    mosquitto: Mosquitto, sink: Sink, twilio: FakeTwilio, daemon_factory: Any
) -> None:
    # a server error, then the token refused (401, Twilio 20003): each is logged and told on
    # mqtt2sms/event, the token never; the text leaves by the gateway after failover_after
    # (the sends fail: the daemon's one look at the inbox at its start is a GET)
    twilio.fail(500, method="POST")
    twilio.fail(401, method="POST")
    twilio.fail(401, method="POST")
    d = daemon_factory(
        config(
            mosquitto,
            sink.port,
            twilio_section(twilio)
            + "defaults: {to: [alex], via: [twilio, smtp], failover_after: 1s}\n",
        )
    )
    w = running(d, mosquitto.port)
    try:
        _alert(w, "Smoke")
        wait_for(lambda: len(sink.mails) >= 1, 20, "the text through the gateway")
        errors = [str(e.get("error")) for e in w.events if e.get("via") == "twilio"]
        assert any("20500" in e for e in errors), json.dumps(w.events, indent=1)
        assert any("20003" in e for e in errors), json.dumps(w.events, indent=1)
    finally:
        d.stop()
        w.close()
    log = d.logtext()
    assert "20003" in log and "20500" in log
    basic = base64.b64encode(f"{twilio.account_sid}:{twilio.auth_token}".encode()).decode()
    for secret in (twilio.auth_token, basic):
        assert secret not in log
        assert secret not in json.dumps(w.events)


def test_a_permanent_twilio_refusal_is_told_when_the_text_moves_on(
    mosquitto: Mosquitto, sink: Sink, twilio: FakeTwilio, daemon_factory: Any
) -> None:
    twilio.fail(400, code=21610, method="POST")
    d = daemon_factory(
        config(
            mosquitto,
            sink.port,
            twilio_section(twilio) + "defaults: {to: [alex], via: [twilio, smtp]}\n",
        )
    )
    w = running(d, mosquitto.port)
    try:
        _alert(w, "Smoke")
        wait_for(lambda: len(sink.mails) >= 1, 20, "the text through the gateway")
        wait_for(lambda: w.states("sent"), 5, "the sent event")
        told = [e for e in w.events if e.get("via") == "twilio" and "21610" in str(e.get("error"))]
        assert told, json.dumps(w.events, indent=1)
        assert "START" in str(told[0]["error"])
    finally:
        d.stop()
        w.close()
    assert "21610" in d.logtext()


def test_a_reload_with_the_right_token_sends_what_the_wrong_one_held(
    mosquitto: Mosquitto, sink: Sink, twilio: FakeTwilio, daemon_factory: Any
) -> None:
    right = twilio_section(twilio) + "defaults: {to: [alex], via: [twilio]}\n"
    wrong = right.replace(twilio.auth_token, "0" * 32)
    d = daemon_factory(config(mosquitto, sink.port, wrong))
    w = running(d, mosquitto.port)
    try:
        _alert(w, "Smoke")
        wait_for(
            lambda: any("20003" in str(e.get("error")) for e in w.events), 10, "the token refused"
        )
        assert twilio.sent() == []
        d.write_config(config(mosquitto, sink.port, right))
        d.signal(signal.SIGHUP)
        sent = wait_for(lambda: w.states("sent"), 15, "the text sent with the new token")
        assert [(e["to"], e["via"]) for e in sent] == [("alex", "twilio")]
        assert [m["body"] for m in twilio.sent()] == ["Smoke"]
    finally:
        d.stop()
        w.close()


# --------------------------------------------------------------------------- the modem


@pytest.fixture
def modem(tmp_path: Path) -> Iterator[FakeModem]:
    pytest.importorskip("serial")
    (tmp_path / "dev").mkdir()
    with FakeModem(tmp_path / "dev") as fake:
        yield fake


def modem_config(mosquitto: Mosquitto, smtp_port: int, fake: FakeModem) -> str:
    """alex is texted by the modem on `home/modem`; the built-in rule texts sam by the
    gateway."""
    return config(
        mosquitto,
        smtp_port,
        f"""
modem: {{device: {fake.link}, poll: 1s}}
defaults: {{to: [sam]}}
rules:
  - {{name: modem, topic: home/modem, to: [alex], via: [modem]}}
""",
    )


def _health(d: Any) -> int:
    return subprocess.run(
        [sys.executable, "-m", "mqtt2sms", "health", "-c", str(d.config)],
        env=d.env,
        capture_output=True,
        timeout=30,
        check=False,
    ).returncode


def test_a_modem_text_with_euro_and_cyrillic_arrives_intact(
    mosquitto: Mosquitto, sink: Sink, modem: FakeModem, daemon_factory: Any
) -> None:
    body = "Протечка на кухне: 5€ [ok] @home"
    d = daemon_factory(modem_config(mosquitto, sink.port, modem))
    w = running(d, mosquitto.port)
    try:
        w.publish("home/modem", body)
        sent = wait_for(lambda: w.states("sent"), 20, "a sent event")
        assert [(e["to"], e["via"]) for e in sent] == [("alex", "modem")]
        [sms] = modem.sent
        assert (sms.number, sms.text) == (ALEX_E164, body)
        assert (sms.charset, sms.dcs) == ("UCS2", 8)  # the SMS itself is UCS-2
        assert sink.mails == []
    finally:
        d.stop()
        w.close()


def test_a_hung_modem_holds_back_no_gateway_text_and_no_health(
    mosquitto: Mosquitto, sink: Sink, modem: FakeModem, daemon_factory: Any
) -> None:
    d = daemon_factory(modem_config(mosquitto, sink.port, modem))
    w = running(d, mosquitto.port)
    try:
        w.publish("home/modem", "first, while it answers")
        wait_for(lambda: len(modem.sent) == 1, 20, "the first modem text")
        wait_for(lambda: w.states("sent"), 10, "its sent event")
        hang = 20.0  # longer than every timeout of one command (5 s) and of the prompt (10 s)
        modem.hang(hang)
        hung_at = time.monotonic()
        w.publish("home/modem", "second, into a hung modem")
        time.sleep(0.5)  # the modem's worker is now waiting on the modem
        sent_at = time.monotonic()
        _alert(w, "Gateway text for sam", to="sam")
        wait_for(lambda: len(sink.mails) >= 1, 5, "the gateway text while the modem hangs")
        took = time.monotonic() - sent_at
        assert took < 3.0, f"the gateway text waited {took:.1f}s for the hung modem"
        assert modem.hanging
        [mail] = sink.mails
        assert mail.rcpts == ["5557654321@vtext.com"]
        assert _health(d) == 0  # the watchdog's view: healthy
        assert w.status() == "online"
        # once the modem answers again, the second text leaves by it, once
        wait_for(lambda: len(modem.sent) >= 2, hang + 60, "the second modem text")
        assert time.monotonic() - hung_at >= hang - 1
        # the hang was seen: the modem's try timed out and was deferred, not lost
        assert any(e["via"] == "modem" for e in w.states("deferred")), w.events
        assert [s.text for s in modem.sent] == [
            "first, while it answers",
            "second, into a hung modem",
        ]
        assert _health(d) == 0
    finally:
        d.stop()
        w.close()
