"""A message in flight: its texts from routing until the broker is acknowledged.

Theory of operation. A message's texts are records in memory (``texts.Record``, state
``new`` until tried or queued) while any of them is being tried. When none is (``ended``),
the queued ones are committed (an fsync: they survive a power cut) and the finished ones
written as history (no fsync), the deferred events said so far are published, and only then
is the message acknowledged. A text that finishes while others of its message are still
out or queued is written at once (``record_now``): a kill before the message ends must find
it sent, or the redelivery would send it again. When the disk refuses the commit the flight
is *held* in memory, unacknowledged, and the commit is tried again with a backoff
(``Flight.hold``), while texts whose way out works leave without the disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from mqtt2sms import delivery, throttle
from mqtt2sms.model import Event, Message
from mqtt2sms.texts import FINISHED, Record

HELD_RETRY_MAX = 30.0  # seconds: the longest wait between tries to commit a held message


@dataclass
class Flight:
    msg: Message
    state: throttle.ThrottleState  # what its routing changed: kept once it ends
    records: dict[str, Record] = field(default_factory=dict)
    outstanding: set[str] = field(default_factory=set)  # ids being tried
    held_events: dict[str, Event] = field(default_factory=dict)  # published once committed
    recorded: set[str] = field(default_factory=set)  # written as history already
    tries: int = 0  # commits the disk refused
    retry_at: float = 0.0  # monotonic: the next try to commit it

    def ended(self) -> bool:
        return not self.outstanding

    def to_commit(self) -> list[Record]:
        """The records to commit: the queued ones, and (never expected: a text must not be
        lost to a slip) any still open with no try out, queued to be tried again now."""
        out = []
        for r in self.records.values():
            if r.state in ("new", "sending") and r.id not in self.outstanding:
                r = replace(r, state="queued", reason="new")
            if r.state == "queued":
                out.append(r)
        return out

    def to_record(self) -> list[Record]:
        return [
            r for r in self.records.values() if r.state in FINISHED and r.id not in self.recorded
        ]

    def record_now(self, rec: Record) -> bool:
        """Is ``rec``, just finished, to be written at once (others of it are still open)?"""
        return rec.state in FINISHED and bool(
            self.outstanding - {rec.id}
            or any(r.state in ("queued", "sending") for r in self.records.values())
        )

    def hold(self, mono: float) -> float:
        """The disk refused its commit: the seconds until the next try (a backoff)."""
        self.tries += 1
        wait = min(HELD_RETRY_MAX, 0.5 * 2.0**self.tries)
        self.retry_at = mono + wait
        return wait


@dataclass
class Try:
    """A text handed to a worker: ``flight`` is None for a row of the outbox."""

    send: delivery.Send
    record: Record
    flight: Flight | None
