"""Alert hygiene: cooldowns, the per-recipient rate, the daily cap and quiet hours.

Theory of operation
-------------------
Everything here is a pure function of an immutable ``ThrottleState`` and its arguments: no
clock, no I/O. ``now`` is always a timezone-aware datetime; ``tz`` is the local zone that
defines calendar days and quiet hours. A ``check_*`` function decides, a ``note_*`` function
returns the next state. The router threads the state through one message; the engine owns
the live state: it applies what a message changed (``changes``: a ``Layer`` carries only the
entries set on top of the live state, so an alert costs O(1) however many keys are held) once
the message's texts are committed or sent, and saves only those entries (``outbox.py``'s
throttle tables) so that a restart does not reset it. ``to_json`` / ``from_json`` read the
single blob that older versions saved.

Two clocks: cooldowns and rate windows are durations, so the caller passes instants on the
elapsed-time axis (``elapsed.py``: it never steps with the wall clock); the daily cap's
calendar day and quiet hours are what a person reads, on the wall clock (``now``).

For each message a rule matches, the router does::

    d = check_cooldown(state, rule, key, cooldown, priority, now,   # once per message
                       text_digest=digest(text))  # high passes unless the text repeats
    if not d.allowed:
        state = note_suppressed(state, rule, key)        # counted for " (+N more)"
        return                                           # suppressed for every recipient
    text += f" (+{d.more} more)" if d.more else ""
    state = note_sent(state, rule, key, now, text_digest=digest(text))  # runs from this

    for each recipient:
        r = check_recipient(state, recipient, parts, priority, limits, now, tz)
        "send"     -> state = note_accepted(state, recipient, parts, now, tz, window)
        "defer"    -> state = note_deferred(state, parts, now, tz); queue for r.until
        "suppress" -> nothing to note

Checks in ``check_recipient`` come in the order docs/config.md (Alert hygiene) gives:

1. daily cap: parts accepted today (local calendar day in ``tz``, all recipients) plus this
   text's parts may not exceed ``daily_cap``. Nothing passes it, ``high`` included.
2. quiet hours: ``normal`` priority is deferred to the end of the window.
3. per-recipient rate: at most ``count`` acceptances in any sliding window of ``per``
   seconds. ``high`` passes it, but is still recorded, so a burst of high-priority texts
   leaves less room for normal ones.

A deferred text counts toward the cap the day it is accepted (the cap bounds what we commit
to send), but not toward the rate: the rate is about texts arriving on a phone now. Whether
the deferred text, when it comes due, is checked against the rate again is the caller's call.

Quiet hours are wall-clock times in ``tz`` (zoneinfo semantics): an ``end`` of 07:00 is 07:00
local on a DST night too. The window is ``[start, end)``; ``start > end`` spans midnight;
``start == end`` is no window at all (config should warn about it).

Cooldowns are per (rule, key) and run from the last message SENT, so a flapping sensor sends
at most one text per cooldown. ``high`` priority passes a cooldown unless its text repeats the
one that started it (the entry keeps a ``digest`` of that text, never the text): a smoke alarm
gets through a busy rule's cooldown, a wet leak sensor texts once per cooldown.
Rate entries and day counts are stored as UTC instants and a local date.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from .config import Limits, QuietHours, Rate

__all__ = [
    "EMPTY",
    "CooldownDecision",
    "CooldownEntry",
    "Layer",
    "RecipientDecision",
    "ThrottleState",
    "changes",
    "check_cooldown",
    "check_recipient",
    "day_count",
    "digest",
    "from_json",
    "note_accepted",
    "note_deferred",
    "note_sent",
    "note_suppressed",
    "parse_json",
    "prune",
    "quiet_window_end",
    "to_json",
]

UTC = dt.UTC
HIGH = "high"
JSON_VERSION = 1
# Cooldown entries with nothing suppressed are dropped by ``prune`` after this long.
DEFAULT_COOLDOWN_HORIZON = 86400.0

# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class CooldownEntry:
    """The last text sent for one (rule, key), and the messages suppressed since.

    ``digest``: ``digest()`` of the text that started this cooldown (None: not known, such
    as an entry saved by an older version): a ``high`` message passes the cooldown unless
    its text has this digest.
    """

    last_sent: dt.datetime
    suppressed: int = 0
    digest: str | None = None


class Layer(Mapping[Any, Any]):
    """A read-only view of ``base`` with a few changes on top.

    A ``note_*`` call adds one change in O(changes), never copying ``base``: the engine keeps
    the live per-key state in a dict of its own, routes one message against ``Layer(live)``,
    and once the message's texts are committed applies ``changes`` to it (and to the disk).
    """

    __slots__ = ("_base", "_changes")

    def __init__(self, base: Mapping[Any, Any], changes: Mapping[Any, Any] | None = None):
        self._base = base
        self._changes: Mapping[Any, Any] = MappingProxyType(dict(changes or {}))

    def __getitem__(self, k: Any) -> Any:
        if k in self._changes:
            return self._changes[k]
        return self._base[k]

    def __contains__(self, k: object) -> bool:
        return k in self._changes or k in self._base

    def __iter__(self) -> Iterator[Any]:
        yield from self._changes
        for k in self._base:
            if k not in self._changes:
                yield k

    def __len__(self) -> int:
        return len(self._base) + sum(1 for k in self._changes if k not in self._base)

    @property
    def changes(self) -> Mapping[Any, Any]:
        """What was set on top of ``base``."""
        return self._changes

    def with_(self, k: Any, v: Any) -> Layer:
        return Layer(self._base, {**self._changes, k: v})


def _frozen(mapping: Mapping[Any, Any]) -> Layer:
    if isinstance(mapping, Layer):
        return mapping
    return Layer(MappingProxyType(dict(mapping)))


def changes(mapping: Mapping[Any, Any]) -> Mapping[Any, Any]:
    """The entries a routing added on top of the state it started from (all, for a dict)."""
    return mapping.changes if isinstance(mapping, Layer) else mapping


@dataclass(frozen=True)
class ThrottleState:
    """Everything the throttle remembers. Immutable: every ``note_*`` returns a new one.

    ``cooldowns``: (rule, key) -> entry. ``recent``: recipient name -> acceptance instants
    (UTC, oldest first) still inside the rate window. ``day``: the local calendar day that
    ``day_count`` (parts accepted for sending, all recipients) belongs to.
    """

    cooldowns: Mapping[tuple[str, str], CooldownEntry] = field(
        default_factory=lambda: MappingProxyType({})
    )
    recent: Mapping[str, tuple[dt.datetime, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    day: dt.date | None = None
    day_count: int = 0

    def __post_init__(self) -> None:
        # Wrap whatever mapping we were given so nobody can mutate the state in place.
        object.__setattr__(self, "cooldowns", _frozen(self.cooldowns))
        object.__setattr__(self, "recent", _frozen(self.recent))

    @classmethod
    def empty(cls) -> ThrottleState:
        """A state with nothing remembered."""
        return cls()


EMPTY = ThrottleState.empty()


@dataclass(frozen=True)
class CooldownDecision:
    """``allowed``: send this message. ``until``: when the cooldown ends (None if allowed).

    ``more``: messages suppressed since the last one sent; when the message is sent, the
    caller appends ``" (+N more)"`` for ``more > 0``.
    """

    allowed: bool
    until: dt.datetime | None = None
    more: int = 0


@dataclass(frozen=True)
class RecipientDecision:
    """What to do with one text for one recipient.

    ``action``: ``send`` now, ``suppress`` (drop, with an event), or ``defer`` (queue it for
    ``until``). ``reason`` is human text for the event and the log (empty for ``send``).
    ``until`` (aware, UTC): for ``defer`` the end of the quiet window; for a rate
    ``suppress`` when a slot frees up; for a cap ``suppress`` the next local midnight.
    """

    action: Literal["send", "suppress", "defer"]
    reason: str = ""
    until: dt.datetime | None = None
    limit: Literal["", "daily_cap", "quiet_hours", "rate"] = ""  # which limit decided it


# --------------------------------------------------------------------------- helpers


def _aware(name: str, value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def _local_day(now: dt.datetime, tz: dt.tzinfo) -> dt.date:
    return now.astimezone(tz).date()


def _count_on(state: ThrottleState, day: dt.date) -> int:
    return state.day_count if state.day == day else 0


def _in_window(
    times: tuple[dt.datetime, ...], now: dt.datetime, window: float
) -> tuple[dt.datetime, ...]:
    # An acceptance at t counts while now - t < window. Instants after now (a clock that
    # stepped back) still count: better one text late than one too many.
    span = dt.timedelta(seconds=window)
    return tuple(t for t in times if now - t < span)


def _format_rate(rate: Rate) -> str:
    for seconds, unit in ((86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        if rate.per >= seconds and rate.per % seconds == 0:
            n = int(rate.per // seconds)
            return f"{rate.count}/{unit}" if n == 1 else f"{rate.count}/{n}{unit}"
    return f"{rate.count}/{rate.per:g}s"


def _rate_active(rate: Rate | None) -> bool:
    return rate is not None and rate.count > 0 and rate.per > 0


# --------------------------------------------------------------------------- cooldown


def digest(text: str) -> str:
    """A short digest of a text, to tell whether a message repeats the one that started a
    cooldown without keeping the text itself. Raises: nothing."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def check_cooldown(
    state: ThrottleState,
    rule: str,
    key: str,
    cooldown: float,
    priority: str,
    now: dt.datetime,
    *,
    text_digest: str | None = None,
) -> CooldownDecision:
    """Decide whether a message for (rule, key) passes its cooldown.

    In: the state, the rule name and rendered key, the rule's cooldown in seconds (0: none),
    the priority, the aware ``now`` and ``text_digest``, the ``digest()`` of this message's
    text. ``"high"`` passes the cooldown unless its text repeats the one that started it
    (the entry's digest equals ``text_digest``; an unknown digest on either side passes):
    a smoke alarm gets through a busy rule's cooldown, a wet sensor repeating itself does
    not. Out: a ``CooldownDecision``; ``more`` is reported whether or not it is allowed.
    Raises: ``ValueError`` if ``now`` is naive.

    The cooldown runs from the last message sent. If the clock stepped back before that
    instant, the wait is bounded by ``now + cooldown`` rather than stretched by the jump.
    """
    now = _aware("now", now)
    entry = state.cooldowns.get((rule, key))
    if entry is None:
        return CooldownDecision(allowed=True)
    more = entry.suppressed
    if cooldown <= 0:
        return CooldownDecision(allowed=True, more=more)
    if priority == HIGH and (
        text_digest is None or entry.digest is None or entry.digest != text_digest
    ):
        return CooldownDecision(allowed=True, more=more)
    span = dt.timedelta(seconds=cooldown)
    until = min(entry.last_sent + span, now + span)
    if now < until:
        return CooldownDecision(allowed=False, until=until, more=more)
    return CooldownDecision(allowed=True, more=more)


