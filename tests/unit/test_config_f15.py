"""Config mistakes a new user makes (issue 15): `*` topics, alert_topic on notify, YAML syntax,
one error per mistake, ${VAR} and secrets, and what the base-topic warning says."""

from __future__ import annotations

import textwrap

import pytest

from mqtt2sms.config import Loaded, parse_config
from mqtt2sms.config.secrets import literal, substitute
from mqtt2sms.errors import ConfigError

ENV = {"STATE_DIRECTORY": "/var/lib/mqtt2sms", "TZ": "UTC", "HOME": "/home/pi"}

BASE = """\
contacts:
  alex: {number: "+1 (555) 123-4567", carrier: tmobile}
defaults: {to: alex}
"""


def load(text: str, env: dict[str, str] | None = None) -> Loaded:
    return parse_config(textwrap.dedent(text), "config.yaml", ENV if env is None else env)


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text, env)
    return list(info.value.problems)


# --------------------------------------------------------------------------- 2: `*` topics


def test_a_star_in_a_topic_is_a_warning_suggesting_plus_or_hash() -> None:
    loaded = load(BASE + "rules:\n  - {name: z, topic: 'zigbee2mqtt/*'}\n")
    assert loaded.warnings == (
        "config.yaml:5: rules[0].topic: 'zigbee2mqtt/*': `*` is no MQTT wildcard (it is taken "
        "as a plain character, so this matches almost nothing); use 'zigbee2mqtt/+' for one "
        "level or 'zigbee2mqtt/#' for all below",
    )
    # still accepted: `*` is a legal character in a topic
    assert loaded.config.rules[0].topic == "zigbee2mqtt/*"


def test_a_star_inside_a_level_is_a_warning_too() -> None:
    (warning,) = load(BASE + "rules:\n  - {name: z, topic: 'a/*/c'}\n").warnings
    assert "`*` is no MQTT wildcard" in warning and "use 'a/+/c'" in warning
    (warning,) = load(BASE + "rules:\n  - {name: z, topic: 'a/sensor*'}\n").warnings
    assert "`*` is no MQTT wildcard" in warning and "+ for one whole level" in warning


def test_a_topic_without_a_star_has_no_such_warning() -> None:
    assert load(BASE + "rules:\n  - {name: z, topic: 'zigbee2mqtt/+'}\n").warnings == ()


# --------------------------------------------------------------------------- 3: alert_topic


def test_alert_topic_on_notify_makes_one_builtin_rule_and_says_so() -> None:
    loaded = load(BASE + "alert_topic: mqtt2sms/notify\n")
    on_notify = [r.name for r in loaded.config.rules if r.topic == "mqtt2sms/notify"]
    assert on_notify == ["sms"]
    assert loaded.warnings == (
        "config.yaml:4: alert_topic: 'mqtt2sms/notify' is also the topic of the built-in "
        "`notify` rule (Home Assistant's notify entity): the built-in `sms` rule alone serves "
        "it, so each message is texted once",
    )


def test_the_usual_alert_topic_keeps_both_builtin_rules() -> None:
    loaded = load(BASE)
    assert [(r.name, r.topic) for r in loaded.config.rules] == [
        ("sms", "home/alerts/sms"),
        ("notify", "mqtt2sms/notify"),
    ]
    assert loaded.warnings == ()


# --------------------------------------------------------------------------- 13: YAML syntax


def test_a_tab_gets_a_hint_naming_its_line() -> None:
    (problem,) = problems("contacts:\n  alex: {email: a@b.c}\n\tsam: {email: c@d.e}\n")
    assert problem.startswith("config.yaml:3: YAML syntax error: ")
    assert problem.endswith(
        "(line 3 holds a tab: YAML indents with spaces only; stopped at line 3, column 1)"
    )


