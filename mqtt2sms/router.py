"""route(config, message, state, now) -> the texts to queue and the events to publish.

Pure: no I/O and no clock. For each rule the message hits:

    empty payload? -> one rejected event, no text
    retained? -> when -> recipients (rule `to`, else payload `to`, else defaults)
      -> key, message, subject (a failing template falls back, it never loses the alert)
      -> cooldown of (rule, key), once for the message
      -> format the text (with " (+N more)" when messages were suppressed)
      -> per recipient: daily cap, quiet hours, rate  -> Text rows / events
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from mqtt2sms import config as cfg
from mqtt2sms import rules as rules_mod
from mqtt2sms import sms, throttle
from mqtt2sms.errors import TemplateError
from mqtt2sms.model import MAX_PAYLOAD, Event, Message, Text
from mqtt2sms.render import NOT_JSON, Templates, Variables, variables
from mqtt2sms.transports import registry

_RAW_ADDRESS = re.compile(r"^[+\d(][\d\s().+-]*$|@")


@dataclass(frozen=True)
class Trigger:
    """A message of a rule with ``escalate``: it opens or joins the incident of its (rule,
    key), or resolves it (``resolves``: its ``resolve_when`` held); ``incidents.py`` decides."""

    rule: str
    key: str
    policy: str
    message: str
    resolves: bool = False


@dataclass(frozen=True)
class Routed:
    texts: tuple[Text, ...] = ()
    triggers: tuple[Trigger, ...] = ()
    events: tuple[Event, ...] = ()
    state: throttle.ThrottleState = field(default_factory=throttle.ThrottleState.empty)
    problems: tuple[str, ...] = ()  # template errors and the like, for the log
    matched: tuple[str, ...] = ()  # names of the rules that matched (and whose `when` held)
    stopped: tuple[str, ...] = ()  # names of the rules whose filter matched but `when` was false
    charsets: tuple[tuple[str, str, str], ...] = ()  # (rule, "gsm7" | "unicode", why) per text


def decode_payload(payload: bytes) -> tuple[str, object]:
    """The payload as text (invalid UTF-8 replaced) and as parsed JSON (or NOT_JSON).

    JSON that is too deep, has a number past Python's digit limit, or is not valid is
    simply not JSON: the message is then read as plain text.
    """
    text = payload.decode("utf-8", "replace")
    stripped = text.strip()
    if not stripped or stripped[0] not in '{["-0123456789tfn':
        return text, NOT_JSON
    try:
        return text, json.loads(stripped)
    except (ValueError, RecursionError):
        return text, NOT_JSON


def _names(value: object) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def route(
    config: cfg.Config,
    templates: Templates,
    message: Message,
    state: throttle.ThrottleState,
    now: dt.datetime,
    tz: dt.tzinfo,
    alert_id: str,
    rules: Sequence[cfg.Rule] | None = None,
    *,
    elapsed: dt.datetime | None = None,
) -> Routed:
    """Decide what a message becomes.

    ``now`` is an aware datetime; ``tz`` is the local zone for quiet hours and the daily cap;
    ``alert_id`` names this message's texts (``<alert_id>-<n>``). ``rules`` restricts the rules
    considered (default: all those whose filter matches). ``elapsed``: ``now`` on the
    elapsed axis (``elapsed.py``), which cooldowns and rate windows are measured on; default
    ``now``. Never raises for any payload.
    """
    if rules is None:
        rules = rules_mod.matching(config.rules, message.topic, config.mqtt.base_topic)
    if not rules:
        return Routed(state=state)
    if len(message.payload) > MAX_PAYLOAD:
        ev = Event(
            id=alert_id,
            state="rejected",
            at=now,
            rule=rules[0].name,
            error=f"payload of {len(message.payload)} bytes is over 64 KiB",
            extra={"topic": message.topic},
        )
        return Routed(events=(ev,), state=state)

    if message.blank:
        # No alert: what `mosquitto_pub -r -n` sends to clear a retained message, or a
        # sensor's empty ping. Never a text; a rejected event says why when a rule would have
        # texted it (a rule with `when` filters its messages: it stays silent, as for any
        # message its `when` does not hold for).
        acting = [r for r in rules if (r.retained or not message.retained) and not r.when]
        if not acting:
            return Routed(state=state)
        ev = Event(
            id=alert_id,
            state="rejected",
            at=now,
            rule=acting[0].name,
            error="empty payload: no alert (a cleared retained message?)",
            extra={"topic": message.topic},
        )
        return Routed(events=(ev,), state=state)
    text, parsed = decode_payload(message.payload)
    out = _Builder(config, templates, message, now, tz, alert_id, state, text, parsed)
    out.elapsed = now if elapsed is None else elapsed
    for rule in rules:
        out.rule(rule)
    return Routed(
        texts=tuple(out.texts),
        triggers=tuple(out.triggers),
        events=tuple(out.events),
        state=out.state,
        problems=tuple(out.problems),
        matched=tuple(out.matched),
        stopped=tuple(out.stopped),
        charsets=tuple(out.charsets),
    )


class _Builder:
    """Accumulates the outcome of one message over the rules it matched."""

    def __init__(
        self,
        config: cfg.Config,
        templates: Templates,
        message: Message,
        now: dt.datetime,
        tz: dt.tzinfo,
        alert_id: str,
        state: throttle.ThrottleState,
        text: str,
        parsed: object,
    ) -> None:
        self.config = config
        self.templates = templates
        self.message = message
        self.now = now
        self.tz = tz
        self.alert_id = alert_id
        self.state = state
        self.text = text
        self.parsed = parsed
        self.texts: list[Text] = []
        self.triggers: list[Trigger] = []
        self.events: list[Event] = []
        self.problems: list[str] = []
        self.matched: list[str] = []
        self.stopped: list[str] = []
        self.charsets: list[tuple[str, str, str]] = []
        self._n = 0
        self.elapsed = now  # the instant cooldowns and rates are measured at

    def _next_id(self) -> str:
        self._n += 1
        return f"{self.alert_id}-{self._n}"

    def _event(
        self,
        state: str,
        rule: cfg.Rule,
        *,
        to: str | None = None,
        error: str | None = None,
        extra: dict[str, object] | None = None,
    ) -> None:
        self.events.append(
            Event(
                id=self._next_id(),
                state=state,
                at=self.now,
                rule=rule.name,
                to=to,
                error=error,
                extra=extra or {},
            )
        )

    def _render(self, rule: cfg.Rule, what: str, src: str, v: Variables) -> str | None:
        try:
            return self.templates.render(src, v)
        except TemplateError as exc:
            self.problems.append(f"rule {rule.name}: {what} template failed: {exc}")
            return None

    def rule(self, rule: cfg.Rule) -> None:
        msg = self.message
        if msg.retained and not rule.retained:
            return
        v = variables(
            self.text, self.parsed, msg.topic, msg.retained, rule.name, self.now.astimezone(self.tz)
        )
        fallback = False
        if rule.escalate and rule.resolve_when and self._holds(rule, rule.resolve_when, v):
            # it resolves the open incident of its key, whatever `when` says
            obj = self.parsed if isinstance(self.parsed, dict) else None
            key, body = self._key(rule, v, obj), self._body(rule, v, False)
            self.matched.append(rule.name)
            self.triggers.append(Trigger(rule.name, key, rule.escalate, body, resolves=True))
            return
        if rule.when:
            try:
                notes: list[str] = []
                held = self.templates.when(rule.when, v, notes)
                if notes and self.templates.first_time(rule.name, "when-value"):
                    self.problems.append(
                        f"rule {rule.name}: in `when`, {'; '.join(notes)} (a null or non-numeric "
                        "value, such as a sensor that dropped out; said once per rule)"
                    )
                if not held:
                    self.stopped.append(rule.name)
                    return
            except TemplateError as exc:
                # A typo in `when` must not lose an alert: send the fallback text.
                self.problems.append(f"rule {rule.name}: when failed: {exc}")
                fallback = True
        self.matched.append(rule.name)
        obj = self.parsed if isinstance(self.parsed, dict) else None
        if rule.escalate:
            # the incident's steps choose the recipients; cooldowns and rates do not apply
            key, body = self._key(rule, v, obj), self._body(rule, v, fallback)
            self.triggers.append(Trigger(rule.name, key, rule.escalate, body))
            return

        names = self._recipients(rule, obj)
        if names is None:
            return
        if not names:
            self._event(
                "rejected",
                rule,
                error=f"rule {rule.name} has no recipients: set `to` (on the rule or in "
                "defaults) or name them in a JSON payload",
            )
            return
        priority = rule.options.priority
        if obj is not None and not rule.to_set and "priority" in obj:
            p = obj["priority"]
            if isinstance(p, str) and p.strip().lower() in ("normal", "high"):
                priority = p.strip().lower()
            else:
                self.problems.append(f"rule {rule.name}: payload priority {p!r} ignored")

        key, body = self._key(rule, v, obj), self._body(rule, v, fallback)
        subject = None
        if rule.options.subject:
            subject = self._render(rule, "subject", rule.options.subject, v) or None

        # what the text says (before " (+N more)"): a high-priority message that repeats the
        # text that started the cooldown is held by it like any other
        said = throttle.digest(f"{subject or ''}\0{body}")
        cd = throttle.check_cooldown(
            self.state,
            rule.name,
            key,
            rule.options.cooldown,
            priority,
            self.elapsed,
            text_digest=said,
        )
        if not cd.allowed:
            self.state = throttle.note_suppressed(self.state, rule.name, key)
            # the cooldown ends so long from now, shown on the wall clock
            until = (self.now + (cd.until - self.elapsed)).isoformat() if cd.until else None
            self._event(
                "suppressed",
                rule,
                to=",".join(names) or None,
                error=f"cooldown of {rule.name} for {key} until {until}"
                + (" (high priority, but the text repeats)" if priority == "high" else ""),
                extra={"key": key, "until": until},
            )
            return
        suffix = f" (+{cd.more} more)" if cd.more > 0 else ""
        o = rule.options
        formatted = self._format(rule, body, suffix, subject)
        if not any(p.strip() for p in formatted.parts):
            # Nothing a phone can show is left (emoji, control characters): fall back.
            self.problems.append(f"rule {rule.name}: the message has nothing a phone can show")
            formatted = self._format(rule, f"{rule.name}: {self.text}", suffix, subject)
            if not any(p.strip() for p in formatted.parts):
                formatted = self._format(rule, f"{rule.name}: (no text)", suffix, subject)
        parts, subject = formatted.parts, formatted.subject  # the subject counts toward the limit
        self.charsets.append((rule.name, formatted.charset, formatted.reason))
        contacts, _unknown = cfg.resolve_recipients(self.config, names)
        any_accepted = False
        for contact in contacts:
            via = cfg.contact_via(self.config, contact, o, rule.via_set)
            reach = registry.addresses(contact, via)
            if not reach:
                self._event(
                    "rejected",
                    rule,
                    to=contact.name,
                    error=f"contact {contact.name} has no address for {', '.join(via)}",
                )
                continue
            d = throttle.check_recipient(
                self.state,
                contact.name,
                len(parts),
                priority,
                self.config.limits,
                self.now,
                self.tz,
                elapsed=self.elapsed,
            )
            if d.action == "suppress":
                extra: dict[str, object] = {"key": key, "limit": d.limit}
                self._event("suppressed", rule, to=contact.name, error=d.reason, extra=extra)
                continue
            any_accepted = True
            window = (
                self.config.limits.per_recipient.per if self.config.limits.per_recipient else None
            )
            not_before = None
            if d.action == "defer":
                not_before = d.until
                self.state = throttle.note_deferred(self.state, len(parts), self.now, self.tz)
            else:
                self.state = throttle.note_accepted(
                    self.state,
                    contact.name,
                    len(parts),
                    self.now,
                    self.tz,
                    window,
                    elapsed=self.elapsed,
                )
            for part in parts:
                t = Text(
                    id=self._next_id(),
                    alert_id=self.alert_id,
                    rule=rule.name,
                    key=key,
                    recipient=contact.name,
                    via=via,
                    addresses=reach,
                    body=part,
                    created_at=self.now,
                    subject=subject,
                    priority=priority,
                    not_before=not_before,
                )
                self.texts.append(t)
                if not_before is not None:
                    self.events.append(
                        Event(
                            id=t.id,
                            state="deferred",
                            at=self.now,
                            rule=rule.name,
                            to=contact.name,
                            via=via[0],
                            error=d.reason,
                            extra={"next_try": not_before.isoformat()},
                        )
                    )
        if any_accepted:
            self.state = throttle.note_sent(
                self.state, rule.name, key, self.elapsed, text_digest=said
            )

    def _holds(self, rule: cfg.Rule, expr: str, v: Variables) -> bool:
        try:
            return bool(self.templates.when(expr, v, []))
        except TemplateError as exc:
            self.problems.append(f"rule {rule.name}: resolve_when failed: {exc}")
            return False

    def _key(self, rule: cfg.Rule, v: Variables, obj: dict[str, object] | None) -> str:
        key = self.message.topic
        if rule.key:
            key = self._render(rule, "key", rule.key, v) or key
        payload_key = obj.get("key") if obj is not None and not rule.to_set else None
        if isinstance(payload_key, str | int) and not isinstance(payload_key, bool):
            key = str(payload_key)
        return key

    def _body(self, rule: cfg.Rule, v: Variables, fallback: bool) -> str:
        body: str | None = None
        if not fallback:
            if rule.message:
                body = self._render(rule, "message", rule.message, v)
            else:
                body = self.templates.default_message(v)
            if body is not None and not body.strip():
                self.problems.append(f"rule {rule.name}: message rendered empty")
                body = None
        return f"{rule.name}: {self.text}" if body is None else body

    def _format(self, rule: cfg.Rule, body: str, suffix: str, subject: str | None) -> sms.Formatted:
        o = rule.options
        return sms.compose(
            body,
            max_length=o.max_length,
            long=o.long,
            max_parts=o.max_parts,
            charset=o.charset,
            suffix=suffix,
            subject=subject,
        )

    def _recipients(self, rule: cfg.Rule, obj: dict[str, object] | None) -> list[str] | None:
        """The names to text, or None when nothing is left (events already recorded)."""
        if rule.to_set or obj is None or "to" not in obj:
            return list(rule.options.to)
        asked = _names(obj["to"])
        if asked is None:
            self._event("rejected", rule, error="payload 'to' must be a name or a list of names")
            return None
        if not asked:
            self._event("rejected", rule, error="payload 'to' names no one")
            return None
        known = set(self.config.contacts) | set(self.config.groups)
        names: list[str] = []
        for name in asked:
            if name in known:
                names.append(name)
            elif _RAW_ADDRESS.search(name.strip()):
                self._event(
                    "rejected",
                    rule,
                    to=None,
                    error="a raw number or address is never accepted in 'to'; name a contact",
                )
            else:
                self._event(
                    "rejected",
                    rule,
                    to=None,
                    error=f"unknown recipient {name[:40]!r} in payload 'to'",
                )
        return names or None
