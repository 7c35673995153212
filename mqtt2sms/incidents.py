"""Incidents: an alarm that texts a policy's steps until a person acknowledges it.

Theory of operation. A rule with ``escalate: POLICY`` does not text its message once: it
opens an *incident* for its (rule, key), with a random code of 3 or 4 digits. The policy's
steps text their contacts at ``after`` from the opening; then the last step repeats every
``repeat`` until someone acknowledges, or ``give_up`` passes. An incident moves only along
this table, and every move is a function here that returns an ``Outcome``: the incident
after, the texts to queue, the calls to make, the events to publish, and whether its texts
still waiting must be dropped and its calls hung up::

    (none)  -> open            open: a message of the rule, no incident open for its key
    open    -> open            join: another message for the key (no text)
                               due: a step's time came (its texts, then its calls), a
                               repeat's, or a step's next call (``call_gap`` on)
    open    -> acked           ack: by SMS reply, MQTT or Home Assistant (the steps stop;
                               with notify_ack, "ACK 417 by alex" to the others texted)
    open    -> unacknowledged  due: give_up passed
    open | acked -> resolved   resolve: resolve_when held ("Resolved: ..." with notify_ack)
    acked   -> acked           join (no text)
    acked   -> resolved        due: hold_after_ack passed (or, for a rule that resolves
                               itself with resolve_when, give_up after the ack: a bound)

Every instant is on the elapsed axis (``elapsed.py``), passed in as ``now``: a DST change or
a clock step moves nothing, and ``next_due`` is stored, so a restart resumes the schedule
where it was. ``opened_at`` (the wall clock, UTC seconds) is for people and for the
timestamps of replies. A policy is copied into the incident when it opens (its contacts
resolved to names), so a reload does not change an alarm that is running.

A step with ``call: N`` rings each of its contacts N times: the first right after the step's
texts, the others ``call_gap`` apart. The calls still to come are kept in the incident
(``calls``), so a restart rings them at their time; an acknowledgement, a resolution or
``give_up`` drops them (``hang_up``: a call ringing now ends too).

Pure: no I/O, no clock, no randomness (the code is drawn by the caller with ``new_code``).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Literal

from mqtt2sms import config as cfg

State = Literal["open", "acked", "resolved", "unacknowledged"]
OPEN: frozenset[str] = frozenset({"open", "acked"})  # not ended: messages for its key join it

TRANSITIONS: Mapping[str, frozenset[str]] = {
    "open": frozenset({"open", "acked", "unacknowledged", "resolved"}),
    "acked": frozenset({"acked", "resolved"}),
    "resolved": frozenset(),
    "unacknowledged": frozenset(),
}


@dataclass(frozen=True)
class Step:
    to: tuple[str, ...]  # contact names (groups expanded)
    after: float  # seconds from the opening
    call: int = 0  # ring each of them this many times, call_gap apart


@dataclass(frozen=True)
class Policy:
    """An escalation policy with its contacts resolved: what an incident carries."""

    name: str
    steps: tuple[Step, ...]
    repeat: float = 0.0
    give_up: float = 86400.0
    hold_after_ack: float = 3600.0
    notify_ack: bool = True
    call_gap: float = 120.0
    ring_for: float = 30.0


def policy_of(config: cfg.Config, name: str) -> Policy:
    """The policy ``name`` of ``config`` with each step's names resolved to contacts."""
    p = config.escalations[name]
    steps = tuple(
        Step(tuple(c.name for c in cfg.resolve_recipients(config, s.to)[0]), s.after, s.call)
        for s in p.steps
    )
    return Policy(
        name, steps, p.repeat, p.give_up, p.hold_after_ack, p.notify_ack, p.call_gap, p.ring_for
    )


@dataclass(frozen=True)
class Ring:
    """A call to make: ring ``to`` once, at ``at`` (elapsed); ``n``: its number in the step."""

    to: str
    at: float
    n: int = 1


