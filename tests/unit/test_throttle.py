"""Cooldowns, the daily cap, quiet hours and the per-recipient rate, on a fake clock."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqtt2sms.config import Limits, QuietHours, Rate
from mqtt2sms.throttle import (
    EMPTY,
    CooldownEntry,
    ThrottleState,
    check_cooldown,
    check_recipient,
    day_count,
    digest,
    from_json,
    note_accepted,
    note_deferred,
    note_sent,
    note_suppressed,
    parse_json,
    prune,
    quiet_window_end,
    to_json,
)

UTC = dt.UTC
NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NO_LIMITS = Limits(per_recipient=None, daily_cap=0, quiet_hours=None)


def at(seconds: float, base: dt.datetime = T0) -> dt.datetime:
    return base + dt.timedelta(seconds=seconds)


def local(
    tz: dt.tzinfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=tz)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return local(UTC, year, month, day, hour, minute)


def qh(start: str, end: str) -> QuietHours:
    return QuietHours(dt.time.fromisoformat(start), dt.time.fromisoformat(end))


# --------------------------------------------------------------------------- cooldown


def test_first_message_passes_the_cooldown() -> None:
    d = check_cooldown(EMPTY, "leak", "k", 900, "normal", T0)
    assert (d.allowed, d.until, d.more) == (True, None, 0)


def test_cooldown_suppresses_counts_and_reports_more() -> None:
    s = note_sent(EMPTY, "leak", "k", T0)
    d = check_cooldown(s, "leak", "k", 900, "normal", at(60))
    assert not d.allowed
    assert d.until == at(900)
    assert d.more == 0
    for _ in range(3):
        s = note_suppressed(s, "leak", "k")
    assert check_cooldown(s, "leak", "k", 900, "normal", at(899)).allowed is False
    d = check_cooldown(s, "leak", "k", 900, "normal", at(900))
    assert (d.allowed, d.more) == (True, 3)
    s = note_sent(s, "leak", "k", at(900))
    assert s.cooldowns[("leak", "k")] == CooldownEntry(at(900), 0)


def test_cooldown_is_per_rule_and_key() -> None:
    s = note_sent(EMPTY, "leak", "a", T0)
    assert check_cooldown(s, "leak", "b", 900, "normal", at(1)).allowed
    assert check_cooldown(s, "smoke", "a", 900, "normal", at(1)).allowed
    assert not check_cooldown(s, "leak", "a", 900, "normal", at(1)).allowed


def test_flapping_sensor_sends_one_text_per_cooldown() -> None:
    s, sent, texts = EMPTY, [], []
    for minute in range(60):
        now = at(minute * 60)
        d = check_cooldown(s, "door", "front", 15 * 60, "normal", now)
        if d.allowed:
            texts.append(f"open (+{d.more} more)" if d.more else "open")
            s = note_sent(s, "door", "front", now)
            sent.append(minute)
        else:
            s = note_suppressed(s, "door", "front")
    assert sent == [0, 15, 30, 45]
    assert texts == ["open", "open (+14 more)", "open (+14 more)", "open (+14 more)"]
    assert s.cooldowns[("door", "front")].suppressed == 14


def test_high_priority_passes_the_cooldown_and_still_reports_more() -> None:
    s = note_suppressed(note_sent(EMPTY, "smoke", "k", T0), "smoke", "k")
    d = check_cooldown(s, "smoke", "k", 900, "high", at(1))
    assert (d.allowed, d.until, d.more) == (True, None, 1)


def test_high_priority_that_repeats_the_text_that_started_the_cooldown_is_held() -> None:
    wet = digest("Water leak: basement")
    s = note_sent(EMPTY, "leak", "k", T0, text_digest=wet)
    d = check_cooldown(s, "leak", "k", 900, "high", at(30), text_digest=wet)
    assert (d.allowed, d.until, d.more) == (False, at(900), 0)
    s = note_suppressed(s, "leak", "k")
    assert check_cooldown(s, "leak", "k", 900, "high", at(60), text_digest=wet).more == 1
    # a new text passes (and reports what was held), the cooldown's end still releases it
    d = check_cooldown(s, "leak", "k", 900, "high", at(60), text_digest=digest("Smoke"))
    assert (d.allowed, d.more) == (True, 1)
    assert check_cooldown(s, "leak", "k", 900, "high", at(900), text_digest=wet).allowed


def test_high_priority_passes_when_either_digest_is_unknown() -> None:
    old = note_sent(EMPTY, "leak", "k", T0)  # an entry saved before digests were kept
    assert check_cooldown(old, "leak", "k", 900, "high", at(1), text_digest=digest("x")).allowed
    s = note_sent(EMPTY, "leak", "k", T0, text_digest=digest("x"))
    assert check_cooldown(s, "leak", "k", 900, "high", at(1)).allowed
    assert not check_cooldown(s, "leak", "k", 900, "normal", at(1), text_digest="other").allowed


def test_note_sent_keeps_the_digest_of_the_text_that_started_the_cooldown() -> None:
    s = note_sent(EMPTY, "leak", "k", T0, text_digest=digest("a"))
    assert s.cooldowns[("leak", "k")] == CooldownEntry(T0, 0, digest("a"))
    assert digest("a") != digest("b") and len(digest("a")) == 24
    assert digest("\udcff") == digest("\udcff")  # never raises, even on a lone surrogate


@settings(max_examples=300, deadline=None)
@given(
    texts=st.lists(st.sampled_from(["wet", "dry", "smoke"]), min_size=1, max_size=40),
    gaps=st.lists(st.integers(min_value=0, max_value=400), min_size=40, max_size=40),
    cooldown=st.integers(min_value=1, max_value=1800),
)
def test_high_priority_sends_a_text_at_most_once_per_cooldown_and_counts_every_one_held(
    texts: list[str], gaps: list[int], cooldown: int
) -> None:
    """The router's use, on a high-priority rule: for each message check, then note."""
    s = EMPTY
    now = T0
    started: dict[str, dt.datetime] = {}  # text -> when it last started the cooldown
    held = 0
    last: str | None = None
    for text, gap in zip(texts, gaps, strict=False):
        now = at(gap, now)
        d = check_cooldown(s, "r", "k", cooldown, "high", now, text_digest=digest(text))
        repeat = text == last and now - started[text] < dt.timedelta(seconds=cooldown)
        assert d.allowed is not repeat
        assert d.more == held
        if d.allowed:
            s = note_sent(s, "r", "k", now, text_digest=digest(text))
            started[text], last, held = now, text, 0
        else:
            s = note_suppressed(s, "r", "k")
            held += 1


