"""Calls as an escalation step with real parts: Mosquitto, the daemon as a subprocess and
the fake Twilio (calls placed with inline TwiML, their status moved on each poll)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.twilio import FakeTwilio

from .conftest import Mosquitto, Watcher, running, wait_for

ALEX, SAM = "+15551234567", "+15557654321"


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as tw:
        yield tw


def config(mosquitto: Mosquitto, tw: FakeTwilio) -> str:
    return f"""\
mqtt: {{host: 127.0.0.1, port: {mosquitto.port}, client_id: mqtt2sms-test}}
contacts:
  alex: {{number: "{ALEX}"}}
  sam: {{number: "{SAM}"}}
limits: {{per_recipient: 0, daily_cap: 0, retry: {{first: 0.2s, max: 1s}}}}
twilio:
  account_sid: {tw.account_sid}
  auth_token: {tw.auth_token}
  from: "{tw.number}"
  api_base: {tw.url}
  poll: 1s
defaults: {{to: [alex], via: [twilio]}}
escalations:
  fire:
    steps:
      - {{to: [alex]}}
      - {{to: [sam], after: 2s, call: 2}}
    call_gap: 4s
    ring_for: 5s
rules:
  - name: smoke
    topic: zigbee2mqtt/+/smoke
    when: value_json.smoke
    message: "Smoke in the {{{{ topic_parts[1] }}}}"
    escalate: fire
