"""`check`'s warnings about escalation: a rule's `to` that the policy overrides, a policy
nobody it texts can acknowledge by a reply, a calling step's contact no way out can ring, a
`call_gap` too long for iPhone's repeated calls, and ``ways.reads_replies`` and
``ways.can_call`` behind them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mqtt2sms import ways
from mqtt2sms.config import Loaded, parse_config

ENV = {"HOME": "/home/pi", "TW": "t", "PHONE": "p"}

# line numbers below count from this header: smtp is line 1
HEADER = """\
smtp: {host: smtp.example.com, from: me@example.com}
twilio: {account_sid: AC1, auth_token: t, TWILIO_FROM}
android: {url: 'http://127.0.0.1:8080', username: sms, password: p}
MODEM
contacts:
  alex: {number: "+1 555 123 4567", carrier: tmobile, via: ALEX_VIA}
  sam: {number: "+1 555 765 4321", carrier: verizon, via: [smtp]}
escalations:
  fire:
    steps:
      - {to: [alex]}
      - {to: [sam], after: 5m}
rules:
  - name: smoke
    topic: zigbee2mqtt/+/smoke
    escalate: fire
"""

NOBODY = (
    "config.yaml:9: escalations.fire: nobody it texts can reply (no way out that reads "
    "replies: modem, android, twilio with from); it can be acknowledged only by MQTT or "
    "Home Assistant"
)


def config_text(
    alex_via: str, twilio_from: str = "from: '+15550001111'", modem: str = "", rule: str = ""
) -> str:
    return (
        HEADER.replace("ALEX_VIA", alex_via)
        .replace("TWILIO_FROM", twilio_from)
        .replace("MODEM\n", modem + "\n" if modem else "\n")
        + rule
    )


def load(text: str) -> Loaded:
    return parse_config(textwrap.dedent(text), "config.yaml", ENV)


@pytest.fixture
def modem_line(tmp_path: Path) -> str:
    device = tmp_path / "ttyUSB0"
    device.write_text("")
    return f"modem: {{device: {device}}}"


def test_a_policy_texted_by_the_gateway_alone_cannot_be_replied_to() -> None:
    assert load(config_text("[smtp]")).warnings == (NOBODY,)


@pytest.mark.parametrize("via", ["[twilio]", "[android]", "[smtp, twilio]", "[android, smtp]"])
def test_one_contact_who_can_reply_is_enough(via: str) -> None:
    assert load(config_text(via)).warnings == ()


def test_a_modem_reads_replies(modem_line: str) -> None:
    assert load(config_text("[modem]", modem=modem_line)).warnings == ()


def test_twilio_without_from_reads_no_replies() -> None:
    text = config_text("[twilio]", twilio_from="messaging_service_sid: MG1")
    assert load(text).warnings == (NOBODY,)


def test_the_rules_via_counts_when_the_contact_has_none() -> None:
    text = config_text("[smtp]").replace("  alex: ", "  pat: {email: p@example.com}\n  alex: ")
    text = text.replace("{to: [alex]}", "{to: [pat]}")
    # sam texts by smtp, pat has only an email address: nobody can reply
    assert load(text).warnings == (NOBODY.replace(":9:", ":10:"),)
    # a rule's via with android reaches sam by the phone, who can then reply
    text = config_text("[smtp]").replace("carrier: verizon, via: [smtp]}", "carrier: verizon}")
    assert load(text).warnings == (NOBODY,)
    assert load(text + "    via: [android]\n").warnings == ()


def test_a_policy_no_rule_uses_is_judged_by_defaults_via() -> None:
    text = config_text("[smtp]").replace("escalate: fire", "to: [alex]")
    assert load(text).warnings == (NOBODY,)
    text = text.replace("carrier: verizon, via: [smtp]}", "carrier: verizon}")
    assert load(text + "defaults: {via: [twilio]}\n").warnings == ()


def test_escalate_with_to_names_the_policy() -> None:
    text = config_text("[twilio]") + "    to: [sam]\n"
    assert load(text).warnings == (
        "config.yaml:17: rules[0].to: ignored: the steps of escalation policy 'fire' choose "
        "the recipients",
    )


def test_resolve_when_without_escalate_still_warns() -> None:
    text = config_text("[twilio]").replace(
        "escalate: fire", "to: [alex]\n    resolve_when: 'value == \"0\"'"
    )
    assert load(text).warnings == (
        "config.yaml:17: rules[0].resolve_when: ignored without escalate",
    )


def test_received_warns_only_when_nothing_reads_texts() -> None:
    reads = config_text("[twilio]") + "received: all\n"
    assert load(reads).warnings == ()
    none = config_text("[smtp]", twilio_from="messaging_service_sid: MG1").replace(
        "android: {url: 'http://127.0.0.1:8080', username: sms, password: p}\n", ""
    )
    assert load(none + "received: all\n").warnings == (
        NOBODY.replace(":9:", ":8:"),
        "config.yaml:16: received: ignored: no way out reads received texts "
        "(modem, android, twilio with from)",
    )
    assert load(none + "received: none\n").warnings == (NOBODY.replace(":9:", ":8:"),)


# --------------------------------------------------------------------------- reads_replies


def test_reads_replies(modem_line: str) -> None:
    full = load(config_text("[twilio]", modem=modem_line)).config
    assert [w for w in ways.NAMES if ways.reads_replies(full, w)] == ["twilio", "modem", "android"]
    assert ways.reads_replies(full, "smtp") is False
    assert ways.reads_replies(full, "pigeon") is False
    service = load(config_text("[smtp]", twilio_from="messaging_service_sid: MG1")).config
    assert ways.reads_replies(service, "twilio") is False
    assert ways.reads_replies(service, "modem") is False  # no modem section
    assert ways.reads_replies(service, "android") is True


# --------------------------------------------------------------------------- calling steps


def calling(text: str, step: str = "{to: [sam], after: 5m, call: 2}") -> str:
    return text.replace("{to: [sam], after: 5m}", step)


def no_call(who: str, step: int = 2, line: int = 12) -> str:
    return (
        f"config.yaml:{line}: escalations.fire.steps[{step - 1}]: {who}: step {step} calls, "
        f"but no way out of {who}'s can call (modem, or twilio with from); {who} gets the "
        "text only"
    )


def test_a_contact_a_calling_step_cannot_ring_is_warned_about_at_the_step() -> None:
    # sam texts by smtp only: the call has no way out
    assert load(calling(config_text("[twilio]"))).warnings == (no_call("sam"),)
    # android reads replies but cannot call
    text = calling(config_text("[android]"), "{to: [alex, sam], after: 5m, call: 1}")
    assert load(text).warnings == (no_call("alex"), no_call("sam"))


def test_a_step_that_does_not_call_warns_about_nothing() -> None:
    assert load(calling(config_text("[twilio]"), "{to: [sam], after: 5m, call: 0}")).warnings == ()


def test_the_first_way_that_can_call_is_enough(modem_line: str) -> None:
    step = "{to: [alex], after: 5m, call: 2}"
    assert load(calling(config_text("[android, twilio]"), step)).warnings == ()
    assert load(calling(config_text("[smtp, modem]", modem=modem_line), step)).warnings == ()
    # twilio without `from` cannot call (nor read replies)
    text = calling(config_text("[twilio]", twilio_from="messaging_service_sid: MG1"), step)
    assert load(text).warnings == (NOBODY, no_call("alex"))


def test_a_group_is_expanded_and_each_contact_warned_about_once() -> None:
    text = calling(config_text("[twilio]"), "{to: [house, sam], after: 5m, call: 1}")
    text = text.replace("escalations:\n", "groups: {house: [alex, sam]}\nescalations:\n")
    assert load(text).warnings == (no_call("sam", line=13),)


def test_the_rules_via_decides_for_a_contact_without_one() -> None:
    text = calling(
        config_text("[twilio]").replace("carrier: verizon, via: [smtp]}", "carrier: verizon}")
    )
    assert load(text).warnings == (no_call("sam"),)  # defaults.via is smtp
    assert load(text + "    via: [smtp, twilio]\n").warnings == ()
    # two rules escalate to the policy: one that texts by smtp alone leaves sam uncalled
    second = "  - {name: leak, topic: zigbee2mqtt/+/leak, escalate: fire, via: [smtp]}\n"
    assert load(text + "    via: [twilio]\n" + second).warnings == (no_call("sam"),)


def test_a_call_gap_past_iphones_repeated_calls_window_is_warned_about() -> None:
    gap = "config.yaml:13: escalations.fire.call_gap: the second call may not ring through an "
    gap += "iPhone's Do Not Disturb (repeated calls count only within 3 minutes)"
    text = calling(config_text("[twilio]").replace("via: [smtp]}", "via: [twilio]}"))
    for seconds, warned in (("2m", False), ("179s", False), ("3m", True), ("10m", True)):
        with_gap = text.replace("rules:\n", f"    call_gap: {seconds}\nrules:\n")
        assert load(with_gap).warnings == ((gap,) if warned else ()), seconds
    # one call per step: no second call to let through
    one = text.replace("call: 2", "call: 1")
    assert load(one.replace("rules:\n", "    call_gap: 10m\nrules:\n")).warnings == ()


def test_can_call(modem_line: str) -> None:
    full = load(config_text("[twilio]", modem=modem_line)).config
    assert [w for w in ways.NAMES if ways.can_call(full, w)] == ["twilio", "modem"]
    service = load(config_text("[smtp]", twilio_from="messaging_service_sid: MG1")).config
    assert [w for w in ways.NAMES if ways.can_call(service, w)] == []