def test_zero_cooldown_always_passes() -> None:
    s = note_sent(EMPTY, "r", "k", T0)
    assert check_cooldown(s, "r", "k", 0, "normal", T0).allowed


def test_note_suppressed_without_an_entry_is_a_no_op() -> None:
    assert note_suppressed(EMPTY, "r", "k") == EMPTY


def test_clock_stepping_back_does_not_stretch_the_cooldown() -> None:
    s = note_sent(EMPTY, "r", "k", at(86400 * 30))
    d = check_cooldown(s, "r", "k", 600, "normal", T0)
    assert not d.allowed
    assert d.until == at(600)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        check_cooldown(EMPTY, "r", "k", 60, "normal", dt.datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        check_recipient(EMPTY, "alex", 1, "normal", NO_LIMITS, dt.datetime(2026, 1, 1), NY)


def test_state_cannot_be_mutated_in_place() -> None:
    s = note_sent(EMPTY, "r", "k", T0)
    with pytest.raises(TypeError):
        s.cooldowns[("x", "y")] = CooldownEntry(T0)  # type: ignore[index]
    assert ("r", "k") not in EMPTY.cooldowns


# --------------------------------------------------------------------------- daily cap


def test_cap_counts_parts_and_suppresses_a_text_that_would_exceed_it() -> None:
    limits = Limits(per_recipient=None, daily_cap=5)
    s = note_accepted(EMPTY, "alex", 3, T0, NY, None)
    assert day_count(s, T0, NY) == 3
    d = check_recipient(s, "sam", 3, "normal", limits, at(1), NY)
    assert d.action == "suppress"
    assert "daily cap of 5" in d.reason
    assert check_recipient(s, "sam", 2, "normal", limits, at(1), NY).action == "send"
    s = note_accepted(s, "sam", 2, at(1), NY, None)
    d = check_recipient(s, "sam", 1, "normal", limits, at(2), NY)
    assert (d.action, d.reason) == ("suppress", "daily cap of 5 reached")


def test_high_priority_does_not_pass_the_cap() -> None:
    limits = Limits(per_recipient=None, daily_cap=2)
    s = note_accepted(EMPTY, "alex", 2, T0, NY, None)
    assert check_recipient(s, "alex", 1, "high", limits, at(1), NY).action == "suppress"


def test_zero_cap_means_no_cap() -> None:
    limits = Limits(per_recipient=None, daily_cap=0)
    s = note_accepted(EMPTY, "alex", 10_000, T0, NY, None)
    assert check_recipient(s, "alex", 3, "normal", limits, at(1), NY).action == "send"


@pytest.mark.parametrize(
    ("tz", "accepted", "other_utc_day"),
    [
        # New York in winter (EST) and summer (EDT): 19:30 local is already tomorrow in UTC.
        (NY, local(NY, 2026, 1, 10, 14, 0), local(NY, 2026, 1, 10, 19, 30)),
        (NY, local(NY, 2026, 7, 10, 14, 0), local(NY, 2026, 7, 10, 20, 30)),
        # Berlin in winter (CET) and summer (CEST): 00:30 local is still yesterday in UTC.
        (BERLIN, local(BERLIN, 2026, 1, 10, 0, 30), local(BERLIN, 2026, 1, 10, 12, 0)),
        (BERLIN, local(BERLIN, 2026, 7, 10, 1, 30), local(BERLIN, 2026, 7, 10, 12, 0)),
    ],
)
def test_the_cap_resets_at_local_midnight(
    tz: ZoneInfo, accepted: dt.datetime, other_utc_day: dt.datetime
) -> None:
    limits = Limits(per_recipient=None, daily_cap=2)
    assert accepted.astimezone(UTC).date() != other_utc_day.astimezone(UTC).date()
    s = note_accepted(EMPTY, "alex", 2, accepted, tz, None)
    # A new day in UTC is not a new day here.
    assert check_recipient(s, "alex", 1, "normal", limits, other_utc_day, tz).action == ("suppress")
    before_midnight = accepted.replace(hour=23, minute=59, second=59)
    after_midnight = local(tz, accepted.year, accepted.month, accepted.day + 1)
    d = check_recipient(s, "alex", 1, "normal", limits, before_midnight, tz)
    assert d.action == "suppress"
    assert d.until == after_midnight.astimezone(UTC)
    assert day_count(s, before_midnight, tz) == 2
    assert day_count(s, after_midnight, tz) == 0
    assert check_recipient(s, "alex", 1, "normal", limits, after_midnight, tz).action == "send"
    s = note_accepted(s, "alex", 1, after_midnight, tz, None)
    assert (s.day, s.day_count) == (after_midnight.date(), 1)


def test_day_count_for_stats() -> None:
    s = note_accepted(EMPTY, "alex", 2, local(NY, 2026, 3, 7, 22, 0), NY, None)
    assert day_count(s, local(NY, 2026, 3, 7, 23, 59), NY) == 2
    assert day_count(s, local(NY, 2026, 3, 8, 0, 0), NY) == 0
    assert day_count(EMPTY, T0, NY) == 0


# --------------------------------------------------------------------------- quiet hours


@pytest.mark.parametrize(
    ("window", "wall", "end"),
    [
        # A window that spans midnight.
        (("22:00", "07:00"), (2026, 6, 1, 23, 0), (2026, 6, 2, 7, 0)),
        (("22:00", "07:00"), (2026, 6, 2, 3, 0), (2026, 6, 2, 7, 0)),
        (("22:00", "07:00"), (2026, 6, 1, 22, 0), (2026, 6, 2, 7, 0)),
        (("22:00", "07:00"), (2026, 6, 2, 6, 59), (2026, 6, 2, 7, 0)),
        (("22:00", "07:00"), (2026, 6, 2, 7, 0), None),
        (("22:00", "07:00"), (2026, 6, 2, 12, 0), None),
        (("22:00", "07:00"), (2026, 6, 2, 21, 59), None),
        # A window inside one day.
        (("13:00", "15:00"), (2026, 6, 2, 12, 59), None),
        (("13:00", "15:00"), (2026, 6, 2, 13, 0), (2026, 6, 2, 15, 0)),
        (("13:00", "15:00"), (2026, 6, 2, 14, 30), (2026, 6, 2, 15, 0)),
        (("13:00", "15:00"), (2026, 6, 2, 15, 0), None),
        (("13:00", "15:00"), (2026, 6, 2, 23, 0), None),
        # start == end: no window.
        (("07:00", "07:00"), (2026, 6, 2, 7, 0), None),
        (("07:00", "07:00"), (2026, 6, 2, 3, 0), None),
    ],
)
def test_quiet_window_end(
    window: tuple[str, str], wall: tuple[int, ...], end: tuple[int, ...] | None
) -> None:
    for tz in (NY, BERLIN):
        now = local(tz, *wall)
        got = quiet_window_end(qh(*window), now, tz)
        if end is None:
            assert got is None
        else:
            assert got == local(tz, *end).astimezone(UTC)
            assert got.tzinfo is UTC


@pytest.mark.parametrize(
    ("tz", "now", "end"),
    [
        # Spring forward in New York, 2026-03-08 02:00 EST -> 03:00 EDT: 07:00 EDT is 11:00 UTC.
        (NY, utc(2026, 3, 8, 4, 0), utc(2026, 3, 8, 11, 0)),  # 23:00 EST the evening before
        (NY, utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 11, 0)),  # 01:30 EST
        (NY, utc(2026, 3, 8, 7, 30), utc(2026, 3, 8, 11, 0)),  # 03:30 EDT
        (NY, utc(2026, 3, 8, 10, 59), utc(2026, 3, 8, 11, 0)),
        (NY, utc(2026, 3, 8, 11, 0), None),
        # Fall back in New York, 2026-11-01 02:00 EDT -> 01:00 EST: 07:00 EST is 12:00 UTC.
        (NY, utc(2026, 11, 1, 3, 0), utc(2026, 11, 1, 12, 0)),  # 23:00 EDT the evening before
        (NY, utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 12, 0)),  # 01:30 EDT
        (NY, utc(2026, 11, 1, 6, 30), utc(2026, 11, 1, 12, 0)),  # 01:30 EST
        (NY, utc(2026, 11, 1, 11, 0), utc(2026, 11, 1, 12, 0)),  # 06:00 EST
        (NY, utc(2026, 11, 1, 12, 0), None),
        # Berlin, 2026-03-29 02:00 CET -> 03:00 CEST: 07:00 CEST is 05:00 UTC.
        (BERLIN, utc(2026, 3, 28, 22, 0), utc(2026, 3, 29, 5, 0)),
        # Berlin, 2026-10-25 03:00 CEST -> 02:00 CET: 07:00 CET is 06:00 UTC.
        (BERLIN, utc(2026, 10, 24, 21, 0), utc(2026, 10, 25, 6, 0)),
    ],
)
def test_quiet_hours_on_dst_nights(tz: ZoneInfo, now: dt.datetime, end: dt.datetime | None) -> None:
    assert quiet_window_end(qh("22:00", "07:00"), now, tz) == end


