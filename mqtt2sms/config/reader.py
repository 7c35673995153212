"""The YAML reader: typed values with ``file:line`` and YAML path on every error, all
errors kept together, unknown keys refused with a did-you-mean."""

from __future__ import annotations

import datetime as dt
import difflib
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from typing import TypeVar

import yaml
import yaml.constructor

from mqtt2sms.config.model import (
    SECRET_KEYS,
    TRANSPORTS,
    Rate,
    RuleOptions,
)
from mqtt2sms.config.secrets import read_secret_file, substitute
from mqtt2sms.render import Templates
from mqtt2sms.rules import filter_error, topic_error

_T = TypeVar("_T")
_Node = yaml.Node

_YAML = "tag:yaml.org,2002:"
_NAME = re.compile(r"[A-Za-z0-9_-]+")
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


#: The longest duration (or rate period) accepted: 10 years, in seconds.
MAX_DURATION = 3650 * 86400.0


def parse_duration(value: object) -> float:
    """Seconds from ``30s``, ``10m``, ``2h``, ``1d``, ``1h30m``, or a number (also as a string).

    Raises ValueError for anything else, a negative number or one over 10 years included.
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
    if seconds > MAX_DURATION:
        # A larger one overflows datetime arithmetic at run time (timedelta, now + d).
        raise ValueError(f"duration {value!r} is too long: at most 10 years (3650d)")
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


# The one check of a topic filter and of a topic name, shared with the matcher (rules.py);
# the messages do not repeat the topic: the reader puts it in front.
topic_filter_problem = filter_error
topic_name_problem = topic_error


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


def file_problem(path: str) -> str | None:
    """What keeps the daemon from reading ``path`` (a file or a device), or None."""
    if not os.path.exists(path):
        return "no such file"
    if os.path.isdir(path):
        return "is a directory, not a file"
    if not os.access(path, os.R_OK):
        return "not readable by this user"
    return None


def _strip_braces(expr: str) -> str:
    text = expr.strip()
    if text.startswith("{{") and text.endswith("}}"):
        inner = text[2:-2]
        if "{{" not in inner and "}}" not in inner:
            return inner.strip()
    return text


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
                return read_secret_file(self.parser.read_file, fpath)
            except (OSError, ValueError) as exc:
                why = (
                    exc.strerror
                    if isinstance(exc, OSError) and exc.strerror
                    else type(exc).__name__
                )
                self.parser.error(fnode, self.path(file_key), f"cannot read {fpath!r}: {why}")
                return None
        return self.opt(key, self.parser.secret_string)


class _Parser:
    def __init__(
        self,
        path: str,
        env: Mapping[str, str],
        read_file: Callable[[str], str],
        templates: Templates,
        check_file: Callable[[str], str | None] = file_problem,
    ) -> None:
        self.check_file = check_file
        self.path = path
        self.env = env
        self.read_file = read_file
        self.templates = templates
        self.errors: list[tuple[int, str]] = []
        self.warnings: list[tuple[int, str]] = []
        self.constructor = yaml.constructor.SafeConstructor()
        self.transports: set[str] = {"smtp"}
        self.contact_nodes: dict[str, _Node] = {}
        # contacts with an error already reported (a bad number or carrier): one error per
        # mistake, no follow-on "cannot reach" for them
        self.broken_contacts: set[str] = set()
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

    def substitute(self, node: _Node, ypath: str, text: str, secret: bool = False) -> str | None:
        out, problems = substitute(text, self.env, secret)
        for problem in problems:
            self.error(node, ypath, problem)
        return None if problems else out

    def string(self, node: _Node, ypath: str) -> str | None:
        """A string; an unquoted number or boolean as written. Never echoes the value."""
        kind = _kind(node)
        if kind in ("map", "seq", "null", "other"):
            self.wrong_type(node, ypath, "a string")
            return None
        if kind == "str":
            return self.substitute(node, ypath, str(node.value))
        return str(node.value)

    def secret_string(self, node: _Node, ypath: str) -> str | None:
        """A secret (a password): as string, but no error quotes any part of it."""
        if _kind(node) == "str":
            return self.substitute(node, ypath, str(node.value), secret=True)
        return self.string(node, ypath)

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
        """A reader of one of ``choices`` (lower case), in any case."""

        def read(node: _Node, ypath: str) -> str | None:
            text = self.string(node, ypath)
            if text is None:
                return None
            # Any case (`priority: HIGH`, docs/config.md); kept in lower case, as listed.
            low = text.strip().lower()
            if low not in choices:
                listed = " | ".join(choices)
                self.error(
                    node, ypath, f"'{text}' is not one of {listed}" + did_you_mean(low, choices)
                )
                return None
            return low

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
        if not text.isascii():
            # smtplib refuses a non-ASCII address without SMTPUTF8, which gateways do not offer.
            self.error(
                node,
                ypath,
                f"{text!r}: an address must be plain ASCII (the SMTP sender refuses it)",
            )
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

    def existing_file(self, node: _Node, ypath: str) -> str | None:
        """A path (as path_value) to a file that must exist and be readable now."""
        path = self.path_value(node, ypath)
        if path is None:
            return None
        problem = self.check_file(path)
        if problem is not None:
            self.error(node, ypath, f"{path!r}: {problem}")
            return None
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
        problem = self.templates.check_template(source)
        if problem is not None:
            self.error(node, ypath, f"template error: {problem}")
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
        # The renderer's own check: one expression, or a template it renders and judges.
        problem = self.templates.check_expression(source)
        if problem is not None:
            self.error(node, ypath, f"expression error: {problem}")
            return None
        if "{{" in expr or "{%" in expr or "}}" in expr:
            return source
        return expr
