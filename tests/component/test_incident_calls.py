"""Calls as an escalation step, through the engine: in-process, a fake clock, a fake way out
that can call (its outcomes scripted). The modem's and Twilio's own calls are tested against
their fakes elsewhere."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mqtt2sms.control import AckRequest
from mqtt2sms.errors import PermanentDeliveryError
from mqtt2sms.transports.base import CallResult
from mqtt2sms.transports.fake import FakeTransport
from tests.component.test_engine import Rig

POLICY = """\
escalations:
  fire:
    steps:
      - {to: [alex]}
      - {to: [alex], after: 5m, call: 2}
    call_gap: 2m
    ring_for: 25s
    give_up: 2h
rules:
  - name: smoke
    topic: zigbee2mqtt/+/smoke
    when: value_json.smoke
    message: "Smoke in the {{ topic_parts[1] }}"
    escalate: fire
defaults: {to: [alex], via: [twilio, smtp]}
"""
TOPIC = "zigbee2mqtt/kitchen/smoke"


class CallingFake(FakeTransport):
    """A fake Twilio that also rings: each call's outcome from ``outcomes`` (default
    no-answer), recorded with the number, ring_for and what it would say."""

    def __init__(self) -> None:
        super().__init__("twilio")
        self.calls: list[tuple[str, float, str]] = []
        self.outcomes: list[CallResult | Exception] = []
        self.during: Callable[[], None] | None = None  # runs while "ringing"
        self.hung_up: list[bool] = []
        self.texts_before: list[int] = []  # texts it had sent when each call began

    def call(
        self, number: str, ring_for: float, say: str, cancelled: Callable[[], bool]
    ) -> CallResult:
        self.calls.append((number, ring_for, say))
        self.texts_before.append(len(self.delivered))
        if self.during is not None:
            self.during()
        self.hung_up.append(cancelled())
        if cancelled():
            return CallResult("canceled")
        out = self.outcomes.pop(0) if self.outcomes else CallResult("no-answer", "no-answer")
        if isinstance(out, Exception):
            raise out
        return out


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    r = Rig(tmp_path, POLICY)
    r.engine.stop(0)
    r.twilio = CallingFake()
    r.engine = r.make()
    return r


def call_events(rig: Rig) -> list[dict[str, Any]]:
    out = [json.loads(p) for t, p, _ in rig.published if t == "mqtt2sms/incident"]
    return [e for e in out if e["state"] == "call"]


def calls(rig: Rig) -> list[tuple[str, float, str]]:
    assert isinstance(rig.twilio, CallingFake)
    return rig.twilio.calls


def test_a_step_with_call_2_rings_twice_call_gap_apart(rig: Rig) -> None:
    rig.send('{"smoke": true}', TOPIC)
    rig.tick(300)
    assert len(rig.twilio.delivered) == 2  # the step's text first
    assert [(n, r) for n, r, _ in calls(rig)] == [("+15551234567", 25.0)]
    assert isinstance(rig.twilio, CallingFake) and rig.twilio.texts_before == [2]  # text first
    code = json.loads(next(p for t, p, _ in rig.published if t == "mqtt2sms/incident"))["id"]
    assert calls(rig)[0][2] == f"Smoke in the kitchen. Reply ACK {code} to acknowledge."
    rig.tick(119)
    assert len(calls(rig)) == 1
    rig.tick(1)
    assert len(calls(rig)) == 2
    evs = call_events(rig)
    assert [(e["to"], e["via"], e["outcome"], e["id"]) for e in evs] == [
        ("alex", "twilio", "no-answer", code),
        ("alex", "twilio", "no-answer", code),
    ]


def test_an_ack_between_the_two_calls_cancels_the_second(rig: Rig) -> None:
    rig.send('{"smoke": true}', TOPIC)
    rig.tick(300)
    code = call_events(rig)[0]["id"]
    rig.send(code, "mqtt2sms/ack")
    rig.tick(600)
    assert len(calls(rig)) == 1


def test_an_ack_while_it_rings_hangs_up(rig: Rig) -> None:
    rig.send('{"smoke": true}', TOPIC)
    code = json.loads(next(p for t, p, _ in rig.published if t == "mqtt2sms/incident"))["id"]
    fake = rig.twilio
    assert isinstance(fake, CallingFake)
    # the acknowledgement lands while the first call rings (what another thread would do)
    fake.during = lambda: rig.engine.desk.on_ack(AckRequest(code, "kim"), rig.engine._now_both())
    rig.tick(300)
    assert fake.hung_up == [True]
    assert [e["outcome"] for e in call_events(rig)] == ["canceled"]


def test_a_way_out_that_cannot_call_is_said_once_and_the_text_still_goes(rig: Rig) -> None:
    fake = rig.twilio
    assert isinstance(fake, CallingFake)
    fake.outcomes = [PermanentDeliveryError("twilio: calls need twilio.from")]
    rig.send('{"smoke": true}', TOPIC)
    rig.tick(300)
    assert len(rig.twilio.delivered) == 2
    ev = call_events(rig)[0]
    assert ev["outcome"] == "failed" and "twilio.from" in ev["detail"]


def test_a_contact_with_no_way_out_that_calls_gets_the_text_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(tmp_path, POLICY.replace("via: [twilio, smtp]", "via: [smtp]"))
    rig.send('{"smoke": true}', TOPIC)
    rig.tick(300)
    assert len(rig.smtp.delivered) == 2 and call_events(rig) == []
    assert "alex is not called: no way out of theirs can call" in caplog.text


def test_hang_up_all_at_a_stop(rig: Rig) -> None:
    stopped = threading.Event()
    fake = rig.twilio
    assert isinstance(fake, CallingFake)
    fake.during = lambda: (rig.engine.desk.hang_up_all(), stopped.set())
    rig.send('{"smoke": true}', TOPIC)
    rig.tick(300)
    assert stopped.is_set() and fake.hung_up == [True]
