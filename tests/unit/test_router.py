"""route(): match -> when -> recipients -> render -> cooldown -> format -> per recipient.

Pure: configs come from YAML strings through parse_config, the clock is a fixed `now`.
"""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqtt2sms import throttle
from mqtt2sms.config import Config, parse_config
from mqtt2sms.model import MAX_PAYLOAD, Message
from mqtt2sms.render import Templates
from mqtt2sms.router import Routed, route
from mqtt2sms.sms import septets

NY = ZoneInfo("America/New_York")
NOW = dt.datetime(2026, 6, 1, 16, 0, tzinfo=dt.UTC)  # 12:00 in New York
ENV = {"STATE_DIRECTORY": "/var/lib/mqtt2sms"}
TEMPLATES = Templates()

BASE = """\
contacts:
  alex: {number: "+1 (555) 123-4567", carrier: tmobile}
  sam: {email: "5557654321@vtext.com"}
  kim: {email: "kim@example.com"}
groups:
  family: [alex, sam]
  everyone: [family, kim, alex]
defaults:
  to: [alex]
"""
NO_LIMITS = "{per_recipient: 0, daily_cap: 0}"


def config(extra: str = "", base: str = BASE, limits: str = NO_LIMITS) -> Config:
    text = base + f"limits: {limits}\n" + textwrap.dedent(extra)
    return parse_config(text, "config.yaml", ENV).config


def msg(topic: str, payload: bytes | str, *, retained: bool = False) -> Message:
    if isinstance(payload, str):
        payload = payload.encode()
    return Message(topic=topic, payload=payload, received_at=NOW, retained=retained)


def run(
    cfg: Config,
    topic: str,
    payload: bytes | str,
    *,
    state: throttle.ThrottleState = throttle.EMPTY,
    now: dt.datetime = NOW,
    retained: bool = False,
    alert_id: str = "a1",
) -> Routed:
    return route(cfg, TEMPLATES, msg(topic, payload, retained=retained), state, now, NY, alert_id)


def sent_to(routed: Routed) -> list[str]:
    return [t.recipient for t in routed.texts]


def states(routed: Routed) -> list[str]:
    return [e.state for e in routed.events]


ALERTS = "home/alerts/sms"


# --------------------------------------------------------------------------- payloads


def test_plain_text_on_the_alert_topic_goes_to_defaults_to() -> None:
    routed = run(config(), ALERTS, "Garage door open")
    assert routed.matched == ("sms",)
    assert [(t.recipient, t.body, t.rule) for t in routed.texts] == [
        ("alex", "Garage door open", "sms")
    ]
    assert routed.events == ()
    assert routed.problems == ()


def test_tmobile_contact_is_addressed_through_its_gateway() -> None:
    (text,) = run(config(), ALERTS, "hi").texts
    assert text.via == ("smtp",)
    assert dict(text.addresses) == {"smtp": "5551234567@tmomail.net"}


def test_json_message_to_priority_and_key_are_honoured_without_a_rule_to() -> None:
    payload = '{"message": "Smoke in the hall", "to": "sam", "priority": "high", "key": "hall"}'
    (text,) = run(config(), ALERTS, payload).texts
    assert text.recipient == "sam"
    assert text.body == "Smoke in the hall"
    assert text.priority == "high"
    assert text.key == "hall"
    assert dict(text.addresses) == {"smtp": "5557654321@vtext.com"}


def test_json_to_priority_and_key_are_ignored_when_the_rule_sets_to() -> None:
    cfg = config(
        """
        rules:
          - name: door
            topic: home/door
            to: [kim]
        """
    )
    payload = '{"message": "Door open", "to": "sam", "priority": "high", "key": "k"}'
    (text,) = run(cfg, "home/door", payload).texts
    assert (text.recipient, text.body, text.priority, text.key) == (
        "kim",
        "Door open",
        "normal",
        "home/door",
    )


def test_json_to_is_honoured_when_only_defaults_set_to() -> None:
    cfg = config(
        """
        rules:
          - name: door
            topic: home/door
        """
    )
    routed = run(cfg, "home/door", '{"message": "Door open", "to": ["kim"]}')
    assert sent_to(routed) == ["kim"]


def test_groups_are_expanded_and_each_contact_texted_once() -> None:
    routed = run(config(), ALERTS, '{"message": "x", "to": ["alex", "everyone", "family", "alex"]}')
    assert sent_to(routed) == ["alex", "sam", "kim"]
    assert routed.events == ()