@dataclass(frozen=True)
class Incident:
    code: str
    rule: str
    key: str
    policy: Policy
    message: str  # the alert's text, without the code
    priority: str
    opened_e: float  # elapsed axis
    opened_at: float  # wall clock, UTC seconds
    state: State = "open"
    step: int = 0  # steps texted so far
    repeats: int = 0  # repeats of the last step texted so far
    next_due: float | None = None  # elapsed: when `due` has something to do
    texted: tuple[str, ...] = ()  # the contacts texted so far, in order
    by: str | None = None  # who acknowledged it
    how: str | None = None  # by what: "sms", "mqtt"
    joined: int = 0  # messages that joined it
    ended_e: float | None = None
    calls: tuple[Ring, ...] = ()  # calls still to come (a step's second ring, call_gap on)

    @property
    def is_open(self) -> bool:
        return self.state in OPEN

    def moved(self, state: State, **fields: object) -> Incident:
        if state not in TRANSITIONS[self.state]:
            raise ValueError(f"incident {self.code}: {self.state} -> {state} is not allowed")
        return replace(self, state=state, **fields)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Send:
    """A text to queue: ``step`` texts end with the code; ``ack`` and ``resolved`` say it."""

    to: str
    body: str
    kind: Literal["step", "ack", "resolved"] = "step"


@dataclass(frozen=True)
class Note:
    """An event for ``<base>/incident``."""

    state: str  # opened, escalated, acked, resolved, unacknowledged
    step: int
    by: str | None = None
    how: str | None = None


@dataclass(frozen=True)
class Outcome:
    incident: Incident
    sends: tuple[Send, ...] = ()
    notes: tuple[Note, ...] = ()
    drop_waiting: bool = False  # its texts still waiting in the outbox are dropped
    changed: bool = True  # False: nothing to write
    rings: tuple[Ring, ...] = ()  # calls to make now
    hang_up: bool = False  # its calls still to come are dropped, a ringing one hung up


def new_code(rand: random.Random, used: Collection[str]) -> str:
    """A code of 3 or 4 digits (100-9999) that is not in ``used``; ValueError when all are."""
    if len(used) >= 9900:
        raise ValueError("every incident code is in use")
    while True:
        code = str(rand.randint(100, 9999))
        if code not in used:
            return code


def open_(
    code: str,
    rule: str,
    key: str,
    policy: Policy,
    message: str,
    priority: str,
    now: float,
    wall: float,
) -> Outcome:
    """A new incident, with its first step(s) due now."""
    inc = Incident(code, rule, key, policy, message, priority, now, wall, next_due=now)
    out = due(inc, now)
    return replace(out, notes=(Note("opened", out.incident.step), *out.notes))


def join(inc: Incident) -> Outcome:
    """Another message for an open incident's key: counted, no text."""
    return Outcome(replace(inc, joined=inc.joined + 1))


def _step_due(p: Policy, i: int) -> float:
    return p.steps[i].after


def _repeat_due(p: Policy, k: int) -> float:
    """Seconds from the opening of repeat ``k`` (1-based) of the last step."""
    return p.steps[-1].after + k * p.repeat


def _next_due(inc: Incident) -> float | None:
    p = inc.policy
    if inc.state == "open":
        candidates = [p.give_up]
        if inc.step < len(p.steps):
            candidates.append(_step_due(p, inc.step))
        elif p.repeat > 0:
            candidates.append(_repeat_due(p, inc.repeats + 1))
        return min([inc.opened_e + min(candidates), *(r.at for r in inc.calls)])
    return inc.next_due if inc.state == "acked" else None


