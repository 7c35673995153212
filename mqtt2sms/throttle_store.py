"""The throttle's live state and its per-key store in the outbox.

Theory of operation. ``throttle.py`` decides on a ``ThrottleState``; this is where that state
lives between messages. Cooldowns are one row a (rule, key) in the outbox's ``cooldowns``
table and are read through on lookup (``CooldownView``): memory and the cost of an alert stay
flat however many keys are held; only changes not saved yet are kept in memory. Rate windows
(``recent``, one row a recipient) and the daily count are small and held whole.

A routing works on a ``view()`` (``throttle.Layer``s over this state, O(changes)); ``take``
makes what it decided live at once, so the next message sees the cooldown, and returns what
undoes it (a message whose handling failed must not suppress its own retry); ``keep`` marks
it for saving, once its texts are committed or sent. ``save`` writes only what changed.

Instants are on the throttle axis (``clock.py``). ``mqtt2sms test`` reads the same store, so
it shows the cooldowns and rates the daemon holds.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace

from mqtt2sms import config as cfg
from mqtt2sms import elapsed, throttle
from mqtt2sms.outbox import Outbox, ts

_MISSING = object()


class CooldownView(Mapping[tuple[str, str], throttle.CooldownEntry]):
    """The cooldowns: what is not saved yet (``pending``) over what the outbox holds.

    A lookup is one indexed read; nothing but the unsaved changes lives in memory."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.pending: dict[tuple[str, str], throttle.CooldownEntry | None] = {}

    def __getitem__(self, k: tuple[str, str]) -> throttle.CooldownEntry:
        if k in self.pending:
            v = self.pending[k]
            if v is None:
                raise KeyError(k)
            return v
        got = self.outbox.get_cooldown(*k)
        if got is None:
            raise KeyError(k)
        return throttle.CooldownEntry(elapsed.instant(got[0]), got[1], got[2])

    def __setitem__(self, k: tuple[str, str], v: throttle.CooldownEntry) -> None:
        self.pending[k] = v

    def __iter__(self) -> Iterator[tuple[str, str]]:
        seen = set()
        for k, v in self.pending.items():
            seen.add(k)
            if v is not None:
                yield k
        for k in self.outbox.cooldown_keys():
            if k not in seen:
                yield k

    def __len__(self) -> int:
        return sum(1 for _ in self)