def note_suppressed(state: ThrottleState, rule: str, key: str) -> ThrottleState:
    """Count one more message suppressed by the cooldown of (rule, key).

    In: the state, rule and key. Out: the new state. A (rule, key) that was never sent is
    left alone (nothing can suppress it). Raises: nothing.
    """
    entry = state.cooldowns.get((rule, key))
    if entry is None:
        return state
    cooldowns = _frozen(state.cooldowns).with_(
        (rule, key), replace(entry, suppressed=entry.suppressed + 1)
    )
    return replace(state, cooldowns=cooldowns)


def note_sent(
    state: ThrottleState,
    rule: str,
    key: str,
    now: dt.datetime,
    *,
    text_digest: str | None = None,
) -> ThrottleState:
    """Record that a message for (rule, key) passed its cooldown and was sent at ``now``.

    In: the state, rule, key, aware ``now`` and the ``digest()`` of the text sent (it
    started this cooldown). Out: the new state, with ``last_sent = now``, the digest and
    the suppressed count back to 0. Raises: ``ValueError`` if ``now`` is naive.
    """
    now = _aware("now", now)
    entry = CooldownEntry(last_sent=now, suppressed=0, digest=text_digest)
    return replace(state, cooldowns=_frozen(state.cooldowns).with_((rule, key), entry))