def due(inc: Incident, now: float) -> Outcome:
    """What the time ``now`` brings: the steps whose time has come (after a long stop, all
    of them at once, in order), one repeat however many were missed, then give_up, or the
    end of an acknowledged incident's hold."""
    if inc.next_due is None or inc.next_due > now or not inc.is_open:
        return Outcome(inc, changed=False)
    if inc.state == "acked":
        ended = inc.moved("resolved", next_due=None, ended_e=now)
        return Outcome(ended, notes=(Note("resolved", inc.step, None, "hold"),))
    p, t = inc.policy, now - inc.opened_e
    if t >= p.give_up:  # (after a stop longer than that, the steps missed stay unsent)
        ended = inc.moved("unacknowledged", next_due=None, ended_e=now, calls=())
        return Outcome(ended, notes=(Note("unacknowledged", inc.step),), hang_up=True)
    sends: list[Send] = []
    notes: list[Note] = []
    texted = list(inc.texted)
    step, repeats = inc.step, inc.repeats
    calls = list(inc.calls)

    def text(s: Step) -> None:
        for name in s.to:
            sends.append(Send(name, inc.message))
            if name not in texted:
                texted.append(name)
            # after its texts, each call of the step: the first now, the next call_gap on
            calls.extend(Ring(name, now + k * p.call_gap, k + 1) for k in range(s.call))

    while step < len(p.steps) and _step_due(p, step) <= t:
        text(p.steps[step])
        step += 1
        if step > 1:
            notes.append(Note("escalated", step))
    if step == len(p.steps) and p.repeat > 0:
        k = repeats
        while _repeat_due(p, k + 1) <= t:
            k += 1
        if k > repeats and step == inc.step:  # not when the last step was texted just now
            text(p.steps[-1])
            notes.append(Note("escalated", step))
        repeats = k
    rings = tuple(r for r in calls if r.at <= now)
    later = tuple(r for r in calls if r.at > now)
    after = replace(inc, step=step, repeats=repeats, texted=tuple(texted), calls=later)
    out = Outcome(replace(after, next_due=_next_due(after)), tuple(sends), tuple(notes))
    return replace(out, rings=rings)


def ack(inc: Incident, by: str, how: str, now: float, *, self_resolving: bool) -> Outcome:
    """An acknowledgement: the steps stop, its waiting texts are dropped, and with
    ``notify_ack`` the others texted hear who took it. It then stays open and silent for
    ``hold_after_ack`` (``give_up`` when its rule resolves it with ``resolve_when``)."""
    if inc.state != "open":
        return Outcome(inc, changed=False)
    p = inc.policy
    hold = p.give_up if self_resolving else p.hold_after_ack
    after = inc.moved("acked", by=by, how=how, next_due=now + hold, calls=())
    sends: tuple[Send, ...] = ()
    if p.notify_ack:
        sends = tuple(Send(n, f"ACK {inc.code} by {by}", "ack") for n in inc.texted if n != by)
    note = Note("acked", inc.step, by, how)
    return Outcome(after, sends, (note,), drop_waiting=True, hang_up=True)


def resolve(inc: Incident, message: str, now: float) -> Outcome:
    """``resolve_when`` held: it ends, and with ``notify_ack`` everyone texted hears so."""
    if not inc.is_open:
        return Outcome(inc, changed=False)
    after = inc.moved("resolved", next_due=None, ended_e=now, calls=())
    sends: tuple[Send, ...] = ()
    if inc.policy.notify_ack:
        sends = tuple(Send(n, f"Resolved: {message}", "resolved") for n in inc.texted)
    note = Note("resolved", inc.step)
    return Outcome(after, sends, (note,), drop_waiting=True, hang_up=True)


# -- storage -------------------------------------------------------------------------------


def to_json(inc: Incident) -> str:
    return json.dumps(asdict(inc), separators=(",", ":"))


def from_json(text: str) -> Incident:
    d = json.loads(text)
    pol = d.pop("policy")
    steps = tuple(
        Step(tuple(s["to"]), float(s["after"]), int(s.get("call", 0))) for s in pol.pop("steps")
    )
    d["texted"] = tuple(d.get("texted", ()))
    d["calls"] = tuple(Ring(c["to"], float(c["at"]), int(c["n"])) for c in d.get("calls", ()))
    return Incident(policy=Policy(steps=steps, **pol), **d)


def listing(incs: Collection[Incident]) -> list[dict[str, object]]:
    """The open incidents as ``<base>/incidents`` lists them (``opened_at`` in UTC)."""
    out: list[dict[str, object]] = []
    for inc in sorted(incs, key=lambda i: i.opened_e):
        if inc.is_open:
            at = dt.datetime.fromtimestamp(inc.opened_at, dt.UTC).isoformat(timespec="seconds")
            out.append(
                {
                    "id": inc.code,
                    "rule": inc.rule,
                    "key": inc.key,
                    "state": inc.state,
                    "opened_at": at,
                    "step": inc.step,
                    "texted": list(inc.texted),
                }
            )
    return out
