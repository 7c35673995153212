"""The stats count a dry run apart: a text written to the maildir was never sent."""

from __future__ import annotations

import datetime as dt
import json

from mqtt2sms.events import EventSink, Stats
from mqtt2sms.model import Event

AT = dt.datetime(2026, 6, 1, 16, 0, tzinfo=dt.UTC)


def sink() -> tuple[EventSink, list[tuple[str, str, bool]]]:
    out: list[tuple[str, str, bool]] = []
    return EventSink(lambda t, p, r: out.append((t, p, r)), "mqtt2sms", dt.UTC), out


def sent(n: int, *, dry_run: bool, at: dt.datetime = AT) -> Event:
    extra: dict[str, object] = {"dry_run": True} if dry_run else {}
    return Event(id=f"a{n}-1", state="sent", at=at, rule="sms", to="alex", extra=extra)


def test_a_dry_run_is_counted_as_a_dry_run_never_as_sent() -> None:
    s, out = sink()
    s.emit(sent(1, dry_run=True))
    s.emit(sent(2, dry_run=True))
    assert (s.stats.sent_today, s.stats.dry_run_today, s.stats.last_sent_at) == (0, 2, None)
    s.emit(sent(3, dry_run=False, at=AT + dt.timedelta(minutes=1)))
    assert (s.stats.sent_today, s.stats.dry_run_today) == (1, 2)
    assert s.stats.last_sent_at == "2026-06-01T16:01:00+00:00"
    s.publish_stats(0, AT)
    stats = json.loads([p for t, p, _ in out if t == "mqtt2sms/stats"][-1])
    assert (stats["sent_today"], stats["dry_run_today"]) == (1, 2)


def test_the_dry_run_count_rolls_over_at_midnight_and_is_saved() -> None:
    s, _ = sink()
    s.emit(sent(1, dry_run=True))
    saved = Stats.from_json(s.stats.to_json())
    assert saved.dry_run_today == 1
    saved.roll(dt.date(2026, 6, 2))
    assert saved.dry_run_today == 0
    assert Stats.from_json('{"day": "2026-06-01", "sent_today": 4}').dry_run_today == 0