def test_unknown_name_in_payload_to_is_rejected_and_the_others_still_texted() -> None:
    routed = run(config(), ALERTS, '{"message": "x", "to": ["alx", "sam"]}')
    assert sent_to(routed) == ["sam"]
    (event,) = routed.events
    assert event.state == "rejected"
    assert event.error is not None and "'alx'" in event.error


@pytest.mark.parametrize(
    "raw", ["+15551234567", "5551234567", "a@b.c", "(555) 123-4567", "5557654321@vtext.com"]
)
def test_a_raw_number_or_address_in_payload_to_is_always_rejected(raw: str) -> None:
    routed = run(config(), ALERTS, f'{{"message": "x", "to": ["{raw}"]}}')
    assert routed.texts == ()
    assert states(routed) == ["rejected"]
    assert routed.events[0].error is not None and "raw number or address" in routed.events[0].error


def test_a_raw_address_beside_a_name_rejects_only_the_raw_one() -> None:
    routed = run(config(), ALERTS, '{"message": "x", "to": ["a@b.c", "kim"]}')
    assert sent_to(routed) == ["kim"]
    assert states(routed) == ["rejected"]


def test_payload_to_that_is_not_names_is_rejected_with_an_event() -> None:
    routed = run(config(), ALERTS, '{"message": "x", "to": 5}')
    assert routed.texts == ()
    assert states(routed) == ["rejected"]


def test_an_empty_payload_to_list_is_rejected_not_lost_silently() -> None:
    routed = run(config(), ALERTS, '{"message": "x", "to": []}')
    assert routed.texts == ()
    assert states(routed) == ["rejected"]
    assert routed.events[0].error is not None and "no one" in routed.events[0].error


def test_an_unknown_payload_priority_is_ignored_and_logged() -> None:
    routed = run(config(), ALERTS, '{"message": "x", "priority": "urgent"}')
    assert [t.priority for t in routed.texts] == ["normal"]
    assert any("urgent" in p for p in routed.problems)


def test_a_payload_over_64_kib_is_one_rejected_event_and_no_text() -> None:
    cfg = config(
        """
        rules:
          - name: big
            topic: home/#
            to: [alex, sam]
        """
    )
    routed = run(cfg, ALERTS, b"x" * (MAX_PAYLOAD + 1))
    assert routed.texts == ()
    assert states(routed) == ["rejected"]
    assert routed.events[0].error is not None and "64 KiB" in routed.events[0].error


@pytest.mark.parametrize("payload", [b"", b" ", b"\n", b" \t\r\n ", "\u00a0\u2003".encode()])
@pytest.mark.parametrize("topic", [ALERTS, "home/door"])
def test_an_empty_payload_is_no_alert_but_one_rejected_event(payload: bytes, topic: str) -> None:
    cfg = config("rules:\n  - {name: door, topic: home/door, to: [family]}\n")
    routed = run(cfg, topic, payload)
    assert routed.texts == ()
    assert states(routed) == ["rejected"]
    assert routed.events[0].error is not None and "empty payload" in routed.events[0].error
    assert routed.state is throttle.EMPTY


def test_a_cleared_retained_message_on_a_rule_that_ignores_retained_is_nothing() -> None:
    routed = run(config(), ALERTS, b"", retained=True)
    assert routed == Routed(state=throttle.EMPTY)


def test_an_empty_payload_on_a_rule_with_when_is_silent_even_if_when_would_hold() -> None:
    cfg = config("rules:\n  - {name: door, topic: home/door, when: 'true'}\n")
    assert run(cfg, "home/door", b"  ") == Routed(state=throttle.EMPTY)
    assert sent_to(run(cfg, "home/door", b"open")) == ["alex"]


def test_a_payload_of_exactly_64_kib_is_texted() -> None:
    routed = run(config(), ALERTS, b"x" * MAX_PAYLOAD)
    assert sent_to(routed) == ["alex"]
    assert routed.texts[0].body.endswith("...")


def test_invalid_utf8_is_replaced_and_texted() -> None:
    (text,) = run(config(), ALERTS, b"Leak \xff\xfe in the basement").texts
    assert text.body.startswith("Leak ")
    assert text.body.endswith("in the basement")


