"""One builder per section (mqtt, smtp, twilio, modem, android, contacts, groups, defaults,
limits, escalations, rules), each reading through the parser."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import yaml
import yaml.constructor

from mqtt2sms import carriers, ways
from mqtt2sms.config.model import (
    CHARSETS,
    AndroidConfig,
    Config,
    Contact,
    Escalation,
    EscalationStep,
    Limits,
    ModemConfig,
    MqttConfig,
    QuietHours,
    RetryPolicy,
    Rule,
    RuleOptions,
    SmtpConfig,
    TLSConfig,
    TwilioConfig,
    contact_via,
    resolve_recipients,
)
from mqtt2sms.config.reader import (
    _NAME,
    _RULE_KEYS,
    _is_null,
    _join,
    _kind,
    _line,
    _Node,
    _Parser,
    _secret_keys,
    _Section,
    did_you_mean,
)


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
        ca_certs=s.opt("ca_certs", p.existing_file),
        certfile=s.opt("certfile", p.existing_file),
        keyfile=s.opt("keyfile", p.existing_file),
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
        ca_certs=s.opt("ca_certs", p.existing_file),
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
        device=s.get("device", p.existing_file, d.device),
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
        "charset": p.enum(*CHARSETS),
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
                p.broken_contacts.add(name)
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
                p.broken_contacts.add(name)
            elif carrier.status == carriers.SHUT_DOWN:
                p.warn(
                    cnode,
                    s.path("carrier"),
                    f"{carrier.name}'s email-to-SMS gateway has shut down"
                    f"{_shut_down_detail(carrier)}: "
                    f"{carrier.alternative or 'use another way out'}",
                )
            if not s.has("number"):
                p.error(s.key_node("carrier"), s.path("carrier"), "a carrier needs a number")
        email = s.opt("email", p.email)
        if s.has("email") and email is None:
            p.broken_contacts.add(name)
        if not s.has("number") and not s.has("email"):
            p.error(knode, yp, "needs a number (with a carrier for smtp) or an email")
        gateway = email
        if gateway is None and carrier is not None and e164 is not None:
            try:
                gateway = carriers.gateway_address(e164, carrier, country_code)
            except ValueError as exc:
                p.error(s.value_node("number"), s.path("number"), str(exc))
                p.broken_contacts.add(name)
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
        if (
            via is not None
            and (s.has("number") or s.has("email"))
            and name not in p.broken_contacts
        ):
            for transport in via:
                need = _unreachable(contact, transport)
                if need:
                    p.error(s.value_node("via"), s.path("via"), f"{transport} {need}")
        out[name] = contact
    return out


def _shut_down_detail(carrier: carriers.Carrier) -> str:
    """The carrier's note without what the warning already says ("X's ... shut down")."""
    note = carrier.note or ""
    head, sep, rest = note.partition(" shut down ")
    if sep and head.startswith(carrier.name + "'s"):
        return f", {rest}"
    return f" ({note})" if note else ""


def _unreachable(contact: Contact, transport: str) -> str | None:
    """What ``contact`` lacks for ``transport``, or None (``ways`` knows which kind of
    address each way out takes)."""
    if ways.address_for(contact, transport):
        return None
    if ways.ADDRESS.get(transport) == "email":
        return "needs an email, or a number and a carrier"
    return "needs a number"


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


# iOS lets a second call from the same number through Do Not Disturb within this long
REPEATED_CALLS = 180.0


