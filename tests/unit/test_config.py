"""parse_config: every key, every error form, the built-in rules."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from mqtt2sms.config import (
    Contact,
    Loaded,
    Rate,
    RuleOptions,
    contact_via,
    find_config_path,
    load_config,
    parse_config,
    parse_duration,
    parse_rate,
    resolve_recipients,
    topic_filter_problem,
)
from mqtt2sms.errors import ConfigError

ENV = {"HOME": "/home/pi"}

BASE = """\
smtp:
  host: smtp.example.com
  from: me@example.com
contacts:
  alex: {number: "+1 (555) 123-4567", carrier: tmobile}
  sam: {email: "5557654321@vtext.com"}
groups:
  family: [alex, sam]
"""


def NO_FS(path: str) -> None:  # a fake file system where every file exists
    return None


def load(text: str, env: dict[str, str] | None = None, **kwargs: object) -> Loaded:
    return parse_config(textwrap.dedent(text), "config.yaml", ENV if env is None else env, **kwargs)  # type: ignore[arg-type]


def problems(text: str, env: dict[str, str] | None = None, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text, env, **kwargs)
    return list(info.value.problems)


# --------------------------------------------------------------------------- defaults


def test_empty_file_is_all_defaults() -> None:
    loaded = load("")
    config = loaded.config
    # the one warning of an empty file: nobody can be texted (see test_nobody_to_text_warns)
    assert loaded.warnings == (
        "config.yaml:1: contacts: no contacts: nobody can be texted, every alert will be rejected",
    )
    assert config.path == "config.yaml"
    assert config.state_dir == "/home/pi/.local/state/mqtt2sms"
    assert config.mqtt.host == "127.0.0.1"
    assert config.mqtt.port == 1883
    assert config.mqtt.protocol == "3.1.1"
    assert config.smtp is None
    assert config.twilio is None and config.modem is None and config.android is None
    assert config.contacts == {} and config.groups == {}
    assert config.defaults == RuleOptions()
    assert config.limits.per_recipient == Rate(10, 3600.0)
    assert config.limits.daily_cap == 200
    assert config.alert_topic == "home/alerts/sms"
    assert config.received == "contacts"
    assert [(r.name, r.topic, r.builtin) for r in config.rules] == [
        ("sms", "home/alerts/sms", True),
        ("notify", "mqtt2sms/notify", True),
    ]


def test_comment_only_file_is_valid() -> None:
    assert load("# nothing here\n").config.mqtt.port == 1883


@pytest.mark.parametrize(
    ("env", "state_dir"),
    [
        (
            {"STATE_DIRECTORY": "/var/lib/mqtt2sms:/var/lib/other", "HOME": "/h"},
            "/var/lib/mqtt2sms",
        ),
        ({"XDG_STATE_HOME": "/h/.state", "HOME": "/h"}, "/h/.state/mqtt2sms"),
        ({"XDG_STATE_HOME": "relative", "HOME": "/h"}, "/h/.local/state/mqtt2sms"),
        ({"HOME": "/h"}, "/h/.local/state/mqtt2sms"),
    ],
)
def test_state_dir_default(env: dict[str, str], state_dir: str) -> None:
    assert load("", env).config.state_dir == state_dir


def test_state_dir_given_expands_home() -> None:
    assert load("state_dir: ~/sms\n").config.state_dir == "/home/pi/sms"
    assert load("state_dir: /srv/sms\n").config.state_dir == "/srv/sms"


def test_state_dir_without_any_home_is_an_error() -> None:
    assert problems("", {}) == [
        "config.yaml:1: state_dir: not set, and none of STATE_DIRECTORY, XDG_STATE_HOME, "
        "HOME is set"
    ]


# --------------------------------------------------------------------------- errors


def test_unknown_contact_with_did_you_mean_and_line() -> None:
    text = BASE + textwrap.dedent(
        """\
        rules:
          - name: leak
            topic: a/leak
          - name: door
            topic: a/door
          - name: smoke
            topic: a/smoke
            to: [sam, alx]
        """
    )
    assert problems(text) == [
        "config.yaml:16: rules[2].to: unknown contact 'alx' (did you mean 'alex'?)"
    ]


def test_unknown_keys_with_did_you_mean() -> None:
    text = """\
    mqt:
      host: x
    mqtt:
      hots: broker
    """
    assert problems(text) == [
        "config.yaml:1: mqt: unknown key 'mqt' (did you mean 'mqtt'?)",
        "config.yaml:4: mqtt.hots: unknown key 'hots' (did you mean 'host'?)",
    ]


def test_several_errors_reported_together() -> None:
    text = """\
    mqtt:
      port: 70000
      protocol: "4"
    smtp:
      host: smtp.example.com
      security: tls
    defaults:
      long: wrap
      max_parts: 0
      cooldown: -5
    limits:
      daily_cap: -1
    received: some
    """
    assert problems(text) == [
        "config.yaml:2: mqtt.port: 70000 is out of range: must be from 1 to 65535",
        'config.yaml:3: mqtt.protocol: \'4\' is not a protocol: "3.1.1" or "5"',
        "config.yaml:4: smtp.from: required",
        "config.yaml:6: smtp.security: 'tls' is not one of starttls | ssl | none",
        "config.yaml:8: defaults.long: 'wrap' is not one of truncate | split",
        "config.yaml:9: defaults.max_parts: 0 is out of range: must be at least 1",
        "config.yaml:10: defaults.cooldown: bad duration -5: must be 0 or more",
        "config.yaml:12: limits.daily_cap: -1 is out of range: must be at least 0",
        "config.yaml:13: received: 'some' is not one of contacts | all | none",
    ]


def test_wrong_types() -> None:
    text = """\
    mqtt:
      host: [a, b]
      embedded: maybe
    contacts: [alex]
    rules: {name: x}
    """
    assert problems(text) == [
        "config.yaml:2: mqtt.host: expected a string, got a list",
        "config.yaml:3: mqtt.embedded: expected true or false, got a string",
        "config.yaml:4: contacts: expected a mapping, got a list",
        "config.yaml:5: rules: expected a list, got a mapping",
    ]


def test_yaml_syntax_error_has_a_line() -> None:
    (problem,) = problems("mqtt:\n  host: x\n  port: [1883\nsmtp: {}\n")
    assert problem.startswith("config.yaml:4: YAML syntax error:")


def test_top_level_must_be_a_mapping() -> None:
    assert problems("- a\n- b\n") == ["config.yaml:1: (top level): expected a mapping, got a list"]


def test_duplicate_key() -> None:
    assert problems("mqtt:\n  port: 1\n  port: 2\n") == [
        "config.yaml:3: mqtt.port: duplicate key 'port'"
    ]


# --------------------------------------------------------------------------- env and secrets


def test_env_var_substitution() -> None:
    text = """\
    mqtt:
      host: ${BROKER}
      port: ${PORT}
      username: u-${USER_SUFFIX}
      password: ${PW}
    state_dir: ${CREDENTIALS_DIRECTORY}/state
    """
    env = {"BROKER": "mq.lan", "PORT": "8883", "USER_SUFFIX": "x", "PW": "s3cret"}
    env["CREDENTIALS_DIRECTORY"] = "/run/credentials/mqtt2sms.service"
    mqtt = load(text, env).config.mqtt
    assert (mqtt.host, mqtt.port, mqtt.username, mqtt.password) == ("mq.lan", 8883, "u-x", "s3cret")
    assert load(text, env).config.state_dir == "/run/credentials/mqtt2sms.service/state"


def test_unset_env_var_is_an_error_naming_it() -> None:
    text = """\
    mqtt:
      host: ${BROKER}
      password: ${SECRET_PW}
    """
    assert problems(text) == [
        "config.yaml:2: mqtt.host: environment variable BROKER is not set",
        "config.yaml:3: mqtt.password: environment variable SECRET_PW is not set",
    ]


def test_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text("app pass word\n\n", encoding="utf-8")
    text = f"""\
    smtp:
      host: smtp.example.com
      from: me@example.com
      username: me
      password_file: {secret}
    """
    # one trailing newline is stripped, not two
    assert load(text).config.smtp is not None
    assert load(text).config.smtp.password == "app pass word\n"  # type: ignore[union-attr]


def test_secret_file_through_credentials_directory() -> None:
    seen: list[str] = []

    def read_file(path: str) -> str:
        seen.append(path)
        return "tok\n"

    text = """\
    twilio:
      account_sid: AC123
      auth_token_file: ${CREDENTIALS_DIRECTORY}/twilio
      from: "+15550001111"
    """
    env = {"HOME": "/h", "CREDENTIALS_DIRECTORY": "/run/cred"}
    twilio = load(text, env, read_file=read_file).config.twilio
    assert twilio is not None and twilio.auth_token == "tok"
    assert seen == ["/run/cred/twilio"]


def test_secret_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    text = f"""\
    mqtt:
      username: u
      password: x
      password_file: /somewhere
    modem:
      pin_file: {missing}
    """
    assert problems(text) == [
        "config.yaml:4: mqtt.password_file: give password or password_file, not both",
        f"config.yaml:6: modem.pin_file: cannot read '{missing}': No such file or directory",
    ]


def test_secrets_never_in_repr_or_errors() -> None:
    text = """\
    mqtt:
      username: u
      password: hunter2-mqtt
    smtp:
      host: h
      from: a@b.example
      username: u
      password: hunter2-smtp
    modem: {pin: "0123"}
    """
    config = load(text).config
    assert config.modem is not None and config.modem.pin == "0123"
    assert "hunter2" not in repr(config)
    assert "0123" not in repr(config)
    bad = "mqtt:\n  password: [hunter2]\n"
    assert all("hunter2" not in p for p in problems(bad))


def test_unquoted_numbers_stay_as_written_in_strings() -> None:
    config = load("modem: {pin: 0123}\ntwilio: {account_sid: AC1, from: +15550001111}\n").config
    assert config.modem is not None and config.modem.pin == "0123"
    assert config.twilio is not None and config.twilio.from_number == "+15550001111"


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1.5m", 90.0),
        ("45", 45.0),
        ("2.5", 2.5),
        (30, 30.0),
        (0.5, 0.5),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "10x", "m", "-5", -1, "1 hour", True, None, "1h-5m"])
def test_parse_duration_bad(value: object) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("yaml_value", "seconds"),
    [("30s", 30.0), ("10m", 600.0), ("2h", 7200.0), ("1d", 86400.0), ("90", 90.0), ('"90"', 90.0)],
)
def test_durations_in_the_file(yaml_value: str, seconds: float) -> None:
    assert load(f"defaults: {{cooldown: {yaml_value}}}\n").config.defaults.cooldown == seconds


@pytest.mark.parametrize(
    ("value", "rate"),
    [
        ("10/h", Rate(10, 3600.0)),
        ("1/s", Rate(1, 1.0)),
        ("5/m", Rate(5, 60.0)),
        ("20/d", Rate(20, 86400.0)),
        ("3/15m", Rate(3, 900.0)),
        ("0", None),
        (0, None),
    ],
)
def test_parse_rate(value: object, rate: Rate | None) -> None:
    assert parse_rate(value) == rate


@pytest.mark.parametrize("value", ["10", "10/x", "h", "/h", 5, "-1/h", "10/0s"])
def test_parse_rate_bad(value: object) -> None:
    with pytest.raises(ValueError, match="bad rate"):
        parse_rate(value)


def test_rates_in_the_file() -> None:
    assert load("limits: {per_recipient: 0}\n").config.limits.per_recipient is None
    assert load("limits: {per_recipient: '0'}\n").config.limits.per_recipient is None
    assert load("limits: {per_recipient: 3/m}\n").config.limits.per_recipient == Rate(3, 60.0)
    assert problems("limits: {per_recipient: lots}\n") == [
        "config.yaml:1: limits.per_recipient: bad rate 'lots': "
        "use N/s, N/m, N/h or N/d (such as 10/h), or 0"
    ]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ('"22:00"', '"07:00"'),
        ("22:00", "07:00"),  # unquoted 22:00 is the YAML 1.1 int 1320
        ("22:00", "7:00"),  # and 7:00 is 420
    ],
)
def test_quiet_hours(start: str, end: str) -> None:
    text = f"limits:\n  quiet_hours: {{start: {start}, end: {end}}}\n"
    quiet = load(text).config.limits.quiet_hours
    assert quiet is not None
    assert (quiet.start, quiet.end) == (dt.time(22, 0), dt.time(7, 0))


def test_quiet_hours_errors() -> None:
    text = "limits:\n  quiet_hours: {start: '25:00'}\n"
    assert problems(text) == [
        "config.yaml:2: limits.quiet_hours.start: bad time of day '25:00': "
        'use HH:MM, such as "22:00"',
        "config.yaml:2: limits.quiet_hours.end: required",
    ]


def test_retry_first_not_longer_than_max() -> None:
    assert problems("limits:\n  retry: {first: 10m, max: 5s}\n") == [
        "config.yaml:2: limits.retry: first may not be longer than max"
    ]


@pytest.mark.parametrize(
    ("value", "protocol"),
    [('"3.1.1"', "3.1.1"), ("3.1.1", "3.1.1"), ("311", "3.1.1"), ("5", "5"), ("v5", "5")],
)
def test_mqtt_protocol(value: str, protocol: str) -> None:
    assert load(f"mqtt: {{protocol: {value}}}\n").config.mqtt.protocol == protocol


def test_mqtt_tls() -> None:
    assert load("mqtt: {tls: null}\n").config.mqtt.tls is None
    tls = load("mqtt: {tls: true}\n").config.mqtt.tls
    assert tls is not None and tls.ca_certs is None
    tls = load(
        "mqtt: {tls: {ca_certs: /etc/ca.pem, insecure: true}}\n", check_file=NO_FS
    ).config.mqtt.tls
    assert tls is not None and tls.ca_certs == "/etc/ca.pem" and tls.insecure


@pytest.mark.parametrize(("security", "port"), [("starttls", 587), ("ssl", 465), ("none", 25)])
def test_smtp_default_port(security: str, port: int) -> None:
    text = f"smtp: {{host: h, from: a@b.example, security: {security}}}\n"
    smtp = load(text, check_file=NO_FS).config.smtp
    assert smtp is not None and smtp.port == port and smtp.from_addr == "a@b.example"


def test_smtp_needs_host_and_from() -> None:
    assert problems("smtp:\n  port: 25\n") == [
        "config.yaml:1: smtp.host: required",
        "config.yaml:1: smtp.from: required",
    ]


def test_transport_sections() -> None:
    text = """\
    twilio: {account_sid: AC1, auth_token: t, messaging_service_sid: MG1, poll: 30s}
    android: {url: "http://192.168.1.50:8080/", username: sms, password: p}
    modem: {device: /dev/ttyACM0}
    """
    config = load(text, check_file=NO_FS).config
    assert config.twilio is not None and config.twilio.messaging_service_sid == "MG1"
    assert config.twilio.poll == 30.0
    assert config.android is not None and config.android.url == "http://192.168.1.50:8080"
    assert config.modem is not None and config.modem.device == "/dev/ttyACM0"
    assert problems("twilio: {auth_token: t}\nandroid: {username: u}\n") == [
        "config.yaml:1: twilio.account_sid: required",
        "config.yaml:1: twilio.from: required (or messaging_service_sid)",
        "config.yaml:2: android.url: required",
    ]


# --------------------------------------------------------------------------- contacts and groups


def test_contacts_and_groups() -> None:
    config = load(BASE).config
    alex = config.contacts["alex"]
    assert alex.e164 == "+15551234567"
    assert alex.carrier == "tmobile"
    assert alex.gateway_address == "5551234567@tmomail.net"
    assert config.contacts["sam"].gateway_address == "5557654321@vtext.com"
    assert config.groups["family"] == ("alex", "sam")


def test_contact_carrier_alias_and_country_code() -> None:
    text = """\
    defaults: {country_code: "+1"}
    contacts:
      kim: {number: "555.222.3333", carrier: "Google Fi"}
    """
    kim = load(text).config.contacts["kim"]
    assert kim.carrier == "googlefi"
    assert kim.gateway_address == "5552223333@msg.fi.google.com"


def test_contact_errors() -> None:
    text = """\
    contacts:
      alex: {number: "555-CALL", carrier: tmobil}
      sam: {email: "not an address"}
      pat: {carrier: bell}
      "bad name": {email: a@b.example}
      lee: {}
    """
    assert problems(text) == [
        "config.yaml:2: contacts.alex.number: phone number '555-CALL' has letters in it",
        "config.yaml:2: contacts.alex.carrier: unknown carrier 'tmobil' (did you mean 'tmobile'?) "
        "(`mqtt2sms carriers` lists them; or give the full `email:` address)",
        "config.yaml:3: contacts.sam.email: 'not an address' is not an email address "
        "(name@example.com)",
        "config.yaml:4: contacts.pat.carrier: a carrier needs a number",
        "config.yaml:4: contacts.pat: needs a number (with a carrier for smtp) or an email",
        "config.yaml:5: contacts.bad name: bad name 'bad name': use letters, digits, _ and -",
        "config.yaml:6: contacts.lee: needs a number (with a carrier for smtp) or an email",
    ]


def test_shut_down_carrier_is_a_warning() -> None:
    text = """\
    contacts:
      pat: {number: "5551234567", carrier: "AT&T", via: [smtp]}
    """
    loaded = load(text)
    assert loaded.config.contacts["pat"].gateway_address == "5551234567@txt.att.net"
    (warning,) = loaded.warnings
    assert warning.startswith("config.yaml:2: contacts.pat.carrier: AT&T's email-to-SMS gateway")
    assert "2025-06-17" in warning
    assert "twilio, modem or android" in warning


def test_group_errors() -> None:
    text = """\
    contacts:
      alex: {email: a@b.example}
    groups:
      alex: [alex]
      fam: [alex, sma]
      loop1: [loop2]
      loop2: [loop1]
    """
    assert problems(text) == [
        "config.yaml:4: groups.alex: 'alex' is both a contact and a group",
        "config.yaml:5: groups.fam: unknown contact 'sma'",
        "config.yaml:6: groups.loop1: group 'loop1' contains itself",
        "config.yaml:7: groups.loop2: group 'loop2' contains itself",
    ]


def test_nested_groups_resolve() -> None:
    text = BASE + "  all: [family, alex, kids]\n  kids: [sam]\n"
    config = load(text).config
    found, unknown = resolve_recipients(config, ["all", "nobody", "sam", "nobody"])
    assert [c.name for c in found] == ["alex", "sam"]
    assert unknown == ["nobody"]


# --------------------------------------------------------------------------- via and reachability


def test_via_must_be_configured_except_smtp() -> None:
    text = """\
    contacts:
      alex: {number: "5551234567", via: [twilio]}
    defaults:
      via: [smtp, android, pigeon]
    android:
    """
    assert problems(text) == [
        "config.yaml:2: contacts.alex.via: 'twilio' is not configured: "
        "there is no `twilio:` section",
        "config.yaml:4: defaults.via: 'android' is not configured: "
        "`android:` is empty (write `android: {}` for its defaults)",
        "config.yaml:4: defaults.via: unknown transport 'pigeon' (smtp, twilio, modem or android)",
    ]


def test_reachability_by_effective_via() -> None:
    text = BASE + textwrap.dedent(
        """\
        modem: {}
        defaults:
          to: [family]
        rules:
          - name: r
            topic: a/b
            via: [modem]
        """
    )
    # sam has no number: the rule's modem cannot reach it; the built-ins use smtp: fine
    assert problems(text) == [
        "config.yaml:15: rules[0].via: modem cannot reach contact 'sam': it needs a number"
    ]


def test_reachability_reported_at_contact_for_default_via() -> None:
    text = """\
    contacts:
      kim: {number: "5551234567"}
    defaults: {to: kim}
    """
    assert problems(text) == [
        "config.yaml:2: contacts.kim: needs an email, or a number and a carrier for smtp "
        "(the default via); or give it its own via"
    ]


def test_contact_via_precedence() -> None:
    text = BASE + "twilio: {account_sid: AC1, auth_token: t, from: '+15550001111'}\n"
    text = text.replace("carrier: tmobile}", "carrier: tmobile, via: [twilio, smtp]}")
    config = load(text).config
    alex, sam = config.contacts["alex"], config.contacts["sam"]
    rule_opts = RuleOptions(via=("twilio",))
    assert contact_via(config, alex, rule_opts, True) == ("twilio", "smtp")
    assert contact_via(config, sam, rule_opts, True) == ("twilio",)
    assert contact_via(config, sam, rule_opts, False) == ("smtp",)
    assert contact_via(config, Contact(name="x", via=("smtp",)), rule_opts, True) == ("smtp",)


# --------------------------------------------------------------------------- rules


def test_rule_fields_and_merge_with_defaults() -> None:
    text = BASE + textwrap.dedent(
        """\
        defaults:
          to: family
          cooldown: 5m
          max_length: 140
        rules:
          - name: leak
            topic: zigbee2mqtt/+/leak
            when: "{{ value_json.water_leak }}"
            message: "Water leak: {{ topic_parts[1] }}"
            to: [alex]
            key: "{{ topic }}"
            cooldown: 15m
            priority: high
            retained: true
        """
    )
    config = load(text).config
    leak = config.rules[0]
    assert leak.name == "leak" and leak.topic == "zigbee2mqtt/+/leak"
    assert leak.when == "value_json.water_leak"
    assert leak.message == "Water leak: {{ topic_parts[1] }}"
    assert leak.key == "{{ topic }}"
    assert leak.options.to == ("alex",) and leak.to_set
    assert not leak.via_set
    assert leak.options.cooldown == 900.0 and leak.options.max_length == 140
    assert leak.options.priority == "high" and leak.retained
    assert leak.line == 14
    assert config.defaults.to == ("family",)
    sms = config.rules[1]
    assert sms.builtin and sms.options == config.defaults and not sms.to_set


def test_rule_errors() -> None:
    text = BASE + textwrap.dedent(
        """\
        rules:
          - name: a
            topic: "a/#/b"
          - name: a
            topic: x/y+
            when: "value >"
            message: "{{ unclosed"
            escalate: fier
          - topic: z
        """
    )
    errs = problems(text)
    assert errs[0] == (
        "config.yaml:11: rules[0].topic: 'a/#/b': "
        "'#' must be the last level, alone in it (such as a/b/#)"
    )
    assert errs[1] == "config.yaml:12: rules[1].name: duplicate rule name 'a' (also rules[0])"
    assert errs[2] == (
        "config.yaml:13: rules[1].topic: 'x/y+': '+' must be alone in its level (such as a/+/c)"
    )
    assert errs[3].startswith("config.yaml:14: rules[1].when: expression error: ")
    assert errs[4].startswith("config.yaml:15: rules[1].message: template error: ")
    assert errs[5] == "config.yaml:16: rules[1].escalate: unknown escalation policy 'fier'"
    assert errs[6] == "config.yaml:17: rules[2].name: required"
    assert len(errs) == 7


@pytest.mark.parametrize(
    ("topic", "problem"),
    [
        ("a/b", None),
        ("#", None),
        ("+/+/#", None),
        ("a//b", None),
        ("", "empty"),
        ("a#", "#"),
        ("a/+b", "+"),
    ],
)
def test_topic_filter_problem(topic: str, problem: str | None) -> None:
    found = topic_filter_problem(topic)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_builtin_rule_replaced_by_topic() -> None:
    text = BASE + textwrap.dedent(
        """\
        rules:
          - name: my-sms
            topic: home/alerts/sms
            to: [alex]
          - name: notify
            topic: mqtt2sms/notify
        """
    )
    config = load(text).config
    assert [(r.name, r.builtin) for r in config.rules] == [("my-sms", False), ("notify", False)]


def test_null_alert_topic_drops_sms_rule() -> None:
    config = load("alert_topic: null\n").config
    assert config.alert_topic is None
    assert [r.name for r in config.rules] == ["notify"]
    assert [r.topic for r in load("mqtt: {base_topic: sms2}\n").config.rules] == [
        "home/alerts/sms",
        "sms2/notify",
    ]


def test_user_rule_named_like_a_builtin_clashes() -> None:
    text = BASE + "rules:\n  - {name: sms, topic: other/topic}\n"
    assert problems(text) == [
        "config.yaml:10: rules[0].name: 'sms' is the name of the built-in rule on home/alerts/sms: "
        "choose another name, or give this rule that topic to replace it"
    ]
    text = BASE + "alert_topic: null\nrules:\n  - {name: sms, topic: other/topic}\n"
    assert [r.name for r in load(text).config.rules] == ["sms", "notify"]


@pytest.mark.parametrize("topic", ["#", "+/status", "mqtt2sms/#", "+/+"])
def test_rule_covering_base_topic_warns(topic: str) -> None:
    text = BASE + f"defaults: {{to: family}}\nrules:\n  - {{name: all, topic: '{topic}'}}\n"
    assert load(text).warnings == (
        f"config.yaml:11: rules[0].topic: '{topic}' also covers mqtt2sms/: messages under "
        "mqtt2sms/ are the daemon's own (status, events, stats, acknowledgements on "
        "mqtt2sms/ack) and never match a rule, except mqtt2sms/notify",
    )


@pytest.mark.parametrize("topic", ["home/#", "mqtt2sms", "+", "a/+/c"])
def test_rule_not_covering_base_topic_does_not_warn(topic: str) -> None:
    text = BASE + f"defaults: {{to: family}}\nrules:\n  - {{name: r, topic: '{topic}'}}\n"
    assert load(text).warnings == ()


def test_rule_without_recipients_warns() -> None:
    text = BASE + "rules:\n  - {name: r, topic: a/b}\n"
    assert load(text).warnings == (
        "config.yaml:10: rules[0]: no recipients: neither the rule nor defaults set `to` "
        "(only a payload's `to` can address it)",
    )


def test_jinja_env_can_be_given() -> None:
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment()
    env.filters["shout"] = str.upper
    text = "rules:\n  - {name: r, topic: a, to: [], message: '{{ value | shout }}'}\n"
    # [] is an error; the filter is known only to the given environment
    assert len(problems(text)) == 2
    assert problems(text, jinja_env=env) == ["config.yaml:2: rules[0].to: needs at least one name"]


# --------------------------------------------------------------------------- escalations


ESCALATION = BASE + textwrap.dedent(
    """\
    escalations:
      fire:
        steps:
          - {to: [alex]}
          - {to: [sam], after: 5m}
          - {to: [family], after: 15m}
        repeat: 10m
        give_up: 2h
    rules:
      - name: smoke
        topic: home/smoke
        escalate: fire
        resolve_when: "{{ value == 'clear' }}"
    """
)


NOBODY_REPLIES = (
    "config.yaml:10: escalations.fire: nobody it texts can reply (no way out that reads "
    "replies: modem, android, twilio with from); it can be acknowledged only by MQTT or "
    "Home Assistant"
)


def test_escalation_policy() -> None:
    loaded = load(ESCALATION)
    fire = loaded.config.escalations["fire"]
    assert [(s.to, s.after) for s in fire.steps] == [
        (("alex",), 0.0),
        (("sam",), 300.0),
        (("family",), 900.0),
    ]
    assert (fire.repeat, fire.give_up, fire.hold_after_ack, fire.notify_ack) == (
        600.0,
        7200.0,
        3600.0,
        True,
    )
    smoke = loaded.config.rules[0]
    assert smoke.escalate == "fire" and smoke.resolve_when == "value == 'clear'"
    # BASE texts by smtp alone: a reply to a gateway text goes back as email
    assert loaded.warnings == (NOBODY_REPLIES,)


def test_escalate_with_to_warns() -> None:
    text = ESCALATION + "    to: [alex]\n"
    assert load(text).warnings == (
        NOBODY_REPLIES,
        "config.yaml:22: rules[0].to: ignored: the steps of escalation policy 'fire' choose "
        "the recipients",
    )


def test_escalation_errors() -> None:
    text = BASE + textwrap.dedent(
        """\
        escalations:
          fire:
            steps:
              - {to: [alex], after: 10m}
              - {to: [sma], after: 5m}
          empty: {steps: []}
        """
    )
    assert problems(text) == [
        "config.yaml:13: escalations.fire.steps[1].to: unknown contact 'sma' (did you mean 'sam'?)",
        "config.yaml:13: escalations.fire.steps[1].after: must not be earlier than the step before",
        "config.yaml:14: escalations.empty.steps: needs at least one step",
    ]


# --------------------------------------------------------------------------- finding the file


def test_find_config_path_order() -> None:
    def exists_only(*paths: str) -> object:
        return lambda p: p in paths

    env = {"MQTT2SMS_CONFIG": "/env/c.yaml"}
    assert find_config_path("cli.yaml", env, exists_only()) == "cli.yaml"  # type: ignore[arg-type]
    assert find_config_path(None, env, exists_only()) == "/env/c.yaml"  # type: ignore[arg-type]
    assert find_config_path(None, {}, exists_only("config.yaml")) == "config.yaml"  # type: ignore[arg-type]
    etc = "/etc/mqtt2sms/config.yaml"
    assert find_config_path(None, {}, exists_only(etc)) == etc  # type: ignore[arg-type]


def test_load_config(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("mqtt: {port: 1884}\n", encoding="utf-8")
    assert load_config(str(path), ENV).config.mqtt.port == 1884
    assert load_config(None, {**ENV, "MQTT2SMS_CONFIG": str(path)}).config.path == str(path)
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "missing.yaml"), ENV)
    assert info.value.problems == (f"{tmp_path / 'missing.yaml'}: config file not found",)
    path.write_text("mqtt: {port: 0}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), ENV)
    assert info.value.problems == (
        f"{path}:1: mqtt.port: 0 is out of range: must be from 1 to 65535",
    )


# --------------------------------------------------------------------------- smaller rules


def test_when_forms() -> None:
    text = BASE + textwrap.dedent(
        """\
        defaults: {to: family}
        rules:
          - {name: a, topic: a, when: "{{ value_json.x }}"}
          - {name: b, topic: b, when: "value == 'on'"}
          - {name: c, topic: c, when: "{{ a }} and {{ b }}"}
        """
    )
    assert [r.when for r in load(text).config.rules[:3]] == [
        "value_json.x",
        "value == 'on'",
        "{{ a }} and {{ b }}",
    ]


def test_twilio_from_is_e164() -> None:
    text = "twilio: {account_sid: AC1, auth_token: t, from: '(555) 000-1111'}\n"
    twilio = load(text).config.twilio
    assert twilio is not None and twilio.from_number == "+15550001111"


def test_local_email_addresses_are_fine() -> None:
    text = "smtp: {host: 127.0.0.1, from: pi@localhost}\ncontacts: {t: {email: sink@localhost}}\n"
    config = load(text).config
    assert config.contacts["t"].gateway_address == "sink@localhost"


def test_empty_contact_is_an_error() -> None:
    assert problems("contacts:\n  alex:\n") == [
        "config.yaml:2: contacts.alex: needs a number (with a carrier for smtp) or an email"
    ]


def test_yaml_merge_keys() -> None:
    text = """\
    contacts:
      alex: &common
        number: "5551234567"
        carrier: tmobile
      sam:
        <<: *common
        number: "5557654321"
    """
    contacts = load(text).config.contacts
    assert contacts["alex"].gateway_address == "5551234567@tmomail.net"
    assert contacts["sam"].gateway_address == "5557654321@tmomail.net"


# ------------------------------------------------------------- no alert lost to a mistake


def test_enums_take_any_case_and_keep_lower_case() -> None:
    text = BASE + (
        "defaults: {priority: HIGH, long: Split, charset: UNICODE}\n"
        "rules:\n  - {name: r, topic: a/b, priority: High}\n"
    )
    config = load(text).config
    assert config.defaults.priority == "high"
    assert config.defaults.long == "split"
    assert config.defaults.charset == "unicode"
    rule = next(r for r in config.rules if r.name == "r")
    assert rule.options.priority == "high"


def test_enum_did_you_mean_works_across_case() -> None:
    errs = problems(BASE + "defaults: {priority: HIHG}\n")
    assert errs == [
        "config.yaml:9: defaults.priority: 'HIHG' is not one of normal | high"
        " (did you mean 'high'?)"
    ]


def test_charset_auto_follows_what_sms_formats() -> None:
    from mqtt2sms import sms
    from mqtt2sms.config import RuleOptions

    if "auto" in sms._CHARSETS:
        assert RuleOptions().charset == "auto"
        assert load(BASE + "defaults: {charset: auto}\n").config.defaults.charset == "auto"
    else:  # until sms.py formats `auto`, the config must not hand it over
        assert RuleOptions().charset == "gsm7"
        assert problems(BASE + "defaults: {charset: auto}\n")


@pytest.mark.parametrize(
    "text",
    ["limits: {per_recipient: 1/99999999999999d}\n", "defaults: {cooldown: 99999999999999d}\n"],
)
def test_absurd_durations_are_refused(text: str) -> None:
    errs = problems(BASE + text)
    assert len(errs) == 1 and errs[0].startswith("config.yaml:9: ")
    assert "too long" in errs[0] or "bad rate" in errs[0]
    assert parse_duration("3650d") == 3650 * 86400.0
    with pytest.raises(ValueError, match="at most 10 years"):
        parse_duration("3651d")


def test_a_bad_tz_is_a_config_error() -> None:
    errs = problems(BASE, env={**ENV, "TZ": "Mars/Olympus"})
    assert errs == [
        "config.yaml:1: $TZ: TZ='Mars/Olympus' is not a known time zone (see /usr/share/zoneinfo)"
        ": quiet hours and the daily cap need the local time"
    ]
    assert load(BASE, env={**ENV, "TZ": "Europe/Paris"}).config


def test_a_yaml_nested_thousands_deep_is_a_config_error() -> None:
    errs = problems("rules: " + "[" * 5000 + "]" * 5000 + "\n")
    assert errs == ["config.yaml:1: YAML nested too deeply"]


def test_a_base_topic_that_swallows_the_alert_topic_is_an_error() -> None:
    errs = problems(BASE + "mqtt: {base_topic: home}\n")
    assert errs == [
        "config.yaml:9: alert_topic: 'home/alerts/sms' lies under mqtt.base_topic 'home': "
        "messages under home/ never match a rule, so the built-in `sms` rule cannot fire "
        "(choose another alert_topic or base_topic)"
    ]
    errs = problems(BASE + "rules:\n  - {name: r, topic: mqtt2sms/x/+}\n")
    assert errs == [
        "config.yaml:10: rules[0].topic: 'mqtt2sms/x/+' lies under mqtt.base_topic 'mqtt2sms': "
        "messages under mqtt2sms/ never match a rule (except notify), so this rule cannot fire"
    ]
    # a filter that merely covers the base stays a warning; notify and ack are ours
    assert load(BASE + "rules:\n  - {name: r, topic: '#'}\n").warnings
    load(BASE + "rules:\n  - {name: r, topic: mqtt2sms/notify}\n")


def test_a_non_ascii_address_is_refused() -> None:
    text = BASE.replace("me@example.com", "zoë@example.com").replace(
        "5557654321@vtext.com", "zoë@example.com"
    )
    errs = problems(text)
    assert errs == [
        "config.yaml:3: smtp.from: 'zoë@example.com': an address must be plain ASCII "
        "(the SMTP sender refuses it)",
        "config.yaml:6: contacts.sam.email: 'zoë@example.com': an address must be plain ASCII "
        "(the SMTP sender refuses it)",
    ]
    assert problems(BASE.replace("me@example.com", "'me @example.com'"))


def test_escalation_keys_are_acted_on_and_not_warned_about() -> None:
    """escalations, escalate, resolve_when and received once warned "not yet": no more."""
    text = ESCALATION.replace(
        "smtp:\n", "twilio: {account_sid: AC1, auth_token: t, from: '+15550001111'}\nsmtp:\n"
    ).replace("carrier: tmobile}", "carrier: tmobile, via: [twilio]}")
    assert load(text + "received: all\n").warnings == ()


def test_shut_down_warning_does_not_repeat_itself() -> None:
    text = 'contacts:\n  pat: {number: "5551234567", carrier: att}\n  kim: {email: k@example.com}\n'
    (warning,) = load(text).warnings
    assert warning == (
        "config.yaml:2: contacts.pat.carrier: AT&T's email-to-SMS gateway has shut down, "
        "on 2025-06-17 (550 since): use twilio, modem or android"
    )


def test_nobody_to_text_warns() -> None:
    text = BASE + "groups:\n  family: [alex, sam]\n  nobody: []\ndefaults: {to: [nobody]}\n"
    text = text.replace("groups:\n  family: [alex, sam]\n", "", 1)
    warnings = load(text).warnings
    assert any("defaults.to: names nobody (empty groups)" in w for w in warnings), warnings


def test_every_file_the_config_names_is_checked() -> None:
    files = {"/etc/ca.pem": None, "/etc/key.pem": "not readable by this user"}

    def check(path: str) -> str | None:
        return files.get(path, "no such file")

    text = BASE.replace("  from: me@example.com\n", "  from: me@example.com\n  ca_certs: /x.pem\n")
    text += (
        "mqtt: {tls: {ca_certs: /etc/ca.pem, certfile: /etc/c.pem, keyfile: /etc/key.pem}}\n"
        "modem: {device: /dev/ttyUSB9}\n"
    )
    errs = problems(text, check_file=check)
    assert "config.yaml:4: smtp.ca_certs: '/x.pem': no such file" in errs
    assert "config.yaml:10: mqtt.tls.certfile: '/etc/c.pem': no such file" in errs
    assert "config.yaml:10: mqtt.tls.keyfile: '/etc/key.pem': not readable by this user" in errs
    assert "config.yaml:11: modem.device: '/dev/ttyUSB9': no such file" in errs
    assert not any("/etc/ca.pem" in e for e in errs)


def test_android_receive_is_acted_on_so_neither_it_nor_received_warns() -> None:
    # issue 18: the android way out reads the phone's inbox when `receive: true`
    text = "android: {url: 'http://127.0.0.1:8080', username: sms, password: x, receive: true}\n"
    warnings = load(text + "received: all\n").warnings
    assert not any("receive" in w for w in warnings), warnings
    # issue 19: without `receive` it reads the inbox while an incident is open: no warning
    warnings = load(text.replace("true", "false") + "received: all\n").warnings
    assert not any("receive" in w for w in warnings), warnings