@pytest.mark.parametrize(
    "payload",
    [
        b"[1, 2, 3]",
        b"null",
        b"1" * 4301,
        b"-" + b"9" * 5000,
        b"[" * 5000 + b"]" * 5000,
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
        b'"just a string"',
        b"true",
        b"{not json",
    ],
    ids=["array", "null", "4301 digits", "5001-digit negative", "deep array", "deep object",
         "string", "true", "broken"],
)  # fmt: skip
def test_json_that_is_not_an_object_is_texted_as_plain_text(payload: bytes) -> None:
    routed = run(config(), ALERTS, payload)
    (text,) = routed.texts
    assert text.recipient == "alex"
    expected_start = payload.decode()[:20]
    assert text.body.startswith(expected_start)
    assert septets(text.body) <= 160


def test_a_json_object_without_a_message_string_is_texted_as_is() -> None:
    (text,) = run(config(), ALERTS, '{"message": 42}').texts
    assert text.body == '{"message": 42}'


@pytest.mark.parametrize("payload", ["😀", "\x00", "\u200b"])
def test_a_message_that_formats_to_nothing_falls_back_and_is_never_sent_empty(
    payload: str,
) -> None:
    routed = run(config(), ALERTS, payload)
    assert [t.body for t in routed.texts] == ["sms:"]
    assert any("nothing a phone can show" in p for p in routed.problems)


# --------------------------------------------------------------------------- when, templates


LEAK = """
rules:
  - name: leak
    topic: zigbee2mqtt/+/leak
    when: value_json.water_leak
    message: "Water leak: {{ topic_parts[1] }}"
"""


def test_when_true_texts_the_rendered_message() -> None:
    routed = run(config(LEAK), "zigbee2mqtt/basement/leak", '{"water_leak": true}')
    assert routed.matched == ("leak",)
    assert [t.body for t in routed.texts] == ["Water leak: basement"]


def test_when_false_sends_nothing() -> None:
    routed = run(config(LEAK), "zigbee2mqtt/basement/leak", '{"water_leak": false}')
    assert routed == Routed(state=routed.state, stopped=("leak",))
    assert routed.matched == ()


@pytest.mark.parametrize("payload", ["water everywhere", "", "42", "[true]"])
def test_when_on_value_json_of_a_non_object_payload_is_false(payload: str) -> None:
    routed = run(config(LEAK), "zigbee2mqtt/basement/leak", payload)
    assert routed.texts == ()
    assert routed.events == ()
    assert routed.problems == ()


def test_a_failing_message_template_falls_back_to_rule_and_payload() -> None:
    cfg = config(
        """
        rules:
          - name: temp
            topic: home/temp
            message: "Temperature {{ value_json.missing.deeper }}"
        """
    )
    routed = run(cfg, "home/temp", '{"t": 3}')
    assert [t.body for t in routed.texts] == ['temp: {"t": 3}']
    assert len(routed.problems) == 1
    assert "temp" in routed.problems[0] and "message" in routed.problems[0]


def test_a_message_template_on_a_non_json_payload_falls_back() -> None:
    cfg = config(
        """
        rules:
          - name: temp
            topic: home/temp
            message: "Temperature {{ value_json.t }}"
        """
    )
    routed = run(cfg, "home/temp", "hot")
    assert [t.body for t in routed.texts] == ["temp: hot"]
    assert routed.problems


@pytest.mark.parametrize("template", ["{{ '' }}", "   {{ value_json.empty }}  "])
def test_an_empty_rendered_message_falls_back(template: str) -> None:
    cfg = config(
        f"""
        rules:
          - name: blank
            topic: home/blank
            message: "{template}"
        """
    )
    routed = run(cfg, "home/blank", '{"empty": ""}')
    assert [t.body for t in routed.texts] == ['blank: {"empty": ""}']
    assert any("empty" in p for p in routed.problems)


def test_the_fallback_is_cut_to_size() -> None:
    cfg = config(
        """
        rules:
          - name: temp
            topic: home/temp
            message: "{{ value_json.nope.nope }}"
            max_length: 40
        """
    )
    (text,) = run(cfg, "home/temp", "word " * 100).texts
    assert text.body.startswith("temp: word")
    assert septets(text.body) <= 40


def test_a_failing_key_template_falls_back_to_the_topic() -> None:
    cfg = config(
        """
        rules:
          - name: k
            topic: home/k
            key: "{{ value_json.id }}"
        """
    )
    routed = run(cfg, "home/k", "plain")
    assert [t.key for t in routed.texts] == ["home/k"]
    assert routed.problems