def test_quiet_end_in_a_skipped_hour_is_just_after_the_gap() -> None:
    # 02:30 does not exist on 2026-03-08 in New York; zoneinfo reads it as 02:30 EST,
    # which is 03:30 EDT.
    got = quiet_window_end(qh("22:00", "02:30"), utc(2026, 3, 8, 4, 0), NY)
    assert got == utc(2026, 3, 8, 7, 30)


def test_quiet_end_in_a_repeated_hour() -> None:
    window = qh("00:30", "01:30")
    # 01:00 EDT: the end is the first 01:30 (EDT).
    assert quiet_window_end(window, utc(2026, 11, 1, 5, 0), NY) == utc(2026, 11, 1, 5, 30)
    # 01:00 EST, the second time round: the first 01:30 has passed, so the second one.
    assert quiet_window_end(window, utc(2026, 11, 1, 6, 0), NY) == utc(2026, 11, 1, 6, 30)


def test_quiet_hours_defer_normal_and_pass_high() -> None:
    limits = Limits(per_recipient=None, daily_cap=0, quiet_hours=qh("22:00", "07:00"))
    now = local(BERLIN, 2026, 6, 1, 23, 0)
    d = check_recipient(EMPTY, "alex", 1, "normal", limits, now, BERLIN)
    assert d.action == "defer"
    assert d.reason == "quiet hours until 07:00"
    assert d.until == local(BERLIN, 2026, 6, 2, 7, 0).astimezone(UTC)
    assert check_recipient(EMPTY, "alex", 1, "high", limits, now, BERLIN).action == "send"
    noon = local(BERLIN, 2026, 6, 2, 12, 0)
    assert check_recipient(EMPTY, "alex", 1, "normal", limits, noon, BERLIN).action == "send"


