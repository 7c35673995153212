"""Asking the ways out for delivery reports and received texts.

Theory of operation. A way out that can tell (``transports.base.Reporting`` /
``Receiving``) is asked on a schedule kept here, through its own worker (a slow phone holds
back no other way out). Each way out says how often (``poll_every``; received texts every
``receive_every`` when it says so), whether it reads received texts always (``receives``),
or can when asked (``can_receive``); nothing here knows a way out by its name. A way out
that can but was not told to always is asked once at the start (its mark moves past what is
already there) and then only while an incident waits for an acknowledgement
(``listening``): an idle daemon asks nothing. One question of each kind is out at a time
per way out; a way out that is down is not asked, and a failing question is logged when its
error changes, then once every ``LOG_EVERY`` seconds. Each received text is published, then
handed to ``on_received`` (the incidents' desk, which reads replies).

``received_body`` decides, without I/O, what a received text becomes on
``<base>/received``: who sent it (a contact, or a stranger) and whether ``received:`` lets it
be published.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from collections.abc import Callable
from typing import Literal

from mqtt2sms import config as cfg
from mqtt2sms import delivery, replies
from mqtt2sms.disk import Disk
from mqtt2sms.errors import Mqtt2SmsError
from mqtt2sms.events import EventSink
from mqtt2sms.outbox import Outbox
from mqtt2sms.texts import Change, Now, Record, plan_report
from mqtt2sms.transports.base import (
    Checking,
    ReceivedText,
    Receiving,
    Reporting,
    Transport,
)
from mqtt2sms.workers import Done, Job

log = logging.getLogger("mqtt2sms")

Kind = Literal["reports", "receive", "stats"]
STATS_EVERY = 300.0  # seconds between a way out's word on itself (a modem's signal), at least
DEFAULT_EVERY = 15.0  # seconds, for a way out that does not say
LOG_EVERY = 60.0  # seconds between log lines of the same failing question, at least
REPORT_FIRST = 5.0  # seconds (or the way out's poll_every, when shorter): a text's delivery
REPORT_MAX = 600.0  # report is first asked for that long after it was sent, then at doubling
# gaps up to REPORT_MAX, until it is final (or too old to ask about)


def every(transport: Transport, default: float = DEFAULT_EVERY) -> float:
    """How often ``transport`` is asked, in seconds: its own word, else ``default``."""
    value = getattr(transport, "poll_every", None)
    return float(value) if isinstance(value, int | float) and value > 0 else default


def receives(transport: Transport) -> bool:
    """Whether ``transport`` reads received texts always (it can, and it was told to)."""
    return isinstance(transport, Receiving) and bool(getattr(transport, "receives", False))


def can_receive(transport: Transport) -> bool:
    """Whether ``transport`` can read received texts (replies to our texts) when asked."""
    return isinstance(transport, Receiving) and bool(getattr(transport, "can_receive", False))


OnReceived = Callable[[str, ReceivedText, Now], None]


class Poller:
    """When each way out is next asked for what, and what its answers say; the engine owns
    one and applies the reports it hands back."""

    def __init__(
        self,
        outbox: Outbox,
        disk: Disk,
        sink: EventSink,
        default_every: float = DEFAULT_EVERY,
        on_received: OnReceived | None = None,
    ) -> None:
        self.outbox = outbox
        self.on_received = on_received
        self._read_once: set[str] = set()  # the ways out read at least once since the start
        self._failed: dict[tuple[str, str], tuple[str, float]] = {}  # last logged failure
        self.disk = disk
        self.sink = sink
        self.default_every = default_every
        self._asked: dict[tuple[str, Kind], float] = {}  # monotonic: when it was last asked
        self._out: set[tuple[str, Kind]] = set()  # asked, no answer yet
        # (way out, remote id) -> (monotonic: when to ask for its report next, the gap then)
        self._reports: dict[tuple[str, str], tuple[float, float]] = {}

    def due(
        self, name: str, transport: Transport, mono: float, since: float, listening: bool = False
    ) -> list[Job]:
        """The questions to put to ``transport`` now: the reports of the texts it took
        since ``since`` (elapsed) that have none yet, and the texts after its mark (always
        when it ``receives``; else at the start and while ``listening``)."""
        jobs: list[Job] = []
        interval = every(transport, self.default_every)
        reading = receives(transport) or (
            can_receive(transport) and (listening or name not in self._read_once)
        )
        for kind in ("reports", "receive", "stats"):
            key: tuple[str, Kind] = (name, kind)
            first = min(REPORT_FIRST, interval)
            receive_every = getattr(transport, "receive_every", None)
            if isinstance(receive_every, int | float) and receive_every > 0:
                receive_tick = float(receive_every)
            else:
                receive_tick = interval
            tick = {"reports": first, "receive": receive_tick}.get(kind, STATS_EVERY)
            if key in self._out or mono - self._asked.get(key, -1e18) < tick:
                continue
            self._asked[key] = mono
            job: Job | None = None
            if kind == "reports" and isinstance(transport, Reporting):
                ids = self._reports_due(name, mono, since, first)
                if ids:
                    job = Job(f"reports:{name}", kind="reports", ids=tuple(ids))
            elif kind == "receive" and reading:
                mark = self.disk.attempt(lambda: self.outbox.get_kv(f"mark:{name}"))
                job = Job(f"receive:{name}", kind="receive", mark=mark)
            elif kind == "stats" and isinstance(transport, Checking):
                job = Job(f"stats:{name}", kind="stats")
            if job is not None:
                self._out.add(key)
                jobs.append(job)
        return jobs

    def _reports_due(self, name: str, mono: float, since: float, first: float) -> list[str]:
        """The remote ids whose report is due: each is first asked for ``first`` seconds
        after it is first seen, then at doubling gaps up to ``REPORT_MAX``."""
        awaiting = self.disk.attempt(lambda: self.outbox.awaiting_reports(name, since))
        if awaiting is None:
            return []
        mine = {(n, r) for n, r in self._reports if n == name}
        for gone in mine - {(name, r) for r in awaiting}:
            del self._reports[gone]  # final, or too old to ask about
        due = []
        for remote in awaiting:
            at, gap = self._reports.get((name, remote), (mono + first, first))
            if at <= mono:
                due.append(remote)
                gap = min(gap * 2, REPORT_MAX)
                at = mono + gap
            self._reports[(name, remote)] = (at, gap)
        return due

    def answered(
        self, done: Done, config: cfg.Config, now: Now
    ) -> list[tuple[Record, list[Change]]]:
        """An answer came back: received texts are published (as ``received:`` allows),
        handed to ``on_received``, and the mark moved past them; each final report is
        returned with its row and the changes it makes (``texts.plan_report``)."""
        wall = now.wall
        name = done.transport
        self._out.discard((name, done.job.kind))
        if done.error is not None:
            err = done.error
            why = str(err) if isinstance(err, Mqtt2SmsError) else f"{type(err).__name__}: {err}"
            said, at = self._failed.get((name, done.job.kind), ("", -1e18))
            mono = time.monotonic()
            if why != said or mono - at >= LOG_EVERY:
                self._failed[(name, done.job.kind)] = (why, mono)
                log.warning("%s: asking for %s failed: %s", name, done.job.kind, why)
            if done.job.kind == "stats":
                self.sink.set_way_out_stats(name, None)  # it did not answer: not known
            return []
        if done.job.kind == "stats":
            self.sink.set_way_out_stats(name, done.stats)
            return []
        out = []
        for rep in done.reports:
            if rep.state == "pending":
                continue
            row = self.disk.attempt(functools.partial(self.outbox.by_remote, name, rep.remote_id))
            if row is not None:
                ok = rep.state == "delivered"
                report = delivery.Report("delivered" if ok else "undelivered", rep.detail)
                opts = delivery.options_for(config, row.rule)
                ar = delivery.after_report(row.track(), report, opts, now.instant, True)
                out.append((row, plan_report(row, ar, name, rep.detail, now)))
        if done.job.kind == "receive":
            self._read_once.add(name)
        if done.job.kind == "receive" and done.mark is not None:
            for rx in done.received:
                body = received_body(config, name, rx, wall)
                if body is not None:
                    self.sink.publish_json("received", body)
                if self.on_received is not None:
                    self.on_received(name, rx, now)
            self.disk.attempt(lambda: self.outbox.set_kv({f"mark:{name}": str(done.mark)}))
        return out


def received_body(
    config: cfg.Config, via: str, rx: ReceivedText, wall: dt.datetime
) -> dict[str, object] | None:
    """What ``rx`` becomes on ``<base>/received``, or None when ``received:`` keeps it back
    (``none``; ``contacts`` and a stranger)."""
    cc = config.defaults.country_code
    contact = replies.contact_of(rx.sender, config.contacts, cc)
    if config.received == "none" or (config.received == "contacts" and contact is None):
        return None
    at = (rx.at or wall).isoformat(timespec="seconds")
    sender = replies.e164(rx.sender, cc) or rx.sender  # a short code or a name stays as it is
    return {"from": sender, "contact": contact, "text": rx.text, "via": via, "at": at}
