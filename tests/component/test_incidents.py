"""Incidents in the engine: in-process, real SQLite, a fake clock, fake ways out.

The escalation policy of the smoke-alarm example, with its steps in the config's units; the
clock is moved by hand, so "five minutes later" is exact. Replies come through the fake
Twilio's inbox, which the engine reads only while an incident waits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mqtt2sms.transports.base import ReceivedText
from tests.component.test_engine import Rig

POLICY = """\
escalations:
  fire:
    steps:
      - {to: [alex]}
      - {to: [sam], after: 5m}
    repeat: 10m
    give_up: 2h
    hold_after_ack: 1h
rules:
  - name: smoke
    topic: zigbee2mqtt/+/smoke
    when: value_json.smoke
    resolve_when: value_json.smoke == false
    message: "Smoke in the {{ topic_parts[1] }}"
    escalate: fire
defaults: {to: [alex], via: [twilio, smtp]}
"""
TOPIC = "zigbee2mqtt/kitchen/smoke"
ALARM = '{"smoke": true, "battery": 90}'
CLEAR = '{"smoke": false, "battery": 90}'


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    r = Rig(tmp_path, POLICY)
    r.twilio.can_receive = True  # it reads the replies to `from` while an incident waits
    return r


def incident_events(rig: Rig) -> list[dict[str, Any]]:
    return [json.loads(p) for t, p, _ in rig.published if t == "mqtt2sms/incident"]


def open_list(rig: Rig) -> list[dict[str, Any]]:
    lists = [json.loads(p) for t, p, r in rig.published if t == "mqtt2sms/incidents" and r]
    return lists[-1]


def bodies(rig: Rig) -> list[tuple[str, str]]:
    return [(t.address, t.body) for t in rig.twilio.delivered]


def reply(rig: Rig, sender: str, text: str) -> None:
    rig.twilio.inbox.append(ReceivedText(sender, text, rig.clock.wall()))


def test_the_first_step_texts_with_its_code_and_the_second_comes_five_minutes_later(
    rig: Rig,
) -> None:
    rig.send(ALARM, TOPIC)
    (ev,) = incident_events(rig)
    code = ev["id"]
    assert ev["state"] == "opened" and ev["rule"] == "smoke" and ev["key"] == TOPIC
    assert bodies(rig) == [("+15551234567", f"Smoke in the kitchen Reply ACK {code}")]
    assert [i["id"] for i in open_list(rig)] == [code]
    rig.tick(299)
    assert len(rig.twilio.delivered) == 1  # not before its time
    rig.tick(1)
    assert bodies(rig)[1] == ("+15557654321", f"Smoke in the kitchen Reply ACK {code}")
    assert [e["state"] for e in incident_events(rig)] == ["opened", "escalated"]
    assert incident_events(rig)[1]["step"] == 2


def test_five_alarms_for_one_key_give_one_text(rig: Rig) -> None:
    for _ in range(5):
        rig.send(ALARM, TOPIC)
    assert len(rig.twilio.delivered) == 1
    assert len(open_list(rig)) == 1
    assert len(rig.acked) == 5  # every message acknowledged to the broker


def test_an_mqtt_ack_stops_it_and_tells_the_others(rig: Rig) -> None:
    rig.send(ALARM, TOPIC)
    rig.tick(300)
    code = incident_events(rig)[0]["id"]
    rig.send(json.dumps({"id": code, "by": "kitchen panel"}), "mqtt2sms/ack")
    acked = incident_events(rig)[-1]
    assert acked["state"] == "acked" and acked["by"] == "kitchen panel"
    # both texted contacts hear who took it
    assert bodies(rig)[2:] == [
        ("+15551234567", f"ACK {code} by kitchen panel"),
        ("+15557654321", f"ACK {code} by kitchen panel"),
    ]
    n = len(rig.twilio.delivered)
    rig.tick(3000)
    assert len(rig.twilio.delivered) == n  # no repeat
    assert open_list(rig)[0]["state"] == "acked"
    rig.send(ALARM, TOPIC)  # the sensor repeats itself: it joins, silently
    assert len(rig.twilio.delivered) == n


def test_an_sms_reply_from_a_texted_contact_acknowledges(rig: Rig) -> None:
    rig.send(ALARM, TOPIC)
    code = incident_events(rig)[0]["id"]
    reply(rig, "+15551234567", f"ok {code} on my way")
    rig.tick(20)
    acked = incident_events(rig)[-1]
    assert acked["state"] == "acked" and acked["by"] == "alex"
    rig.tick(600)
    assert all(addr != "+15557654321" for addr, _ in bodies(rig))  # sam never texted


def test_a_strangers_reply_and_a_reply_by_someone_not_texted_do_not(rig: Rig) -> None:
    rig.send(ALARM, TOPIC)
    code = incident_events(rig)[0]["id"]
    reply(rig, "+15559990000", f"ACK {code}")  # a stranger
    reply(rig, "+15557654321", f"ACK {code}")  # sam, not texted yet
    rig.tick(20)
    assert [e["state"] for e in incident_events(rig)] == ["opened"]
    rig.tick(280)
    assert [e["state"] for e in incident_events(rig)] == ["opened", "escalated"]


def test_resolve_when_resolves_and_says_so(rig: Rig) -> None:
    rig.send(ALARM, TOPIC)
    rig.send(CLEAR, TOPIC)
    assert [e["state"] for e in incident_events(rig)] == ["opened", "resolved"]
    assert bodies(rig)[-1] == ("+15551234567", "Resolved: Smoke in the kitchen")
    assert open_list(rig) == []
    rig.tick(600)
    assert len(rig.twilio.delivered) == 2  # no step after it ended
    rig.send(ALARM, TOPIC)  # a new alarm opens a new incident, with a new code
    events = incident_events(rig)
    assert events[-1]["state"] == "opened" and events[-1]["id"] != events[0]["id"]


def test_a_restart_between_steps_sends_the_next_one_at_its_original_time(rig: Rig) -> None:
    rig.send(ALARM, TOPIC)
    rig.tick(100)
    rig.restart()
    rig.tick(199)
    assert len(rig.twilio.delivered) == 1
    rig.tick(1)
    assert len(rig.twilio.delivered) == 2


def test_give_up_ends_it_unacknowledged(rig: Rig) -> None:
    rig.send(ALARM, TOPIC)
    for _ in range(30):
        rig.tick(300)
    states = [e["state"] for e in incident_events(rig)]
    assert states[-1] == "unacknowledged"
    assert open_list(rig) == []
    # steps at 0 and 5m, then the last step every 10 minutes until 2 h
    assert len(rig.twilio.delivered) == 2 + 11


def test_a_gateway_text_says_ack_without_reply(tmp_path: Path) -> None:
    rig = Rig(tmp_path, POLICY.replace("via: [twilio, smtp]", "via: [smtp]"))
    rig.send(ALARM, TOPIC)
    code = incident_events(rig)[0]["id"]
    assert [t.body for t in rig.smtp.delivered] == [f"Smoke in the kitchen ACK {code}"]


def test_retained_acks_are_ignored(rig: Rig) -> None:
    rig.send(ALARM, TOPIC)
    m = rig.message("all", "mqtt2sms/ack")
    from dataclasses import replace

    rig.engine.submit(replace(m, retained=True))
    rig.engine.drain()
    assert [e["state"] for e in incident_events(rig)] == ["opened"]
    rig.send("all", "mqtt2sms/ack")
    assert [e["state"] for e in incident_events(rig)] == ["opened", "acked"]


def test_an_unreadable_ack_or_an_unknown_code_is_a_rejected_event(rig: Rig) -> None:
    rig.send(ALARM, TOPIC)
    rig.send("hello there", "mqtt2sms/ack")
    rig.send("9999" if incident_events(rig)[0]["id"] != "9999" else "8888", "mqtt2sms/ack")
    rig.send("all", "mqtt2sms/ack")  # acknowledges the one open: not an error
    errors = [e["error"] for e in rig.events("rejected")]
    assert len(errors) == 2, errors
    assert "'hello there' names no incident" in errors[0]
    assert errors[1].startswith("no open incident ")
    assert [e["state"] for e in incident_events(rig)] == ["opened", "acked"]
    assert len(rig.acked) == 4  # every one of them acknowledged to the broker


def test_a_drill_of_an_unknown_policy_is_rejected(rig: Rig) -> None:
    rig.send("flood", "mqtt2sms/drill")
    assert "no escalation policy 'flood'" in rig.events("rejected")[0]["error"]
    assert incident_events(rig) == []


def test_a_drill_texts_test_and_ends_unanswered(rig: Rig) -> None:
    rig.send('{"policy": "fire", "step": 10}', "mqtt2sms/drill")
    assert bodies(rig)[0][1].startswith("TEST: a drill of the fire alarm")
    rig.tick(10)
    assert len(bodies(rig)) == 2  # the second step, 10 s on
    rig.tick(400)
    assert [e["state"] for e in incident_events(rig)][-1] == "unacknowledged"


def test_a_test_call_that_cannot_be_placed_says_why(rig: Rig) -> None:
    rig.send("alex", "mqtt2sms/call")  # the rig's twilio fake cannot call
    (ev,) = incident_events(rig)
    assert (ev["state"], ev["to"], ev["outcome"], ev["id"]) == ("call", "alex", "failed", None)
    assert "cannot call" in ev["detail"]


def test_a_wall_clock_step_moves_no_step(rig: Rig) -> None:
    rig.send(ALARM, TOPIC)
    rig.clock.step_wall(3600)  # NTP at boot, or a DST-like jump: the schedule is elapsed time
    rig.tick(299)
    assert len(rig.twilio.delivered) == 1
    rig.tick(1)
    assert len(rig.twilio.delivered) == 2
    rig.clock.step_wall(-7200)  # and back: nothing is held longer either
    rig.tick(600)
    assert len(rig.twilio.delivered) == 3  # the repeat, 10 minutes after the last step


def test_a_reload_mid_incident_keeps_its_schedule_even_without_its_policy(rig: Rig) -> None:
    rig.send(ALARM, TOPIC)
    rig.tick(100)
    # the policy loses its second step, then is renamed: the alarm that runs keeps its own
    rig.engine._apply_reload(rig.load(POLICY.replace("      - {to: [sam], after: 5m}\n", "")))
    rig.engine._apply_reload(rig.load(POLICY.replace("fire", "flood")))
    rig.tick(199)
    assert len(rig.twilio.delivered) == 1
    rig.tick(1)
    assert [a for a, _ in bodies(rig)] == ["+15551234567", "+15557654321"]