def test_the_cap_comes_before_quiet_hours() -> None:
    limits = Limits(per_recipient=None, daily_cap=1, quiet_hours=qh("22:00", "07:00"))
    now = local(NY, 2026, 6, 1, 23, 0)
    s = note_accepted(EMPTY, "alex", 1, now - dt.timedelta(hours=1), NY, None)
    assert check_recipient(s, "alex", 1, "normal", limits, now, NY).action == "suppress"


def test_a_deferred_text_counts_toward_the_cap_not_the_rate() -> None:
    limits = Limits(per_recipient=Rate(1, 3600), daily_cap=2)
    s = note_deferred(EMPTY, 2, T0, NY)
    assert s.recent == {}
    assert day_count(s, T0, NY) == 2
    assert check_recipient(s, "alex", 1, "normal", limits, at(1), NY).action == "suppress"
    limits = Limits(per_recipient=Rate(1, 3600), daily_cap=0)
    assert check_recipient(s, "alex", 1, "normal", limits, at(1), NY).action == "send"


# --------------------------------------------------------------------------- rate


def test_rate_is_a_sliding_window() -> None:
    limits = Limits(per_recipient=Rate(3, 60), daily_cap=0)
    s = EMPTY
    for t in (0, 10, 20):
        assert check_recipient(s, "alex", 1, "normal", limits, at(t), NY).action == "send"
        s = note_accepted(s, "alex", 1, at(t), NY, 60)
    d = check_recipient(s, "alex", 1, "normal", limits, at(30), NY)
    assert (d.action, d.reason, d.until) == ("suppress", "rate limit 3/m for alex", at(60))
    assert check_recipient(s, "sam", 1, "normal", limits, at(30), NY).action == "send"
    assert check_recipient(s, "alex", 1, "normal", limits, at(59.999), NY).action == "suppress"
    assert check_recipient(s, "alex", 1, "normal", limits, at(60), NY).action == "send"
    s = note_accepted(s, "alex", 1, at(60), NY, 60)
    assert s.recent["alex"] == (at(10), at(20), at(60))
    d = check_recipient(s, "alex", 1, "normal", limits, at(61), NY)
    assert (d.action, d.until) == ("suppress", at(70))


