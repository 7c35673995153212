"""The config as frozen dataclasses, and the queries over them (who a name reaches, by
which transports). Durations are seconds (float); secrets are ``field(repr=False)``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mqtt2sms import sms, ways

# The charsets sms.py formats; the default is `auto` (docs/config.md, `charset`). Should sms.py
# ever lack `auto`, the default falls back to gsm7, a charset it formats.
CHARSETS: tuple[str, ...] = tuple(sms.CHARSETS)
DEFAULT_CHARSET = "auto" if "auto" in CHARSETS else "gsm7"


@dataclass(frozen=True)
class TLSConfig:
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    insecure: bool = False


@dataclass(frozen=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    embedded: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str = "mqtt2sms"
    protocol: str = "3.1.1"  # "3.1.1" | "5"
    session_expiry: float = 7 * 86400.0
    keepalive: int = 60
    tls: TLSConfig | None = None
    base_topic: str = "mqtt2sms"


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    from_addr: str  # the YAML key is `from`
    port: int = 587
    security: str = "starttls"  # starttls | ssl | none
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    ca_certs: str | None = None


@dataclass(frozen=True)
class TwilioConfig:
    account_sid: str
    auth_token: str | None = field(default=None, repr=False)
    from_number: str | None = None  # the YAML key is `from`
    messaging_service_sid: str | None = None
    api_base: str = "https://api.twilio.com"
    poll: float = 15.0
    receive: bool = False


@dataclass(frozen=True)
class ModemConfig:
    device: str = "/dev/ttyUSB0"
    baudrate: int = 115200
    pin: str | None = field(default=None, repr=False)
    poll: float = 15.0


@dataclass(frozen=True)
class AndroidConfig:
    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    poll: float = 15.0
    receive: bool = False


@dataclass(frozen=True)
class Contact:
    name: str
    number: str | None = None  # as written by the user
    e164: str | None = None  # "+15551234567", derived from number + country_code
    carrier: str | None = None
    email: str | None = None
    via: tuple[str, ...] | None = None  # the contact's own `via`, None when unset
    gateway_address: str | None = None  # email, else number@carrier domain, else None


@dataclass(frozen=True)
class RuleOptions:
    """The keys of `defaults` that every rule may override."""

    to: tuple[str, ...] = ()
    max_length: int = 160
    long: str = "truncate"  # truncate | split
    max_parts: int = 3
    charset: str = DEFAULT_CHARSET  # auto | gsm7 | unicode
    subject: str | None = None
    cooldown: float = 0.0
    priority: str = "normal"  # normal | high
    via: tuple[str, ...] = ("smtp",)
    failover_after: float = 120.0
    country_code: str = "1"


@dataclass(frozen=True)
class Rate:
    count: int
    per: float  # seconds


@dataclass(frozen=True)
class QuietHours:
    start: dt.time
    end: dt.time


@dataclass(frozen=True)
class RetryPolicy:
    first: float = 5.0
    max: float = 600.0


@dataclass(frozen=True)
class Limits:
    per_recipient: Rate | None = Rate(10, 3600.0)  # None: no limit (`0`)
    daily_cap: int = 200  # 0: no cap
    quiet_hours: QuietHours | None = None
    max_age: float = 86400.0
    retry: RetryPolicy = RetryPolicy()
    keep: float = 7 * 86400.0


@dataclass(frozen=True)
class HomeAssistant:
    discovery: bool = False
    prefix: str = "homeassistant"


@dataclass(frozen=True)
class Rule:
    name: str
    topic: str
    options: RuleOptions  # defaults merged with the rule's own keys
    to_set: bool = False  # True when the rule itself sets `to` (then payload `to` is ignored)
    via_set: bool = False  # True when the rule itself sets `via`
    when: str | None = None  # source text, `{{ }}` already stripped
    message: str | None = None  # None: the default message
    key: str | None = None  # None: the topic
    retained: bool = False
    escalate: str | None = None
    resolve_when: str | None = None
    builtin: bool = False  # the `sms` rule on alert_topic and the `notify` rule
    line: int = 0  # line of the rule in the file, 0 for built-ins


@dataclass(frozen=True)
class EscalationStep:
    to: tuple[str, ...]
    after: float = 0.0
    call: int = 0  # ring each contact this many times (0-2), call_gap apart


@dataclass(frozen=True)
class Escalation:
    name: str
    steps: tuple[EscalationStep, ...]
    repeat: float = 0.0
    give_up: float = 86400.0
    hold_after_ack: float = 3600.0
    notify_ack: bool = True
    call_gap: float = 120.0  # between the calls of one step: inside iOS's 3-minute window
    ring_for: float = 30.0  # each call rings at most this long


@dataclass(frozen=True)
class Config:
    path: str
    state_dir: str
    mqtt: MqttConfig = MqttConfig()
    smtp: SmtpConfig | None = None
    twilio: TwilioConfig | None = None
    modem: ModemConfig | None = None
    android: AndroidConfig | None = None
    contacts: Mapping[str, Contact] = field(default_factory=dict)
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    defaults: RuleOptions = RuleOptions()
    limits: Limits = Limits()
    homeassistant: HomeAssistant = HomeAssistant()
    alert_topic: str | None = "home/alerts/sms"
    rules: tuple[Rule, ...] = ()  # user rules, then the built-in `sms` and `notify` rules
    received: str = "contacts"  # contacts | all | none
    escalations: Mapping[str, Escalation] = field(default_factory=dict)


@dataclass(frozen=True)
class Loaded:
    """What parse_config returns: the config and the warnings `check` prints."""

    config: Config
    warnings: tuple[str, ...] = ()


# --------------------------------------------------------------------------- constants

TRANSPORTS = ways.NAMES  # the ways out docs/config.md names, in the order they are listed
SECRET_KEYS = ("password", "auth_token", "pin")
DEFAULT_ALERT_TOPIC = "home/alerts/sms"
CONFIG_SEARCH = ("config.yaml", "/etc/mqtt2sms/config.yaml")


def resolve_recipients(config: Config, names: Sequence[str]) -> tuple[list[Contact], list[str]]:
    """Contacts named by ``names`` (contacts and groups, groups expanded, nested too).

    Returns the contacts, each once, in first-mention order, and the names that are neither a
    contact nor a group (in order, each once). Raises nothing.
    """
    found: list[Contact] = []
    unknown: list[str] = []
    seen_contacts: set[str] = set()
    seen_groups: set[str] = set()

    def visit(name: str) -> None:
        if name in config.contacts:
            if name not in seen_contacts:
                seen_contacts.add(name)
                found.append(config.contacts[name])
        elif name in config.groups:
            if name not in seen_groups:
                seen_groups.add(name)
                for member in config.groups[name]:
                    visit(member)
        elif name not in unknown:
            unknown.append(name)

    for name in names:
        visit(name)
    return found, unknown


def contact_via(
    config: Config, contact: Contact, rule_options: RuleOptions, rule_via_set: bool
) -> tuple[str, ...]:
    """The transports to try for ``contact``, in order.

    The contact's own ``via`` wins over the rule's (``rule_options.via`` when
    ``rule_via_set``), which wins over ``config.defaults.via``.
    """
    if contact.via is not None:
        return contact.via
    if rule_via_set:
        return rule_options.via
    return config.defaults.via


def rule_named(config: Config, name: str | None) -> Rule | None:
    """The rule called ``name`` in force, or None (gone since, or no rule: a test call)."""
    return next((r for r in config.rules if r.name == name), None)


def rule_ways(
    config: Config, contact: Contact, rule_name: str | None
) -> tuple[RuleOptions, tuple[str, ...]]:
    """The options and the ways out, in order, of the texts and calls rule ``rule_name``
    makes for ``contact`` (the defaults' when the rule is gone): an incident's texts are
    made long after its message, from the config in force then."""
    rule = rule_named(config, rule_name)
    options = rule.options if rule is not None else config.defaults
    return options, contact_via(config, contact, options, rule is not None and rule.via_set)
