"""The config file as frozen dataclasses.

``parse_config(text, path, env, read_file)`` is the one way in: it validates everything at
once and raises ``ConfigError`` with every problem, each formatted as
``config.yaml:14: rules[2].to: unknown contact 'alx' (did you mean 'alex'?)``.

Durations are seconds (float). Times of day are ``datetime.time``. Secrets are
``field(repr=False)``.

Reading rules worth knowing (they are the user contract in detail):

- YAML paths count list items from 0: ``rules[0]`` is the first rule.
- ``null`` means "not set" (the default) for a key whose value cannot be None, and None for
  one that can (``alert_topic: null`` turns the built-in rule off, ``subject: null`` sends no
  Subject).
- A string key takes an unquoted number as written: ``pin: 0123`` is ``"0123"`` and
  ``from: +15550001111`` is ``"+15550001111"``, not what YAML 1.1 would make of them.
- ``${VAR}`` is replaced in every string; numbers, booleans and durations may come from one
  (``port: ${MQTT_PORT}``).
- Groups may name contacts and other groups (no cycles).

Module map: ``model`` (the dataclasses, resolve_recipients, contact_via), ``reader`` (the
YAML reader and its errors), ``secrets`` (${VAR}, *_file), ``sections`` (one builder per
section), ``build`` (parse_config), ``load`` (finding and opening the file).
"""

from __future__ import annotations

from mqtt2sms.config.build import parse_config
from mqtt2sms.config.load import CONFIG_SEARCH, find_config_path, load_config
from mqtt2sms.config.model import (
    DEFAULT_ALERT_TOPIC,
    SECRET_KEYS,
    TRANSPORTS,
    AndroidConfig,
    Config,
    Contact,
    Escalation,
    EscalationStep,
    HomeAssistant,
    Limits,
    Loaded,
    ModemConfig,
    MqttConfig,
    QuietHours,
    Rate,
    RetryPolicy,
    Rule,
    RuleOptions,
    SmtpConfig,
    TLSConfig,
    TwilioConfig,
    contact_via,
    resolve_recipients,
    rule_named,
    rule_ways,
)
from mqtt2sms.config.reader import (
    default_state_dir,
    did_you_mean,
    parse_duration,
    parse_rate,
    parse_time_of_day,
    topic_filter_problem,
    topic_name_problem,
)
from mqtt2sms.config.sections import NOT_BUILT

__all__ = [
    "CONFIG_SEARCH",
    "DEFAULT_ALERT_TOPIC",
    "NOT_BUILT",
    "SECRET_KEYS",
    "TRANSPORTS",
    "AndroidConfig",
    "Config",
    "Contact",
    "Escalation",
    "EscalationStep",
    "HomeAssistant",
    "Limits",
    "Loaded",
    "ModemConfig",
    "MqttConfig",
    "QuietHours",
    "Rate",
    "RetryPolicy",
    "Rule",
    "RuleOptions",
    "SmtpConfig",
    "TLSConfig",
    "TwilioConfig",
    "contact_via",
    "default_state_dir",
    "did_you_mean",
    "find_config_path",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_rate",
    "parse_time_of_day",
    "resolve_recipients",
    "rule_named",
    "rule_ways",
    "topic_filter_problem",
    "topic_name_problem",
]
