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
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import os.path
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

import jinja2
import yaml
import yaml.constructor
from jinja2.sandbox import SandboxedEnvironment

from mqtt2sms import carriers
from mqtt2sms.errors import ConfigError
from mqtt2sms.rules import filter_covers, filter_covers_base, topic_matches

# --------------------------------------------------------------------------- the data


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
    charset: str = "auto"  # auto (UCS-2 when GSM-7 would delete letters) | gsm7 | unicode
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


@dataclass(frozen=True)
class Escalation:
    name: str
    steps: tuple[EscalationStep, ...]
    repeat: float = 0.0
    give_up: float = 86400.0
    hold_after_ack: float = 3600.0
    notify_ack: bool = True


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

TRANSPORTS = ("smtp", "twilio", "modem", "android")
SECRET_KEYS = ("password", "auth_token", "pin")
DEFAULT_ALERT_TOPIC = "home/alerts/sms"
CONFIG_SEARCH = ("config.yaml", "/etc/mqtt2sms/config.yaml")

_T = TypeVar("_T")
_Node = yaml.Node

_YAML = "tag:yaml.org,2002:"
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_VAR = re.compile(r"\$\{([^}]*)\}")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhd])")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_EMAIL = re.compile(r"[^@\s,;:<>()\[\]\"\\]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")

_TOP_KEYS = (
    "mqtt",
    "smtp",
    "state_dir",
    "twilio",
    "modem",
    "android",
    "contacts",
    "groups",
    "defaults",
    "limits",
    "homeassistant",
    "alert_topic",
    "rules",
    "received",
    "escalations",
)
_OPTION_KEYS = tuple(f.name for f in fields(RuleOptions))
_RULE_KEYS = (
    "name",
    "topic",
    "when",
    "message",
    "key",
    "retained",
    "escalate",
    "resolve_when",
    *_OPTION_KEYS,
)


def _secret_keys(*keys: str) -> tuple[str, ...]:
    return tuple(
        k for key in keys for k in ((key, key + "_file") if key in SECRET_KEYS else (key,))
    )