"""


def incident_events(w: Watcher, state: str | None = None) -> list[dict[str, Any]]:
    with w.lock:
        out = [json.loads(p) for t, p, _ in w.messages if t == "mqtt2sms/incident"]
    return [e for e in out if state is None or e["state"] == state]


def placements(tw: FakeTwilio, n: int, timeout: float) -> list[float]:
    """The monotonic times at which the first ``n`` calls were seen placed."""
    seen: list[float] = []
    end = time.monotonic() + timeout
    while len(seen) < n and time.monotonic() < end:
        while len(tw.placed()) > len(seen):
            seen.append(time.monotonic())
        time.sleep(0.05)
    return seen


def test_a_calling_step_rings_twice_call_gap_apart_with_the_text_spoken(
    mosquitto: Mosquitto, twilio: FakeTwilio, daemon_factory: Any
) -> None:
    twilio.call_script(SAM, ["no-answer"])
    d = daemon_factory(config(mosquitto, twilio))
    w = running(d, mosquitto.port)
    try:
        w.publish("zigbee2mqtt/kitchen/smoke", '{"smoke": true}')
        code = wait_for(lambda: incident_events(w, "opened"), 15, "opened")[0]["id"]
        times = placements(twilio, 2, 25)
        assert len(times) == 2, twilio.placed()
        assert 3.0 <= times[1] - times[0] <= 6.5  # call_gap: 4s
        calls = twilio.placed()
        assert [c["form"]["To"] for c in calls] == [SAM, SAM]
        form = calls[0]["form"]
        assert form["Timeout"] == "5" and form["From"] == twilio.number
        assert form["Twiml"].count("Smoke in the kitchen") == 2 and code in form["Twiml"]
        # sam's text went before the first call
        assert [m["to"] for m in twilio.sent()] == [ALEX, SAM]
        ev = wait_for(lambda: incident_events(w, "call")[1:], 15, "the second call's event")
        assert (ev[0]["to"], ev[0]["via"], ev[0]["outcome"]) == ("sam", "twilio", "no-answer")
    finally:
        d.stop()
        w.close()


def test_a_reply_between_the_calls_stops_the_second(
    mosquitto: Mosquitto, twilio: FakeTwilio, daemon_factory: Any
) -> None:
    twilio.call_script(SAM, ["no-answer"])
    d = daemon_factory(config(mosquitto, twilio))
    w = running(d, mosquitto.port)
    try:
        w.publish("zigbee2mqtt/kitchen/smoke", '{"smoke": true}')
        code = wait_for(lambda: incident_events(w, "opened"), 15, "opened")[0]["id"]
        assert len(placements(twilio, 1, 15)) == 1
        twilio.inbound(SAM, f"ACK {code}")
        wait_for(lambda: incident_events(w, "acked"), 10, "acked")
        time.sleep(6)  # past call_gap
        assert len(twilio.placed()) == 1
    finally:
        d.stop()
        w.close()


def test_mqtt2sms_call_rings_a_contact_once(
    mosquitto: Mosquitto, twilio: FakeTwilio, daemon_factory: Any
) -> None:
    twilio.call_script(ALEX, ["ringing", "in-progress", "completed"])
    d = daemon_factory(config(mosquitto, twilio))
    w = running(d, mosquitto.port)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "mqtt2sms", "call", "alex", "-c", str(d.config)],
            env=d.env,
            cwd=d.tmp,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, (out.stdout, out.stderr)
        assert "alex by twilio: answered" in out.stdout
        assert [c["form"]["To"] for c in twilio.placed()] == [ALEX]
        bad = subprocess.run(
            [sys.executable, "-m", "mqtt2sms", "call", "nobody", "-c", str(d.config)],
            env=d.env,
            cwd=d.tmp,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert bad.returncode == 1 and "no contact 'nobody'" in bad.stderr
    finally:
        d.stop()
        w.close()


# ------------------------------------------------------------------------ by the modem


@pytest.fixture
def modem(tmp_path: Any) -> Iterator[Any]:
    pytest.importorskip("serial")
    from tests.fakes.modem import FakeModem

    (tmp_path / "dev").mkdir()
    with FakeModem(tmp_path / "dev") as fake:
        yield fake


def modem_config(mosquitto: Mosquitto, fake: Any, tw: FakeTwilio) -> str:
    text = config(mosquitto, tw).replace(
        "defaults: {to: [alex], via: [twilio]}",
        f"modem: {{device: {fake.link}, poll: 1s}}\ndefaults: {{to: [alex], via: [modem]}}",
    )
    return text.replace("call_gap: 4s\n    ring_for: 5s", "call_gap: 4s\n    ring_for: 2s")


def test_nobody_answers_the_modem_rings_sam_twice_and_a_reply_stops_the_ringing(
    mosquitto: Mosquitto, twilio: FakeTwilio, modem: Any, daemon_factory: Any
) -> None:
    modem.call_mode = "never"  # nobody picks up: each call rings until we hang up
    d = daemon_factory(modem_config(mosquitto, modem, twilio))
    w = running(d, mosquitto.port)
    try:
        w.publish("zigbee2mqtt/kitchen/smoke", '{"smoke": true}')
        code = wait_for(lambda: incident_events(w, "opened"), 15, "opened")[0]["id"]
        calls = wait_for(lambda: modem.calls[1:] and modem.calls, 30, "two calls")
        assert [c.number for c in calls] == [SAM, SAM]
        assert 3.0 <= calls[1].dialled_at - calls[0].dialled_at <= 7.0  # call_gap: 4s
        rang = calls[0].ended_at - calls[0].dialled_at
        assert 1.5 <= rang <= 4.0, rang  # hung up after ring_for (2s)
        outcomes = wait_for(lambda: incident_events(w, "call")[1:], 15, "two call events")
        assert [(e["to"], e["via"], e["outcome"]) for e in incident_events(w, "call")] == [
            ("sam", "modem", "no-answer"),
            ("sam", "modem", "no-answer"),
        ], outcomes
    finally:
        d.stop()
        w.close()
    assert code


def test_an_ack_while_the_modem_rings_hangs_up_at_once(
    mosquitto: Mosquitto, twilio: FakeTwilio, modem: Any, daemon_factory: Any
) -> None:
    modem.call_mode = "never"
    d = daemon_factory(
        modem_config(mosquitto, modem, twilio).replace("ring_for: 2s", "ring_for: 20s")
    )
    w = running(d, mosquitto.port)
    try:
        w.publish("zigbee2mqtt/kitchen/smoke", '{"smoke": true}')
        code = wait_for(lambda: incident_events(w, "opened"), 15, "opened")[0]["id"]
        call = wait_for(lambda: modem.calls, 15, "the first call")[0]
        time.sleep(0.5)
        w.publish("mqtt2sms/ack", json.dumps({"id": code, "by": "kitchen panel"}))
        wait_for(lambda: call.ended_at is not None, 10, "the call hung up")
        assert call.ended_at - call.dialled_at < 8.0  # far before ring_for (20s)
        ev = wait_for(lambda: incident_events(w, "call"), 10, "the call's event")[0]
        assert ev["outcome"] == "canceled"
        time.sleep(5)  # past call_gap: the second call never comes
        assert len(modem.calls) == 1
    finally:
        d.stop()
        w.close()


def test_a_text_for_the_modem_while_it_rings_leaves_after_the_call(
    mosquitto: Mosquitto, twilio: FakeTwilio, modem: Any, daemon_factory: Any
) -> None:
    modem.call_mode = "never"
    d = daemon_factory(
        modem_config(mosquitto, modem, twilio).replace("ring_for: 2s", "ring_for: 4s")
    )
    w = running(d, mosquitto.port)
    try:
        w.publish("zigbee2mqtt/kitchen/smoke", '{"smoke": true}')
        call = wait_for(lambda: modem.calls, 15, "the first call")[0]
        texts_before = len(modem.sent)
        w.publish("home/alerts/sms", "Garage door open")  # alex, by the modem, while it rings
        wait_for(lambda: len(modem.sent) > texts_before, 20, "the text after the call")
        assert call.ended_at is not None  # the call was over before the text was typed
        assert modem.sent[-1].text == "Garage door open"
        assert modem.sent[-1].number == ALEX
    finally:
        d.stop()
        w.close()


def test_a_broker_restart_and_a_reload_mid_incident_keep_its_schedule_and_its_ack(
    mosquitto: Mosquitto, twilio: FakeTwilio, daemon_factory: Any
) -> None:
    text = config(mosquitto, twilio).replace("after: 2s, call: 2", "after: 6s")
    d = daemon_factory(text)
    w = running(d, mosquitto.port)
    try:
        w.publish("zigbee2mqtt/kitchen/smoke", '{"smoke": true}')
        code = wait_for(lambda: incident_events(w, "opened"), 15, "opened")[0]["id"]
        opened = time.monotonic()
        w.close()
        mosquitto.restart()
        d.signal(signal.SIGHUP)  # a reload too, while the broker comes back
        w = Watcher(mosquitto.port)
        wait_for(lambda: w.status() == "online", 15, "online again")
        wait_for(lambda: len(twilio.sent()) >= 2, 15, "sam's step")
        assert time.monotonic() - opened >= 5.0  # not before its time (after: 6s)
        assert [m["to"] for m in twilio.sent()] == [ALEX, SAM]
        retained = wait_for(lambda: w.retained.get("mqtt2sms/incidents"), 10, "the list")
        assert [i["id"] for i in json.loads(retained)] == [code]  # republished after it
        w.publish("mqtt2sms/ack", code)
        wait_for(lambda: incident_events(w, "acked"), 15, "acked after the restart")
    finally:
        d.stop()
        w.close()
