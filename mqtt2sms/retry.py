"""When to try again: backoff for texts and ways out, expiry, failover.

Pure functions: ``now`` comes in (timezone-aware), the random number comes in (``rand`` in
``[0, 1]``), a datetime goes out.

The curve: after the n-th consecutive failure the base wait is
``min(policy.max, policy.first * 2 ** (n - 1))`` (5 s, 10 s, 20 s, ... 600 s by default),
and the actual wait is "equal jitter": uniform in ``[base / 2, base]``. So ``first`` and
``max`` are the upper ends: no wait is ever longer than ``policy.max``, and the shortest
wait is ``policy.first / 2``. Half of the base stays fixed so a retry never comes right
away; the other half spreads texts that failed together.

An authentication failure will not heal by itself (someone has to fix the password and
reload, and a reload retries at once), and hammering a login can lock the account, so it
skips the ramp: its base wait is ``max(policy.max, AUTH_BASE)`` from the first failure,
5-10 minutes with the defaults.
"""

from __future__ import annotations

import datetime as dt

from .config import RetryPolicy

__all__ = [
    "AUTH_BASE",
    "backoff_delay",
    "expiry_instant",
    "failover_due",
    "is_expired",
    "next_try",
    "retry_or_expire",
    "transport_backoff",
]

# Base wait (seconds) after an authentication failure when policy.max is shorter.
AUTH_BASE = 600.0
# 2 ** 63 times any sane `first` is far beyond any `max`; keeps floats from overflowing.
_MAX_DOUBLINGS = 63


def _check_aware(name: str, value: dt.datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")


def _check_rand(rand: float) -> None:
    if not 0.0 <= rand <= 1.0:
        raise ValueError(f"rand must be in [0, 1], got {rand!r}")


def _jitter(base: float, rand: float) -> float:
    return base / 2 + rand * base / 2


def backoff_delay(attempts: int, policy: RetryPolicy, rand: float) -> float:
    """The wait in seconds after ``attempts`` consecutive failures (see the module doc).

    In: ``attempts`` >= 1, the policy, ``rand`` in [0, 1]. Out: seconds, in
    ``[base / 2, base]`` with ``base = min(policy.max, policy.first * 2 ** (attempts - 1))``.
    Raises: ``ValueError`` if ``attempts`` < 1 or ``rand`` is outside [0, 1].
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    _check_rand(rand)
    doublings = min(attempts - 1, _MAX_DOUBLINGS)
    base = min(policy.max, policy.first * 2.0**doublings)
    return _jitter(max(base, 0.0), rand)


def next_try(attempts: int, policy: RetryPolicy, now: dt.datetime, rand: float) -> dt.datetime:
    """When to try a text again after its ``attempts``-th temporary failure.

    In: the number of tries that failed so far (>= 1), the policy, the aware ``now`` and
    ``rand`` in [0, 1]. Out: ``now`` plus ``backoff_delay(attempts, policy, rand)``.
    Raises: ``ValueError`` for a naive ``now``, ``attempts`` < 1, or ``rand`` outside [0, 1].
    """
    _check_aware("now", now)
    return now + dt.timedelta(seconds=backoff_delay(attempts, policy, rand))


def transport_backoff(
    failures: int, policy: RetryPolicy, now: dt.datetime, rand: float, auth: bool
) -> dt.datetime:
    """When to try a way out again that failed ``failures`` times in a row.

    In: the consecutive failures of the transport (>= 1), the policy, the aware ``now``,
    ``rand`` in [0, 1], and ``auth``: the last failure was an authentication failure.
    Out: the instant of the next try: the same curve as ``next_try``, or for ``auth`` a wait
    in ``[B / 2, B]`` with ``B = max(policy.max, AUTH_BASE)`` whatever ``failures`` is.
    Raises: ``ValueError`` as ``next_try``.

    A text waiting on a backed-off transport can still fail over: check ``failover_due``
    on its own schedule, not only when the transport is tried again.
    """
    _check_aware("now", now)
    if not auth:
        return next_try(failures, policy, now, rand)
    if failures < 1:
        raise ValueError(f"failures must be >= 1, got {failures}")
    _check_rand(rand)
    base = max(policy.max, AUTH_BASE)
    return now + dt.timedelta(seconds=_jitter(base, rand))


def is_expired(created_at: dt.datetime, max_age: float, now: dt.datetime) -> bool:
    """Whether a text created at ``created_at`` is older than ``max_age`` seconds at ``now``.

    In: two aware datetimes and ``max_age`` (0 or less: texts never expire, like the other
    "0 = no limit" keys). Out: True once the age is strictly greater than ``max_age``.
    Raises: ``ValueError`` for a naive datetime.
    """
    _check_aware("created_at", created_at)
    _check_aware("now", now)
    if max_age <= 0:
        return False
    return now - created_at > dt.timedelta(seconds=max_age)


def expiry_instant(created_at: dt.datetime, max_age: float) -> dt.datetime | None:
    """The first instant at which ``is_expired`` is true for a text created at ``created_at``.

    In: an aware datetime and ``max_age`` in seconds. Out: ``created_at + max_age`` plus one
    microsecond, or None when ``max_age`` is 0 or less (never). Raises: ``ValueError`` for a
    naive datetime.
    """
    _check_aware("created_at", created_at)
    if max_age <= 0:
        return None
    return created_at + dt.timedelta(seconds=max_age, microseconds=1)


def retry_or_expire(
    created_at: dt.datetime,
    attempts: int,
    policy: RetryPolicy,
    max_age: float,
    now: dt.datetime,
    rand: float,
) -> dt.datetime | None:
    """The next try of a text after a temporary failure, or None when it has expired.

    In: as ``next_try`` and ``is_expired``. Out: None if the text is expired at ``now``;
    else ``next_try(...)``, brought forward to the expiry instant when it would fall after
    it (so the text is marked ``expired`` on time, not one long backoff late).
    Raises: ``ValueError`` as ``next_try``.
    """
    if is_expired(created_at, max_age, now):
        return None
    when = next_try(attempts, policy, now, rand)
    expires = expiry_instant(created_at, max_age)
    return when if expires is None else min(when, expires)


def failover_due(
    first_failure_at: dt.datetime | None, failover_after: float, now: dt.datetime
) -> bool:
    """Whether the next transport in ``via`` should take over from the current one.

    In: when the current run of temporary failures on the current transport began (None:
    it has not failed), ``failover_after`` in seconds, and the aware ``now``. Out: True once
    the failures have lasted ``failover_after`` (0: at the first temporary failure). A
    permanent failure fails over at once; that is the caller's branch, not this one.
    Raises: ``ValueError`` for a naive datetime.
    """
    _check_aware("now", now)
    if first_failure_at is None:
        return False
    _check_aware("first_failure_at", first_failure_at)
    return now - first_failure_at >= dt.timedelta(seconds=max(failover_after, 0.0))
