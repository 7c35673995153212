"""Backoff, expiry and failover, on a fake clock."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqtt2sms.config import RetryPolicy
from mqtt2sms.retry import (
    AUTH_BASE,
    backoff_delay,
    expiry_instant,
    failover_due,
    is_expired,
    next_try,
    retry_or_expire,
    transport_backoff,
)

UTC = dt.UTC
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(first=5.0, max=600.0)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def waited(when: dt.datetime, now: dt.datetime = T0) -> float:
    return (when - now).total_seconds()


# --------------------------------------------------------------------------- the curve


@pytest.mark.parametrize(
    ("attempts", "base"),
    [(1, 5), (2, 10), (3, 20), (4, 40), (5, 80), (6, 160), (7, 320), (8, 600), (9, 600)],
)
def test_the_schedule_doubles_up_to_max(attempts: int, base: float) -> None:
    assert waited(next_try(attempts, POLICY, T0, 0.0)) == base / 2
    assert waited(next_try(attempts, POLICY, T0, 0.5)) == pytest.approx(base * 0.75)
    high = waited(next_try(attempts, POLICY, T0, 0.999))
    assert base * 0.999 <= high <= base
    assert waited(next_try(attempts, POLICY, T0, 1.0)) == base


def test_a_run_of_failures_on_a_fake_clock() -> None:
    now, gaps = T0, []
    for attempts in range(1, 12):
        then = now
        now = next_try(attempts, POLICY, now, 0.999)
        gaps.append((now - then).total_seconds())
    # ~5, ~10, ~20, ... apart, then never more than 10 minutes apart.
    bases = [5, 10, 20, 40, 80, 160, 320, 600, 600, 600, 600]
    assert gaps == pytest.approx([b * 0.9995 for b in bases], abs=1e-5)


@given(attempts=st.integers(1, 10_000), rand=st.floats(0.0, 1.0))
def test_never_above_max_never_below_half_of_first(attempts: int, rand: float) -> None:
    delay = backoff_delay(attempts, POLICY, rand)
    assert POLICY.first / 2 <= delay <= POLICY.max


def test_huge_attempt_counts_do_not_overflow() -> None:
    assert waited(next_try(10**9, POLICY, T0, 1.0)) == 600


def test_first_longer_than_max_is_capped() -> None:
    assert backoff_delay(1, RetryPolicy(first=900, max=60), 1.0) == 60


@pytest.mark.parametrize("attempts", [0, -1])
def test_attempts_start_at_one(attempts: int) -> None:
    with pytest.raises(ValueError, match="attempts"):
        next_try(attempts, POLICY, T0, 0.5)


@pytest.mark.parametrize("rand", [-0.1, 1.5, float("nan")])
def test_rand_must_be_in_the_unit_interval(rand: float) -> None:
    with pytest.raises(ValueError, match="rand"):
        next_try(1, POLICY, T0, rand)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_try(1, POLICY, dt.datetime(2026, 6, 1), 0.5)


def test_an_offset_other_than_utc_is_fine() -> None:
    berlin = dt.timezone(dt.timedelta(hours=2))
    assert next_try(1, POLICY, T0.astimezone(berlin), 0.0) == at(2.5)


# --------------------------------------------------------------------------- transports


def test_a_transport_that_is_down_follows_the_same_curve() -> None:
    for failures in range(1, 10):
        for rand in (0.0, 0.3, 0.999):
            assert transport_backoff(failures, POLICY, T0, rand, auth=False) == next_try(
                failures, POLICY, T0, rand
            )


@pytest.mark.parametrize("failures", [1, 2, 50])
def test_an_authentication_failure_retries_slowly(failures: int) -> None:
    assert waited(transport_backoff(failures, POLICY, T0, 0.0, auth=True)) == 300
    assert 599 <= waited(transport_backoff(failures, POLICY, T0, 0.999, auth=True)) <= 600


def test_auth_backoff_follows_a_longer_max() -> None:
    policy = RetryPolicy(first=5, max=3600)
    assert waited(transport_backoff(1, policy, T0, 0.0, auth=True)) == 1800
    assert waited(transport_backoff(1, policy, T0, 1.0, auth=True)) == 3600


def test_auth_backoff_is_slow_even_with_a_short_max() -> None:
    policy = RetryPolicy(first=1, max=10)
    assert waited(transport_backoff(1, policy, T0, 0.0, auth=True)) == 300
    assert waited(transport_backoff(1, policy, T0, 1.0, auth=True)) == 600
    assert AUTH_BASE == 600


def test_transport_backoff_checks_its_inputs() -> None:
    with pytest.raises(ValueError, match="failures"):
        transport_backoff(0, POLICY, T0, 0.5, auth=True)
    with pytest.raises(ValueError, match="rand"):
        transport_backoff(1, POLICY, T0, 2.0, auth=True)
    with pytest.raises(ValueError, match="timezone-aware"):
        transport_backoff(1, POLICY, dt.datetime(2026, 6, 1), 0.5, auth=True)


# --------------------------------------------------------------------------- expiry


@pytest.mark.parametrize(
    ("age", "expired"),
    [(0, False), (3600, False), (86400, False), (86400.001, True), (2 * 86400, True)],
)
def test_is_expired(age: float, expired: bool) -> None:
    assert is_expired(T0, 86400, at(age)) is expired


def test_zero_max_age_never_expires() -> None:
    assert not is_expired(T0, 0, at(10 * 365 * 86400))


def test_is_expired_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="created_at"):
        is_expired(dt.datetime(2026, 6, 1), 60, T0)


def test_retry_or_expire() -> None:
    # Plenty of time left: the ordinary next try.
    assert retry_or_expire(T0, 1, POLICY, 86400, at(60), 0.0) == at(62.5)
    # A long backoff would overshoot the expiry: come back when the text expires.
    due = retry_or_expire(T0, 20, POLICY, 86400, at(86400 - 10), 1.0)
    assert due is not None
    assert at(86400) < due <= at(86400.001)
    assert is_expired(T0, 86400, due)
    # Already expired.
    assert retry_or_expire(T0, 3, POLICY, 86400, at(86401), 0.5) is None
    # No expiry at all.
    assert retry_or_expire(T0, 20, POLICY, 0, at(10**7), 1.0) == at(10**7 + 600)


# --------------------------------------------------------------------------- failover


@pytest.mark.parametrize(
    ("first_failure", "now", "due"),
    [
        (None, at(10_000), False),
        (T0, T0, False),
        (T0, at(119.999), False),
        (T0, at(120), True),
        (T0, at(3600), True),
    ],
)
def test_failover_due(first_failure: dt.datetime | None, now: dt.datetime, due: bool) -> None:
    assert failover_due(first_failure, 120, now) is due


def test_failover_after_zero_fails_over_at_the_first_failure() -> None:
    assert failover_due(T0, 0, T0)


def test_failover_due_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="first_failure_at"):
        failover_due(dt.datetime(2026, 6, 1), 60, T0)


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("max_age", "instant"),
    [(86400, at(86400.000001)), (90.5, at(90.500001)), (0, None), (-1, None)],
)
def test_expiry_instant(max_age: float, instant: dt.datetime | None) -> None:
    assert expiry_instant(T0, max_age) == instant


def test_expiry_instant_is_the_first_expired_instant() -> None:
    assert not is_expired(T0, 60, at(60))
    assert is_expired(T0, 60, at(60.000001))


def test_expiry_instant_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="created_at"):
        expiry_instant(dt.datetime(2026, 6, 1), 60)


class _NoOffset(dt.tzinfo):
    """A zone that does not know its offset: as naive as no zone at all."""

    def utcoffset(self, d: dt.datetime | None) -> dt.timedelta | None:
        return None


NAIVE = dt.datetime(2026, 6, 1)


@pytest.mark.parametrize("naive", [NAIVE, NAIVE.replace(tzinfo=_NoOffset())])
@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("now", lambda n: next_try(1, POLICY, n, 0.5)),
        ("now", lambda n: transport_backoff(1, POLICY, n, 0.5, auth=False)),
        ("now", lambda n: transport_backoff(1, POLICY, n, 0.5, auth=True)),
        ("now", lambda n: is_expired(T0, 60, n)),
        ("created_at", lambda n: is_expired(n, 60, T0)),
        ("created_at", lambda n: expiry_instant(n, 60)),
        ("now", lambda n: failover_due(T0, 60, n)),
        ("now", lambda n: failover_due(None, 60, n)),
        ("first_failure_at", lambda n: failover_due(n, 60, T0)),
    ],
)
def test_naive_datetimes_are_refused_by_name(name: str, call: Any, naive: dt.datetime) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be a timezone-aware datetime, got "):
        call(naive)


def test_a_max_age_under_a_second_still_expires() -> None:
    assert is_expired(T0, 0.5, at(0.500001))
    assert not is_expired(T0, 0.5, at(0.5))
    assert expiry_instant(T0, 0.5) == at(0.500001)


def test_a_first_wait_under_a_second_is_kept() -> None:
    policy = RetryPolicy(first=0.5, max=600)
    assert backoff_delay(1, policy, 0.0) == 0.25
    assert backoff_delay(1, policy, 1.0) == 0.5
    assert backoff_delay(2, policy, 1.0) == 1.0
