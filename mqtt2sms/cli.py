"""The command line: ``main(argv=None) -> int``."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import difflib
import functools
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from mqtt2sms import __version__, addon, carriers, cli_incidents, elapsed, health, throttle
from mqtt2sms import config as cfg
from mqtt2sms.cli_common import age, daemon_clock, elapsed_now, table
from mqtt2sms.errors import ConfigError, DeliveryError, MqttError

if TYPE_CHECKING:
    pass

log = logging.getLogger("mqtt2sms")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mqtt2sms", description="Turn MQTT messages from a home into SMS texts."
    )
    p.add_argument("--version", action="version", version=f"mqtt2sms {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("-c", "--config", metavar="PATH", help="config file")
        return sp

    r = with_config(sub.add_parser("run", help="run the daemon"))
    r.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    c = with_config(sub.add_parser("check", help="validate the config, show rules and recipients"))
    c.add_argument("--probe", action="store_true", help="also try each way out, sending nothing")
    t = with_config(sub.add_parser("test", help="dry run one message: what would be sent"))
    t.add_argument("topic")
    t.add_argument("payload")
    t.add_argument("--json", action="store_true", help="print JSON")
    s = with_config(sub.add_parser("send", help="publish a text to alert_topic"))
    s.add_argument("--to", action="append", default=[], metavar="NAME")
    s.add_argument("--priority", choices=["normal", "high"])
    s.add_argument("text")
    q = with_config(sub.add_parser("queue", help="inspect and act on the outbox"))
    q.add_argument("action", nargs="?", default="list", choices=["list", "retry", "drop"])
    q.add_argument("id", nargs="?")
    q.add_argument("--all", action="store_true", help="list finished texts too")
    cli_incidents.arguments(
        with_config(sub.add_parser("incidents", help="open incidents; ack one; run a drill"))
    )
    cli_incidents.call_arguments(
        with_config(sub.add_parser("call", help="ring a contact once (a check that calls work)"))
    )
    sub.add_parser("carriers", help="the built-in gateway table")
    health.arguments(with_config(sub.add_parser("health", help="is the running daemon healthy?")))
    addon.arguments(sub.add_parser("addon-config", help="Home Assistant add-on: write the config"))
    return p


#: The exit code of a command whose reader went away (`check | head`): what a shell reports
#: for a process killed by SIGPIPE (128 + 13), so `set -o pipefail` sees it as usual.
EXIT_BROKEN_PIPE = 141


def _quiet_on_broken_pipe(fn: Callable[..., int]) -> Callable[..., int]:
    """`mqtt2sms check | head`: when the reader leaves, stop quietly (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> int:
        try:
            code = fn(*args, **kwargs)
            sys.stdout.flush()  # a pipe is block-buffered: the write may fail only here
            return code
        except BrokenPipeError:
            # Point stdout at /dev/null so the flush at interpreter exit does not fail again.
            with contextlib.suppress(OSError, ValueError, AttributeError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
            return EXIT_BROKEN_PIPE

    return wrapper


@_quiet_on_broken_pipe
def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 2
    from mqtt2sms import logs

    logs.setup(env, verbose=getattr(args, "verbose", False))
    if args.command == "carriers":
        return cmd_carriers()
    if args.command == "addon-config":
        return addon.command(args, env)
    try:
        loaded = cfg.load_config(args.config, env)
        if args.command == "check" and loaded.config.mqtt.embedded:
            from mqtt2sms.broker import missing

            # `run` refuses it at start: `check` must not pass what `run` refuses
            problem = missing()
            if problem is not None:
                raise ConfigError([f"{loaded.config.path}: {problem}"])
    except ConfigError as exc:
        n = len(exc.problems)
        summary = f"config refused: {n} error{'s' if n != 1 else ''}"
        for line in [*exc.problems, summary]:
            # the daemon logs (journald sees an error priority); the other commands print
            if args.command == "run":
                log.error("%s", line)
            else:
                print(line, file=sys.stderr)
        return 2
    for warning in loaded.warnings:
        if args.command == "run":
            log.warning("%s", warning)
        else:
            print(f"warning: {warning}", file=sys.stderr)
    if args.command == "run":
        from mqtt2sms.daemon import Daemon

        try:
            return Daemon(loaded, args.config, env).run()
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("%s", problem)
            return 2
    if args.command == "check":
        return cmd_check(loaded.config, args.probe, env)
    if args.command == "test":
        return cmd_test(loaded.config, args.topic, args.payload, args.json, env)
    if args.command == "send":
        return cmd_send(loaded.config, args.text, args.to, args.priority)
    if args.command == "queue":
        return cmd_queue(loaded.config, args.action, args.id, args.all)
    if args.command == "call":
        return cli_incidents.call_command(loaded.config, args.contact, args.wait)
    if args.command == "incidents":
        return cli_incidents.command(loaded.config, args)
    if args.command == "health":
        return health.command(loaded.config.state_dir, health.limits_of(args))
    return 2


# --------------------------------------------------------------------------- carriers


def cmd_carriers() -> int:
    rows = [("carrier", "domain", "country", "status", "note")]
    for key, c in sorted(carriers.CARRIERS.items()):
        rows.append((key, c.domain, c.country, c.status, c.note))
    table(rows)
    for paragraph in carriers.CLOSING:
        print(paragraph)
    return 0


# --------------------------------------------------------------------------- check


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _per(seconds: float) -> str:
    d = _duration(seconds)
    return d[1:] if d in ("1s", "1m", "1h", "1d") else d


def _ways_line(config: cfg.Config, contact: cfg.Contact, via: tuple[str, ...]) -> str:
    """``smtp 5551234567@tmomail.net, then twilio +15551234567``: the ways out in order."""
    from mqtt2sms.ways import addresses

    found = addresses(contact, via)
    parts = []
    for name in via:
        addr = found.get(name)
        if name == "smtp" and config.smtp is None:
            parts.append(f"smtp (dry run) {addr}")
        else:
            parts.append(f"{name} {addr}")
    return ", then ".join(parts)


def _recipient_lines(config: cfg.Config, rule: cfg.Rule) -> list[str]:
    names = list(rule.options.to)
    if rule.escalate and rule.escalate in config.escalations:
        names = [n for step in config.escalations[rule.escalate].steps for n in step.to]
    contacts, _ = cfg.resolve_recipients(config, names)
    lines = []
    for contact in contacts:
        via = cfg.contact_via(config, contact, rule.options, rule.via_set)
        lines.append(f"    {contact.name}: " + _ways_line(config, contact, via))
    return lines


def _rule_names(config: cfg.Config, rule: cfg.Rule) -> list[str]:
    if rule.escalate and rule.escalate in config.escalations:
        return [n for step in config.escalations[rule.escalate].steps for n in step.to]
    return list(rule.options.to)


def _gateway_of(contact: cfg.Contact) -> carriers.Carrier | None:
    """The carrier whose gateway the contact's ``smtp`` address is on, when the table knows
    it: its ``carrier``, else the domain of its ``email`` (the best status among carriers
    sharing that domain). None for an address the table does not know."""
    if contact.carrier is not None:
        return carriers.CARRIERS.get(contact.carrier)
    domain = (contact.gateway_address or "").rpartition("@")[2].lower()
    same = [c for c in carriers.CARRIERS.values() if c.domain == domain]
    rank = {carriers.ACTIVE: 0, carriers.UNVERIFIED: 1, carriers.SHUT_DOWN: 2}
    return min(same, key=lambda c: rank[c.status]) if same else None


def gateway_only_warnings(config: cfg.Config) -> list[str]:
    """A warning for each contact whose only way out, by some rule or by default, is a
    carrier gateway marked shut down or unverified, naming the other ways out. Pure."""
    from mqtt2sms.ways import PHONE_WAYS, addresses

    out = []
    for contact in config.contacts.values():
        gateway = _gateway_of(contact)
        if gateway is None or gateway.status == carriers.ACTIVE:
            continue
        resolutions = [(contact.via or config.defaults.via, "by default")]
        for rule in config.rules:
            found, _ = cfg.resolve_recipients(config, _rule_names(config, rule))
            if contact in found:
                via = cfg.contact_via(config, contact, rule.options, rule.via_set)
                resolutions.append((via, f"rule {rule.name}"))
        where = [w for via, w in resolutions if list(addresses(contact, via)) == ["smtp"]]
        if not where:
            continue
        configured = [n for n in PHONE_WAYS if getattr(config, n, None) is not None]
        others = ", ".join(PHONE_WAYS[:-1]) + f" or {PHONE_WAYS[-1]}"
        have = f" ({' and '.join(configured)} configured here)" if configured else ""
        status = "has shut down" if gateway.status == carriers.SHUT_DOWN else "is unverified"
        out.append(
            f"contact {contact.name}: its only way out ({', '.join(dict.fromkeys(where))}) is "
            f"{gateway.name}'s email gateway {gateway.domain}, which {status} and never says "
            f"whether a text arrived: add {others} to its `via`{have}"
        )
    return out


def _reading(always: bool, can: bool) -> str:
    if always:
        return "received texts read every poll"
    if can:
        return "replies read while an incident waits for one"
    return "replies not read (no `from`)"


def _way_out_lines(config: cfg.Config) -> list[str]:
    """One line for each way out beside smtp that the config has (never a secret)."""

    lines = []
    if config.twilio is not None:
        t = config.twilio
        sender = (
            f"messaging service {t.messaging_service_sid}"
            if t.messaging_service_sid
            else f"from {t.from_number}"
        )
        lines.append(
            f"twilio: account {t.account_sid}, {sender}, {t.api_base}, delivery reports every "
            f"{_duration(t.poll)}, {_reading(t.receive, bool(t.from_number))}"
            + ("" if t.auth_token else ", NO auth_token")
        )
    if config.modem is not None:
        m = config.modem
        hint = (
            ""
            if m.device.startswith("/dev/serial/by-id/")
            else " (a /dev/serial/by-id/... path survives the modem re-plugging)"
        )
        lines.append(
            f"modem: {m.device} at {m.baudrate} baud{', SIM PIN set' if m.pin else ''}{hint}, "
            f"received texts read as they arrive (the SIM every {_duration(m.poll)})"
        )
    if config.android is not None:
        a = config.android
        login = f"user {a.username}" if a.username else "no login"
        lines.append(
            f"android: {a.url}, {login}, delivery reports every {_duration(a.poll)}, "
            f"{_reading(a.receive, True)}"
            + ("" if a.password or not a.username else ", NO password")
        )
    return lines


def cmd_check(config: cfg.Config, probe: bool, env: Mapping[str, str] | None = None) -> int:
    from mqtt2sms.system import local_tz, tz_name

    print(f"config {config.path}: OK")
    m = config.mqtt
    print(
        f"broker: {m.host}:{m.port}{' (embedded)' if m.embedded else ''}, "
        f"client id {m.client_id}, MQTT {m.protocol}, base topic {m.base_topic}"
    )
    if config.smtp is None:
        print(f"smtp: none, dry run into {os.path.join(config.state_dir, 'maildir')}")
    else:
        s = config.smtp
        print(
            f"smtp: {s.host}:{s.port} {s.security}, from {s.from_addr}"
            + (f", login {s.username}" if s.username else "")
        )
    for line in _way_out_lines(config):
        print(line)
    print(f"state: {config.state_dir}")
    print(f"time zone: {tz_name(local_tz(os.environ if env is None else env))}")
    lim = config.limits
    rate = (
        f"{lim.per_recipient.count}/{_per(lim.per_recipient.per)}" if lim.per_recipient else "none"
    )
    quiet = (
        f"{lim.quiet_hours.start:%H:%M}-{lim.quiet_hours.end:%H:%M}" if lim.quiet_hours else "none"
    )
    print(
        f"limits: per recipient {rate}, daily cap {lim.daily_cap or 'none'}, quiet hours "
        f"{quiet}, max age {_duration(lim.max_age)}, retry {_duration(lim.retry.first)}.."
        f"{_duration(lim.retry.max)}, keep {_duration(lim.keep)}"
    )
    print(f"contacts ({len(config.contacts)}), their ways out in order unless a rule says:")
    for contact in config.contacts.values():
        own = "own via" if contact.via is not None else "defaults.via"
        via = contact.via or config.defaults.via
        print(f"  {contact.name}: {_ways_line(config, contact, via)} ({own})")
    for warning in gateway_only_warnings(config):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"rules ({len(config.rules)}):")
    for rule in config.rules:
        o = rule.options
        extra = []
        if o.cooldown:
            extra.append(f"cooldown {_duration(o.cooldown)}")
        if o.priority != "normal":
            extra.append(f"priority {o.priority}")
        if rule.when:
            extra.append(f"when {rule.when}")
        if rule.escalate:
            extra.append(f"escalate {rule.escalate}")
        if rule.builtin:
            extra.append("built-in; a JSON payload may name its recipients")
        elif not rule.to_set and not rule.escalate:
            extra.append("a JSON payload may name its recipients")
        print(f"  {rule.name}: {rule.topic}" + (f" ({'; '.join(extra)})" if extra else ""))
        lines = _recipient_lines(config, rule)
        print("\n".join(lines) if lines else "    (no recipients)")
    if not probe:
        return 0
    from mqtt2sms.transports.registry import build as build_transports
    from mqtt2sms.ways import NOT_BUILT

    failed = 0
    try:
        transports = build_transports(config)
    except Exception as exc:  # a way out that cannot even be built: say so, no traceback
        print(f"probe: FAILED, cannot set up the ways out: {type(exc).__name__}: {exc}")
        return 1
    for name, transport in transports.items():
        try:
            print(f"probe {name}: OK, {transport.probe()}")
        except DeliveryError as exc:
            failed += 1
            print(f"probe {name}: FAILED, {exc}")
        except Exception as exc:  # a transport must map its errors; never a traceback here
            failed += 1
            print(f"probe {name}: FAILED, unexpected error: {type(exc).__name__}: {exc}")
        finally:
            with contextlib.suppress(Exception):
                transport.close()
    for name in NOT_BUILT:
        if getattr(config, name, None) is not None:
            print(f"probe {name}: skipped, this version cannot send through it yet")
    return 1 if failed else 0


# --------------------------------------------------------------------------- test


@contextlib.contextmanager
def _live_throttle(
    config: cfg.Config,
) -> Iterator[tuple[throttle.ThrottleState, dt.datetime | None]]:
    """The throttle state the daemon holds (its per-key store in the outbox) and now on its
    throttle axis; an empty state when there is no outbox yet or it cannot be read."""
    from mqtt2sms.errors import StorageError
    from mqtt2sms.outbox import Outbox
    from mqtt2sms.system import outbox_path, utcnow
    from mqtt2sms.throttle_store import LiveThrottle

    path = outbox_path(config)
    box = None
    if os.path.exists(path):
        with contextlib.suppress(StorageError):
            box = Outbox(path)
    if box is None:
        yield throttle.ThrottleState.empty(), None
        return
    try:
        clock = daemon_clock(box)
        try:
            live = LiveThrottle(box, clock.now_e(), utcnow())
        except StorageError:
            yield throttle.ThrottleState.empty(), None
            return
        yield live.view(), clock.throttle_now()
    finally:
        box.close()


def cmd_test(
    config: cfg.Config, topic: str, payload: str, as_json: bool, env: Mapping[str, str]
) -> int:
    from mqtt2sms.model import Message
    from mqtt2sms.render import Templates
    from mqtt2sms.router import route
    from mqtt2sms.system import local_tz, utcnow

    now = utcnow()
    msg = Message(topic=topic, payload=payload.encode("utf-8", "surrogateescape"), received_at=now)
    with _live_throttle(config) as (state, t_now):
        routed = route(config, Templates(), msg, state, now, local_tz(env), "test", elapsed=t_now)
    whens = {r.name: r.when for r in config.rules}
    previews = [cli_incidents.preview(config, t) for t in routed.triggers]
    charsets = {rule: (charset, reason) for rule, charset, reason in routed.charsets}
    if as_json:
        out = {
            "topic": topic,
            "matched": list(routed.matched),
            "stopped": [{"rule": r, "when": whens.get(r)} for r in routed.stopped],
            "charsets": [
                {"rule": rule, "charset": charset, "reason": reason}
                for rule, (charset, reason) in charsets.items()
            ],
            "texts": [
                {
                    "id": t.id,
                    "rule": t.rule,
                    "to": t.recipient,
                    "via": list(t.via),
                    "addresses": dict(t.addresses),
                    "body": t.body,
                    "subject": t.subject,
                    "priority": t.priority,
                    "key": t.key,
                    "not_before": t.not_before.isoformat() if t.not_before else None,
                    "charset": charsets.get(t.rule, (None, None))[0],
                }
                for t in routed.texts
            ],
            "events": [e.as_json() for e in routed.events],
            "incidents": previews,
            "problems": list(routed.problems),
        }
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    if not routed.matched and not routed.events and not routed.stopped:
        print(f"no rule matches {topic}")
        return 0
    print(f"matched: {', '.join(routed.matched) or '(none)'}")
    for r in routed.stopped:
        print(f"  [{r}] matches the topic, but its `when` is false: {whens.get(r)}")
    for p in routed.problems:
        print(f"problem: {p}")
    for t in routed.texts:
        addr = ", then ".join(f"{n} {t.addresses.get(n, '?')}" for n in t.via)
        when = (
            f" (deferred until {t.not_before.isoformat(timespec='minutes')})"
            if t.not_before
            else ""
        )
        subject = f" subject {t.subject!r}" if t.subject else ""
        print(f"  [{t.rule}] to {t.recipient} via {addr}{when}{subject}:")
        print(f"    {t.body}")
    for preview in previews:
        print("\n".join(cli_incidents.preview_lines(preview)))
    for e in routed.events:
        if e.state == "deferred":
            continue
        print(f"  [{e.rule}] {e.state}" + (f" {e.to}" if e.to else "") + f": {e.error}")
    for rule, (_charset, reason) in charsets.items():
        print(f"  [{rule}] charset {reason}")
    print("nothing was sent (dry run)")
    return 0


# --------------------------------------------------------------------------- send


def cmd_send(config: cfg.Config, text: str, to: list[str], priority: str | None) -> int:
    from mqtt2sms.mqtt import publish_once

    if not config.alert_topic:
        print("alert_topic is null in the config: nothing listens for `send`", file=sys.stderr)
        return 1
    if not text.strip():
        print("send: the text is empty; nothing to send", file=sys.stderr)
        return 1
    # The daemon would reject these after we said "published": refuse them here instead.
    known = sorted(set(config.contacts) | set(config.groups))
    for name in to:
        if name in known:
            continue
        if "@" in name or re.fullmatch(r"[+\d(][\d\s().+-]*", name.strip()):
            why = f"{name!r} is a number or address: name a contact or group from the config"
        else:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            why = f"unknown contact or group {name!r}{hint}"
        print(f"send: {why}; known: {', '.join(known) or 'none'}", file=sys.stderr)
        return 1
    rule = next((r for r in config.rules if r.topic == config.alert_topic), None)
    if to and rule is not None and rule.to_set:
        print(
            f"send: rule {rule.name} on {config.alert_topic} sets its own `to`, so --to would be "
            "ignored; leave --to out",
            file=sys.stderr,
        )
        return 1
    payload: str
    if to or priority:
        body: dict[str, object] = {"message": text}
        if to:
            body["to"] = to if len(to) > 1 else to[0]
        if priority:
            body["priority"] = priority
        payload = json.dumps(body, ensure_ascii=False)
    else:
        payload = text
    try:
        publish_once(config.mqtt, config.alert_topic, payload, f"mqtt2sms-send-{os.getpid()}")
    except MqttError as exc:
        print(f"send failed: {exc}", file=sys.stderr)
        return 1
    print(f"published to {config.alert_topic} on {config.mqtt.host}:{config.mqtt.port}")
    return 0


# --------------------------------------------------------------------------- queue


def cmd_queue(config: cfg.Config, action: str, text_id: str | None, show_all: bool) -> int:
    from mqtt2sms.outbox import Outbox, OutboxError
    from mqtt2sms.system import outbox_path

    path = outbox_path(config)
    if not os.path.exists(path):
        if action == "list":
            print(f"the outbox is empty ({path} does not exist yet)")
            return 0
        print(f"no outbox at {path}", file=sys.stderr)
        return 1
    box = Outbox(path)
    now = elapsed_now(box)
    try:
        if action == "list":
            rows = box.recent(100) if show_all else box.open_rows()
            if not rows:
                print("nothing is waiting")
                return 0
            listing: list[tuple[object, ...]] = [
                ("id", "age", "to", "via", "state", "attempts", "next try", "last error")
            ]
            for r in rows:
                if r.state in ("queued", "sending"):
                    nxt = "now" if r.next_at <= now else "in " + age(r.next_at - now)
                    if r.reason == "quiet":
                        nxt += " (quiet hours)"
                else:
                    nxt = "-"
                listing.append(
                    (
                        r.id,
                        age(now - r.created_at),
                        r.recipient,
                        r.current_via,
                        r.state,
                        r.attempts,
                        nxt,
                        (r.last_error or "")[:60],
                    )
                )
            table(listing)
            return 0
        if not text_id:
            print(f"queue {action} needs a text id (see `mqtt2sms queue list`)", file=sys.stderr)
            return 1
        row = box.get(text_id)
        if row is None:
            print(f"no text {text_id}", file=sys.stderr)
            return 1
        if action == "retry":
            try:
                box.retry_now(text_id, elapsed.instant(elapsed_now(box)))
            except OutboxError as exc:
                print(str(exc), file=sys.stderr)
                return 1
            print(f"{text_id} will be tried now")
            return 0
        if row.state == "sending":
            print(f"{text_id} is being sent right now; try again in a moment", file=sys.stderr)
            return 1
        try:
            box.update(text_id, "failed", finished_at=now, last_error="dropped by the user")
        except OutboxError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        _publish_dropped(config, row.id, row.rule, row.recipient, row.current_via, row.attempts)
        print(f"{text_id} dropped")
        return 0
    finally:
        box.close()


def _publish_dropped(
    config: cfg.Config, text_id: str, rule: str, to: str, via: str, attempts: int
) -> None:
    from mqtt2sms.model import Event
    from mqtt2sms.mqtt import publish_once

    ev = Event(
        id=text_id,
        state="failed",
        at=dt.datetime.now().astimezone(),
        rule=rule,
        to=to,
        via=via,
        attempts=attempts,
        error="dropped by the user",
    )
    try:
        publish_once(
            config.mqtt,
            f"{config.mqtt.base_topic}/event",
            json.dumps(ev.as_json()),
            f"mqtt2sms-queue-{os.getpid()}",
            timeout=5,
        )
    except MqttError as exc:
        print(f"warning: the failed event was not published: {exc}", file=sys.stderr)