# --------------------------------------------------------------------------- small pure helpers


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the choice closest to ``word``, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def parse_duration(value: object) -> float:
    """Seconds from ``30s``, ``10m``, ``2h``, ``1d``, ``1h30m``, or a number (also as a string).

    Raises ValueError for anything else, a negative number included.
    """
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            squeezed = text.replace(" ", "")
            parts = _DURATION_PART.findall(squeezed)
            if not parts or "".join(n + u for n, u in parts) != squeezed:
                raise ValueError(
                    f"bad duration {value!r}: use seconds, or 30s, 10m, 2h, 1d"
                ) from None
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    else:
        raise ValueError(f"bad duration {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"bad duration {value!r}: must be 0 or more")
    return seconds


def parse_rate(value: object) -> Rate | None:
    """A rate from ``"10/h"``, ``"3/15m"`` (count per duration); ``0`` or ``"0"`` is None.

    Raises ValueError for anything else.
    """
    if isinstance(value, bool):
        raise ValueError(f"bad rate {value!r}")
    if isinstance(value, int) and value == 0:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text == "0":
            return None
        m = re.fullmatch(r"(\d+)\s*/\s*(\S+)", text)
        if m:
            count = int(m.group(1))
            unit = m.group(2)
            if unit in _UNIT_SECONDS:
                unit = "1" + unit
            try:
                per = parse_duration(unit)
            except ValueError:
                per = 0.0
            if per > 0:
                return None if count == 0 else Rate(count, per)
    raise ValueError(f"bad rate {value!r}: use N/s, N/m, N/h or N/d (such as 10/h), or 0")


def parse_time_of_day(text: str) -> dt.time:
    """``"22:00"`` or ``"7:30"`` (also ``"07:30:15"``) as a ``datetime.time``.

    Raises ValueError for anything else.
    """
    m = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", text.strip())
    if m:
        hour, minute, second = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
        if hour < 24 and minute < 60 and second < 60:
            return dt.time(hour, minute, second)
    raise ValueError(f'bad time of day {text!r}: use HH:MM, such as "22:00"')


def topic_filter_problem(topic: str) -> str | None:
    """What is wrong with an MQTT subscription filter, or None when it is valid."""
    if not topic:
        return "an empty topic filter"
    if "\0" in topic:
        return "a topic filter may not hold NUL"
    if len(topic.encode()) > 65535:
        return "a topic filter longer than 65535 bytes"
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return "'#' must be the last level, alone in it (such as a/b/#)"
        if "+" in level and level != "+":
            return "'+' must be alone in its level (such as a/+/c)"
    return None


def topic_name_problem(topic: str) -> str | None:
    """What is wrong with an MQTT topic to publish on, or None when it is valid."""
    if not topic:
        return "an empty topic"
    if "+" in topic or "#" in topic:
        return "a topic to publish on may not hold + or #"
    if "\0" in topic:
        return "a topic may not hold NUL"
    return None


def default_state_dir(env: Mapping[str, str]) -> str | None:
    """$STATE_DIRECTORY (its first entry), else $XDG_STATE_HOME/mqtt2sms, else
    $HOME/.local/state/mqtt2sms; None when none of them is set."""
    state = env.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return state
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg.startswith("/"):  # the XDG spec: a relative one is ignored
        return xdg.rstrip("/") + "/mqtt2sms"
    home = env.get("HOME", "")
    if home:
        return home.rstrip("/") + "/.local/state/mqtt2sms"
    return None


def _strip_braces(expr: str) -> str:
    text = expr.strip()
    if text.startswith("{{") and text.endswith("}}"):
        inner = text[2:-2]
        if "{{" not in inner and "}}" not in inner:
            return inner.strip()
    return text


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


# --------------------------------------------------------------------------- the parser


def _line(node: _Node) -> int:
    return int(node.start_mark.line) + 1


def _join(ypath: str, key: str) -> str:
    return f"{ypath}.{key}" if ypath else key


def _kind(node: _Node) -> str:
    """null, bool, int, float, str, timestamp, ... for a scalar; map or seq otherwise."""
    if isinstance(node, yaml.MappingNode):
        return "map"
    if isinstance(node, yaml.SequenceNode):
        return "seq"
    tag = str(node.tag)
    return tag[len(_YAML) :] if tag.startswith(_YAML) else "other"


_KIND_WORDS = {
    "map": "a mapping",
    "seq": "a list",
    "null": "null",
    "bool": "true/false",
    "int": "a number",
    "float": "a number",
    "str": "a string",
}


def _is_null(node: _Node) -> bool:
    return _kind(node) == "null"


class _Section:
    """A YAML mapping whose keys were checked; reads each value with a reader."""

    def __init__(self, parser: _Parser, node: _Node | None, ypath: str, allowed: Sequence[str]):
        self.parser = parser
        self.node = node
        self.ypath = ypath
        self.items: dict[str, tuple[_Node, _Node]] = {}
        if node is not None and not _is_null(node):
            self.items = parser.mapping(node, ypath) or {}
        for key, (knode, _v) in list(self.items.items()):
            if key not in allowed:
                parser.error(
                    knode, _join(ypath, key), f"unknown key '{key}'" + did_you_mean(key, allowed)
                )
                del self.items[key]

    def has(self, key: str) -> bool:
        return key in self.items and not _is_null(self.items[key][1])

    def value_node(self, key: str) -> _Node | None:
        return self.items[key][1] if key in self.items else None

    def key_node(self, key: str) -> _Node | None:
        return self.items[key][0] if key in self.items else None

    def path(self, key: str) -> str:
        return _join(self.ypath, key)

    def get(self, key: str, read: Callable[[_Node, str], _T | None], default: _T) -> _T:
        """The value, or ``default`` when absent, null or wrong (the error is recorded)."""
        if not self.has(key):
            return default
        value = read(self.items[key][1], self.path(key))
        return default if value is None else value

    def opt(self, key: str, read: Callable[[_Node, str], _T | None]) -> _T | None:
        """The value, or None when absent, null or wrong (the error is recorded)."""
        if not self.has(key):
            return None
        return read(self.items[key][1], self.path(key))

    def require(self, key: str, read: Callable[[_Node, str], _T | None]) -> _T | None:
        """Like opt, and an error when the key is missing or null."""
        if not self.has(key):
            if key in self.items:
                where: _Node | None = self.items[key][1]
            elif self.node is not None:  # the line of the section's own key, when it has one
                where = self.parser.key_of.get(id(self.node), self.node)
            else:
                where = None
            self.parser.error(where, self.path(key), "required")
            return None
        return read(self.items[key][1], self.path(key))

    def secret(self, key: str) -> str | None:
        """``key`` or ``key_file`` (the file's content, one trailing newline stripped)."""
        file_key = key + "_file"
        if self.has(key) and self.has(file_key):
            self.parser.error(
                self.items[file_key][0], self.path(file_key), f"give {key} or {file_key}, not both"
            )
            return None
        if self.has(file_key):
            fnode = self.items[file_key][1]
            fpath = self.parser.string(fnode, self.path(file_key))
            if fpath is None:
                return None
            try:
                content = self.parser.read_file(fpath)
            except (OSError, ValueError) as exc:
                why = (
                    exc.strerror
                    if isinstance(exc, OSError) and exc.strerror
                    else type(exc).__name__
                )
                self.parser.error(fnode, self.path(file_key), f"cannot read {fpath!r}: {why}")
                return None
            if content.endswith("\r\n"):
                return content[:-2]
            return content.removesuffix("\n")
        return self.opt(key, self.parser.string)


class _Parser:
    def __init__(
        self,
        path: str,
        env: Mapping[str, str],
        read_file: Callable[[str], str],
        jinja_env: jinja2.Environment,
    ) -> None:
        self.path = path
        self.env = env
        self.read_file = read_file
        self.file_problem: Callable[[str], str | None] | None = None
        self.jinja = jinja_env
        self.errors: list[tuple[int, str]] = []
        self.warnings: list[tuple[int, str]] = []
        self.constructor = yaml.constructor.SafeConstructor()
        self.transports: set[str] = {"smtp"}
        self.contact_nodes: dict[str, _Node] = {}
        self.known_names: set[str] = set()  # contacts and groups
        self.key_of: dict[int, _Node] = {}  # id(value node) -> its key node
        self.no_section: dict[str, str] = {
            name: f"there is no `{name}:` section" for name in TRANSPORTS
        }

    # ------------------------------------------------------------------ reporting

    def error(self, node: _Node | None, ypath: str, what: str) -> None:
        line = _line(node) if node is not None else 1
        self.errors.append((line, f"{self.path}:{line}: {ypath}: {what}"))

    def warn(self, node: _Node | None, ypath: str, what: str) -> None:
        line = _line(node) if node is not None else 1
        self.warnings.append((line, f"{self.path}:{line}: {ypath}: {what}"))

    def sorted_errors(self) -> list[str]:
        """The errors in file order (stable: same line, order found)."""
        return [text for _line_no, text in sorted(self.errors, key=lambda e: e[0])]

    def sorted_warnings(self) -> tuple[str, ...]:
        return tuple(text for _line_no, text in sorted(self.warnings, key=lambda e: e[0]))

    def wrong_type(self, node: _Node, ypath: str, wanted: str) -> None:
        got = _KIND_WORDS.get(_kind(node), f"a {node.tag} value")
        self.error(node, ypath, f"expected {wanted}, got {got}")

    # ------------------------------------------------------------------ structure

    def pairs(self, node: yaml.MappingNode, ypath: str) -> list[tuple[_Node, _Node]]:
        own: list[tuple[_Node, _Node]] = []
        merged: list[tuple[_Node, _Node]] = []
        for knode, vnode in node.value:
            if knode.tag == _YAML + "merge":
                sources = vnode.value if isinstance(vnode, yaml.SequenceNode) else [vnode]
                for source in sources:
                    if isinstance(source, yaml.MappingNode):
                        merged.extend(self.pairs(source, ypath))
                    else:
                        self.error(source, ypath, "<< merges only mappings")
            else:
                own.append((knode, vnode))
        seen = {k.value for k, _ in own if isinstance(k, yaml.ScalarNode)}
        for knode, vnode in merged:
            if knode.value not in seen:
                seen.add(knode.value)
                own.append((knode, vnode))
        return own

    def mapping(self, node: _Node, ypath: str) -> dict[str, tuple[_Node, _Node]] | None:
        """The keys of a mapping node -> (key node, value node); None (and an error) if not one."""
        if not isinstance(node, yaml.MappingNode):
            self.wrong_type(node, ypath or "(top level)", "a mapping")
            return None
        out: dict[str, tuple[_Node, _Node]] = {}
        for knode, vnode in self.pairs(node, ypath):
            if not isinstance(knode, yaml.ScalarNode) or _is_null(knode):
                self.error(knode, ypath or "(top level)", "a key must be a plain name")
                continue
            key = str(knode.value)
            if key in out:
                self.error(knode, _join(ypath, key), f"duplicate key '{key}'")
                continue
            out[key] = (knode, vnode)
            self.key_of[id(vnode)] = knode
        return out

    def sequence(self, node: _Node, ypath: str) -> list[_Node] | None:
        if not isinstance(node, yaml.SequenceNode):
            self.wrong_type(node, ypath, "a list")
            return None
        return list(node.value)

    # ------------------------------------------------------------------ scalars

    def substitute(self, node: _Node, ypath: str, text: str) -> str | None:
        bad = False

        def one(m: re.Match[str]) -> str:
            nonlocal bad
            name = m.group(1)
            if not _VAR_NAME.fullmatch(name):
                self.error(node, ypath, f"bad variable reference '${{{name}}}'")
                bad = True
                return ""
            if name not in self.env:
                self.error(node, ypath, f"environment variable {name} is not set")
                bad = True
                return ""
            return self.env[name]

        out = _VAR.sub(one, text)
        return None if bad else out

    def string(self, node: _Node, ypath: str) -> str | None:
        """A string; an unquoted number or boolean as written. Never echoes the value."""
        kind = _kind(node)
        if kind in ("map", "seq", "null", "other"):
            self.wrong_type(node, ypath, "a string")
            return None
        if kind == "str":
            return self.substitute(node, ypath, str(node.value))
        return str(node.value)

    def nonempty(self, node: _Node, ypath: str) -> str | None:
        text = self.string(node, ypath)
        if text is not None and not text.strip():
            self.error(node, ypath, "may not be empty")
            return None
        return text

    def _typed(self, node: _Node, ypath: str, wanted: str) -> object:
        """The scalar's value: YAML's own type, or a string after ${VAR}; None after an error."""
        kind = _kind(node)
        if kind == "str":
            return self.substitute(node, ypath, str(node.value))
        if not isinstance(node, yaml.ScalarNode):
            self.wrong_type(node, ypath, wanted)
            return None
        if kind == "int":
            return self.constructor.construct_yaml_int(node)
        if kind == "float":
            return self.constructor.construct_yaml_float(node)
        if kind == "bool":
            return self.constructor.construct_yaml_bool(node)
        self.wrong_type(node, ypath, wanted)
        return None

    def integer(
        self, lo: int | None = None, hi: int | None = None
    ) -> Callable[[_Node, str], int | None]:
        def read(node: _Node, ypath: str) -> int | None:
            value = self._typed(node, ypath, "a whole number")
            if value is None:
                return None
            if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                self.wrong_type(node, ypath, "a whole number")
                return None
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                bounds = f"at least {lo}" if hi is None else f"from {lo} to {hi}"
                self.error(node, ypath, f"{value} is out of range: must be {bounds}")
                return None
            return value

        return read

    def boolean(self, node: _Node, ypath: str) -> bool | None:
        value = self._typed(node, ypath, "true or false")
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("true", "yes", "on", "1"):
                return True
            if low in ("false", "no", "off", "0"):
                return False
        if isinstance(value, bool):
            return value
        if value is not None:
            self.wrong_type(node, ypath, "true or false")
        return None

    def duration(self, positive: bool = False) -> Callable[[_Node, str], float | None]:
        def read(node: _Node, ypath: str) -> float | None:
            value = self._typed(node, ypath, "a duration (30s, 10m, 2h, 1d)")
            if value is None:
                return None
            try:
                seconds = parse_duration(value)
            except ValueError as exc:
                self.error(node, ypath, str(exc))
                return None
            if positive and seconds <= 0:
                self.error(node, ypath, "must be more than 0")
                return None
            return seconds

        return read

    def enum(self, *choices: str) -> Callable[[_Node, str], str | None]:
        def read(node: _Node, ypath: str) -> str | None:
            text = self.string(node, ypath)
            if text is None:
                return None
            folded = text.strip().lower()
            if folded not in choices:
                listed = " | ".join(choices)
                self.error(
                    node, ypath, f"'{text}' is not one of {listed}" + did_you_mean(folded, choices)
                )
                return None
            return folded  # any case is accepted (HIGH, GSM7, StartTLS)

        return read

    def rate(self, node: _Node, ypath: str) -> Rate | None:
        value = self._typed(node, ypath, "a rate such as 10/h")
        if value is None:
            return None
        try:
            return parse_rate(value)
        except ValueError as exc:
            self.error(node, ypath, str(exc))
            return None

    def time_of_day(self, node: _Node, ypath: str) -> dt.time | None:
        # An unquoted 22:00 is the int 1320 to YAML 1.1 (base 60): its text is what we want.
        text = self.string(node, ypath)
        if text is None:
            return None
        try:
            return parse_time_of_day(text)
        except ValueError as exc:
            self.error(node, ypath, str(exc))
            return None

    def email(self, node: _Node, ypath: str) -> str | None:
        text = self.string(node, ypath)
        if text is None:
            return None
        text = text.strip()
        if not _EMAIL.fullmatch(text) or any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
            self.error(node, ypath, f"{text!r} is not an email address (name@example.com)")
            return None
        return text

    def topic_filter(self, node: _Node, ypath: str) -> str | None:
        text = self.string(node, ypath)
        if text is None:
            return None
        problem = topic_filter_problem(text)
        if problem:
            self.error(node, ypath, f"{text!r}: {problem}")
            return None
        return text

    def topic_name(self, node: _Node, ypath: str) -> str | None:
        text = self.string(node, ypath)
        if text is None:
            return None
        problem = topic_name_problem(text)
        if problem:
            self.error(node, ypath, f"{text!r}: {problem}")
            return None
        return text

    def url(self, node: _Node, ypath: str) -> str | None:
        text = self.string(node, ypath)
        if text is None:
            return None
        if not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", text):
            self.error(node, ypath, f"{text!r} is not an http:// or https:// URL")
            return None
        return text.rstrip("/")

    def path_value(self, node: _Node, ypath: str) -> str | None:
        text = self.nonempty(node, ypath)
        if text is None:
            return None
        return self.expand_home(node, ypath, text)

    def readable_file(self, node: _Node, ypath: str) -> str | None:
        """A path to a file that must be there and readable (a CA bundle, a certificate)."""
        path = self.path_value(node, ypath)
        if path is not None and self.file_problem is not None:
            problem = self.file_problem(path)
            if problem:
                self.error(node, ypath, f"{path}: {problem}")
        return path

    def expand_home(self, node: _Node, ypath: str, text: str) -> str | None:
        if text == "~" or text.startswith("~/"):
            home = self.env.get("HOME")
            if not home:
                self.error(node, ypath, "~ needs $HOME, which is not set")
                return None
            return home.rstrip("/") + text[1:]
        return text

    def names(self, node: _Node, ypath: str) -> tuple[str, ...] | None:
        """A name or a list of names (contacts, groups)."""
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        out: list[str] = []
        ok = True
        for i, item in enumerate(items):
            where = f"{ypath}[{i}]" if isinstance(node, yaml.SequenceNode) else ypath
            name = self.string(item, where)
            if name is None:
                ok = False
            else:
                out.append(name.strip())
        return tuple(out) if ok else None

    def check_names(self, node: _Node | None, ypath: str, what: str = "contact") -> None:
        """Report each name in a `to`-like value that is not a contact or group."""
        if node is None or _is_null(node):
            return
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        for item in items:
            if not isinstance(item, yaml.ScalarNode) or _is_null(item):
                continue
            name = self.string(item, ypath)
            if name is not None and name.strip() not in self.known_names:
                name = name.strip()
                self.error(
                    item,
                    ypath,
                    f"unknown {what} '{name}'" + did_you_mean(name, sorted(self.known_names)),
                )

    def via(self, node: _Node, ypath: str) -> tuple[str, ...] | None:
        entries = self.names(node, ypath)
        if entries is None:
            return None
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        ok = True
        seen: set[str] = set()
        for item, entry in zip(items, entries, strict=True):
            if entry not in TRANSPORTS:
                self.error(
                    item,
                    ypath,
                    f"unknown transport '{entry}' (smtp, twilio, modem or android)"
                    + did_you_mean(entry, TRANSPORTS),
                )
                ok = False
            elif entry not in self.transports:
                self.error(item, ypath, f"'{entry}' is not configured: {self.no_section[entry]}")
                ok = False
            elif entry in seen:
                self.error(item, ypath, f"'{entry}' is listed twice")
                ok = False
            seen.add(entry)
        if ok and not entries:
            self.error(node, ypath, "needs at least one transport")
            ok = False
        return entries if ok else None

    def template(self, node: _Node, ypath: str) -> str | None:
        source = self.string(node, ypath)
        if source is None:
            return None
        try:
            self.jinja.from_string(source)
        except jinja2.TemplateError as exc:
            self.error(node, ypath, f"template error: {_jinja_message(exc)}")
            return None
        return source

    def expression(self, node: _Node, ypath: str) -> str | None:
        source = self.string(node, ypath)
        if source is None:
            return None
        expr = _strip_braces(source)
        if not expr:
            self.error(node, ypath, "an empty expression")
            return None
        if "{{" in expr or "{%" in expr or "}}" in expr:
            # Not one expression ("{{ a }} and {{ b }}"): the renderer renders it as a template.
            return self.template(node, ypath)
        try:
            self.jinja.compile_expression(expr)
        except jinja2.TemplateError as exc:
            self.error(node, ypath, f"expression error: {_jinja_message(exc)}")
            return None
        return expr


def _jinja_message(exc: jinja2.TemplateError) -> str:
    message = exc.message or type(exc).__name__
    lineno = getattr(exc, "lineno", 1)
    return (
        f"{message} (template line {lineno})" if isinstance(lineno, int) and lineno > 1 else message
    )


# --------------------------------------------------------------------------- the sections


def _protocol(p: _Parser, node: _Node, ypath: str) -> str | None:
    text = p.string(node, ypath)
    if text is None:
        return None
    squashed = text.strip().lower().removeprefix("mqtt").removeprefix("v").replace(".", "")
    if squashed in ("311", "31"):
        return "3.1.1"
    if squashed in ("5", "50"):
        return "5"
    p.error(node, ypath, f'\'{text}\' is not a protocol: "3.1.1" or "5"')
    return None


def _tls(p: _Parser, node: _Node, ypath: str) -> TLSConfig | None:
    if _kind(node) == "bool":
        return TLSConfig() if p.boolean(node, ypath) else None
    s = _Section(p, node, ypath, ("ca_certs", "certfile", "keyfile", "insecure"))
    tls = TLSConfig(
        ca_certs=s.opt("ca_certs", p.readable_file),
        certfile=s.opt("certfile", p.readable_file),
        keyfile=s.opt("keyfile", p.readable_file),
        insecure=s.get("insecure", p.boolean, False),
    )
    if tls.keyfile and not tls.certfile:
        p.error(s.key_node("keyfile"), s.path("keyfile"), "keyfile needs certfile")
    return tls


def _mqtt(p: _Parser, node: _Node | None) -> MqttConfig:
    s = _Section(p, node, "mqtt", _secret_keys(*(f.name for f in fields(MqttConfig))))
    d = MqttConfig()
    mqtt = MqttConfig(
        host=s.get("host", p.nonempty, d.host),
        port=s.get("port", p.integer(1, 65535), d.port),
        embedded=s.get("embedded", p.boolean, d.embedded),
        username=s.opt("username", p.string),
        password=s.secret("password"),
        client_id=s.get("client_id", p.nonempty, d.client_id),
        protocol=s.get("protocol", lambda n, y: _protocol(p, n, y), d.protocol),
        session_expiry=s.get("session_expiry", p.duration(), d.session_expiry),
        keepalive=s.get("keepalive", p.integer(0, 65535), d.keepalive),
        tls=s.opt("tls", lambda n, y: _tls(p, n, y)),
        base_topic=s.get("base_topic", p.topic_name, d.base_topic),
    )
    return mqtt


def _smtp(p: _Parser, node: _Node) -> SmtpConfig:
    keys = [f.name for f in fields(SmtpConfig) if f.name != "from_addr"] + ["from"]
    s = _Section(p, node, "smtp", _secret_keys(*keys))
    security = s.get("security", p.enum("starttls", "ssl", "none"), "starttls")
    default_port = {"starttls": 587, "ssl": 465, "none": 25}[security]
    smtp = SmtpConfig(
        host=s.require("host", p.nonempty) or "",
        from_addr=s.require("from", p.email) or "",
        port=s.get("port", p.integer(1, 65535), default_port),
        security=security,
        username=s.opt("username", p.string),
        password=s.secret("password"),
        timeout=s.get("timeout", p.duration(positive=True), 30.0),
        ca_certs=s.opt("ca_certs", p.readable_file),
    )
    if smtp.password is not None and smtp.username is None:
        p.error(
            s.key_node("password") or s.key_node("password_file"),
            s.path("password"),
            "a password needs a username",
        )
    return smtp


def _twilio(p: _Parser, node: _Node, country_code: str) -> TwilioConfig:
    keys = [f.name for f in fields(TwilioConfig) if f.name != "from_number"] + ["from"]
    s = _Section(p, node, "twilio", _secret_keys(*keys))
    d = TwilioConfig(account_sid="")
    twilio = TwilioConfig(
        account_sid=s.require("account_sid", p.nonempty) or "",
        auth_token=s.secret("auth_token"),
        from_number=s.opt("from", lambda n, y: _sender(p, n, y, country_code)),
        messaging_service_sid=s.opt("messaging_service_sid", p.nonempty),
        api_base=s.get("api_base", p.url, d.api_base),
        poll=s.get("poll", p.duration(positive=True), d.poll),
        receive=s.get("receive", p.boolean, d.receive),
    )
    if not s.has("from") and not s.has("messaging_service_sid"):
        p.error(node, "twilio.from", "required (or messaging_service_sid)")
    if twilio.receive and not s.has("from"):
        p.error(s.key_node("receive"), "twilio.receive", "reading replies needs twilio.from")
    if not s.has("auth_token") and not s.has("auth_token_file"):
        p.warn(node, "twilio.auth_token", "not set: Twilio will refuse every request")
    return twilio


def _sender(p: _Parser, node: _Node, ypath: str, country_code: str) -> str | None:
    """A phone number in E.164, or an alphanumeric sender id as written."""
    text = p.nonempty(node, ypath)
    if text is None or re.search(r"[A-Za-z]", text):
        return text
    try:
        return carriers.normalize_number(text, country_code)
    except ValueError as exc:
        p.error(node, ypath, str(exc))
        return None


def _modem(p: _Parser, node: _Node) -> ModemConfig:
    s = _Section(p, node, "modem", _secret_keys(*(f.name for f in fields(ModemConfig))))
    d = ModemConfig()
    return ModemConfig(
        device=s.get("device", p.path_value, d.device),
        baudrate=s.get("baudrate", p.integer(1), d.baudrate),
        pin=s.secret("pin"),
        poll=s.get("poll", p.duration(positive=True), d.poll),
    )


def _android(p: _Parser, node: _Node) -> AndroidConfig:
    s = _Section(p, node, "android", _secret_keys(*(f.name for f in fields(AndroidConfig))))
    d = AndroidConfig(url="")
    android = AndroidConfig(
        url=s.require("url", p.url) or "",
        username=s.opt("username", p.string),
        password=s.secret("password"),
        poll=s.get("poll", p.duration(positive=True), d.poll),
        receive=s.get("receive", p.boolean, d.receive),
    )
    if android.password is not None and android.username is None:
        p.error(
            s.key_node("password") or s.key_node("password_file"),
            s.path("password"),
            "a password needs a username",
        )
    return android


def _country_code(p: _Parser, node: _Node, ypath: str) -> str | None:
    text = p.string(node, ypath)
    if text is None:
        return None
    code = text.strip().removeprefix("+")
    if not re.fullmatch(r"[1-9][0-9]{0,2}", code):
        p.error(
            node, ypath, f"'{text}' is not a country calling code (1 to 3 digits, such as \"1\")"
        )
        return None
    return code


def _options(p: _Parser, s: _Section, base: RuleOptions) -> tuple[RuleOptions, set[str]]:
    """``base`` with the RuleOptions keys ``s`` gives; and the keys it gave."""
    changes: dict[str, Any] = {}
    readers: dict[str, Callable[[_Node, str], Any]] = {
        "to": p.names,
        "max_length": p.integer(10),
        "long": p.enum("truncate", "split"),
        "max_parts": p.integer(1),
        "charset": p.enum("auto", "gsm7", "unicode"),
        "subject": p.template,
        "cooldown": p.duration(),
        "priority": p.enum("normal", "high"),
        "via": p.via,
        "failover_after": p.duration(),
        "country_code": lambda n, y: _country_code(p, n, y),
    }
    given: set[str] = set()
    for key, read in readers.items():
        if key not in s.items:
            continue
        given.add(key)
        if key == "subject":
            changes[key] = s.opt(key, read)  # null: no subject
        elif s.has(key):
            value = s.opt(key, read)
            if value is not None:
                changes[key] = value
    return replace(base, **changes), given


def _contacts(p: _Parser, node: _Node | None, country_code: str) -> dict[str, Contact]:
    out: dict[str, Contact] = {}
    if node is None or _is_null(node):
        return out
    items = p.mapping(node, "contacts") or {}
    for name, (knode, vnode) in items.items():
        yp = _join("contacts", name)
        if not _NAME.fullmatch(name):
            p.error(knode, yp, f"bad name '{name}': use letters, digits, _ and -")
            continue
        p.contact_nodes[name] = knode
        if _is_null(vnode):
            p.error(knode, yp, "needs a number (with a carrier for smtp) or an email")
            continue
        s = _Section(p, vnode, yp, ("number", "carrier", "email", "via"))
        if _kind(vnode) != "map":
            continue
        number = s.opt("number", p.nonempty)
        e164 = None
        if number is not None:
            try:
                e164 = carriers.normalize_number(number, country_code)
            except ValueError as exc:
                p.error(s.value_node("number"), s.path("number"), str(exc))
        carrier: carriers.Carrier | None = None
        carrier_name = s.opt("carrier", p.nonempty)
        if carrier_name is not None:
            carrier = carriers.lookup(carrier_name)
            cnode = s.value_node("carrier")
            if carrier is None:
                hint = carriers.suggest(carrier_name)
                p.error(
                    cnode,
                    s.path("carrier"),
                    f"unknown carrier '{carrier_name}'"
                    + (f" (did you mean '{hint}'?)" if hint else "")
                    + " (`mqtt2sms carriers` lists them; or give the full `email:` address)",
                )
            elif carrier.status == carriers.SHUT_DOWN:
                p.warn(
                    cnode,
                    s.path("carrier"),
                    f"{carrier.name}'s email-to-SMS gateway has shut down ({carrier.note}): "
                    f"{carrier.alternative or 'use another way out'}",
                )
            if not s.has("number"):
                p.error(s.key_node("carrier"), s.path("carrier"), "a carrier needs a number")
        email = s.opt("email", p.email)
        if not s.has("number") and not s.has("email"):
            p.error(knode, yp, "needs a number (with a carrier for smtp) or an email")
        gateway = email
        if gateway is None and carrier is not None and e164 is not None:
            try:
                gateway = carriers.gateway_address(e164, carrier, country_code)
            except ValueError as exc:
                p.error(s.value_node("number"), s.path("number"), str(exc))
        via = s.opt("via", p.via)
        contact = Contact(
            name=name,
            number=number,
            e164=e164,
            carrier=carrier.key if carrier else None,
            email=email,
            via=via,
            gateway_address=gateway,
        )
        if via is not None and (s.has("number") or s.has("email")):
            for transport in via:
                need = _unreachable(contact, transport)
                if need:
                    p.error(s.value_node("via"), s.path("via"), f"{transport} {need}")
        out[name] = contact
    return out


def _unreachable(contact: Contact, transport: str) -> str | None:
    """What ``contact`` lacks for ``transport``, or None."""
    if transport == "smtp":
        if contact.gateway_address is None:
            return "needs an email, or a number and a carrier"
        return None
    if contact.e164 is None:
        return "needs a number"
    return None


def _groups(
    p: _Parser, node: _Node | None, contacts: Mapping[str, Contact]
) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    if node is None or _is_null(node):
        return out
    items = p.mapping(node, "groups") or {}
    for name, (knode, vnode) in items.items():
        yp = _join("groups", name)
        if not _NAME.fullmatch(name):
            p.error(knode, yp, f"bad name '{name}': use letters, digits, _ and -")
            continue
        if name in contacts:
            p.error(knode, yp, f"'{name}' is both a contact and a group")
            continue
        members = p.names(vnode, yp) if not _is_null(vnode) else ()
        out[name] = members or ()
    p.known_names = set(contacts) | set(out)
    for name, (_k, vnode) in items.items():
        if name in out:
            p.check_names(vnode, _join("groups", name))
    # Nested groups must not loop.
    for name in out:
        if _group_cycle(name, out):
            p.error(items[name][0], _join("groups", name), f"group '{name}' contains itself")
    return out


def _group_cycle(start: str, groups: Mapping[str, tuple[str, ...]]) -> bool:
    stack = list(groups.get(start, ()))
    seen: set[str] = set()
    while stack:
        name = stack.pop()
        if name == start:
            return True
        if name in groups and name not in seen:
            seen.add(name)
            stack.extend(groups[name])
    return False


def _limits(p: _Parser, node: _Node | None) -> Limits:
    keys = [f.name for f in fields(Limits)]
    s = _Section(p, node, "limits", keys)
    d = Limits()
    quiet: QuietHours | None = None
    if s.has("quiet_hours"):
        q = _Section(p, s.value_node("quiet_hours"), "limits.quiet_hours", ("start", "end"))
        start = q.require("start", p.time_of_day)
        end = q.require("end", p.time_of_day)
        if start is not None and end is not None:
            if start == end:
                p.error(q.node, "limits.quiet_hours", "start and end are the same time")
            else:
                quiet = QuietHours(start, end)
    retry = d.retry
    if s.has("retry"):
        r = _Section(p, s.value_node("retry"), "limits.retry", ("first", "max"))
        retry = RetryPolicy(
            first=r.get("first", p.duration(positive=True), d.retry.first),
            max=r.get("max", p.duration(positive=True), d.retry.max),
        )
        if retry.first > retry.max:
            p.error(r.node, "limits.retry", "first may not be longer than max")
    per_recipient = d.per_recipient
    if "per_recipient" in s.items:
        per_recipient = s.opt("per_recipient", p.rate)
    return Limits(
        per_recipient=per_recipient,
        daily_cap=s.get("daily_cap", p.integer(0), d.daily_cap),
        quiet_hours=quiet,
        max_age=s.get("max_age", p.duration(positive=True), d.max_age),
        retry=retry,
        keep=s.get("keep", p.duration(positive=True), d.keep),
    )


def _escalations(p: _Parser, node: _Node | None) -> dict[str, Escalation]:
    out: dict[str, Escalation] = {}
    if node is None or _is_null(node):
        return out
    items = p.mapping(node, "escalations") or {}
    keys = ("steps", "repeat", "give_up", "hold_after_ack", "notify_ack")
    for name, (knode, vnode) in items.items():
        yp = _join("escalations", name)
        if not _NAME.fullmatch(name):
            p.error(knode, yp, f"bad name '{name}': use letters, digits, _ and -")
            continue
        s = _Section(p, vnode, yp, keys)
        steps: list[EscalationStep] = []
        step_nodes = s.require("steps", p.sequence) or []
        if (
            s.has("steps")
            and not step_nodes
            and isinstance(s.value_node("steps"), yaml.SequenceNode)
        ):
            p.error(s.value_node("steps"), s.path("steps"), "needs at least one step")
        for i, step_node in enumerate(step_nodes):
            syp = f"{yp}.steps[{i}]"
            st = _Section(p, step_node, syp, ("to", "after"))
            to = st.require("to", p.names)
            if to is not None and not to:
                p.error(st.value_node("to"), st.path("to"), "needs at least one name")
            p.check_names(st.value_node("to"), st.path("to"))
            after = st.get("after", p.duration(), 0.0)
            if steps and after < steps[-1].after:
                p.error(
                    st.value_node("after") or step_node,
                    st.path("after"),
                    "must not be earlier than the step before",
                )
            steps.append(EscalationStep(to=to or (), after=after))
        d = Escalation(name=name, steps=())
        out[name] = Escalation(
            name=name,
            steps=tuple(steps),
            repeat=s.get("repeat", p.duration(), d.repeat),
            give_up=s.get("give_up", p.duration(positive=True), d.give_up),
            hold_after_ack=s.get("hold_after_ack", p.duration(), d.hold_after_ack),
            notify_ack=s.get("notify_ack", p.boolean, d.notify_ack),
        )
    return out


@dataclass(frozen=True)
class _Use:
    """Who a rule texts and by which via, for the reachability check."""

    names: tuple[str, ...]
    via: tuple[str, ...]
    via_path: str  # "rules[2].via" or "defaults.via"
    via_node: _Node | None


def _rules(
    p: _Parser,
    node: _Node | None,
    defaults: RuleOptions,
    escalations: Mapping[str, Escalation],
    defaults_via_node: _Node | None,
) -> tuple[list[Rule], list[_Use]]:
    rules: list[Rule] = []
    uses: list[_Use] = []
    if node is None or _is_null(node):
        return rules, uses
    seen: dict[str, str] = {}
    for i, rnode in enumerate(p.sequence(node, "rules") or []):
        yp = f"rules[{i}]"
        s = _Section(p, rnode, yp, _RULE_KEYS)
        if _kind(rnode) != "map":
            continue
        name = s.require("name", p.nonempty)
        if name is not None:
            if name in seen:
                p.error(
                    s.value_node("name"),
                    s.path("name"),
                    f"duplicate rule name '{name}' (also {seen[name]})",
                )
            seen.setdefault(name, yp)
        topic = s.require("topic", p.topic_filter)
        options, given = _options(p, s, defaults)
        if "to" in given:
            if s.has("to") and not options.to:
                p.error(s.value_node("to"), s.path("to"), "needs at least one name")
            p.check_names(s.value_node("to"), s.path("to"))
        escalate = s.opt("escalate", p.nonempty)
        if escalate is not None and escalate not in escalations:
            p.error(
                s.value_node("escalate"),
                s.path("escalate"),
                f"unknown escalation policy '{escalate}'" + did_you_mean(escalate, escalations),
            )
        if escalate is not None and s.has("to"):
            p.warn(s.key_node("to"), s.path("to"), "ignored: the policy's steps choose recipients")
        if s.has("resolve_when") and escalate is None:
            p.warn(s.key_node("resolve_when"), s.path("resolve_when"), "ignored without escalate")
        rule = Rule(
            name=name or "",
            topic=topic or "",
            options=options,
            to_set=s.has("to"),
            via_set=s.has("via"),
            when=s.opt("when", p.expression),
            message=s.opt("message", p.template),
            key=s.opt("key", p.template),
            retained=s.get("retained", p.boolean, False),
            escalate=escalate,
            resolve_when=s.opt("resolve_when", p.expression),
            builtin=False,
            line=_line(rnode),
        )
        rules.append(rule)
        if escalate is not None and escalate in escalations:
            names = tuple(n for step in escalations[escalate].steps for n in step.to)
        else:
            names = options.to
            if not names:
                p.warn(
                    rnode,
                    yp,
                    "no recipients: neither the rule nor defaults set `to` "
                    "(only a payload's `to` can address it)",
                )
        if rule.via_set:
            uses.append(_Use(names, options.via, s.path("via"), s.value_node("via")))
        else:
            uses.append(_Use(names, options.via, "defaults.via", defaults_via_node))
    return rules, uses


def _check_reach(
    p: _Parser, config: Config, uses: Sequence[_Use], contacts_node: _Node | None
) -> None:
    reported: set[tuple[str, str, str]] = set()
    for use in uses:
        found, _unknown = resolve_recipients(config, use.names)
        for contact in found:
            if contact.via is not None:
                continue  # checked with the contact
            for transport in use.via:
                need = _unreachable(contact, transport)
                if need is None or (contact.name, transport, use.via_path) in reported:
                    continue
                reported.add((contact.name, transport, use.via_path))
                if use.via_node is not None:
                    p.error(
                        use.via_node,
                        use.via_path,
                        f"{transport} cannot reach contact '{contact.name}': it {need}",
                    )
                else:
                    p.error(
                        p.contact_nodes.get(contact.name, contacts_node),
                        _join("contacts", contact.name),
                        f"{need} for {transport} (the default via); or give it its own via",
                    )


# --------------------------------------------------------------------------- the way in


# Sections the parser accepts whose transports are not built yet.
NOT_BUILT = ("twilio", "modem", "android")


def parse_config(
    text: str,
    path: str,
    env: Mapping[str, str],
    read_file: Callable[[str], str] | None = None,
    *,
    jinja_env: jinja2.Environment | None = None,
    file_problem: Callable[[str], str | None] | None = None,
) -> Loaded:
    """Check and read a config file's text.

    ``path`` is only printed in messages (as given). ``env`` supplies ``${VAR}`` and the
    state_dir defaults. ``read_file(path) -> str`` reads ``*_file`` secrets (default: the file
    as UTF-8); one trailing newline of its result is stripped. ``jinja_env`` compiles the
    templates for the check (default: a plain SandboxedEnvironment; pass the renderer's to
    know its filters).

    Returns Loaded (the Config and the warnings, each ``path:line: yaml.path: what``).
    Raises ConfigError with every problem found, each ``path:line: yaml.path: what``.
    """
    p = _Parser(path, env, read_file or _read_text, jinja_env or SandboxedEnvironment())
    p.file_problem = file_problem
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = " ".join(x for x in (exc.context, exc.problem) if x)
        raise ConfigError([f"{path}:{line}: YAML syntax error: {what}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}:1: YAML syntax error: {exc}"]) from None

    top = _Section(p, root, "", _TOP_KEYS)
    if root is not None and not _is_null(root) and _kind(root) != "map":
        raise ConfigError(p.sorted_errors())
    node = top.value_node

    p.transports |= {name for name in TRANSPORTS if top.has(name)}
    for name in TRANSPORTS:
        if name in top.items and not top.has(name):
            p.no_section[name] = f"`{name}:` is empty (write `{name}: {{}}` for its defaults)"
    dsec = _Section(p, node("defaults"), "defaults", _OPTION_KEYS)
    defaults, _given = _options(p, dsec, RuleOptions())

    mqtt = _mqtt(p, node("mqtt"))
    smtp = _smtp(p, top.items["smtp"][1]) if top.has("smtp") else None
    cc = defaults.country_code
    twilio = _twilio(p, top.items["twilio"][1], cc) if top.has("twilio") else None
    modem = _modem(p, top.items["modem"][1]) if top.has("modem") else None
    android = _android(p, top.items["android"][1]) if top.has("android") else None

    state_dir = top.opt("state_dir", p.path_value) if top.has("state_dir") else None
    if state_dir is None and not top.has("state_dir"):
        state_dir = default_state_dir(env)
        if state_dir is None:
            p.error(
                root,
                "state_dir",
                "not set, and none of STATE_DIRECTORY, XDG_STATE_HOME, HOME is set",
            )

    contacts = _contacts(p, node("contacts"), defaults.country_code)
    p.known_names = set(contacts)
    groups = _groups(p, node("groups"), contacts)
    p.known_names = set(contacts) | set(groups)
    p.check_names(dsec.value_node("to"), "defaults.to")

    limits = _limits(p, node("limits"))
    ha = _Section(p, node("homeassistant"), "homeassistant", ("discovery", "prefix"))
    homeassistant = HomeAssistant(
        discovery=ha.get("discovery", p.boolean, False),
        prefix=ha.get("prefix", p.topic_name, "homeassistant"),
    )
    alert_topic: str | None = DEFAULT_ALERT_TOPIC
    if "alert_topic" in top.items:
        alert_topic = top.opt("alert_topic", p.topic_name)
    received = top.get("received", p.enum("contacts", "all", "none"), "contacts")
    escalations = _escalations(p, node("escalations"))

    user_rules, uses = _rules(p, node("rules"), defaults, escalations, dsec.value_node("via"))
    rules = _with_builtins(p, user_rules, alert_topic, mqtt.base_topic, defaults, node("rules"))
    if any(rule.builtin for rule in rules):
        uses.append(_Use(defaults.to, defaults.via, "defaults.via", dsec.value_node("via")))

    config = Config(
        path=path,
        state_dir=state_dir or "",
        mqtt=mqtt,
        smtp=smtp,
        twilio=twilio,
        modem=modem,
        android=android,
        contacts=contacts,
        groups=groups,
        defaults=defaults,
        limits=limits,
        homeassistant=homeassistant,
        alert_topic=alert_topic,
        rules=tuple(rules),
        received=received,
        escalations=escalations,
    )
    _check_reach(p, config, uses, node("contacts"))
    for section in NOT_BUILT:
        if getattr(config, section) is not None:
            p.warn(
                node(section),
                section,
                "this version cannot send through it yet: a text whose `via` reaches it moves "
                "on to the next way out, or fails",
            )
    if p.errors:
        raise ConfigError(p.sorted_errors())
    return Loaded(config=config, warnings=p.sorted_warnings())


def _with_builtins(
    p: _Parser,
    user_rules: list[Rule],
    alert_topic: str | None,
    base_topic: str,
    defaults: RuleOptions,
    rules_node: _Node | None,
) -> list[Rule]:
    """The user's rules, then the built-in `sms` and `notify` rules they do not replace."""
    notify_topic = f"{base_topic}/notify"
    wanted = [("sms", alert_topic), ("notify", notify_topic)]
    rule_nodes = list(rules_node.value) if isinstance(rules_node, yaml.SequenceNode) else []
    builtins: list[Rule] = []
    under_base = f"{base_topic}/+/#"  # below base_topic (the base topic itself matches)
    ours = (notify_topic, f"{base_topic}/ack")

    def swallowed(topic: str) -> bool:
        # wholly under base_topic, and matching neither of our own topics there
        return filter_covers(under_base, topic) and not any(topic_matches(topic, t) for t in ours)

    if alert_topic is not None and swallowed(alert_topic):
        p.error(
            None,
            "alert_topic",
            f"'{alert_topic}' lies under mqtt.base_topic '{base_topic}', where messages never "
            "match a rule: move alert_topic or base_topic",
        )
    for name, topic in wanted:
        if topic is None or any(rule.topic == topic for rule in user_rules):
            continue
        builtins.append(Rule(name=name, topic=topic, options=defaults, builtin=True))
        for i, rule in enumerate(user_rules):
            if rule.name == name:
                where = rule_nodes[i] if i < len(rule_nodes) else None
                p.error(
                    where,
                    f"rules[{i}].name",
                    f"'{name}' is the name of the built-in rule on {topic}: "
                    "choose another name, or give this rule that topic to replace it",
                )
    for i, rule in enumerate(user_rules):
        if rule.topic == notify_topic or not rule.topic:
            continue
        if swallowed(rule.topic):
            where = rule_nodes[i] if i < len(rule_nodes) else None
            p.error(
                where,
                f"rules[{i}].topic",
                f"'{rule.topic}' lies under mqtt.base_topic '{base_topic}', where messages "
                "never match a rule: this rule can never send",
            )
        elif filter_covers_base(rule.topic, base_topic):
            where = rule_nodes[i] if i < len(rule_nodes) else None
            p.warn(
                where,
                f"rules[{i}].topic",
                f"'{rule.topic}' also covers {base_topic}/: messages under {base_topic}/ "
                "never match a rule (except notify and ack)",
            )
    return user_rules + builtins


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


def find_config_path(
    cli_path: str | None, env: Mapping[str, str], exists: Callable[[str], bool]
) -> str:
    """Where the config is: ``-c PATH``, else $MQTT2SMS_CONFIG, else the first of
    ./config.yaml and /etc/mqtt2sms/config.yaml that ``exists``.

    A path given by -c or the environment is returned even when missing (the caller reports
    it); with neither and no file found, the last place looked (/etc/mqtt2sms/config.yaml).
    """
    if cli_path:
        return cli_path
    if env.get("MQTT2SMS_CONFIG"):
        return env["MQTT2SMS_CONFIG"]
    for candidate in CONFIG_SEARCH:
        if exists(candidate):
            return candidate
    return CONFIG_SEARCH[-1]


def load_config(cli_path: str | None, env: Mapping[str, str]) -> Loaded:
    """Find, read and parse the config (see find_config_path and parse_config).

    Raises ConfigError: a missing or unreadable file (one line), or every problem in it.
    """
    path = find_config_path(cli_path, env, os.path.isfile)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        if cli_path or env.get("MQTT2SMS_CONFIG"):
            raise ConfigError([f"{path}: config file not found"]) from None
        raise ConfigError(
            [
                "config file not found: looked for ./config.yaml and /etc/mqtt2sms/config.yaml "
                "(give one with -c PATH or $MQTT2SMS_CONFIG)"
            ]
        ) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: cannot read config file: not UTF-8 text"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror or exc}"]) from None
    loaded = parse_config(text, path, env, file_problem=file_problem)
    from mqtt2sms.system import tz_problem

    if tz_problem(env):
        raise ConfigError([f"{path}: {tz_problem(env)}: quiet hours and the daily cap need it"])
    return loaded


def file_problem(path: str) -> str | None:
    """Why a file the config names cannot be used, or None."""
    if not os.path.exists(path):
        return "no such file"
    if os.path.isdir(path):
        return "is a directory, not a file"
    if not os.access(path, os.R_OK):
        return "cannot be read (permissions)"
    return None