def _escalations(
    p: _Parser, node: _Node | None, key_nodes: dict[str, _Node] | None = None
) -> dict[str, Escalation]:
    """The policies by name; ``key_nodes`` (when given) gets each policy's key node under its
    name and each step's node under its path (``escalations.fire.steps[1]``), where the
    warnings about a policy and a step point."""
    out: dict[str, Escalation] = {}
    if node is None or _is_null(node):
        return out
    items = p.mapping(node, "escalations") or {}
    keys = (
        "steps",
        "repeat",
        "give_up",
        "hold_after_ack",
        "notify_ack",
        "call_gap",
        "ring_for",
    )
    for name, (knode, vnode) in items.items():
        yp = _join("escalations", name)
        if not _NAME.fullmatch(name):
            p.error(knode, yp, f"bad name '{name}': use letters, digits, _ and -")
            continue
        if key_nodes is not None:
            key_nodes[name] = knode
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
            if key_nodes is not None:
                key_nodes[syp] = step_node
            st = _Section(p, step_node, syp, ("to", "after", "call"))
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
            calls = st.get("call", p.integer(0, 2), 0)
            steps.append(EscalationStep(to=to or (), after=after, call=calls))
        d = Escalation(name=name, steps=())
        out[name] = Escalation(
            name=name,
            steps=tuple(steps),
            repeat=s.get("repeat", p.duration(), d.repeat),
            give_up=s.get("give_up", p.duration(positive=True), d.give_up),
            hold_after_ack=s.get("hold_after_ack", p.duration(), d.hold_after_ack),
            notify_ack=s.get("notify_ack", p.boolean, d.notify_ack),
            call_gap=s.get("call_gap", p.duration(), d.call_gap),
            ring_for=s.get("ring_for", p.duration(positive=True), d.ring_for),
        )
        if out[name].call_gap >= REPEATED_CALLS and any(st.call >= 2 for st in steps):
            p.warn(
                s.value_node("call_gap"),
                s.path("call_gap"),
                "the second call may not ring through an iPhone's Do Not Disturb "
                "(repeated calls count only within 3 minutes)",
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
            p.warn(
                s.key_node("to"),
                s.path("to"),
                f"ignored: the steps of escalation policy '{escalate}' choose the recipients",
            )
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
            if contact.via is not None or contact.name in p.broken_contacts:
                continue  # checked with the contact; or its own error said what is wrong
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


REPLY_WAYS = "modem, android, twilio with from"  # the ways out ways.reads_replies accepts


def can_reply(config: Config, contact: Contact, via: Sequence[str]) -> bool:
    """Can ``contact``, texted by the ways out ``via``, answer a text so that we read it?"""
    return any(ways.reads_replies(config, way) and ways.address_for(contact, way) for way in via)


def _check_replies(p: _Parser, config: Config, key_nodes: Mapping[str, _Node]) -> None:
    """Warn about each policy nobody it texts can acknowledge by a reply.

    A contact's ways out are those of every rule that escalates to the policy (its own `via`
    first, then the rule's, then `defaults.via`); a policy no rule uses is judged by the
    contacts' own `via` or `defaults.via`.
    """
    for name, policy in config.escalations.items():
        users = [r for r in config.rules if r.escalate == name]
        contacts, _unknown = resolve_recipients(config, [n for s in policy.steps for n in s.to])
        if not contacts:
            continue  # no step names anyone known: an error or an empty group says so
        if any(
            can_reply(config, contact, contact_via(config, contact, r.options, r.via_set))
            for contact in contacts
            for r in users
        ) or (
            not users
            and any(
                can_reply(config, c, contact_via(config, c, config.defaults, False))
                for c in contacts
            )
        ):
            continue
        p.warn(
            key_nodes.get(name),
            _join("escalations", name),
            f"nobody it texts can reply (no way out that reads replies: {REPLY_WAYS}); "
            "it can be acknowledged only by MQTT or Home Assistant",
        )


CALL_WAYS = "modem, or twilio with from"  # the ways out ways.can_call accepts


def can_call(config: Config, contact: Contact, via: Sequence[str]) -> bool:
    """Can a call reach ``contact``, whose ways out are ``via``? (The first of them that can
    call, and has the contact's number, places it.)"""
    return any(ways.can_call(config, way) and ways.address_for(contact, way) for way in via)


def _check_calls(p: _Parser, config: Config, nodes: Mapping[str, _Node]) -> None:
    """Warn, once per step and contact, about each contact a calling step cannot ring.

    The contact's ways out are judged as for the replies: its own `via`, else the `via` of
    each rule that escalates to the policy, else `defaults.via` (a policy no rule uses is
    judged by the contact's own `via` or `defaults.via`). A contact that one of those rules
    cannot call is warned about: that rule's incident texts it only.
    """
    for name, policy in config.escalations.items():
        users = [r for r in config.rules if r.escalate == name]
        vias = [(r.options, r.via_set) for r in users] or [(config.defaults, False)]
        for i, step in enumerate(policy.steps):
            if step.call <= 0:
                continue
            path = f"{_join('escalations', name)}.steps[{i}]"
            contacts, _unknown = resolve_recipients(config, step.to)
            for contact in contacts:
                if contact.name in p.broken_contacts:
                    continue  # its own error says what is wrong
                if all(
                    can_call(config, contact, contact_via(config, contact, options, via_set))
                    for options, via_set in vias
                ):
                    continue
                who = contact.name
                p.warn(
                    nodes.get(path),
                    path,
                    f"{who}: step {i + 1} calls, but no way out of {who}'s can call "
                    f"({CALL_WAYS}); {who} gets the text only",
                )


# --------------------------------------------------------------------------- the way in


# Sections the parser accepts whose transports are not built yet.
NOT_BUILT = ways.NOT_BUILT
