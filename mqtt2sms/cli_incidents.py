"""``mqtt2sms incidents``: the open incidents, an acknowledgement, a drill.

``list`` reads the outbox (where the daemon keeps its incidents) and prints each open one,
its step and when the next comes; ``ack CODE`` publishes the code on ``<base>/ack``, as a
Home Assistant button would; ``drill POLICY`` asks the running daemon for a drill of a policy
(its texts marked TEST, its steps a minute apart, or ``--step``) and follows it on
``<base>/incident`` until someone acknowledges it from their phone, or it ends unanswered.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from mqtt2sms import config as cfg
from mqtt2sms import control, incidents
from mqtt2sms.cli_common import age, elapsed_now, table
from mqtt2sms.errors import MqttError, StorageError


def arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "action", nargs="?", default="list", choices=["list", "ack", "drill"], help="list"
    )
    sp.add_argument("what", nargs="?", metavar="CODE|POLICY")
    sp.add_argument("--step", default="60s", help="drill: time between its steps (60s)")
    sp.add_argument("--by", default="command line", help="ack: who acknowledges")


def command(config: cfg.Config, args: argparse.Namespace) -> int:
    if args.action == "list":
        return _list(config)
    if not args.what:
        need = "an incident's code" if args.action == "ack" else "an escalation policy's name"
        print(f"incidents {args.action} needs {need}", file=sys.stderr)
        return 1
    if args.action == "ack":
        return _ack(config, args.what, args.by)
    return _drill(config, args.what, args.step)


def _list(config: cfg.Config) -> int:

    try:
        now, open_ = _stored(config)
    except StorageError as exc:
        print(f"cannot read the outbox: {exc}", file=sys.stderr)
        return 1
    if not open_:
        print("no incident is open")
        return 0
    rows: list[tuple[object, ...]] = [
        ("code", "rule", "key", "state", "step", "opened", "next", "texted")
    ]
    for inc in open_:
        if inc.state == "acked":
            nxt = f"ends in {age(inc.next_due - now)}" if inc.next_due else "-"
            state = f"acked by {inc.by}"
        else:
            nxt = "now" if inc.next_due is None or inc.next_due <= now else age(inc.next_due - now)
            nxt = f"in {nxt}" if nxt != "now" else nxt
            state = "open"
        rows.append(
            (
                inc.code,
                inc.rule,
                inc.key,
                state,
                f"{inc.step}/{len(inc.policy.steps)}",
                f"{age(now - inc.opened_e)} ago",
                nxt,
                ", ".join(inc.texted),
            )
        )
    table(rows)
    return 0


def _ack(config: cfg.Config, code: str, by: str) -> int:
    from mqtt2sms.mqtt import publish_once

    code = code.strip()
    if control.ack_request(code.encode()) is None:
        print(f"{code!r} is not an incident's code (3 or 4 digits) nor 'all'", file=sys.stderr)
        return 1
    topic = control.ack_topic(config)
    body = json.dumps({"id": code, "by": by})
    try:
        publish_once(config.mqtt, topic, body, f"mqtt2sms-incidents-{os.getpid()}")
    except MqttError as exc:
        print(f"ack failed: {exc}", file=sys.stderr)
        return 1
    print(f"published {code} to {topic}")
    return 0


def _drill(config: cfg.Config, policy: str, step_text: str) -> int:
    from mqtt2sms.config.reader import parse_duration

    if policy not in config.escalations:
        known = ", ".join(config.escalations) or "none"
        print(f"no escalation policy {policy!r} (the config has: {known})", file=sys.stderr)
        return 1
    try:
        step = float(parse_duration(step_text))
    except ValueError as exc:
        print(f"--step: {exc}", file=sys.stderr)
        return 1
    step = min(max(step, 5.0), 3600.0)
    steps = config.escalations[policy].steps
    print(f"drill of {policy}: {len(steps)} step(s), {step:g}s apart; texts say TEST.")
    print("Reply to the text from your phone as you would to a real alarm (ACK and its code).")

    def ends(ev: dict[str, Any]) -> bool:
        if ev.get("key") != f"drill:{policy}":
            return False
        at = dt.datetime.now().strftime("%H:%M:%S")
        who = f" by {ev['by']}" if ev.get("by") else ""
        print(f"{at}  incident {ev.get('id')}: {ev.get('state')}, step {ev.get('step')}{who}")
        return ev.get("state") in ("acked", "unacknowledged", "resolved")

    body = json.dumps({"policy": policy, "step": step})
    try:
        outcome = _follow(config, control.drill_topic(config), body, ends, len(steps) * step + 330)
    except MqttError as exc:
        print(f"drill failed: {exc}", file=sys.stderr)
        return 1
    if outcome is None:
        print("the daemon said nothing of the drill: is it running, on this broker?")
        return 1
    if outcome.get("state") == "acked":
        print(f"drill passed: acknowledged by {outcome.get('by')}")
        return 0
    print("drill failed: nobody acknowledged it")
    return 1


def _stored(config: cfg.Config) -> tuple[float, list[incidents.Incident]]:
    """Now on the daemon's elapsed axis, and the open incidents it has written (none when
    there is no outbox yet). Raises ``StorageError``."""
    from mqtt2sms.outbox import Outbox
    from mqtt2sms.system import outbox_path

    path = outbox_path(config)
    if not os.path.exists(path):
        return 0.0, []
    box = Outbox(path)
    try:
        return elapsed_now(box), [incidents.from_json(d) for d in box.incidents()]
    finally:
        box.close()


def _open_now(config: cfg.Config) -> list[incidents.Incident]:
    try:
        return _stored(config)[1]
    except StorageError:
        return []


def _follow(
    config: cfg.Config, ask: str, payload: str, ends: Callable[[dict[str, Any]], bool], wait: float
) -> dict[str, Any] | None:
    """Publish ``payload`` on ``ask`` to the running daemon, then follow ``<base>/incident``
    until an event ``ends`` says it is the end (returned), or ``wait`` seconds pass (None).
    Raises ``MqttError``."""
    from mqtt2sms.mqtt import publish_once, watch

    client = f"mqtt2sms-cli-{os.getpid()}"
    last: dict[str, Any] = {}

    def seen(raw: bytes) -> bool:
        try:
            ev = json.loads(raw)
        except ValueError:
            return False
        if isinstance(ev, dict) and ends(ev):
            last.update(ev)
            return True
        return False

    def then() -> None:
        publish_once(config.mqtt, ask, payload, client + "-ask")

    topic = f"{config.mqtt.base_topic}/incident"
    return last if watch(config.mqtt, topic, client, seen, wait, then) else None


def preview(config: cfg.Config, trigger: Any) -> dict[str, Any]:
    """What ``mqtt2sms test`` says of a message of a rule with ``escalate`` (a
    ``router.Trigger``): it opens an incident (and each step's texts), joins the open one,
    or resolves it."""
    from mqtt2sms import ways

    current = next(
        (i for i in _open_now(config) if (i.rule, i.key) == (trigger.rule, trigger.key)), None
    )
    out: dict[str, Any] = {"rule": trigger.rule, "key": trigger.key, "policy": trigger.policy}
    if trigger.resolves:
        out["does"] = f"resolves incident {current.code}" if current else "nothing (none open)"
        return out
    if current is not None:
        out["does"] = f"joins incident {current.code} (no text)"
        return out
    out["does"] = "opens an incident"
    steps = []
    for step in incidents.policy_of(config, trigger.policy).steps:
        texts, calls = [], []
        for name in step.to:
            via = cfg.rule_ways(config, config.contacts[name], trigger.rule)[1]
            reads = bool(via) and ways.reads_replies(config, via[0])
            tail = " Reply ACK <code>" if reads else " ACK <code>"
            texts.append({"to": name, "via": list(via), "body": trigger.message + tail})
            if step.call:
                calls.append({"to": name, "by": ways.caller(config, via), "times": step.call})
        steps.append({"after": step.after, "texts": texts, "calls": calls})
    out["steps"] = steps
    return out


def preview_lines(p: dict[str, Any]) -> list[str]:
    lines = [f"  [{p['rule']}] key {p['key']}: {p['does']} (policy {p['policy']})"]
    for n, step in enumerate(p.get("steps", ()), 1):
        for t in step["texts"]:
            via = ", then ".join(t["via"])
            lines.append(f"    step {n} at +{step['after']:g}s to {t['to']} via {via}:")
            lines.append(f"      {t['body']}")
        for c in step.get("calls", ()):
            by = f"by {c['by']}" if c["by"] else "not called: no way out of theirs can call"
            lines.append(f"    step {n} rings {c['to']} {c['times']} time(s), {by}")
    return lines


def call_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("contact", help="a contact's name")
    sp.add_argument("--wait", default="90s", help="how long to wait for the outcome (90s)")


def call_command(config: cfg.Config, contact: str, wait_text: str) -> int:
    """``mqtt2sms call CONTACT``: the running daemon (which holds the modem) rings the
    contact once by the first of its ways out that can call; the outcome is printed."""
    from mqtt2sms import ways
    from mqtt2sms.config.reader import parse_duration

    c = config.contacts.get(contact)
    if c is None:
        known = ", ".join(config.contacts) or "none"
        print(f"no contact {contact!r} (the config has: {known})", file=sys.stderr)
        return 1
    via = cfg.rule_ways(config, c, None)[1]
    way = ways.caller(config, via)
    if way is None or c.e164 is None:
        print(
            f"{contact}: no way out of theirs can call ({', '.join(via)}): calls go by the "
            "modem, or by twilio with `from`",
            file=sys.stderr,
        )
        return 1
    try:
        wait = float(parse_duration(wait_text))
    except ValueError as exc:
        print(f"--wait: {exc}", file=sys.stderr)
        return 1

    def ends(ev: dict[str, Any]) -> bool:
        return ev.get("state") == "call" and ev.get("id") is None and ev.get("to") == contact

    print(f"ringing {contact} ({c.e164}) by {way}, once...")
    try:
        outcome = _follow(config, control.call_topic(config), contact, ends, wait)
    except MqttError as exc:
        print(f"call failed: {exc}", file=sys.stderr)
        return 1
    if outcome is None:
        print("the daemon said nothing of the call: is it running, on this broker?")
        return 1
    detail = f" ({outcome['detail']})" if outcome.get("detail") else ""
    print(f"{contact} by {outcome.get('via')}: {outcome.get('outcome')}{detail}")
    return 0 if outcome.get("outcome") in ("answered", "no-answer", "busy") else 1
