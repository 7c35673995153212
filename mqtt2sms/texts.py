"""A text's one record and its one table, from routing to its last event.

Theory of operation. A ``Record`` is one SMS part to one recipient, the same shape whether it
lives in memory (a message not acknowledged yet: state ``new`` until it is tried or queued)
or in the outbox (a row). It moves only along ``TRANSITIONS``::

    new     -> sending | queued | failed | expired   routed: tried at once, held, or given up
    queued  -> sending | queued | failed | expired   due (or re-planned); dropped; too old
    sending -> sent | queued | failed | expired      a try's result
    sent    -> delivered | undelivered               a delivery report
    undelivered -> queued                            the report moved it to the next way out
    failed | expired -> queued                       only `queue retry ID`, by the user

The delivery policy (``delivery.py``) decides; the functions here turn its decision into the
change to make, as a value: the record after (``moved`` checks the table), the event to
publish and the try to start (``Change``). The engine applies a change the same way for a
record in memory and for a row, and that is the only thing it does with a decision.

Times on a record are seconds on the elapsed axis; ``Now`` carries the axis and the wall
clock together, so that an event's times are the ones a person reads. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace

from mqtt2sms import delivery, elapsed
from mqtt2sms.errors import TransitionError
from mqtt2sms.model import Event, Text

TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"sending", "queued", "failed", "expired"}),
    "queued": frozenset({"sending", "queued", "failed", "expired"}),
    "sending": frozenset({"sent", "queued", "failed", "expired"}),
    "sent": frozenset({"delivered", "undelivered"}),
    "delivered": frozenset(),
    "undelivered": frozenset({"queued"}),
    "failed": frozenset({"queued"}),
    "expired": frozenset({"queued"}),
}
FINISHED = frozenset({"sent", "failed", "expired"})


@dataclass(frozen=True)
class Record:
    id: str
    alert_id: str
    rule: str
    key: str
    recipient: str  # the contact's name: its address is the config's when it leaves
    via: tuple[str, ...]
    addresses: Mapping[str, str]  # as routed, for a person reading the queue
    body: str
    subject: str | None
    priority: str
    created_at: float  # the age counts from here
    state: str = "new"
    reason: str = "new"  # why a queued record waits: new, transport, retry, quiet, failover
    next_at: float = 0.0
    via_index: int = 0
    attempts: int = 0
    first_fail_at: float | None = None
    last_error: str | None = None
    finished_at: float | None = None
    transport: str | None = None
    remote_id: str | None = None
    hold_until: float | None = None  # wall clock: the end of the quiet hours holding it
    arrival: float | None = None  # queue order: when its message arrived
    mid: int | None = None  # the MQTT message it came from (a redelivery is looked up)
    digest: str | None = None
    epoch: int | None = None
    incident: str | None = None  # the code of the incident it texts for (incidents.py)
    seq: int = 0  # the outbox's order of writing (0 in memory)

    @classmethod
    def of(cls, text: Text, **fields: object) -> Record:
        """A routed text as a record (its instants moved onto the elapsed axis by the
        caller when they are not wall times), with ``fields`` set."""
        created = elapsed.seconds(text.created_at)
        base = cls(
            id=text.id,
            alert_id=text.alert_id,
            rule=text.rule,
            key=text.key,
            recipient=text.recipient,
            via=tuple(text.via),
            addresses=dict(text.addresses),
            body=text.body,
            subject=text.subject,
            priority=text.priority,
            created_at=created,
            next_at=elapsed.seconds(text.not_before) if text.not_before else created,
        )
        return replace(base, **fields)  # type: ignore[arg-type]

    @property
    def current_via(self) -> str:
        return self.via[min(self.via_index, len(self.via) - 1)] if self.via else ""

    def track(self) -> delivery.Track:
        """The delivery policy's view of it."""
        return delivery.Track(
            self.id,
            self.via,
            elapsed.instant(self.created_at),
            self.via_index,
            self.attempts,
            None if self.first_fail_at is None else elapsed.instant(self.first_fail_at),
            self.last_error,
        )

    def moved(self, state: str, **fields: object) -> Record:
        """The record in ``state`` with ``fields`` changed; TransitionError off the table."""
        if state not in TRANSITIONS.get(self.state, frozenset()):
            raise TransitionError(f"text {self.id}: {self.state} -> {state} is not allowed")
        return replace(self, state=state, **fields)  # type: ignore[arg-type]


def changed(before: Record, after: Record) -> dict[str, object]:
    """The fields (state aside) that differ: what an outbox row needs written."""
    return {
        f.name: getattr(after, f.name)
        for f in dataclasses.fields(Record)
        if f.name not in ("state", "seq") and getattr(after, f.name) != getattr(before, f.name)
    }


@dataclass(frozen=True)
class Now:
    e: float  # the elapsed axis
    wall: dt.datetime  # the wall clock, for what a person reads

    def wall_of(self, t: dt.datetime) -> dt.datetime:
        return elapsed.to_wall(t, elapsed.instant(self.e), self.wall)

    @property
    def instant(self) -> dt.datetime:
        return elapsed.instant(self.e)


@dataclass(frozen=True)
class Change:
    """What to do: the record after, the event to publish, the try to start, and for a row
    that cannot go yet, when to look again (elapsed seconds)."""

    record: Record
    event: Event | None = None
    send: delivery.Send | None = None
    wake: float | None = None