def test_subject_is_rendered() -> None:
    cfg = config(
        """
        rules:
          - name: s
            topic: home/s
            subject: "Alert on {{ topic }}"
        """
    )
    assert [t.subject for t in run(cfg, "home/s", "x").texts] == ["Alert on home/s"]


# --------------------------------------------------------------------------- matching


def test_a_retained_message_is_ignored_unless_the_rule_accepts_retained() -> None:
    cfg = config(
        """
        rules:
          - name: plain
            topic: home/door
          - name: keeps
            topic: home/door
            retained: true
        """
    )
    routed = run(cfg, "home/door", "open", retained=True)
    assert routed.matched == ("keeps",)
    assert [t.rule for t in routed.texts] == ["keeps"]
    live = run(cfg, "home/door", "open")
    assert live.matched == ("plain", "keeps")


def test_a_retained_message_on_the_alert_topic_is_ignored() -> None:
    routed = run(config(), ALERTS, "old news", retained=True)
    assert routed.texts == () and routed.events == ()


CATCH_ALL = """
rules:
  - name: everything
    topic: "#"
"""


@pytest.mark.parametrize(
    "topic", ["mqtt2sms/event", "mqtt2sms/status", "mqtt2sms/stats", "mqtt2sms/ack"]
)
def test_messages_under_base_topic_never_match_even_a_hash_rule(topic: str) -> None:
    routed = run(config(CATCH_ALL), topic, '{"message": "loop"}')
    assert routed.matched == ()
    assert routed.texts == () and routed.events == ()


def test_base_topic_notify_goes_to_the_builtin_notify_rule() -> None:
    routed = run(config(CATCH_ALL), "mqtt2sms/notify", "from Home Assistant")
    assert routed.matched == ("everything", "notify")
    plain = run(config(), "mqtt2sms/notify", "from Home Assistant")
    assert plain.matched == ("notify",)
    assert [(t.rule, t.recipient, t.body) for t in plain.texts] == [
        ("notify", "alex", "from Home Assistant")
    ]


def test_a_topic_no_rule_matches_returns_the_state_untouched() -> None:
    state = throttle.note_sent(throttle.EMPTY, "sms", ALERTS, NOW)
    routed = run(config(), "home/unrelated", "x", state=state)
    assert routed == Routed(state=state)


# --------------------------------------------------------------------------- cooldown


COOLDOWN = """
rules:
  - name: motion
    topic: home/motion
    to: [family]
    cooldown: 10m
"""


def test_cooldown_suppresses_once_per_message_and_counts_for_the_next_text() -> None:
    cfg = config(COOLDOWN)
    first = run(cfg, "home/motion", "Motion", alert_id="m1")
    assert sent_to(first) == ["alex", "sam"]

    state = first.state
    for i in range(3):
        later = NOW + dt.timedelta(minutes=1 + i)
        again = run(cfg, "home/motion", "Motion", state=state, now=later, alert_id=f"m{i + 2}")
        assert again.texts == ()
        assert states(again) == ["suppressed"]  # one event for the message, not per recipient
        assert again.events[0].error is not None and "cooldown" in again.events[0].error
        state = again.state
        assert state.cooldowns[("motion", "home/motion")].suppressed == i + 1

    after = run(cfg, "home/motion", "Motion", state=state, now=NOW + dt.timedelta(minutes=11))
    assert [t.body for t in after.texts] == ["Motion (+3 more)", "Motion (+3 more)"]
    assert after.state.cooldowns[("motion", "home/motion")].suppressed == 0
    once_more = run(
        cfg, "home/motion", "Motion", state=after.state, now=NOW + dt.timedelta(minutes=22)
    )
    assert [t.body for t in once_more.texts] == ["Motion", "Motion"]


def test_cooldown_is_per_key() -> None:
    cfg = config(
        """
        rules:
          - name: motion
            topic: home/+/motion
            cooldown: 10m
        """
    )
    first = run(cfg, "home/hall/motion", "m")
    other = run(cfg, "home/yard/motion", "m", state=first.state, now=NOW + dt.timedelta(minutes=1))
    assert sent_to(other) == ["alex"]