def test_rate_counts_texts_not_parts() -> None:
    limits = Limits(per_recipient=Rate(2, 3600), daily_cap=0)
    s = note_accepted(EMPTY, "alex", 3, T0, NY, 3600)
    assert check_recipient(s, "alex", 3, "normal", limits, at(1), NY).action == "send"


def test_high_passes_the_rate_but_is_recorded() -> None:
    limits = Limits(per_recipient=Rate(1, 3600), daily_cap=0)
    s = note_accepted(EMPTY, "alex", 1, T0, NY, 3600)
    assert check_recipient(s, "alex", 1, "high", limits, at(1), NY).action == "send"
    s = note_accepted(s, "alex", 1, at(1), NY, 3600)
    assert len(s.recent["alex"]) == 2


@pytest.mark.parametrize(
    ("rate", "text"),
    [
        (Rate(10, 3600), "10/h"),
        (Rate(5, 60), "5/m"),
        (Rate(2, 86400), "2/d"),
        (Rate(3, 7200), "3/2h"),
        (Rate(4, 90), "4/90s"),
        (Rate(4, 1.5), "4/1.5s"),
    ],
)
def test_rate_reason_text(rate: Rate, text: str) -> None:
    limits = Limits(per_recipient=rate, daily_cap=0)
    s = EMPTY
    for _ in range(rate.count):
        s = note_accepted(s, "kim", 1, T0, NY, rate.per)
    d = check_recipient(s, "kim", 1, "normal", limits, T0, NY)
    assert d.reason == f"rate limit {text} for kim"