# --------------------------------------------------------------------------- quiet hours


def _local_instant(day: dt.date, wall: dt.time, tz: dt.tzinfo, fold: int) -> dt.datetime:
    local = dt.datetime.combine(day, wall.replace(tzinfo=None), tzinfo=tz).replace(fold=fold)
    return local.astimezone(UTC)


def quiet_window_end(quiet: QuietHours, now: dt.datetime, tz: dt.tzinfo) -> dt.datetime | None:
    """The end of the quiet window ``now`` is in, or None when it is outside one.

    In: the window (wall-clock times, ``[start, end)``, spanning midnight when
    ``start > end``, empty when ``start == end``), the aware ``now`` and the local zone.
    Out: the end as an aware UTC datetime, always after ``now``, or None.
    Raises: ``ValueError`` if ``now`` is naive.

    The end is the wall time ``end`` in ``tz`` on the right local day. On a DST night it is
    still that wall time (07:00 EDT after spring forward). An end that falls in a skipped
    hour maps, as zoneinfo does, to the instant just after the gap; an ambiguous end (the
    repeated hour of fall back) is its first occurrence, or its second if the first has
    already passed.
    """
    now = _aware("now", now)
    start = quiet.start.replace(tzinfo=None)
    end = quiet.end.replace(tzinfo=None)
    if start == end:
        return None
    local = now.astimezone(tz)
    wall = local.time().replace(tzinfo=None)
    today = local.date()
    if start < end:
        if not start <= wall < end:
            return None
        end_day = today
    elif wall >= start:
        end_day = today + dt.timedelta(days=1)
    elif wall < end:
        end_day = today
    else:
        return None
    for fold in (0, 1):
        instant = _local_instant(end_day, end, tz, fold)
        if instant > now:
            return instant
    return None  # the wall-clock end already passed (repeated hour): we are outside