def test_high_priority_passes_the_cooldown_with_a_new_text() -> None:
    cfg = config(COOLDOWN)
    first = run(cfg, "home/motion", "Motion")
    normal = run(cfg, "home/motion", "Smoke", state=first.state, now=NOW + dt.timedelta(minutes=1))
    assert normal.texts == ()
    high = config(COOLDOWN.replace("cooldown: 10m", "cooldown: 10m\n    priority: high"))
    first = run(high, "home/motion", "Motion")
    again = run(high, "home/motion", "Smoke", state=first.state, now=NOW + dt.timedelta(minutes=1))
    assert sent_to(again) == ["alex", "sam"]
    assert {t.priority for t in again.texts} == {"high"}


WET_LEAK = """
rules:
  - name: leak
    topic: home/+/leak
    message: "Water leak: {{ topic_parts[1] }}"
    to: [family]
    cooldown: 15m
    priority: high
"""


def test_a_high_priority_text_that_repeats_is_held_by_the_cooldown_once_per_cooldown() -> None:
    cfg = config(WET_LEAK)
    state = throttle.EMPTY
    bodies: list[list[str]] = []
    for i in range(30):  # a wet sensor every 30 s for 15 minutes
        now = NOW + dt.timedelta(seconds=30 * i)
        r = run(cfg, "home/basement/leak", '{"water_leak": true}', state=state, now=now)
        bodies.append([t.body for t in r.texts])
        if i:
            assert states(r) == ["suppressed"]
            assert r.events[0].error is not None and "repeats" in r.events[0].error
        state = r.state
    assert bodies[0] == ["Water leak: basement", "Water leak: basement"]
    assert all(b == [] for b in bodies[1:])
    after = run(cfg, "home/basement/leak", "{}", state=state, now=NOW + dt.timedelta(minutes=15))
    assert [t.body for t in after.texts] == ["Water leak: basement (+29 more)"] * 2


def test_a_high_priority_text_that_differs_passes_and_starts_the_cooldown_again() -> None:
    cfg = config(WET_LEAK.replace('"Water leak: {{ topic_parts[1] }}"', "'{{ value }}'"))
    first = run(cfg, "home/basement/leak", "wet")
    held = run(
        cfg, "home/basement/leak", "wet", state=first.state, now=NOW + dt.timedelta(minutes=1)
    )
    assert states(held) == ["suppressed"]
    later = NOW + dt.timedelta(minutes=2)
    other = run(cfg, "home/basement/leak", "flooded", state=held.state, now=later)
    assert [t.body for t in other.texts] == ["flooded (+1 more)"] * 2
    # the cooldown now started with "flooded": "wet" is new again, "flooded" repeats
    wet = run(cfg, "home/basement/leak", "wet", state=other.state, now=later)
    assert sent_to(wet) == ["alex", "sam"]
    again = run(cfg, "home/basement/leak", "wet", state=wet.state, now=later)
    assert states(again) == ["suppressed"]


def test_payload_high_priority_passes_the_cooldown_of_the_alert_rule_with_a_new_text() -> None:
    cfg = config(base=BASE.replace("defaults:\n", "defaults:\n  cooldown: 10m\n"))
    first = run(cfg, ALERTS, "Smoke")
    normal = run(cfg, ALERTS, "Fire", state=first.state, now=NOW + dt.timedelta(minutes=1))
    assert states(normal) == ["suppressed"]
    same = run(
        cfg,
        ALERTS,
        '{"message": "Smoke", "priority": "high"}',
        state=normal.state,
        now=NOW + dt.timedelta(minutes=2),
    )
    assert states(same) == ["suppressed"]
    high = run(
        cfg,
        ALERTS,
        '{"message": "Fire", "priority": "high"}',
        state=same.state,
        now=NOW + dt.timedelta(minutes=3),
    )
    assert [t.body for t in high.texts] == ["Fire (+2 more)"]


# --------------------------------------------------------------------------- per recipient


def test_the_daily_cap_suppresses_each_recipient_past_it() -> None:
    cfg = config(COOLDOWN.replace("    cooldown: 10m\n", ""), limits="{daily_cap: 3}")
    first = run(cfg, "home/motion", "one")
    assert sent_to(first) == ["alex", "sam"]
    second = run(cfg, "home/motion", "two", state=first.state, now=NOW + dt.timedelta(minutes=1))
    assert sent_to(second) == ["alex"]
    assert [(e.state, e.to) for e in second.events] == [("suppressed", "sam")]
    assert second.events[0].error is not None and "daily cap" in second.events[0].error


