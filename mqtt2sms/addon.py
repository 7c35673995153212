"""The Home Assistant add-on: its options (``/data/options.json``) become a config file.

The add-on's options are flat lists (the Supervisor's schema nests two levels at most), so a
contact's ``via``, a group's ``members`` and a rule's ``to`` are comma-separated strings. The
broker is never an option: the Supervisor's services API tells where it is and how to log in.

:func:`translate` is pure: options and the broker come in, the config's text comes out, checked
by the project's own parser, whose messages are put back in the options' terms
(``contacts[1].carrier: unknown carrier 'tmobil' (did you mean 'tmobile'?)``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from mqtt2sms import config as cfg
from mqtt2sms.config.secrets import literal
from mqtt2sms.errors import ConfigError

STATE_DIR = "/data"  # kept across updates, and in Home Assistant's backups


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl: bool = False


class OptionsError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _csv(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def build(options: Mapping[str, Any], broker: Broker) -> tuple[dict[str, Any], dict[str, str]]:
    """The config as a dict, and a map from its YAML paths back to the options' paths.

    Raises OptionsError for what the config's own parser could not name (a duplicate name).
    """
    problems: list[str] = []
    back: dict[str, str] = {}
    mqtt: dict[str, Any] = {"host": broker.host, "port": broker.port, "client_id": "mqtt2sms"}
    if broker.username:
        mqtt["username"] = broker.username
    if broker.password:
        mqtt["password"] = broker.password
    if broker.ssl:
        mqtt["tls"] = {}
    out: dict[str, Any] = {"mqtt": mqtt, "state_dir": STATE_DIR}

    smtp = options.get("smtp") or {}
    if _blank(smtp.get("host")):
        given = [key for key in ("username", "password") if not _blank(smtp.get(key))]
        if given:
            # a login with nowhere to log in is a mistake, not a request for a dry run
            problems.append(
                f"smtp.host: empty, but smtp.{' and smtp.'.join(given)} "
                f"{'is' if len(given) == 1 else 'are'} set: fill in the SMTP server (such as "
                "smtp.gmail.com), or clear them too for a dry run (texts are written to "
                "/data/maildir, never sent)"
            )
    else:
        section: dict[str, Any] = {"host": smtp["host"]}
        for key in ("port", "security", "username", "password", "timeout", "ca_certs"):
            if not _blank(smtp.get(key)):
                section[key] = smtp[key]
        sender = smtp.get("from")
        section["from"] = smtp.get("username") if _blank(sender) else sender
        out["smtp"] = section

    contacts: dict[str, Any] = {}
    for i, c in enumerate(options.get("contacts") or []):
        name = str(c.get("name", "")).strip()
        where = f"contacts[{i}]"
        if name in contacts:
            problems.append(f"{where}.name: '{name}' is already the name of another contact")
            continue
        entry: dict[str, Any] = {}
        for key in ("number", "carrier", "email"):
            if not _blank(c.get(key)):
                entry[key] = str(c[key]).strip()
        if _csv(c.get("via")):
            entry["via"] = _csv(c.get("via"))
        contacts[name] = entry or None
        back[f"contacts.{name}"] = where
    if contacts:
        out["contacts"] = contacts

    groups: dict[str, Any] = {}
    for i, g in enumerate(options.get("groups") or []):
        name = str(g.get("name", "")).strip()
        if name in groups:
            problems.append(f"groups[{i}].name: '{name}' is already the name of another group")
            continue
        groups[name] = _csv(g.get("members"))
        back[f"groups.{name}"] = f"groups[{i}].members"
    if groups:
        out["groups"] = groups

    defaults: dict[str, Any] = {}
    if _csv(options.get("to")):
        defaults["to"] = _csv(options.get("to"))
        back["defaults.to"] = "to"
    else:
        problems.append(
            "to: empty: name the contacts or groups (comma-separated) who get a text when a "
            "message names nobody, such as Home Assistant's notify.send_message"
        )
    if defaults:
        out["defaults"] = defaults

    limits: dict[str, Any] = {}
    for key in ("daily_cap", "per_recipient"):
        if not _blank(options.get(key)):
            limits[key] = options[key]
            back[f"limits.{key}"] = key
    start, end = options.get("quiet_hours_start"), options.get("quiet_hours_end")
    if not _blank(start) or not _blank(end):
        limits["quiet_hours"] = {"start": start, "end": end}
        back["limits.quiet_hours"] = "quiet_hours_start/quiet_hours_end"
    if limits:
        out["limits"] = limits

    out["homeassistant"] = {"discovery": bool(options.get("discovery", True))}
    back["homeassistant"] = "discovery"

    rules = []
    for i, r in enumerate(options.get("rules") or []):
        rule: dict[str, Any] = {}
        for key in ("name", "topic", "when", "message", "cooldown", "priority", "key"):
            if not _blank(r.get(key)):
                rule[key] = r[key]
        if _csv(r.get("to")):
            rule["to"] = _csv(r.get("to"))
        rules.append(rule)
        back[f"rules[{i}]"] = f"rules[{i}]"
    if rules:
        out["rules"] = rules
    if problems:
        raise OptionsError(problems)
    return _literal(out), back


def _literal(value: Any) -> Any:
    """Every string as typed: the config's ``${VAR}`` substitution must not touch an option
    (a password such as ``Tr0ub${HOME}x``), so each ``${`` is written as the escape ``$${``."""
    if isinstance(value, str):
        return literal(value)
    if isinstance(value, dict):
        return {k: _literal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_literal(v) for v in value]
    return value


_PROBLEM = re.compile(r"^[^:]*:\d+: (?P<path>[^\s:]+): (?P<what>.*)$")


def _in_options_terms(problem: str, back: Mapping[str, str]) -> str:
    m = _PROBLEM.match(problem)
    if not m:
        return re.sub(r"^[^:]*:\d+: ", "", problem)
    path = m["path"]
    for prefix in sorted(back, key=len, reverse=True):
        if path == prefix or path.startswith((prefix + ".", prefix + "[")):
            path = back[prefix] + path[len(prefix) :]
            break
    return f"{path}: {m['what']}"


def translate(
    options: Mapping[str, Any], broker: Broker, env: Mapping[str, str]
) -> tuple[str, list[str]]:
    """The config file's text and its warnings, both in the options' terms.

    Raises OptionsError with every problem, each naming the option.
    """
    data, back = build(options, broker)
    text = (
        "# Written by `mqtt2sms addon-config` from the add-on's options at each start:\n"
        "# change the options, not this file.\n" + yaml.safe_dump(data, sort_keys=False)
    )
    try:
        loaded = cfg.parse_config(text, "options", env)
    except ConfigError as exc:
        raise OptionsError([_in_options_terms(p, back) for p in exc.problems]) from None
    return text, [_in_options_terms(w, back) for w in loaded.warnings]


def supervisor_broker(url: str, token: str, attempts: int = 5) -> Broker:
    """Ask the Supervisor's services API where the MQTT broker is (``GET /services/mqtt``).

    Raises OptionsError when it has none or cannot be reached.
    """
    req = urllib.request.Request(
        url.rstrip("/") + "/services/mqtt", headers={"Authorization": f"Bearer {token}"}
    )
    last = ""
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                body = json.loads(resp.read().decode("utf-8"))
            data = body.get("data") or {}
            return Broker(
                host=str(data["host"]),
                port=int(data.get("port", 1883)),
                username=data.get("username") or None,
                password=data.get("password") or None,
                ssl=bool(data.get("ssl", False)),
            )
        except urllib.error.HTTPError as exc:
            last = f"the Supervisor answered {exc.code}: is the Mosquitto broker add-on installed?"
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            last = f"cannot ask the Supervisor for the MQTT broker: {exc}"
        if attempt + 1 < attempts:
            time.sleep(2)
    raise OptionsError([last])


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--options", default="/data/options.json", metavar="PATH")
    p.add_argument("--output", default="/tmp/mqtt2sms/config.yaml", metavar="PATH")
    p.add_argument(
        "--supervisor",
        default=os.environ.get("MQTT2SMS_SUPERVISOR_URL", "http://supervisor"),
        metavar="URL",
        help="the Supervisor's API (default http://supervisor)",
    )


def command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Write the config (mode 0600: it holds the passwords); exit 2 naming each bad option."""
    try:
        with open(args.options, encoding="utf-8") as f:
            options = json.load(f)
        if not isinstance(options, dict):
            raise OptionsError([f"{args.options}: not a JSON object"])
        token = env.get("SUPERVISOR_TOKEN", "")
        if not token:
            raise OptionsError(["SUPERVISOR_TOKEN is not set: run this inside the add-on"])
        broker = supervisor_broker(args.supervisor, token)
        text, warnings = translate(options, broker, env)
    except OSError as exc:
        print(f"cannot read the add-on's options: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"{args.options}: not JSON: {exc}", file=sys.stderr)
        return 2
    except OptionsError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print("the add-on's options were refused", file=sys.stderr)
        return 2
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"config written to {args.output}: broker {broker.host}:{broker.port}")
    return 0