# --------------------------------------------------------------------------- recipients


def quiet_release(quiet: QuietHours | None, now: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    """When a text held by quiet hours may go: the end of the window ``now`` is in, else
    ``now`` (a clock stepped back does not hold it longer)."""
    end = quiet_window_end(quiet, now, tz) if quiet else None
    return end or now


def _next_local_midnight(now: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    tomorrow = _local_day(now, tz) + dt.timedelta(days=1)
    return _local_instant(tomorrow, dt.time(0, 0), tz, 0)


def check_recipient(
    state: ThrottleState,
    recipient: str,
    parts: int,
    priority: str,
    limits: Limits,
    now: dt.datetime,
    tz: dt.tzinfo,
    *,
    elapsed: dt.datetime | None = None,
) -> RecipientDecision:
    """Decide whether one text (``parts`` SMS parts) may go to ``recipient`` now.

    In: the state, the contact name, the number of parts, the priority (``"high"`` passes
    quiet hours and the rate, never the daily cap), the limits, the aware ``now`` and the
    local zone. Out: a ``RecipientDecision``; checks run in order: daily cap, quiet hours,
    rate. Raises: ``ValueError`` if ``now`` is naive or ``parts`` < 1.

    ``elapsed``: the instant on the elapsed-time axis (it does not step with the wall clock)
    that the rate window is measured on; default ``now``. The cap's day and quiet hours are
    wall-clock matters and use ``now``.

    This only decides: call ``note_accepted`` after ``send`` and ``note_deferred`` after
    ``defer``.
    """
    now = _aware("now", now)
    at = now if elapsed is None else _aware("elapsed", elapsed)
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    high = priority == HIGH

    cap = limits.daily_cap
    if cap > 0:
        today_count = _count_on(state, _local_day(now, tz))
        if today_count + parts > cap:
            if today_count >= cap:
                reason = f"daily cap of {cap} reached"
            else:
                reason = (
                    f"daily cap of {cap} reached ({today_count} parts today, this text has {parts})"
                )
            return RecipientDecision("suppress", reason, _next_local_midnight(now, tz), "daily_cap")

    if not high and limits.quiet_hours is not None:
        end = quiet_window_end(limits.quiet_hours, now, tz)
        if end is not None:
            shown = end.astimezone(tz).strftime("%H:%M")
            return RecipientDecision("defer", f"quiet hours until {shown}", end, "quiet_hours")

    rate = limits.per_recipient
    if not high and rate is not None and _rate_active(rate):
        inside = _in_window(state.recent.get(recipient, ()), at, rate.per)
        if len(inside) >= rate.count:
            # The slot frees up when the count-th newest acceptance leaves the window.
            ordered = sorted(inside)
            frees = ordered[len(ordered) - rate.count] + dt.timedelta(seconds=rate.per)
            reason = f"rate limit {_format_rate(rate)} for {recipient}"
            until = now + max(frees - at, dt.timedelta(0))
            return RecipientDecision("suppress", reason, until, "rate")

    return RecipientDecision("send")


def _count_parts(
    state: ThrottleState, parts: int, now: dt.datetime, tz: dt.tzinfo
) -> ThrottleState:
    today = _local_day(now, tz)
    return replace(state, day=today, day_count=_count_on(state, today) + parts)


def note_deferred(
    state: ThrottleState, parts: int, now: dt.datetime, tz: dt.tzinfo
) -> ThrottleState:
    """Record a text accepted now but deferred (quiet hours): it counts toward the cap only.

    In: the state, the text's parts, the aware ``now`` and the local zone. Out: the new
    state (the day count resets first when the local day changed).
    Raises: ``ValueError`` if ``now`` is naive or ``parts`` < 1.
    """
    now = _aware("now", now)
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    return _count_parts(state, parts, now, tz)


def note_accepted(
    state: ThrottleState,
    recipient: str,
    parts: int,
    now: dt.datetime,
    tz: dt.tzinfo,
    rate_window: float | None,
    *,
    elapsed: dt.datetime | None = None,
) -> ThrottleState:
    """Record a text accepted for sending now: it counts toward the cap and the rate.

    In: the state, the contact name, the text's parts, the aware ``now``, the local zone and
    the rate window in seconds (``limits.per_recipient.per``; None or 0: no rate, nothing is
    recorded for it). Out: the new state; the recipient's entries older than the window are
    pruned. ``elapsed``: as in ``check_recipient``. Raises: ``ValueError`` if ``now`` is
    naive or ``parts`` < 1.
    """
    state = note_deferred(state, parts, now, tz)
    at = _aware("now", now) if elapsed is None else _aware("elapsed", elapsed)
    if not rate_window or rate_window <= 0:
        return state
    kept = _in_window(state.recent.get(recipient, ()), at, rate_window)
    recent = _frozen(state.recent).with_(recipient, tuple(sorted((*kept, at))))
    return replace(state, recent=recent)


def day_count(state: ThrottleState, now: dt.datetime, tz: dt.tzinfo) -> int:
    """Parts accepted for sending on ``now``'s local day (0 if the stored day is another).

    Raises: ``ValueError`` if ``now`` is naive.
    """
    return _count_on(state, _local_day(_aware("now", now), tz))


# --------------------------------------------------------------------------- housekeeping


def prune(
    state: ThrottleState,
    now: dt.datetime,
    keep_rules: set[str] | frozenset[str] | None,
    rate_window: float | None,
    *,
    cooldown_horizon: float = DEFAULT_COOLDOWN_HORIZON,
) -> ThrottleState:
    """Drop what can no longer matter (after a reload, or now and then).

    In: the state, the aware ``now``, the names of the rules that still exist (None: keep
    every rule), the rate window in seconds (None or 0: no rate, all rate entries go), and
    ``cooldown_horizon``: a cooldown entry whose last text is older than this and which has
    nothing suppressed is dropped (pass at least the longest cooldown in the config).
    Entries with ``suppressed > 0`` are kept while their rule exists, so the next text still
    says " (+N more)". The day count is kept (``day_count`` ignores a stale day).
    Out: the new state. Raises: ``ValueError`` if ``now`` is naive.
    """
    now = _aware("now", now)
    horizon = dt.timedelta(seconds=cooldown_horizon)
    cooldowns = {
        (rule, key): entry
        for (rule, key), entry in state.cooldowns.items()
        if (keep_rules is None or rule in keep_rules)
        and (entry.suppressed > 0 or now - entry.last_sent <= horizon)
    }
    recent: dict[str, tuple[dt.datetime, ...]] = {}
    if rate_window and rate_window > 0:
        for name, times in state.recent.items():
            kept = _in_window(times, now, rate_window)
            if kept:
                recent[name] = kept
    return replace(state, cooldowns=cooldowns, recent=recent)


# --------------------------------------------------------------------------- persistence


def to_json(state: ThrottleState) -> str:
    """Serialise the state (datetimes as ISO 8601 with their offset). Raises: nothing."""
    doc = {
        "version": JSON_VERSION,
        "cooldowns": [
            {
                "rule": rule,
                "key": key,
                "last_sent": entry.last_sent.isoformat(),
                "suppressed": entry.suppressed,
                **({"digest": entry.digest} if entry.digest is not None else {}),
            }
            for (rule, key), entry in sorted(state.cooldowns.items())
        ],
        "recent": {
            name: [t.isoformat() for t in times] for name, times in sorted(state.recent.items())
        },
        "day": state.day.isoformat() if state.day is not None else None,
        "day_count": state.day_count,
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def _str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what}: expected a string, got {value!r}")
    return value


def _count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what}: expected a count >= 0, got {value!r}")
    return value


def _instant(value: object, what: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(_str(value, what))
    if parsed.tzinfo is None:
        raise ValueError(f"{what}: {value!r} has no UTC offset")
    return parsed.astimezone(UTC)


def parse_json(text: str) -> ThrottleState:
    """Read a state written by ``to_json``, strictly.

    In: the JSON text. Out: the state. Raises: ``ValueError`` (``json.JSONDecodeError`` is
    one) naming the first problem: bad JSON, an unknown version, a wrong type, a datetime
    without an offset.
    """
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError("throttle state: expected a JSON object")
    if doc.get("version") != JSON_VERSION:
        raise ValueError(f"throttle state: unknown version {doc.get('version')!r}")
    cooldowns: dict[tuple[str, str], CooldownEntry] = {}
    raw_cooldowns = doc.get("cooldowns", [])
    if not isinstance(raw_cooldowns, list):
        raise ValueError("cooldowns: expected a list")
    for i, item in enumerate(raw_cooldowns):
        if not isinstance(item, dict):
            raise ValueError(f"cooldowns[{i}]: expected an object")
        rule = _str(item.get("rule"), f"cooldowns[{i}].rule")
        key = _str(item.get("key"), f"cooldowns[{i}].key")
        cooldowns[(rule, key)] = CooldownEntry(
            last_sent=_instant(item.get("last_sent"), f"cooldowns[{i}].last_sent"),
            suppressed=_count(item.get("suppressed", 0), f"cooldowns[{i}].suppressed"),
            digest=(
                None
                if item.get("digest") is None
                else _str(item.get("digest"), f"cooldowns[{i}].digest")
            ),
        )
    recent: dict[str, tuple[dt.datetime, ...]] = {}
    raw_recent = doc.get("recent", {})
    if not isinstance(raw_recent, dict):
        raise ValueError("recent: expected an object")
    for name, times in raw_recent.items():
        if not isinstance(times, list):
            raise ValueError(f"recent.{name}: expected a list")
        recent[name] = tuple(sorted(_instant(t, f"recent.{name}") for t in times))
    raw_day = doc.get("day")
    day = None if raw_day is None else dt.date.fromisoformat(_str(raw_day, "day"))
    count = _count(doc.get("day_count", 0), "day_count")
    return ThrottleState(cooldowns=cooldowns, recent=recent, day=day, day_count=count)


def from_json(text: str | bytes | None) -> ThrottleState:
    """Read a state written by ``to_json``, tolerantly.

    In: the JSON text (None or empty: no saved state). Out: the state, or ``EMPTY`` when
    the text is missing, corrupt or of another version: a damaged state file must not stop
    the daemon (it forgets cooldowns and counts instead). Raises: nothing. Use
    ``parse_json`` to learn what was wrong, for the log.
    """
    if not text:
        return EMPTY
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return parse_json(text)
    except (ValueError, TypeError, OverflowError, RecursionError):
        return EMPTY
