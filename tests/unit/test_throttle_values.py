"""The throttle's existing rules pinned by value: cooldown, rate, daily cap, quiet hours,
pruning and the saved form. Instants are literals worked out by hand; errors are compared
whole. (The cooldown rule for high priority may change; these pin it as it is.)"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from mqtt2sms import throttle
from mqtt2sms.config import Limits, QuietHours, Rate
from mqtt2sms.throttle import (
    EMPTY,
    CooldownDecision,
    CooldownEntry,
    Layer,
    RecipientDecision,
    ThrottleState,
)

UTC = dt.UTC
T0 = dt.datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
NY = ZoneInfo("America/New_York")
NAIVE = dt.datetime(2026, 3, 10, 12, 0)
NO_LIMITS = Limits(per_recipient=None, daily_cap=0, quiet_hours=None)


def at(s: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=s)


def sent(s: float, suppressed: int = 0) -> ThrottleState:
    return ThrottleState(cooldowns={("leak", "k"): CooldownEntry(at(s), suppressed)})


# --------------------------------------------------------------------------- naive instants

CALLS: list[tuple[str, Callable[[dt.datetime], object]]] = [
    ("now", lambda n: throttle.check_cooldown(EMPTY, "r", "k", 60, "normal", n)),
    ("now", lambda n: throttle.note_sent(EMPTY, "r", "k", n)),
    ("now", lambda n: throttle.quiet_window_end(QuietHours(dt.time(22), dt.time(7)), n, UTC)),
    ("now", lambda n: throttle.check_recipient(EMPTY, "a", 1, "normal", NO_LIMITS, n, UTC)),
    (
        "elapsed",
        lambda n: throttle.check_recipient(EMPTY, "a", 1, "normal", NO_LIMITS, T0, UTC, elapsed=n),
    ),
    ("now", lambda n: throttle.note_deferred(EMPTY, 1, n, UTC)),
    ("now", lambda n: throttle.note_accepted(EMPTY, "a", 1, n, UTC, 60)),
    ("elapsed", lambda n: throttle.note_accepted(EMPTY, "a", 1, T0, UTC, 60, elapsed=n)),
    ("now", lambda n: throttle.day_count(EMPTY, n, UTC)),
    ("now", lambda n: throttle.prune(EMPTY, n, None, 60)),
]


class _NoOffset(dt.tzinfo):
    """A zone that does not know its offset: as naive as no zone at all."""

    def utcoffset(self, d: dt.datetime | None) -> dt.timedelta | None:
        return None


@pytest.mark.parametrize(("name", "call"), CALLS)
@pytest.mark.parametrize("naive", [NAIVE, NAIVE.replace(tzinfo=_NoOffset())])
def test_naive_instants_are_refused_by_name(
    name: str, call: Callable[[dt.datetime], object], naive: dt.datetime
) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be a timezone-aware datetime, got "):
        call(naive)


# --------------------------------------------------------------------------- cooldown


@pytest.mark.parametrize(
    ("state", "cooldown", "priority", "now", "decision"),
    [
        (EMPTY, 900, "normal", at(0), CooldownDecision(True)),
        (sent(0), 900, "normal", at(1), CooldownDecision(False, at(900), 0)),
        (sent(0, 3), 900, "normal", at(899.999), CooldownDecision(False, at(900), 3)),
        (sent(0, 3), 900, "normal", at(900), CooldownDecision(True, None, 3)),
        (sent(0, 2), 900, "high", at(1), CooldownDecision(True, None, 2)),
        (sent(0, 2), 0, "normal", at(0), CooldownDecision(True, None, 2)),
        (sent(0, 1), 0.5, "normal", at(0.25), CooldownDecision(False, at(0.5), 1)),
        (sent(0), 1, "normal", at(0.5), CooldownDecision(False, at(1), 0)),
        # a clock that stepped back: the wait is bounded by now + cooldown
        (sent(1000, 1), 60, "normal", at(0), CooldownDecision(False, at(60), 1)),
    ],
)
def test_check_cooldown(
    state: ThrottleState, cooldown: float, priority: str, now: dt.datetime, decision: object
) -> None:
    assert throttle.check_cooldown(state, "leak", "k", cooldown, priority, now) == decision


def test_the_cooldown_is_per_rule_and_key() -> None:
    assert throttle.check_cooldown(sent(0), "leak", "other", 900, "normal", at(1)).allowed
    assert throttle.check_cooldown(sent(0), "smoke", "k", 900, "normal", at(1)).allowed


def test_note_sent_and_note_suppressed() -> None:
    s = throttle.note_suppressed(EMPTY, "leak", "k")
    assert s == EMPTY  # nothing sent yet: nothing to suppress
    s = throttle.note_sent(EMPTY, "leak", "k", at(5))
    assert dict(s.cooldowns) == {("leak", "k"): CooldownEntry(at(5), 0)}
    s = throttle.note_suppressed(throttle.note_suppressed(s, "leak", "k"), "leak", "k")
    assert dict(s.cooldowns) == {("leak", "k"): CooldownEntry(at(5), 2)}
    s = throttle.note_sent(s, "leak", "k", at(1000))
    assert dict(s.cooldowns) == {("leak", "k"): CooldownEntry(at(1000), 0)}


def test_note_sent_stores_utc() -> None:
    s = throttle.note_sent(EMPTY, "leak", "k", T0.astimezone(NY))
    assert s.cooldowns[("leak", "k")].last_sent.tzinfo is UTC


# --------------------------------------------------------------------------- quiet hours

NIGHT = QuietHours(dt.time(22, 0), dt.time(7, 0))
DAY = QuietHours(dt.time(9, 30), dt.time(17, 0))


def ny(day: int, h: int, m: int = 0, month: int = 3) -> dt.datetime:
    return dt.datetime(2026, month, day, h, m, tzinfo=NY)


@pytest.mark.parametrize(
    ("quiet", "now", "end"),
    [
        (NIGHT, ny(10, 21, 59), None),
        (NIGHT, ny(10, 22, 0), ny(11, 7)),
        (NIGHT, ny(11, 2, 0), ny(11, 7)),
        (NIGHT, ny(11, 6, 59), ny(11, 7)),
        (NIGHT, ny(11, 7, 0), None),
        (NIGHT, ny(11, 12, 0), None),
        (DAY, ny(10, 9, 29), None),
        (DAY, ny(10, 9, 30), ny(10, 17)),
        (DAY, ny(10, 16, 59), ny(10, 17)),
        (DAY, ny(10, 17, 0), None),
        (QuietHours(dt.time(7), dt.time(7)), ny(10, 7), None),
        # spring forward (2026-03-08): the end is 07:00 EDT, 7 hours after 23:00 EST
        (NIGHT, ny(7, 23, 0), ny(8, 7)),
        # fall back (2026-11-01): an end at 01:30 is its first occurrence
        (
            QuietHours(dt.time(23), dt.time(1, 30)),
            ny(31, 23, 30, 10),
            dt.datetime(2026, 11, 1, 5, 30, tzinfo=UTC),  # 01:30 EDT
        ),
    ],
)
def test_quiet_window_end(quiet: QuietHours, now: dt.datetime, end: dt.datetime | None) -> None:
    got = throttle.quiet_window_end(quiet, now, NY)
    assert got == end
    if got is not None:
        assert got.tzinfo is UTC


def test_an_end_in_the_repeated_hour_already_passed_once_is_its_second_occurrence() -> None:
    quiet = QuietHours(dt.time(1, 0), dt.time(1, 30))
    first_0145 = dt.datetime(2026, 11, 1, 5, 45, tzinfo=UTC)  # 01:45 EDT
    second_0110 = dt.datetime(2026, 11, 1, 6, 10, tzinfo=UTC)  # 01:10 EST
    assert throttle.quiet_window_end(quiet, first_0145, NY) is None
    assert throttle.quiet_window_end(quiet, second_0110, NY) == dt.datetime(
        2026, 11, 1, 6, 30, tzinfo=UTC
    )


# --------------------------------------------------------------------------- recipients


def recipient(
    state: ThrottleState,
    limits: Limits,
    now: dt.datetime = T0,
    parts: int = 1,
    priority: str = "normal",
    elapsed: dt.datetime | None = None,
) -> RecipientDecision:
    return throttle.check_recipient(
        state, "alex", parts, priority, limits, now, UTC, elapsed=elapsed
    )


def accepted(times: list[float], window: float = 3600) -> ThrottleState:
    s = EMPTY
    for t in times:
        s = throttle.note_accepted(s, "alex", 1, at(t), UTC, window)
    return s


RATE = Limits(per_recipient=Rate(2, 3600), daily_cap=0, quiet_hours=None)


def test_rate_allows_count_then_suppresses_until_a_slot_frees() -> None:
    s = accepted([0, 100])
    assert recipient(accepted([0]), RATE, at(200)) == RecipientDecision("send")
    assert recipient(s, RATE, at(200)) == RecipientDecision(
        "suppress", "rate limit 2/h for alex", at(3600), "rate"
    )
    assert recipient(s, RATE, at(3599.999)).action == "suppress"
    assert recipient(s, RATE, at(3600)) == RecipientDecision("send")
    assert recipient(s, RATE, at(200), priority="high") == RecipientDecision("send")
    assert recipient(s, RATE, at(200)).action == "suppress"
    # another recipient has a window of its own
    other = throttle.check_recipient(s, "sam", 1, "normal", RATE, at(200), UTC)
    assert other == RecipientDecision("send")


def test_the_rate_is_measured_on_the_elapsed_axis() -> None:
    s = accepted([0, 100])
    # the wall clock jumped a day ahead; on the elapsed axis only 200 s passed
    d = recipient(s, RATE, at(86400 + 200), elapsed=at(200))
    assert d == RecipientDecision("suppress", "rate limit 2/h for alex", at(86400 + 3600), "rate")


@pytest.mark.parametrize(
    ("rate", "text"),
    [
        (Rate(10, 3600), "10/h"),
        (Rate(3, 7200), "3/2h"),
        (Rate(5, 60), "5/m"),
        (Rate(5, 90), "5/90s"),
        (Rate(5, 86400), "5/d"),
        (Rate(5, 172800), "5/2d"),
        (Rate(1, 1), "1/s"),
        (Rate(1, 1.5), "1/1.5s"),
    ],
)
def test_the_rate_in_the_reason(rate: Rate, text: str) -> None:
    limits = Limits(per_recipient=rate, daily_cap=0, quiet_hours=None)
    s = EMPTY
    for _ in range(rate.count):
        s = throttle.note_accepted(s, "alex", 1, T0, UTC, rate.per)
    assert recipient(s, limits, T0).reason == f"rate limit {text} for alex"


@pytest.mark.parametrize("rate", [Rate(0, 3600), Rate(1, 0), Rate(0, 0)])
def test_a_rate_of_zero_limits_nothing(rate: Rate) -> None:
    limits = Limits(per_recipient=rate, daily_cap=0, quiet_hours=None)
    s = accepted([0, 1, 2], window=3600)
    assert recipient(s, limits, at(3)) == RecipientDecision("send")


def test_a_rate_of_one_per_second_counts() -> None:
    limits = Limits(per_recipient=Rate(1, 1), daily_cap=0, quiet_hours=None)
    s = throttle.note_accepted(EMPTY, "alex", 1, at(0), UTC, 1)
    assert recipient(s, limits, at(0.5)) == RecipientDecision(
        "suppress", "rate limit 1/s for alex", at(1), "rate"
    )


CAP = Limits(per_recipient=None, daily_cap=3, quiet_hours=None)


def test_daily_cap_counts_parts_and_stops_even_high() -> None:
    s = throttle.note_accepted(EMPTY, "alex", 2, T0, UTC, None)
    assert throttle.day_count(s, T0, UTC) == 2
    assert recipient(s, CAP) == RecipientDecision("send")
    midnight = dt.datetime(2026, 3, 11, tzinfo=UTC)
    assert recipient(s, CAP, parts=2, priority="high") == RecipientDecision(
        "suppress",
        "daily cap of 3 reached (2 parts today, this text has 2)",
        midnight,
        "daily_cap",
    )
    s = throttle.note_deferred(s, 1, T0, UTC)
    assert throttle.day_count(s, T0, UTC) == 3
    assert recipient(s, CAP, priority="high") == RecipientDecision(
        "suppress", "daily cap of 3 reached", midnight, "daily_cap"
    )
    # the next local day starts from 0
    assert recipient(s, CAP, midnight) == RecipientDecision("send")
    assert throttle.day_count(s, midnight, UTC) == 0


def test_the_cap_ends_at_local_midnight() -> None:
    s = throttle.note_accepted(EMPTY, "alex", 3, T0, NY, None)
    d = throttle.check_recipient(s, "alex", 1, "normal", CAP, T0, NY)
    assert d == RecipientDecision(
        "suppress",
        "daily cap of 3 reached",
        dt.datetime(2026, 3, 11, 4, 0, tzinfo=UTC),
        "daily_cap",
    )
    # the night of spring forward: local midnight is 05:00 UTC before, 04:00 after
    before = dt.datetime(2026, 3, 7, 20, 0, tzinfo=UTC)
    s = throttle.note_accepted(EMPTY, "alex", 3, before, NY, None)
    d = throttle.check_recipient(s, "alex", 1, "normal", CAP, before, NY)
    assert d.until == dt.datetime(2026, 3, 8, 5, 0, tzinfo=UTC)


def test_quiet_hours_defer_normal_not_high() -> None:
    limits = Limits(per_recipient=None, daily_cap=0, quiet_hours=NIGHT)
    now = ny(10, 23, 15)
    d = throttle.check_recipient(EMPTY, "alex", 1, "normal", limits, now, NY)
    assert d == RecipientDecision("defer", "quiet hours until 07:00", ny(11, 7), "quiet_hours")
    d = throttle.check_recipient(EMPTY, "alex", 1, "high", limits, now, NY)
    assert d == RecipientDecision("send")


def test_parts_start_at_one() -> None:
    with pytest.raises(ValueError, match=r"^parts must be >= 1, got 0$"):
        recipient(EMPTY, NO_LIMITS, parts=0)
    with pytest.raises(ValueError, match=r"^parts must be >= 1, got -1$"):
        throttle.note_deferred(EMPTY, -1, T0, UTC)


def test_note_accepted_keeps_the_window_sorted_and_pruned() -> None:
    s = accepted([0, 100, 3600], window=3600)
    assert s.recent["alex"] == (at(100), at(3600))  # 0 left the window at 3600
    assert (s.day, s.day_count) == (dt.date(2026, 3, 10), 3)
    # a window of 0 or None records nothing for the rate, but counts for the cap
    for window in (None, 0, -5):
        s = throttle.note_accepted(EMPTY, "alex", 2, T0, UTC, window)
        assert dict(s.recent) == {} and s.day_count == 2
    s = throttle.note_accepted(EMPTY, "alex", 1, T0, UTC, 0.5)
    assert s.recent["alex"] == (T0,)
    # the elapsed instant is what is recorded
    s = throttle.note_accepted(EMPTY, "alex", 1, T0, UTC, 60, elapsed=at(-500))
    assert s.recent["alex"] == (at(-500),)


# --------------------------------------------------------------------------- prune


def test_prune() -> None:
    s = ThrottleState(
        cooldowns={
            ("leak", "old"): CooldownEntry(at(-86400)),
            ("leak", "older"): CooldownEntry(at(-86400.001)),
            ("leak", "held"): CooldownEntry(at(-(10**6)), 2),
            ("gone", "k"): CooldownEntry(at(0), 5),
        },
        recent={"alex": (at(-3600), at(-3599.999)), "sam": (at(-4000),)},
        day=dt.date(2026, 3, 9),
        day_count=7,
    )
    p = throttle.prune(s, T0, {"leak"}, 3600)
    assert dict(p.cooldowns) == {
        ("leak", "old"): CooldownEntry(at(-86400)),
        ("leak", "held"): CooldownEntry(at(-(10**6)), 2),
    }
    assert dict(p.recent) == {"alex": (at(-3599.999),)}
    assert (p.day, p.day_count) == (dt.date(2026, 3, 9), 7)
    assert set(throttle.prune(s, T0, None, 3600).cooldowns) == {
        ("leak", "old"),
        ("leak", "held"),
        ("gone", "k"),
    }
    for window in (None, 0, -1):
        assert dict(throttle.prune(s, T0, None, window).recent) == {}
    assert dict(throttle.prune(s, T0, None, 0.5).recent) == {}
    short = throttle.prune(s, T0, {"leak"}, 3600, cooldown_horizon=10)
    assert set(short.cooldowns) == {("leak", "held")}


# --------------------------------------------------------------------------- Layer, state


def test_layer_counts_and_iterates_without_copying() -> None:
    base = {"a": 1, "b": 2}
    layer = Layer(base).with_("b", 20).with_("c", 3)
    assert len(layer) == 3
    assert list(layer) == ["b", "c", "a"]
    assert dict(layer) == {"a": 1, "b": 20, "c": 3}
    assert dict(layer.changes) == {"b": 20, "c": 3}
    assert base == {"a": 1, "b": 2}
    assert len(Layer({})) == 0
    assert len(Layer({}, {"x": 1, "y": 2})) == 2


def test_changes_of_a_layer_and_of_a_dict() -> None:
    live = {("leak", "old"): CooldownEntry(at(-60))}
    s = throttle.note_sent(ThrottleState(cooldowns=live), "leak", "k", T0)
    assert dict(throttle.changes(s.cooldowns)) == {("leak", "k"): CooldownEntry(T0)}
    plain = {"x": 1}
    assert throttle.changes(plain) is plain


def test_the_state_cannot_be_changed_in_place() -> None:
    cooldowns = {("leak", "k"): CooldownEntry(T0)}
    recent = {"alex": (T0,)}
    s = ThrottleState(cooldowns=cooldowns, recent=recent)
    assert isinstance(s.cooldowns, Layer) and isinstance(s.recent, Layer)
    cooldowns.clear()
    recent.clear()
    assert dict(s.cooldowns) == {("leak", "k"): CooldownEntry(T0)}
    assert dict(s.recent) == {"alex": (T0,)}


# --------------------------------------------------------------------------- saved form


def test_to_json_is_compact_and_keeps_unicode() -> None:
    s = ThrottleState(
        cooldowns={("fuite", "cuisine é"): CooldownEntry(T0, 2)},
        recent={"zoë": (T0,)},
        day=dt.date(2026, 3, 10),
        day_count=4,
    )
    assert throttle.to_json(s) == (
        '{"version":1,"cooldowns":[{"rule":"fuite","key":"cuisine é",'
        '"last_sent":"2026-03-10T12:00:00+00:00","suppressed":2}],'
        '"recent":{"zoë":["2026-03-10T12:00:00+00:00"]},"day":"2026-03-10","day_count":4}'
    )
    assert throttle.parse_json(throttle.to_json(s)) == s
    assert throttle.from_json(throttle.to_json(s).encode("utf-8")) == s


def test_parse_json_defaults() -> None:
    s = throttle.parse_json(
        '{"version":1,"cooldowns":[{"rule":"r","key":"k","last_sent":"2026-03-10T13:00:00+01:00"}]}'
    )
    assert s == ThrottleState(cooldowns={("r", "k"): CooldownEntry(T0, 0)})
    assert s.cooldowns[("r", "k")].last_sent.tzinfo is UTC
    assert throttle.parse_json('{"version":1}') == EMPTY
    assert throttle.parse_json('{"version":1,"recent":{"a":[]}}').recent["a"] == ()


def _doc(**kw: Any) -> str:
    return json.dumps({"version": 1, **kw})


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[]", "throttle state: expected a JSON object"),
        ('{"version":2}', "throttle state: unknown version 2"),
        ("{}", "throttle state: unknown version None"),
        (_doc(cooldowns={}), "cooldowns: expected a list"),
        (_doc(cooldowns=[1]), "cooldowns[0]: expected an object"),
        (
            _doc(cooldowns=[{"key": "k", "last_sent": "2026-03-10T12:00:00+00:00"}]),
            "cooldowns[0].rule: expected a string, got None",
        ),
        (
            _doc(cooldowns=[{"rule": "r", "key": 5, "last_sent": "2026-03-10T12:00:00+00:00"}]),
            "cooldowns[0].key: expected a string, got 5",
        ),
        (
            _doc(cooldowns=[{"rule": "r", "key": "k", "last_sent": "2026-03-10T12:00:00"}]),
            "cooldowns[0].last_sent: '2026-03-10T12:00:00' has no UTC offset",
        ),
        (
            _doc(cooldowns=[{"rule": "r", "key": "k", "last_sent": 3}]),
            "cooldowns[0].last_sent: expected a string, got 3",
        ),
        (
            _doc(
                cooldowns=[
                    {"rule": "r", "key": "k", "last_sent": "2026-03-10T12:00:00Z", "suppressed": -1}
                ]
            ),
            "cooldowns[0].suppressed: expected a count >= 0, got -1",
        ),
        (
            _doc(
                cooldowns=[
                    {
                        "rule": "r",
                        "key": "k",
                        "last_sent": "2026-03-10T12:00:00Z",
                        "suppressed": True,
                    }
                ]
            ),
            "cooldowns[0].suppressed: expected a count >= 0, got True",
        ),
        (_doc(recent=[]), "recent: expected an object"),
        (_doc(recent={"alex": "x"}), "recent.alex: expected a list"),
        (_doc(recent={"alex": [1]}), "recent.alex: expected a string, got 1"),
        (
            _doc(recent={"alex": ["2026-03-10T12:00:00"]}),
            "recent.alex: '2026-03-10T12:00:00' has no UTC offset",
        ),
        (_doc(day=20260310), "day: expected a string, got 20260310"),
        (_doc(day_count=-2), "day_count: expected a count >= 0, got -2"),
        (_doc(day_count="3"), "day_count: expected a count >= 0, got '3'"),
    ],
)
def test_parse_json_names_the_first_problem(text: str, error: str) -> None:
    with pytest.raises(ValueError) as info:
        throttle.parse_json(text)
    assert str(info.value) == error


@pytest.mark.parametrize("text", [None, "", b"", "not json", b"\xff", "[]", '{"version":9}'])
def test_from_json_forgets_what_it_cannot_read(text: str | bytes | None) -> None:
    assert throttle.from_json(text) is EMPTY
