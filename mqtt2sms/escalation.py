"""The incidents' desk: where incidents (``incidents.py``) meet the outbox, MQTT and replies.

Theory of operation. The engine hands the desk what concerns incidents and nothing else:

- the ``router.Trigger``s of a message (a rule with ``escalate``): each opens, joins or
  resolves the incident of its (rule, key);
- the time (``tick``): the steps, repeats, calls, ``give_up`` and holds that are due;
- the control messages (``control``): an acknowledgement on ``<base>/ack``, a drill on
  ``/drill``, a test call on ``/call``; and every received text (a reply, read by
  ``replies.py``).

``incidents.py`` decides each move; the desk makes it, in one durable transaction of the
outbox: the incident's row, its texts queued (they then leave like any queued text: durable,
retried, with failover), and, on an acknowledgement or a resolution, its texts still waiting
dropped. Only then are its events published on ``<base>/incident`` and the open ones on
``<base>/incidents`` (retained), and a phone gateway asked to cancel what it still holds. A
message whose incident could not be written is not acknowledged to the broker (the engine
retries it), so a full disk loses no alarm.

Incident texts are ``high`` priority: they pass cooldowns, rate limits and quiet hours (the
policy bounds them) and count toward the daily cap. A step's text ends with ``Reply ACK 417``
when the contact's first way out reads replies, ``ACK 417`` otherwise (``for_way`` shortens it
when a text leaves by a way out that does not).

Calls. A step with ``call`` rings each of its contacts by the first of their ways out that
can call, as a ``call`` job on that way out's worker (between its texts). The engine asks
``ring`` once the texts due have gone to their workers, so a step's text leaves before its
call. An acknowledgement, a resolution or ``give_up`` sets the incident's hang-up event,
which a call ringing now polls; each call's outcome is said on ``<base>/incident``.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace

from mqtt2sms import config as cfg
from mqtt2sms import control, incidents, replies, sms, ways
from mqtt2sms.control import AckRequest, DrillRequest
from mqtt2sms.errors import StorageError
from mqtt2sms.events import EventSink
from mqtt2sms.incidents import Incident, Outcome
from mqtt2sms.model import Event, Message
from mqtt2sms.outbox import Outbox
from mqtt2sms.router import Trigger
from mqtt2sms.texts import Now, Record
from mqtt2sms.throttle_store import LiveThrottle
from mqtt2sms.transports.base import OutgoingText, ReceivedText
from mqtt2sms.workers import Done, Job, Pool

log = logging.getLogger("mqtt2sms")

RETRY_AFTER_STORAGE = 5.0  # seconds before a due incident the disk refused is tried again


def suffix(code: str, reads: bool) -> str:
    return f" Reply ACK {code}" if reads else f" ACK {code}"


def for_way(config: cfg.Config, rec: Record, way: str) -> str:
    """The body of ``rec`` as it leaves by ``way``: an incident's ``Reply ACK 417`` becomes
    ``ACK 417`` by a way out whose replies nothing reads (a gateway answers by email)."""
    if rec.incident is None or ways.reads_replies(config, way):
        return rec.body
    return rec.body.replace(suffix(rec.incident, True), suffix(rec.incident, False))


class Desk:
    def __init__(
        self,
        config: cfg.Config,
        outbox: Outbox,
        sink: EventSink,
        throttle: LiveThrottle,
        tz: dt.tzinfo,
        new_id: Callable[[], str],
        workers: Pool,
        rand: random.Random | None = None,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.sink = sink
        self.throttle = throttle
        self.tz = tz
        self.new_id = new_id
        self.workers = workers  # a phone gateway's cancel, and calls, go to its worker
        # the calls handed to a worker: job key -> (incident code or None, contact, way out)
        self._ringing: dict[str, tuple[str | None, str, str]] = {}
        self._hang_up: dict[str | None, threading.Event] = {}  # set: end its calls now
        self._rings: list[tuple[Incident, incidents.Ring]] = []  # due, handed over by `ring`
        self.rand = rand or random.SystemRandom()
        self.open: dict[str, Incident] = {}
        for data in outbox.incidents():
            inc = incidents.from_json(data)
            self.open[inc.code] = inc
        self.codes = outbox.incident_codes()  # the open ones' too: never drawn again
        self._retry_at = -1e18
        self._queued = False  # texts were queued since the engine last asked (``tick``)

    # -- what the engine asks --------------------------------------------------------------

    def control(self, msg: Message, now: Now) -> bool:
        """A message on ``<base>/ack``, ``/drill`` or ``/call`` is acted on here (a retained
        one never: it would act again at every reconnect); one it cannot read is a
        ``rejected`` event. False: it is an alert. Raises ``StorageError`` (the engine
        retries the message)."""
        kind = control.kind(self.config, msg.topic)
        if kind not in ("ack", "drill", "call"):
            return False
        said = msg.payload.decode("utf-8", "replace").strip()
        if msg.retained:
            log.info("retained message on %s ignored", msg.topic)
        elif kind == "ack":
            req = control.ack_request(msg.payload)
            if req is None:
                hint = 'names no incident: send its code, all, or {"id": ..., "by": ...}'
                self._reject(msg.topic, f"{said[:40]!r} {hint}", now)
            elif not self.on_ack(req, now) and req.code is not None:
                self._reject(msg.topic, f"no open incident {req.code}", now)
        elif kind == "call":
            ring = incidents.Ring(said, now.e)
            failed = self._ring(None, ring, control.TEST_RING)
            if failed is not None:  # said as the call's outcome: `mqtt2sms call` waits for it
                self.called(Done(Job(f"call:{said}", kind="call"), "", None), now, failed, said)
        else:
            drill = control.drill_request(msg.payload)
            if drill is None or drill.policy not in self.config.escalations:
                self._reject(msg.topic, f"no escalation policy {said[:40]!r} to drill", now)
            else:
                self.on_drill(drill, now)
        return True

    def _reject(self, topic: str, error: str, now: Now) -> None:
        extra = {"topic": topic}
        self.sink.emit(Event(self.new_id(), "rejected", now.wall, error=error, extra=extra))

    def on_drill(self, req: DrillRequest, now: Now) -> None:
        """A drill: the policy end to end, its texts marked TEST, its steps ``req.step``
        apart, until someone acknowledges (or all steps and five minutes more have passed)."""
        p = incidents.policy_of(self.config, req.policy)
        steps = tuple(incidents.Step(s.to, i * req.step, s.call) for i, s in enumerate(p.steps))
        give_up = len(steps) * req.step + 300.0 + max((s.call for s in steps), default=0) * 300
        drill = replace(p, steps=steps, repeat=0.0, give_up=give_up, hold_after_ack=0.0)
        key = f"drill:{p.name}"
        if self._of_key("drill", key) is not None:
            log.info("drill of %s: one is running already", p.name)
            return
        message = f"TEST: a drill of the {p.name} alarm, no emergency. Please reply to it."
        code = incidents.new_code(self.rand, self.codes)
        opened = incidents.open_(
            code, "drill", key, drill, message, "high", now.e, now.wall.timestamp()
        )
        self._make(opened, now)

    @property
    def listening(self) -> bool:
        """Is an incident waiting for an acknowledgement (replies are read then)?"""
        return any(i.state == "open" for i in self.open.values())

    def next_due(self) -> float | None:
        """When ``tick`` has something to do next (elapsed), or None."""
        times = [i.next_due for i in self.open.values() if i.next_due is not None]
        return max(min(times), self._retry_at) if times else None

    def _of_key(self, rule: str, key: str) -> Incident | None:
        return next((i for i in self.open.values() if (i.rule, i.key) == (rule, key)), None)

    def on_triggers(self, triggers: Sequence[Trigger], now: Now) -> None:
        """A message's triggers. Raises ``StorageError`` when the outbox refuses them (then
        the message is not acknowledged, and nothing of it was written)."""
        for t in triggers:
            inc = self._of_key(t.rule, t.key)
            if t.resolves:
                if inc is not None:
                    self._make(incidents.resolve(inc, t.message, now.e), now)
                continue
            if inc is not None:
                # kept in memory until the incident's next write: a sensor that repeats
                # itself every few seconds costs no fsync each time
                joined = self.open[inc.code] = incidents.join(inc).incident
                n = joined.joined
                log.info("incident %s: %d more message(s) for %s joined it", inc.code, n, t.key)
                continue
            if t.policy not in self.config.escalations:
                log.error("rule %s: escalation policy %s is gone", t.rule, t.policy)
                continue
            code = incidents.new_code(self.rand, self.codes)
            policy = incidents.policy_of(self.config, t.policy)
            wall = now.wall.timestamp()
            opened = incidents.open_(code, t.rule, t.key, policy, t.message, "high", now.e, wall)
            self._make(opened, now)

    def tick(self, now: Now) -> bool:
        """Make what is due; True when texts were queued since the last call (by anything:
        a step, an acknowledgement, a resolution), so the engine looks at the outbox."""
        due = self.next_due()
        if due is not None and due <= now.e:
            self._retry_at = -1e18
            for inc in list(self.open.values()):
                out = incidents.due(inc, now.e)
                try:
                    self._make(out, now)
                except StorageError as exc:
                    self._retry_at = now.e + RETRY_AFTER_STORAGE
                    log.error("incident %s: cannot write its next step: %s", inc.code, exc)
                    self.sink.set_error(f"outbox: {exc}", "outbox")
                    break
        queued, self._queued = self._queued, False
        return queued

    def on_ack(self, req: AckRequest, now: Now) -> bool:
        """An acknowledgement on ``<base>/ack`` (or from ``mqtt2sms incidents ack``)."""
        targets = [
            i for i in self.open.values() if i.state == "open" and req.code in (None, i.code)
        ]
        if not targets:
            log.info(
                "acknowledgement of %s by %s: no such open incident", req.code or "all", req.by
            )
        for inc in targets:
            self._ack(inc, req.by, "mqtt", now)
        return bool(targets)

    def on_received(self, via: str, rx: ReceivedText, now: Now) -> None:
        """A text a way out received: an acknowledgement when ``replies`` says so."""
        reply = replies.parse(rx.text)
        if reply is None:
            return
        cc = self.config.defaults.country_code
        contact = replies.contact_of(rx.sender, self.config.contacts, cc)
        waiting = [i for i in self.open.values() if i.state == "open"]
        cands = [replies.Candidate(i.code, frozenset(i.texted), _utc(i.opened_at)) for i in waiting]
        codes = replies.matches(reply, contact, rx.at, now.wall, cands, len(waiting))
        if not codes or contact is None:
            who = contact or replies.mask(rx.sender)
            log.info("a reply by %s from %s acknowledges no incident", via, who)
            return
        for code in codes:
            self._ack(self.open[code], contact, f"sms via {via}", now)

    def publish_list(self) -> None:
        self.sink.publish_json("incidents", incidents.listing(self.open.values()), retain=True)

    def prune(self, before: float) -> None:
        if self.outbox.prune_incidents(before):
            self.codes = self.outbox.incident_codes()

    # -- making a move ---------------------------------------------------------------------

    def _ack(self, inc: Incident, by: str, how: str, now: Now) -> None:
        rule = cfg.rule_named(self.config, inc.rule)
        self_resolving = rule is not None and rule.resolve_when is not None
        self._make(incidents.ack(inc, by, how, now.e, self_resolving=self_resolving), now)

    def _make(self, out: Outcome, now: Now) -> None:
        """Write ``out`` (one transaction), then say it. Raises ``StorageError``."""
        if not out.changed:
            return
        inc = out.incident
        records = [r for s in out.sends for r in self._records(inc, s, now)]
        why = f"incident {inc.code} {inc.state}: not sent" if out.drop_waiting else None
        held = self.outbox.save_incident(
            inc.code, inc.state, inc.ended_e, incidents.to_json(inc), records, why
        )
        self.codes.add(inc.code)
        if inc.is_open:
            self.open[inc.code] = inc
        else:
            self.open.pop(inc.code, None)
        if records:
            self.throttle.count(len(records), now.wall, self.tz)
            self._queued = True
        for note in out.notes:
            self._say(inc, note, now)
        if out.notes:
            self.publish_list()
        for way, remote in held:
            self.workers.cancel(way, remote)
        if out.hang_up and inc.code in self._hang_up:
            self._hang_up.pop(inc.code).set()  # a call ringing now ends; none comes later
        self._rings.extend((inc, ring) for ring in out.rings)

    # -- calls -----------------------------------------------------------------------------

    def ring(self) -> None:
        """Hand the calls that are due to their ways out: the engine asks once the texts
        due have gone to their workers, so a step's text leaves before its call rings."""
        rings, self._rings = self._rings, []
        for inc, ring in rings:
            if inc.code in self.open and self.open[inc.code].state == "open":
                self._ring(inc, ring, inc.policy.ring_for)  # (not if acknowledged meanwhile)

    def _ring(
        self,
        inc: Incident | None,
        ring: incidents.Ring,
        ring_for: float,
    ) -> str | None:
        """Hand one call to the first of the contact's ways out that can call; None, or
        why it cannot be (logged)."""
        what = f"incident {inc.code}" if inc is not None else "call"
        contact = self.config.contacts.get(ring.to)
        if contact is None:
            log.error("%s: no contact %s to call", what, ring.to[:40])
            return f"no contact {ring.to[:40]!r}"
        rule = inc.rule if inc is not None else None  # a test call: the defaults' ways
        way = ways.caller(self.config, cfg.rule_ways(self.config, contact, rule)[1])
        number = contact.e164
        if way is None or number is None:
            log.warning("%s: %s is not called: no way out of theirs can call", what, ring.to)
            return "no way out of theirs can call"
        code = inc.code if inc is not None else None
        say = inc.message if inc is not None else "This is a test call from mqtt2sms."
        if inc is not None:
            say = say.rstrip()
            say += (
                "" if say.endswith((".", "!", "?")) else "."
            ) + f" Reply ACK {code} to acknowledge."
        key = f"call:{code or 'test'}:{ring.to}:{ring.n}:{self.new_id()}"
        hang_up = self._hang_up.setdefault(code, threading.Event())
        job = Job(key, OutgoingText(key, number, say), "call", ring_for=ring_for, hang_up=hang_up)
        if not self.workers.call(way, job):
            log.warning("%s: %s is not called: %s cannot call", what, ring.to, way)
            return f"{way} cannot call"
        self._ringing[key] = (code, ring.to, way)
        return None

    def called(self, done: Done, now: Now, why: str | None = None, to: str = "?") -> None:
        """A call ended (or, ``why``, could not be placed): said on ``<base>/incident``
        (``state: call``)."""
        code, to, way = self._ringing.pop(done.job.key, (None, to, done.transport or None))
        if done.call is not None:
            outcome, detail = done.call.outcome, done.call.detail
        else:
            outcome = "failed"
            detail = why or (str(done.error) if done.error is not None else "not placed")
        inc = self.open.get(code or "")
        at = now.wall.astimezone(self.tz).isoformat(timespec="seconds")
        body: dict[str, object] = {
            "id": code,
            "rule": inc.rule if inc else None,
            "key": inc.key if inc else None,
            "state": "call",
            "step": inc.step if inc else None,
            "by": None,
            "at": at,
            "to": to,
            "via": way,
            "outcome": outcome,
        }
        if detail:
            body["detail"] = detail
        level = logging.INFO if outcome in ("answered", "canceled") else logging.WARNING
        log.log(level, "%s: call to %s by %s: %s %s", code or "test", to, way, outcome, detail)
        self.sink.publish_json("incident", body)

    def hang_up_all(self) -> None:
        """The daemon stops: every call ringing now ends."""
        for event in self._hang_up.values():
            event.set()

    def _say(self, inc: Incident, note: incidents.Note, now: Now) -> None:
        at = now.wall.astimezone(self.tz).isoformat(timespec="seconds")
        body: dict[str, object] = {
            "id": inc.code,
            "rule": inc.rule,
            "key": inc.key,
            "state": note.state,
            "step": note.step,
            "by": note.by,
            "at": at,
        }
        if note.how:
            body["how"] = note.how
        who = f" by {note.by} ({note.how})" if note.by else ""
        log.warning(
            "incident %s (%s, %s): %s, step %d%s",
            inc.code,
            inc.rule,
            inc.key,
            note.state,
            note.step,
            who,
        )
        self.sink.publish_json("incident", body)

    def _records(self, inc: Incident, send: incidents.Send, now: Now) -> list[Record]:
        contact = self.config.contacts.get(send.to)
        if contact is None:
            log.error("incident %s: contact %s is no longer in the config", inc.code, send.to)
            return []
        opts, via = cfg.rule_ways(self.config, contact, inc.rule)
        reach = ways.addresses(contact, via)
        if not reach:
            log.error("incident %s: %s has no address for %s", inc.code, send.to, ", ".join(via))
            return []
        tail = suffix(inc.code, ways.reads_replies(self.config, via[0]))
        formatted = sms.compose(
            send.body,
            max_length=opts.max_length,
            long=opts.long,
            max_parts=opts.max_parts,
            charset=opts.charset,
            suffix=tail if send.kind == "step" else "",
        )
        alert = self.new_id()
        return [
            Record(
                id=f"{alert}-{n}",
                alert_id=alert,
                rule=inc.rule,
                key=inc.key,
                recipient=send.to,
                via=via,
                addresses=reach,
                body=part,
                subject=None,
                priority="high",
                created_at=now.e,
                state="queued",
                next_at=now.e,
                arrival=now.e,
                incident=inc.code,
            )
            for n, part in enumerate(formatted.parts, 1)
        ]


def _utc(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.UTC)