def test_no_rate_limit_records_nothing() -> None:
    s = note_accepted(EMPTY, "alex", 1, T0, NY, None)
    assert s.recent == {}
    assert check_recipient(s, "alex", 1, "normal", NO_LIMITS, T0, NY).action == "send"


def test_parts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="parts"):
        check_recipient(EMPTY, "alex", 0, "normal", NO_LIMITS, T0, NY)
    with pytest.raises(ValueError, match="parts"):
        note_accepted(EMPTY, "alex", 0, T0, NY, None)


# --------------------------------------------------------------------------- prune


def test_prune() -> None:
    s = note_sent(EMPTY, "leak", "old", at(-2 * 86400))
    s = note_sent(s, "leak", "quiet-but-owed", at(-2 * 86400))
    s = note_suppressed(s, "leak", "quiet-but-owed")
    s = note_sent(s, "leak", "fresh", at(-60))
    s = note_sent(s, "gone", "fresh", at(-60))
    s = note_accepted(s, "alex", 1, at(-7200), NY, 3600)
    s = note_accepted(s, "sam", 1, at(-7200), NY, 3600)
    s = note_accepted(s, "sam", 1, at(-60), NY, 3600)
    p = prune(s, T0, {"leak"}, 3600)
    assert set(p.cooldowns) == {("leak", "quiet-but-owed"), ("leak", "fresh")}
    assert p.recent == {"sam": (at(-60),)}
    assert (p.day, p.day_count) == (s.day, s.day_count)
    assert set(prune(s, T0, None, None).cooldowns) == set(p.cooldowns) | {("gone", "fresh")}
    assert prune(s, T0, None, None).recent == {}
    longer = prune(s, T0, None, 3600, cooldown_horizon=3 * 86400)
    assert ("leak", "old") in longer.cooldowns


# --------------------------------------------------------------------------- persistence


def test_json_round_trip() -> None:
    s = note_sent(EMPTY, "leak", "zigbee2mqtt/bath/leak", T0, text_digest=digest("wet"))
    s = note_suppressed(s, "leak", "zigbee2mqtt/bath/leak")
    s = note_sent(s, "smoke", "ключ ✓", at(5))
    s = note_accepted(s, "alex", 2, at(10), BERLIN, 3600)
    s = note_accepted(s, "alex", 1, at(20), BERLIN, 3600)
    s = note_deferred(s, 1, at(30), BERLIN)
    text = to_json(s)
    assert '"2026-06-01T12:00:00+00:00"' in text
    back = from_json(text)
    assert back == s
    assert parse_json(text) == s
    assert from_json(text.encode()) == s
    assert from_json(to_json(EMPTY)) == EMPTY


def test_json_keeps_offsets_of_other_zones() -> None:
    text = to_json(note_sent(EMPTY, "r", "k", local(BERLIN, 2026, 6, 1, 14, 0)))
    assert from_json(text).cooldowns[("r", "k")].last_sent == T0


def _one_cooldown(**fields: object) -> str:
    entry: dict[str, object] = {
        "rule": "r",
        "key": "k",
        "last_sent": "2026-01-01T00:00:00+00:00",
        "suppressed": 0,
    }
    entry.update(fields)
    return json.dumps({"version": 1, "cooldowns": [entry]})