def event(
    rec: Record,
    state: str,
    now: Now,
    *,
    error: str | None = None,
    via: str | None = None,
    extra: Mapping[str, object] | None = None,
    latency: bool = False,
) -> Event:
    """The event for ``rec`` (its track as it stands) in ``state``."""
    current = rec.via[rec.via_index] if rec.via_index < len(rec.via) else None
    return Event(
        id=rec.id,
        state=state,
        at=now.wall,
        rule=rec.rule,
        to=rec.recipient,
        via=via or current or (rec.via[-1] if rec.via else None),
        attempts=rec.attempts,
        error=error,
        latency_ms=(now.e - rec.created_at) * 1000.0 if latency else None,
        extra=dict(extra or {}),
    )


def _tracked(tr: delivery.Track) -> dict[str, object]:
    return {
        "via_index": tr.via_index,
        "attempts": tr.attempts,
        "first_fail_at": None if tr.first_fail_at is None else elapsed.seconds(tr.first_fail_at),
        "last_error": tr.last_error,
    }


def _finished(rec: Record, tr: delivery.Track, now: Now, error: str | None) -> dict[str, object]:
    return {
        **_tracked(tr),
        "via_index": min(tr.via_index, max(0, len(tr.via) - 1)),
        "finished_at": now.e,
        "last_error": error,
    }


def _next_try(t: dt.datetime | None, now: Now) -> dict[str, object]:
    return {"next_try": None if t is None else now.wall_of(t).isoformat(timespec="seconds")}


def plan(
    rec: Record,
    d: delivery.Decision,
    may_send: bool,
    health: delivery.Health | None,
    now: Now,
) -> Change:
    """A decision of the policy for ``rec`` (new or due) as the change to make.

    ``may_send``: the way out ``d`` chose takes a text now (one at a time while it fails).
    A new record that cannot go is queued with a ``deferred`` event saying until when; a
    queued one just waits, silently (it said so when it was first held)."""
    new = rec.state == "new"
    if isinstance(d, delivery.GiveUp):
        done = rec.moved(d.state, **_finished(rec, d.track, now, d.error))
        return Change(done, event(done, d.state, now, error=d.error))
    if isinstance(d, delivery.Send) and may_send:
        return Change(rec.moved("sending", **_tracked(d.track)), send=d)
    if isinstance(d, delivery.Send) and not new:
        return Change(rec, wake=now.e + 1.0)  # behind the one text trying its way out
    if isinstance(d, delivery.Wait):
        until = d.until
    elif health is not None and health.is_down(now.instant) and health.down_until is not None:
        until = health.down_until
    else:
        until = now.instant  # behind the one text that tries a way out coming back
    fields = {**_tracked(d.track), "next_at": elapsed.seconds(until), "reason": "transport"}
    waiting = rec.moved("queued", **fields)
    if not new:
        return Change(waiting, wake=elapsed.seconds(until))
    ev = event(waiting, "deferred", now, error=d.track.last_error, extra=_next_try(until, now))
    return Change(waiting, ev)


def plan_after(
    rec: Record,
    a: delivery.After,
    via: str,
    extra: Mapping[str, object],
    remote_id: str | None,
    now: Now,
) -> Change:
    """A try's consequences (``delivery.after``) for ``rec`` as the change to make."""
    if a.state == "queued":
        if a.reason == "transport" and a.next_try is not None:
            next_at = elapsed.seconds(a.next_try)
        else:
            next_at = elapsed.seconds(a.next_at) if a.next_at else now.e
        waiting = rec.moved("queued", **_tracked(a.track), next_at=next_at, reason=a.reason)
        if a.reason == "failover":
            # tried at once by its next way out; the event says which one refused it, and why
            # (a Twilio 21610: the recipient texted STOP)
            extra = {"next_via": a.track.current, **_next_try(now.instant, now)}
            error = a.error or a.track.last_error
            ev = event(waiting, "deferred", now, error=error, via=via, extra=extra)
            return Change(waiting, ev)
        if a.event != "deferred":
            return Change(waiting)
        ev = event(waiting, "deferred", now, error=a.error, extra=_next_try(a.next_try, now))
        return Change(waiting, ev)
    fields = _finished(rec, a.track, now, a.error)
    if a.state == "sent":
        fields.update(transport=a.track.current, remote_id=remote_id)
    done = rec.moved(a.state, **fields)
    ev = event(done, a.state, now, error=a.error, via=via, extra=extra, latency=True)
    return Change(done, ev)


def plan_report(
    rec: Record, ar: delivery.AfterReport, via: str, detail: str, now: Now
) -> list[Change]:
    """A final delivery report for a ``sent`` record: its end, or its move to the next way
    out (two steps on the table: undelivered, then queued)."""
    ev = event(rec, ar.event, now, error=detail or None, via=via)
    if ar.state == "delivered":
        return [Change(rec.moved("delivered", last_error=None), ev)]
    undelivered = rec.moved("undelivered", last_error=ar.track.last_error)
    if ar.state != "queued":
        return [Change(undelivered, ev)]
    moved = undelivered.moved("queued", **_tracked(ar.track), next_at=now.e, reason="failover")
    return [Change(undelivered), Change(moved, ev)]


__all__ = [
    "FINISHED",
    "TRANSITIONS",
    "Change",
    "Now",
    "Record",
    "changed",
    "event",
    "plan",
    "plan_after",
    "plan_report",
]