def test_high_priority_never_passes_the_daily_cap() -> None:
    cfg = config(limits="{daily_cap: 1}")
    first = run(cfg, ALERTS, "one")
    high = run(
        cfg, ALERTS, '{"message": "two", "priority": "high"}', state=first.state, alert_id="a2"
    )
    assert high.texts == ()
    assert states(high) == ["suppressed"]


def test_the_daily_cap_counts_split_parts() -> None:
    cfg = config(
        limits="{daily_cap: 2}", base=BASE.replace("defaults:\n", "defaults:\n  long: split\n")
    )
    routed = run(cfg, ALERTS, "word " * 80)  # needs 3 parts
    assert routed.texts == ()
    assert states(routed) == ["suppressed"]


QUIET = '{quiet_hours: {start: "22:00", end: "07:00"}, per_recipient: 0}'
NIGHT = dt.datetime(2026, 6, 2, 3, 30, tzinfo=dt.UTC)  # 23:30 in New York
MORNING = dt.datetime(2026, 6, 2, 11, 0, tzinfo=dt.UTC)  # 07:00 in New York


def test_quiet_hours_defer_normal_priority_to_the_end_of_the_window() -> None:
    routed = run(config(limits=QUIET), ALERTS, "Dryer done", now=NIGHT)
    (text,) = routed.texts
    assert text.not_before == MORNING
    (event,) = routed.events
    assert (event.state, event.id, event.to) == ("deferred", text.id, "alex")
    assert event.extra["next_try"] == MORNING.isoformat()
    assert throttle.day_count(routed.state, NIGHT, NY) == 1  # it counts toward the cap


def test_quiet_hours_let_high_priority_through() -> None:
    routed = run(
        config(limits=QUIET), ALERTS, '{"message": "Smoke", "priority": "high"}', now=NIGHT
    )
    assert [t.not_before for t in routed.texts] == [None]
    assert routed.events == ()


def test_quiet_hours_do_not_defer_outside_the_window() -> None:
    routed = run(config(limits=QUIET), ALERTS, "Dryer done", now=NOW)
    assert [t.not_before for t in routed.texts] == [None]


def test_the_per_recipient_rate_suppresses_past_the_limit() -> None:
    cfg = config(limits="{per_recipient: 2/h, daily_cap: 0}")
    state = throttle.EMPTY
    outcomes = []
    for i in range(3):
        r = run(cfg, ALERTS, f"n{i}", state=state, now=NOW + dt.timedelta(minutes=i))
        outcomes.append((sent_to(r), states(r)))
        state = r.state
    assert outcomes == [(["alex"], []), (["alex"], []), ([], ["suppressed"])]
    high = run(cfg, ALERTS, '{"message": "x", "priority": "high"}', state=state)
    assert sent_to(high) == ["alex"]


# --------------------------------------------------------------------------- length, ids


LONG_TEXT = "The basement water sensor reports a leak near the boiler, check now. " * 4


def test_max_length_truncates_with_an_ellipsis() -> None:
    cfg = config(base=BASE.replace("defaults:\n", "defaults:\n  max_length: 50\n"))
    (text,) = run(cfg, ALERTS, LONG_TEXT).texts
    assert septets(text.body) <= 50
    assert text.body.endswith("...")
    assert text.body.startswith("The basement")


def test_max_length_split_makes_numbered_parts_with_unique_ids() -> None:
    cfg = config(base=BASE.replace("defaults:\n", "defaults:\n  max_length: 60\n  long: split\n"))
    payload = json.dumps({"message": LONG_TEXT[:170], "to": "family"})
    routed = run(cfg, ALERTS, payload, alert_id="zz9")
    bodies = [t.body for t in routed.texts if t.recipient == "alex"]
    assert len(bodies) == 3
    assert [b[:6] for b in bodies] == ["(1/3) ", "(2/3) ", "(3/3) "]
    assert all(septets(b) <= 60 for b in bodies)
    ids = [t.id for t in routed.texts]
    assert len(ids) == 6 == len(set(ids))
    assert all(t.alert_id == "zz9" and t.id.startswith("zz9-") for t in routed.texts)
    assert sorted(int(i.split("-")[1]) for i in ids) == list(range(1, 7))


def test_text_and_event_ids_are_unique_within_one_message() -> None:
    routed = run(
        config(limits=QUIET),
        ALERTS,
        '{"message": "x", "to": ["alx", "family", "+15550001111", "kim"]}',
        now=NIGHT,
        alert_id="q7",
    )
    ids = [t.id for t in routed.texts] + [e.id for e in routed.events if e.state == "rejected"]
    assert len(ids) == len(set(ids)) == 5
    assert all(i.startswith("q7-") for i in ids)