def test_a_valid_single_entry_parses() -> None:
    assert parse_json(_one_cooldown()).cooldowns == {("r", "k"): CooldownEntry(utc(2026, 1, 1), 0)}


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        b"\xff\xfe",
        "{",
        "null",
        "[]",
        '"text"',
        '{"version": 2}',
        "{}",
        '{"version": 1, "cooldowns": {}}',
        '{"version": 1, "cooldowns": [1]}',
        '{"version": 1, "cooldowns": [{"rule": "r", "key": "k"}]}',
        _one_cooldown(key=1),
        _one_cooldown(last_sent="2026-01-01T00:00:00"),
        _one_cooldown(last_sent="yesterday"),
        _one_cooldown(suppressed=-1),
        _one_cooldown(suppressed=True),
        _one_cooldown(suppressed=1.5),
        '{"version": 1, "recent": []}',
        '{"version": 1, "recent": {"alex": "2026-01-01T00:00:00+00:00"}}',
        '{"version": 1, "recent": {"alex": [5]}}',
        '{"version": 1, "day": "2026-13-01"}',
        '{"version": 1, "day": 20260101}',
        '{"version": 1, "day_count": "3"}',
        '{"version": 1, "day_count": 1e400}',
        "[" * 100_000,
    ],
)
def test_corrupt_json_gives_an_empty_state(text: str | bytes | None) -> None:
    assert from_json(text) == EMPTY


def test_parse_json_says_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_json(
            '{"version": 1, "cooldowns": [{"rule": "r", "key": "k",'
            ' "last_sent": "2026-01-01T00:00:00"}]}'
        )
    with pytest.raises(ValueError, match="version"):
        parse_json('{"version": 7}')


# --------------------------------------------------------------------------- property

STEP = st.tuples(
    st.sampled_from(["alex", "sam", "kim"]),
    st.sampled_from(["normal", "normal", "high"]),
    st.integers(min_value=1, max_value=3),
    st.one_of(st.integers(0, 120), st.integers(0, 4 * 3600)),  # seconds since the last message
)
STARTS = st.sampled_from(
    [
        utc(2026, 3, 7, 20, 0),  # before the US spring-forward night
        utc(2026, 3, 28, 18, 0),  # before Europe's
        utc(2026, 10, 31, 20, 0),  # before the US fall-back night
        utc(2026, 6, 1, 3, 30),
    ]
)
QUIET = st.one_of(
    st.none(),
    st.sampled_from([qh("22:00", "07:00"), qh("13:00", "15:00"), qh("01:30", "02:30")]),
)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(STEP, max_size=120),
    count=st.integers(1, 5),
    per=st.sampled_from([60.0, 600.0, 3600.0, 86400.0]),
    cap=st.integers(0, 25),
    quiet=QUIET,
    tz=st.sampled_from([NY, BERLIN]),
    start=STARTS,
)
def test_no_one_gets_more_than_the_limits_allow(
    steps: list[tuple[str, str, int, int]],
    count: int,
    per: float,
    cap: int,
    quiet: QuietHours | None,
    tz: ZoneInfo,
    start: dt.datetime,
) -> None:
    limits = Limits(per_recipient=Rate(count, per), daily_cap=cap, quiet_hours=quiet)
    state: ThrottleState = EMPTY
    now = start
    normal_sends: dict[str, list[dt.datetime]] = defaultdict(list)
    parts_per_day: dict[dt.date, int] = defaultdict(int)
    for recipient, priority, parts, gap in steps:
        now += dt.timedelta(seconds=gap)
        d = check_recipient(state, recipient, parts, priority, limits, now, tz)
        if d.action == "send":
            state = note_accepted(state, recipient, parts, now, tz, per)
            parts_per_day[now.astimezone(tz).date()] += parts
            if priority == "normal":
                normal_sends[recipient].append(now)
        elif d.action == "defer":
            assert priority == "normal"
            assert d.until is not None and d.until > now
            state = note_deferred(state, parts, now, tz)
            parts_per_day[now.astimezone(tz).date()] += parts
        else:
            assert d.until is not None and d.until >= now
        # A restart in the middle changes nothing.
        assert from_json(to_json(state)) == state

    window = dt.timedelta(seconds=per)
    for times in normal_sends.values():
        for i, first in enumerate(times):
            assert sum(1 for t in times[i:] if t - first < window) <= count
    if cap:
        assert all(n <= cap for n in parts_per_day.values())