class LiveThrottle:
    """The state ``throttle.check`` reads, kept between messages and saved by key."""

    def __init__(self, outbox: Outbox, now_e: float, wall: dt.datetime) -> None:
        """Load from ``outbox``; ``now_e`` and ``wall`` (the axis and the wall clock now)
        move the single JSON blob of older versions onto the axis."""
        self.outbox = outbox
        self.cooldowns = CooldownView(outbox)
        self.recent: dict[str, tuple[dt.datetime, ...]] = {
            k: tuple(elapsed.instant(t) for t in v) for k, v in outbox.load_recent().items()
        }
        self.day: dt.date | None = None
        self.day_count = 0
        day = outbox.get_kv("day")
        if day:
            try:
                d = json.loads(day)
                self.day = dt.date.fromisoformat(d["day"]) if d.get("day") else None
                self.day_count = int(d.get("count", 0))
            except (ValueError, TypeError, KeyError):
                pass
        self.dirty_cooldowns: set[tuple[str, str]] = set()
        self.dirty_recent: set[str] = set()
        self.dirty = False
        old = outbox.get_kv("throttle")
        if old and not self.recent and not outbox.cooldown_keys():
            # the single blob of older versions: its instants were wall times
            st = throttle.from_json(old)
            shift = dt.timedelta(seconds=now_e - ts(wall))
            for k, v in st.cooldowns.items():
                self.cooldowns[k] = replace(v, last_sent=v.last_sent + shift)
            self.recent = {k: tuple(t + shift for t in v) for k, v in st.recent.items()}
            self.day, self.day_count = st.day, st.day_count
            self.dirty_cooldowns = set(st.cooldowns)
            self.dirty_recent = set(self.recent)
            self.dirty = True

    def view(self) -> throttle.ThrottleState:
        """What a routing decides on; its changes stay in its own layers."""
        return throttle.ThrottleState(
            cooldowns=throttle.Layer(self.cooldowns),
            recent=throttle.Layer(self.recent),
            day=self.day,
            day_count=self.day_count,
        )

    def take(self, state: throttle.ThrottleState) -> Callable[[], None]:
        """Make what a routing decided live; return what undoes it."""
        cds = throttle.changes(state.cooldowns)
        rec = throttle.changes(state.recent)
        old_cd = {k: self.cooldowns.pending.get(k, _MISSING) for k in cds}
        old_rec = {k: self.recent.get(k) for k in rec}
        old_day = (self.day, self.day_count)
        for k, v in cds.items():
            self.cooldowns[k] = v
        self.recent.update(rec)
        self.day, self.day_count = state.day, state.day_count

        def undo() -> None:
            for k, v in old_cd.items():
                if v is _MISSING:
                    self.cooldowns.pending.pop(k, None)
                else:
                    self.cooldowns.pending[k] = v  # type: ignore[assignment]
            for r, t in old_rec.items():
                if t is None:
                    self.recent.pop(r, None)
                else:
                    self.recent[r] = t
            self.day, self.day_count = old_day

        return undo

    def count(self, parts: int, now: dt.datetime, tz: dt.tzinfo) -> None:
        """Texts that pass every limit (an incident's) still count toward the daily cap."""
        st = throttle.note_deferred(self.view(), parts, now, tz)
        self.day, self.day_count, self.dirty = st.day, st.day_count, True

    def keep(self, state: throttle.ThrottleState) -> None:
        """Mark a routing's changes for saving (its texts are committed or sent)."""
        self.dirty_cooldowns.update(throttle.changes(state.cooldowns))
        self.dirty_recent.update(throttle.changes(state.recent))
        self.dirty = True

    def prune(self, now: dt.datetime, config: cfg.Config) -> None:
        """Forget cooldowns of rules that are gone (not in ``config``) or long over, and rate
        entries out of their window."""
        rules = [(r.name, r.options.cooldown) for r in config.rules]
        rate_per = config.limits.per_recipient.per if config.limits.per_recipient else None
        horizon = max([86400.0, *(cd for _, cd in rules)])
        self.outbox.prune_cooldowns([n for n, _ in rules], elapsed.seconds(now) - horizon)
        st = throttle.prune(throttle.ThrottleState(recent=self.recent), now, None, rate_per)
        for r in list(self.recent):
            if r not in st.recent:
                del self.recent[r]
                self.dirty_recent.add(r)
            elif st.recent[r] != self.recent[r]:
                self.recent[r] = st.recent[r]
                self.dirty_recent.add(r)
        self.dirty = True

    def save(self, kv: Mapping[str, str]) -> None:
        """Write what changed, with ``kv`` (the counters, the clock), in one transaction
        without an fsync. Raises StorageError; nothing is marked saved then."""
        cds: dict[tuple[str, str], tuple[float, int, str | None] | None] = {}
        written: dict[tuple[str, str], object] = {}
        for k in self.dirty_cooldowns:
            if k not in self.cooldowns.pending:
                continue
            entry = self.cooldowns.pending[k]
            written[k] = entry
            cds[k] = (
                None
                if entry is None
                else (elapsed.seconds(entry.last_sent), entry.suppressed, entry.digest)
            )
        rec: dict[str, tuple[float, ...] | None] = {
            r: tuple(elapsed.seconds(t) for t in self.recent.get(r, ())) or None
            for r in self.dirty_recent
        }
        day = {"day": self.day.isoformat() if self.day else None, "count": self.day_count}
        self.outbox.save_throttle(cds, rec, {**kv, "day": json.dumps(day)})
        self.dirty_cooldowns.clear()
        self.dirty_recent.clear()
        for k, v in written.items():
            if self.cooldowns.pending.get(k, _MISSING) is v:
                del self.cooldowns.pending[k]  # on disk now: read it from there
        self.dirty = False
