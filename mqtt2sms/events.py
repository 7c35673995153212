"""One sink for every outcome: counted here, logged here, published here.

``emit`` takes an ``Event`` (a text's outcome) and writes its log line and its
``<base>/event`` message; ``publish_stats`` writes ``<base>/stats``. The counters behind the
stats live in ``Stats``, which the engine saves; ``dirty`` tells it when to. The
``incident`` and ``received`` topics of the next issues come through ``publish_json``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from mqtt2sms.model import Event

elog = logging.getLogger("mqtt2sms.event")

Publish = Callable[[str, str, bool], None]


@dataclass
class Stats:
    day: str = ""
    sent_today: int = 0
    suppressed_today: int = 0
    failed_today: int = 0
    last_sent_at: str | None = None
    last_error: str | None = None
    # texts a dry run (no `smtp`) wrote to the maildir: never counted as sent, and they
    # never move last_sent_at, so Home Assistant shows no text that never left
    dry_run_today: int = 0
    error_source: str = ""  # where last_error came from (a way out's name, outbox, ...)

    def roll(self, today: dt.date) -> None:
        if self.day != today.isoformat():
            self.day = today.isoformat()
            self.sent_today = self.suppressed_today = self.failed_today = 0
            self.dry_run_today = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str | None) -> Stats:
        try:
            data = json.loads(text or "{}")
            names = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in names})
        except (ValueError, TypeError):
            return cls()


_QUIET = frozenset({"sent", "suppressed", "delivered"})


def log_line(ev: Event) -> str:
    parts = [ev.state, ev.id, f"rule={ev.rule}"]
    if ev.to:
        parts.append(f"to={ev.to}")
    if ev.via:
        parts.append(f"via={ev.via}")
    if ev.attempts:
        parts.append(f"attempts={ev.attempts}")
    if ev.latency_ms is not None:
        parts.append(f"latency_ms={ev.latency_ms:.0f}")
    if ev.extra.get("dry_run"):
        parts.append("dry_run (not sent)")
    if ev.error:
        parts.append(f"error={ev.error}")
    return " ".join(parts)


class EventSink:
    """Counts, logs and publishes. Not thread-safe: the engine's thread alone calls it."""

    def __init__(
        self, publish: Publish, base_topic: str, tz: dt.tzinfo, stats: Stats | None = None
    ) -> None:
        self.publish = publish
        self.base_topic = base_topic
        self.tz = tz
        self.stats = stats or Stats()
        self.dirty = False  # the counters changed since the engine last saved them
        self.stats_changed = True  # the stats topic is out of date
        self.way_outs: dict[str, dict[str, object]] = {}  # each way out's word on itself

    def _changed(self) -> None:
        self.dirty = True
        self.stats_changed = True

    def count(self, state: str, at: dt.datetime, *, dry_run: bool = False) -> None:
        self.stats.roll(at.astimezone(self.tz).date())
        if state == "sent" and dry_run:
            self.stats.dry_run_today += 1
        elif state == "sent":
            self.stats.sent_today += 1
            self.stats.last_sent_at = at.astimezone(self.tz).isoformat(timespec="seconds")
        elif state == "suppressed":
            self.stats.suppressed_today += 1
        elif state in ("failed", "expired"):
            self.stats.failed_today += 1
        else:
            return
        self._changed()

    def emit(self, ev: Event) -> None:
        """Count, log and publish one outcome."""
        self.count(ev.state, ev.at, dry_run=bool(ev.extra.get("dry_run")))
        if ev.state == "suppressed" and ev.extra.get("limit") == "daily_cap":
            self.set_error(ev.error, "daily_cap")
        level = logging.INFO if ev.state in _QUIET else logging.WARNING
        elog.log(level, "%s", log_line(ev))
        self.publish(f"{self.base_topic}/event", json.dumps(ev.as_json()), False)

    def set_error(self, error: str | None, source: str = "") -> None:
        """The last error, and where it came from (a way out's name, ``outbox``, ...)."""
        self.stats.error_source = source if error else ""
        if self.stats.last_error != error:
            self.stats.last_error = error
            self._changed()

    def clear_error(self, source: str) -> None:
        """Forget the last error when it came from ``source`` (a way out that works again)."""
        if self.stats.last_error and self.stats.error_source == source:
            self.set_error(None)

    def set_way_out_stats(self, name: str, stats: dict[str, object] | None) -> None:
        """What way out ``name`` said of itself (None: it did not answer: its keys are
        published as null, not as the last good values)."""
        if stats is None:
            stats = {k: None for k in self.way_outs.get(name, {})}
        if self.way_outs.get(name) != stats:
            self.way_outs[name] = stats
            self.stats_changed = True

    def publish_json(self, subtopic: str, body: object, retain: bool = False) -> None:
        self.publish(f"{self.base_topic}/{subtopic}", json.dumps(body), retain)

    def publish_stats(self, queued: int, now: dt.datetime) -> None:
        self.stats.roll(now.astimezone(self.tz).date())
        s = self.stats
        body: dict[str, object] = {
            "queued": queued,
            "sent_today": s.sent_today,
            "suppressed_today": s.suppressed_today,
            "failed_today": s.failed_today,
            "dry_run_today": s.dry_run_today,
            "last_sent_at": s.last_sent_at,
            "last_error": s.last_error,
        }
        for said in self.way_outs.values():
            body.update(said)  # e.g. modem_signal, modem_registered, modem_sim_used
        self.publish_json("stats", body, retain=True)
        self.stats_changed = False