def test_the_more_suffix_survives_truncation() -> None:
    cfg = config(
        """
        rules:
          - name: motion
            topic: home/motion
            cooldown: 10m
            max_length: 40
        """
    )
    first = run(cfg, "home/motion", "m")
    held = run(cfg, "home/motion", "m", state=first.state, now=NOW + dt.timedelta(minutes=1))
    after = run(cfg, "home/motion", LONG_TEXT, state=held.state, now=NOW + dt.timedelta(hours=1))
    (text,) = after.texts
    assert text.body.endswith("... (+1 more)")
    assert septets(text.body) <= 40


# --------------------------------------------------------------------------- property


PROPERTY_CONFIG = config(
    """
    rules:
      - name: all
        topic: "#"
        max_length: 30
      - name: leak
        topic: z/+/leak
        when: value_json.water_leak
        message: "Leak {{ topic_parts[1] }}: {{ value_json.where | default('?') }} {{ value }}"
        long: split
        max_length: 45
        max_parts: 2
        cooldown: 5m
      - name: uni
        topic: z/#
        charset: unicode
        max_length: 100
        subject: "{{ value_json.s }}"
        key: "{{ value_json.key }}"
      - name: kept
        topic: a/+
        retained: true
        message: "{{ value[:3] }}{{ value_json }}"
    """,
    limits=QUIET,
)
RULE_OPTIONS = {rule.name: rule.options for rule in PROPERTY_CONFIG.rules}


def _fits(body: str, charset: str, max_length: int, parts: int) -> bool:
    if charset == "auto":  # whichever charset the text went out in
        return _fits(body, "gsm7", max_length, parts) or _fits(body, "unicode", max_length, parts)
    if charset == "gsm7":
        return septets(body) <= (max_length if parts == 1 else min(max_length, 153))
    units = len(body.encode("utf-16-le")) // 2
    return units <= (min(max_length, 70) if parts == 1 else min(max_length, 67))


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    topic=st.lists(
        st.sampled_from(["z", "a", "leak", "mqtt2sms", "home", "x"]), min_size=1, max_size=4
    ).map("/".join),
    payload=st.binary(max_size=3000)
    | JSONISH.map(lambda v: json.dumps(v).encode())
    | st.fixed_dictionaries(
        {
            "water_leak": st.booleans(),
            "message": st.text(max_size=400),
            "to": st.sampled_from(["alex", "family", ["x@y.z"], "nobody"]),
        }
    ).map(lambda v: json.dumps(v).encode()),
    retained=st.booleans(),
    minutes=st.integers(min_value=0, max_value=60 * 24),
)
def test_route_never_raises_and_every_text_fits(
    topic: str, payload: bytes, retained: bool, minutes: int
) -> None:
    now = NOW + dt.timedelta(minutes=minutes)
    state = throttle.EMPTY
    for n in range(2):  # the second pass meets the first one's cooldowns
        routed = route(
            PROPERTY_CONFIG,
            TEMPLATES,
            Message(topic=topic, payload=payload, received_at=now, retained=retained),
            state,
            now,
            NY,
            f"p{n}",
        )
        state = routed.state
        by_alert: dict[tuple[str, str], int] = {}
        for t in routed.texts:
            by_alert[(t.rule, t.recipient)] = by_alert.get((t.rule, t.recipient), 0) + 1
        for t in routed.texts:
            o = RULE_OPTIONS[t.rule]
            assert _fits(t.body, o.charset, o.max_length, by_alert[(t.rule, t.recipient)]), t
        # A deferred event carries its text's id; every other id is new.
        ids = [t.id for t in routed.texts] + [e.id for e in routed.events if e.state != "deferred"]
        assert len(ids) == len(set(ids))


def test_a_rule_with_no_recipients_is_a_rejected_event_not_silence() -> None:
    cfg = config(base="contacts:\n  alex: {email: a@example.com}\n")
    routed = run(cfg, "home/alerts/sms", "hello")
    assert routed.texts == ()
    assert [e.state for e in routed.events] == ["rejected"]
    assert "no recipients" in (routed.events[0].error or "")


@pytest.mark.parametrize("given", ["HIGH", "High", " high "])
def test_a_payload_priority_is_read_in_any_case(given: str) -> None:
    routed = run(config(), ALERTS, json.dumps({"message": "Smoke", "priority": given}))
    assert [t.priority for t in routed.texts] == ["high"]


