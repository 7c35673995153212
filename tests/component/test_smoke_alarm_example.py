"""examples/smoke-alarm.yaml, as written, through the engine: in-process, a fake clock (so
"five minutes later" is exact), fakes for the phone (its inbox holds the replies) and for
Twilio (it rings). Only the secrets come from the environment, as the example says."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from mqtt2sms.config import load_config
from mqtt2sms.engine import Engine
from mqtt2sms.model import Message
from mqtt2sms.outbox import Outbox
from mqtt2sms.transports.base import ReceivedText
from mqtt2sms.transports.fake import FakeTransport
from tests.component.test_engine import UTC, Clock
from tests.component.test_incident_calls import CallingFake

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "smoke-alarm.yaml"
ALEX, SAM = "+15551234567", "+15557654321"
TOPIC = "zigbee2mqtt/living_room/smoke"


class House:
    def __init__(self, tmp: Path) -> None:
        env = {
            "SMSGATE_PASSWORD": "x",
            "TWILIO_AUTH_TOKEN": "y",
            "STATE_DIRECTORY": str(tmp),
        }
        self.config = load_config(str(EXAMPLE), env).config
        self.clock = Clock()
        self.phone = FakeTransport("android", can_receive=True)
        self.twilio = CallingFake()
        self.published: list[tuple[str, str, bool]] = []
        self.outbox = Outbox(str(tmp / "outbox.sqlite3"))
        ids, self.mids = itertools.count(1), itertools.count(1)
        self.engine = Engine(
            self.config,
            self.outbox,
            {"smtp": FakeTransport("smtp"), "android": self.phone, "twilio": self.twilio},
            lambda t, p, r: self.published.append((t, p, r)),
            lambda m: None,
            tz=UTC,
            wall=self.clock.wall,
            mono=self.clock.mono,
            boot_id="boot-1",
            threaded=False,
            new_id=lambda: f"a{next(ids)}",
        )
        self.engine.start()

    def mqtt(self, topic: str, payload: str) -> None:
        self.engine.submit(Message(topic, payload.encode(), self.clock.wall(), mid=next(self.mids)))
        self.engine.drain()

    def tick(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.engine.drain()

    def incident(self) -> list[dict[str, Any]]:
        return [json.loads(p) for t, p, _ in self.published if t == "mqtt2sms/incident"]

    def texts(self) -> list[tuple[str, str]]:
        return [(t.address, t.body) for t in self.phone.delivered]


@pytest.fixture
def house(tmp_path: Path) -> Any:
    h = House(tmp_path)
    yield h
    h.engine.stop(0)
    h.outbox.close()


def test_alex_first_sam_five_minutes_later_with_two_calls_unless_alex_replies(
    house: House,
) -> None:
    house.mqtt(TOPIC, '{"smoke": true, "battery": 97}')
    code = house.incident()[0]["id"]
    assert house.texts() == [(ALEX, f"Smoke in the living room! Reply ACK {code}")]
    house.tick(299)
    assert len(house.texts()) == 1
    house.tick(1)
    assert house.texts()[1] == (SAM, f"Smoke in the living room! Reply ACK {code}")
    assert [n for n, _, _ in house.twilio.calls] == [SAM]  # and sam's phone rings
    say = house.twilio.calls[0][2]
    assert say == f"Smoke in the living room! Reply ACK {code} to acknowledge."
    house.tick(120)
    assert [n for n, _, _ in house.twilio.calls] == [SAM, SAM]  # call_gap: 2m


def test_a_reply_from_alex_stops_it_before_sam_is_texted(house: House) -> None:
    house.mqtt(TOPIC, '{"smoke": true}')
    code = house.incident()[0]["id"]
    house.phone.inbox.append(ReceivedText(ALEX, f"ACK {code}", house.clock.wall()))
    house.tick(20)  # the phone's inbox is read every 15 s while an alarm is open
    assert house.incident()[-1]["state"] == "acked" and house.incident()[-1]["by"] == "alex"
    house.tick(600)
    assert [a for a, _ in house.texts()] == [ALEX]
    assert house.twilio.calls == []


def test_the_home_assistant_button_stops_it_and_sam_hears_who(house: House) -> None:
    house.mqtt(TOPIC, '{"smoke": true}')
    house.tick(300)
    code = house.incident()[0]["id"]
    house.mqtt("mqtt2sms/ack", "all")  # what the Acknowledge all button publishes
    assert house.incident()[-1]["state"] == "acked"
    assert house.texts()[-2:] == [(ALEX, f"ACK {code} by mqtt"), (SAM, f"ACK {code} by mqtt")]
    house.tick(120)
    assert len(house.twilio.calls) == 1  # the second call never comes
    house.mqtt(TOPIC, '{"smoke": false}')  # the detector clears: resolved, both told
    assert house.incident()[-1]["state"] == "resolved"
    assert house.texts()[-1][1] == "Resolved: Smoke in the living room!"