def test_bad_indentation_gets_a_hint_with_line_and_column() -> None:
    (problem,) = problems("contacts:\n  alex: {email: a@b.c}\n sam: {email: c@d.e}\n")
    assert problem.startswith("config.yaml:3: YAML syntax error: ")
    assert problem.endswith(
        "(stopped at line 3, column 2: indent with spaces, the keys of one section all alike; "
        "the mistake is often on the line above)"
    )


# --------------------------------------------------------------------------- 14: one error


@pytest.mark.parametrize(
    "contact",
    [
        '{number: "+15551234567", carrier: tmobil}',
        '{number: "+15551234567", carrier: tmobil, via: smtp}',
        '{number: "12", carrier: tmobile}',
        '{email: "not an address"}',
    ],
)
def test_a_contact_with_a_mistake_gets_one_error(contact: str) -> None:
    errs = problems(f"contacts:\n  alex: {contact}\ndefaults: {{to: alex}}\n")
    assert len(errs) == 1, errs
    assert "needs an email, or a number and a carrier" not in errs[0]


def test_a_contact_with_no_carrier_still_gets_the_reach_error() -> None:
    errs = problems('contacts:\n  alex: {number: "+15551234567"}\ndefaults: {to: alex}\n')
    assert errs == [
        "config.yaml:2: contacts.alex: needs an email, or a number and a carrier for smtp "
        "(the default via); or give it its own via"
    ]


# --------------------------------------------------------------------------- 10: ${VAR}

SMTP = BASE + "smtp: {host: smtp.example.com, from: a@b.c, username: u, "


def test_the_escape_keeps_a_literal_dollar_brace() -> None:
    assert substitute("a$${HOME}b", {"HOME": "/root"}) == ("a${HOME}b", [])
    assert substitute("${HOME}", {"HOME": "/root"}) == ("/root", [])


@pytest.mark.parametrize(
    "text", ["Tr0ub${HOME}x", "pa${1}ss", "$${", "$$${X}", "${", "}${a}{", "$", "a$$b", ""]
)
def test_literal_gives_back_the_text_as_typed(text: str) -> None:
    assert substitute(literal(text), {"HOME": "/root", "X": "x", "a": "A"}) == (text, [])


@pytest.mark.parametrize(
    ("password", "leaked"),
    [("pa${1}ss", "1"), ("pa${NOT_SET_X}ss", "NOT_SET_X"), ("${1bad}", "1bad")],
)
def test_no_error_prints_part_of_a_password(password: str, leaked: str) -> None:
    text = SMTP + f"password: '{password}'}}\n"
    (problem,) = problems(text)
    assert problem.startswith("config.yaml:4: smtp.password: holds a ${...} reference")
    assert leaked not in problem
    assert "$${" in problem  # says how to write a literal


def test_a_password_that_is_one_variable_names_it_when_unset() -> None:
    text = SMTP + "password: '${SMTP_PASSWORD}'}\n"
    assert problems(text) == [
        "config.yaml:4: smtp.password: environment variable SMTP_PASSWORD is not set"
    ]
    config = load(text, {**ENV, "SMTP_PASSWORD": "s3cret"}).config
    assert config.smtp is not None and config.smtp.password == "s3cret"


def test_an_escaped_password_is_taken_as_written() -> None:
    text = SMTP + "password: 'Tr0ub$${HOME}x'}\n"
    config = load(text).config
    assert config.smtp is not None and config.smtp.password == "Tr0ub${HOME}x"


# --------------------------------------------------------------------------- 18: base topic


def test_a_rule_on_the_ack_topic_can_never_fire() -> None:
    errs = problems(BASE + "rules:\n  - {name: r, topic: mqtt2sms/ack}\n")
    assert errs == [
        "config.yaml:5: rules[0].topic: 'mqtt2sms/ack' lies under mqtt.base_topic 'mqtt2sms': "
        "messages under mqtt2sms/ never match a rule (except notify), so this rule cannot fire"
    ]


def test_an_alert_topic_on_ack_is_refused() -> None:
    (problem,) = problems(BASE + "alert_topic: mqtt2sms/ack\n")
    assert "the built-in `sms` rule cannot fire" in problem