def test_cooldowns_are_measured_on_the_elapsed_axis_not_the_wall_clock() -> None:
    cfg = config("rules:\n  - {name: door, topic: door, cooldown: 10s}\n")
    e0 = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    first = route(cfg, TEMPLATES, msg("door", "open"), throttle.EMPTY, NOW, NY, "a1", elapsed=e0)
    # the wall clock stepped back a day, 11 s elapsed: the cooldown is over
    later = NOW - dt.timedelta(days=1)
    e1 = e0 + dt.timedelta(seconds=11)
    second = route(cfg, TEMPLATES, msg("door", "open"), first.state, later, NY, "a2", elapsed=e1)
    assert len(second.texts) == 1
    # 5 s elapsed with the wall clock a day ahead: still cooling down, shown on the wall clock
    e2 = e1 + dt.timedelta(seconds=5)
    ahead = NOW + dt.timedelta(days=1)
    third = route(cfg, TEMPLATES, msg("door", "open"), second.state, ahead, NY, "a3", elapsed=e2)
    (ev,) = third.events
    assert ev.state == "suppressed"
    assert str(ev.extra["until"]).startswith((ahead + dt.timedelta(seconds=5)).isoformat()[:19])


# --------------------------------------------------------------------- when: null, unavailable

TEMP = """
rules:
  - name: hot
    topic: zigbee2mqtt/+/temp
    when: value_json.temperature > 30
    message: "Hot: {{ value_json.temperature }}"
"""


@pytest.mark.parametrize(
    "payload", ['{"temperature": null}', "unavailable", '{"temperature": "unavailable"}']
)
def test_when_on_a_dropped_out_sensor_is_false_and_said_once_per_rule(payload: str) -> None:
    cfg, templates = config(TEMP), Templates()
    first = route(
        cfg, templates, msg("zigbee2mqtt/attic/temp", payload), throttle.EMPTY, NOW, NY, "a"
    )
    assert first.texts == () and first.events == ()  # no fallback text: no false alarm
    assert first.stopped == ("hot",) and first.matched == ()
    if payload == "unavailable":  # not JSON: value_json is undefined, silently false as before
        assert first.problems == ()
        return
    [problem] = first.problems
    assert problem.startswith("rule hot: in `when`, ") and "> 30 is false" in problem
    again = route(
        cfg, templates, msg("zigbee2mqtt/attic/temp", payload), throttle.EMPTY, NOW, NY, "b"
    )
    assert again.texts == () and again.problems == ()  # once per rule, not per message
    hot = route(
        cfg,
        templates,
        msg("zigbee2mqtt/attic/temp", '{"temperature": 31}'),
        throttle.EMPTY,
        NOW,
        NY,
        "c",
    )
    assert [t.body for t in hot.texts] == ["Hot: 31"]


def test_a_when_that_fails_otherwise_still_sends_the_fallback() -> None:
    cfg = config(TEMP.replace("value_json.temperature > 30", "value_json.temperature / 0 > 1"))
    routed = run(cfg, "zigbee2mqtt/attic/temp", '{"temperature": 3}')
    assert [t.body for t in routed.texts] == ['hot: {"temperature": 3}']
    assert "when failed" in routed.problems[0]


# --------------------------------------------------------------------------- charset, subject


def test_the_subject_is_transliterated_and_counted_and_the_charset_said() -> None:
    cfg = config(
        """
        rules:
          - name: leak
            topic: home/leak
            subject: "“Leak” 🔥"
            max_length: 40
        """
    )
    routed = run(cfg, "home/leak", "x" * 60)
    [t] = routed.texts
    assert t.subject == '"Leak"'
    assert septets(t.body) + septets(t.subject) + 1 <= 40
    [(rule, charset, reason)] = routed.charsets  # config's default: gsm7 today, auto soon
    assert (rule, charset) == ("leak", "gsm7") and reason.endswith("transliterated, no letter lost")


def test_cyrillic_is_never_deleted() -> None:
    cfg = config("rules: [{name: leak, topic: home/leak}]")
    routed = run(cfg, "home/leak", "Привет мир: протечка")
    [t] = routed.texts
    assert t.body in ("Привет мир: протечка", "Privet mir: protechka")  # auto / gsm7
    [(rule, _charset, reason)] = routed.charsets
    assert rule == "leak" and "Cyrillic" in reason
