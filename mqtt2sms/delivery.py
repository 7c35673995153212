"""A text's life as a table: what to do with it now, and what a try's result changes.

Theory of operation. A text is one SMS part to one recipient, with an ordered ``via`` list
of ways out. Its row moves only along this table (``outbox.TRANSITIONS`` enforces it)::

    (new)   -> sending                       the engine hands it to a way out's worker
    (new)   -> queued                        it cannot leave now: committed before the ack
    queued  -> sending                       due, and its way out is healthy
    sending -> sent                          a receipt
    sending -> queued                        a temporary failure (backoff), or a permanent
                                             one / failover with a next way out to try
    sending -> failed                        permanent on the last way out
    queued  -> expired                       older than max_age (elapsed time; quiet hours
                                             held it without ageing it)
    sent    -> delivered | undelivered       a delivery report (twilio, android)
    undelivered -> queued                    the report moved it to the next way out

``decide`` says what to do with a text now: ``Send`` it by a way out, ``Wait`` until an
instant (its way out backs off), or ``GiveUp`` (expired, or no way out left). ``after``
takes the result of one try and returns the row's change, the way out's new health and the
event to publish. ``after_report`` does the same for a delivery report.

Everything here is pure: instants are on the elapsed axis (``elapsed.py``), passed in;
the random draw for jitter is passed in. The engine is the only caller that acts on them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from mqtt2sms import retry
from mqtt2sms.config import Config, RetryPolicy, rule_named

Scope = Literal["transport", "text"]


@dataclass(frozen=True)
class Health:
    """One way out, as the engine sees it. ``down_until``: no try before this instant."""

    down_until: dt.datetime | None = None
    failures: int = 0
    last_error: str | None = None
    auth: bool = False

    def is_down(self, now: dt.datetime) -> bool:
        return self.down_until is not None and self.down_until > now


HEALTHY = Health()


@dataclass(frozen=True)
class Options:
    """What the policy needs of a rule and the limits."""

    failover_after: float
    max_age: float
    retry: RetryPolicy


@dataclass(frozen=True)
class Track:
    """Where a text stands: the policy's view of an outbox row."""

    id: str
    via: tuple[str, ...]
    created_at: dt.datetime  # elapsed axis; the age counts from here
    via_index: int = 0
    attempts: int = 0
    first_fail_at: dt.datetime | None = None
    last_error: str | None = None

    @property
    def current(self) -> str | None:
        return self.via[self.via_index] if self.via_index < len(self.via) else None


@dataclass(frozen=True)
class Send:
    transport: str
    track: Track  # with via_index / first_fail_at moved past ways out that were skipped


@dataclass(frozen=True)
class Wait:
    until: dt.datetime
    reason: str  # "transport": its way out backs off
    track: Track


@dataclass(frozen=True)
class GiveUp:
    state: Literal["failed", "expired"]
    error: str
    track: Track


Decision = Send | Wait | GiveUp


def options_for(config: Config, rule: str) -> Options:
    """The policy's options for the texts of ``rule``: its own, else the defaults'."""
    found = rule_named(config, rule)
    o = found.options if found is not None else config.defaults
    return Options(o.failover_after, config.limits.max_age, config.limits.retry)


def expired(track: Track, options: Options, now: dt.datetime) -> bool:
    return retry.is_expired(track.created_at, options.max_age, now)


def expiry_error(track: Track, options: Options) -> str:
    error = f"not delivered within {options.max_age:g}s"
    return f"{error}: {track.last_error}" if track.last_error else error


def _due(
    until: dt.datetime,
    track: Track,
    first: dt.datetime,
    can_fail_over: bool,
    options: Options,
) -> dt.datetime:
    """When a text waiting for its way out's backoff to end (``until``) is due again: then,
    or sooner at the instant it fails over to its next way out (``failover_after`` after
    ``first``, its first failure there) or expires, so neither comes a backoff late."""
    if can_fail_over:
        until = min(until, first + dt.timedelta(seconds=max(options.failover_after, 0)))
    expires = retry.expiry_instant(track.created_at, options.max_age)
    return until if expires is None else min(until, expires)


def decide(
    track: Track,
    health: Mapping[str, Health],
    options: Options,
    now: dt.datetime,
) -> Decision:
    """What to do with a text now.

    In: the text's track, the health of each configured way out (a name missing from it is
    not configured), the options and ``now`` (elapsed axis). Out: ``Send`` by the first way
    out from ``via_index`` that is configured and not backing off (or whose backoff has
    outlasted ``failover_after`` so the next one takes over), ``Wait`` until the earliest of
    the backoff's end, the failover instant and the expiry instant, or ``GiveUp``.
    Raises: nothing.
    """
    if expired(track, options, now):
        return GiveUp("expired", expiry_error(track, options), track)
    t = track
    while t.via_index < len(t.via):
        name = t.via[t.via_index]
        can_fail_over = t.via_index + 1 < len(t.via)
        h = health.get(name)
        if h is None:
            t = replace(
                t,
                via_index=t.via_index + 1,
                first_fail_at=None,
                last_error=f"transport {name} is not configured",
            )
            continue
        if h.is_down(now):
            assert h.down_until is not None
            first = t.first_fail_at or now
            t = replace(t, first_fail_at=first, last_error=h.last_error or t.last_error)
            if can_fail_over and retry.failover_due(first, options.failover_after, now):
                t = replace(t, via_index=t.via_index + 1, first_fail_at=None)
                continue
            return Wait(_due(h.down_until, t, first, can_fail_over, options), "transport", t)
        return Send(name, t)
    last = max(len(t.via) - 1, 0)  # an empty via has no last way out, and no current one
    return GiveUp("failed", t.last_error or "no way out left", replace(t, via_index=last))


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Ok:
    remote_id: str | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class Temporary:
    error: str
    scope: Scope = "transport"
    auth: bool = False
    retry_after: float | None = None  # seconds the server asked us to wait (Retry-After)


@dataclass(frozen=True)
class Permanent:
    error: str


Result = Ok | Temporary | Permanent


@dataclass(frozen=True)
class After:
    """What a try changes.

    ``state``: the row's new state (``sent``, ``queued``, ``failed``, ``expired``);
    ``track``: its new track; ``next_at``: when a ``queued`` row is due again; ``reason``:
    why it waits (``transport``, ``retry``, ``failover``); ``health``: the new health of the
    way out tried; ``event``: the state to publish (None: nothing to say yet, e.g. a
    failover that is tried at once); ``next_try``: for a ``deferred`` event, when the text is
    due again (for ``transport``: the way out's backoff end, or sooner the instant the text
    fails over or expires; ``health.down_until`` keeps the backoff's end).
    """

    state: Literal["sent", "queued", "failed", "expired"]
    track: Track
    health: Health
    event: Literal["sent", "deferred", "failed", "expired"] | None
    next_at: dt.datetime | None = None
    reason: str = ""
    next_try: dt.datetime | None = None
    error: str | None = None
    extra: Mapping[str, object] = field(default_factory=dict)


def after(
    sent: Send,
    result: Result,
    health: Health,
    options: Options,
    now: dt.datetime,
    rand: float,
) -> After:
    """The consequences of one try of ``sent.track`` by ``sent.transport``.

    In: the decision that was acted on, its result, the way out's health before it, the
    options, ``now`` (elapsed axis) and ``rand`` in [0, 1] for the jitter.
    Out: an ``After``. Raises: ``ValueError`` for ``rand`` outside [0, 1].
    """
    t = replace(sent.track, attempts=sent.track.attempts + 1)
    can_fail_over = t.via_index + 1 < len(t.via)
    if isinstance(result, Ok):
        t = replace(t, first_fail_at=None, last_error=None)
        return After("sent", t, HEALTHY, "sent", extra={"dry_run": True} if result.dry_run else {})
    if isinstance(result, Permanent):
        t = replace(t, last_error=result.error, first_fail_at=None)
        if can_fail_over:
            t = replace(t, via_index=t.via_index + 1)
            return After("queued", t, health, None, next_at=now, reason="failover")
        return After("failed", t, health, "failed", error=result.error)

    first = t.first_fail_at or now
    t = replace(t, first_fail_at=first, last_error=result.error)
    new_health = health
    if result.scope == "transport" and health.is_down(now):
        # a try handed over before the way out was known to be down: it says nothing new
        assert health.down_until is not None
        due = _due(health.down_until, t, first, can_fail_over, options)
        next_at, reason, next_try = now, "transport", due
    elif result.scope == "transport":
        failures = health.failures + 1
        until = retry.transport_backoff(failures, options.retry, now, rand, result.auth)
        if result.retry_after:  # the server said when: never sooner than that
            until = max(until, now + dt.timedelta(seconds=result.retry_after))
        new_health = Health(until, failures, result.error, result.auth)
        due = _due(until, t, first, can_fail_over, options)
        next_at, reason, next_try = now, "transport", due
    else:
        nxt = retry.retry_or_expire(
            t.created_at, t.attempts, options.retry, options.max_age, now, rand
        )
        if nxt is None:
            return After(
                "expired", t, health, "expired", error=expiry_error(t, options), next_at=None
            )
        next_at, reason, next_try = nxt, "retry", nxt
    if can_fail_over and retry.failover_due(first, options.failover_after, now):
        t = replace(t, via_index=t.via_index + 1, first_fail_at=None)
        return After("queued", t, new_health, None, next_at=now, reason="failover")
    return After(
        "queued",
        t,
        new_health,
        "deferred",
        next_at=next_at,
        reason=reason,
        next_try=next_try,
        error=result.error,
    )


# --------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class Report:
    """A delivery report for a text a way out took: ``delivered`` or ``undelivered``."""

    state: Literal["delivered", "undelivered"]
    detail: str = ""


@dataclass(frozen=True)
class AfterReport:
    state: Literal["delivered", "undelivered", "queued"]
    track: Track
    event: Literal["delivered", "undelivered"]
    next_at: dt.datetime | None = None


def after_report(
    track: Track, report: Report, options: Options, now: dt.datetime, fail_over: bool
) -> AfterReport:
    """A final delivery report for a ``sent`` text.

    In: the text's track, the report, the options, ``now`` (elapsed axis), and whether an
    ``undelivered`` text should move to its next way out (when it has one and has not
    expired). Out: the row's new state and the event. Raises: nothing.
    """
    if report.state == "delivered":
        return AfterReport("delivered", track, "delivered")
    t = replace(track, last_error=report.detail or "undelivered")
    if fail_over and t.via_index + 1 < len(t.via) and not expired(t, options, now):
        t = replace(t, via_index=t.via_index + 1, first_fail_at=None)
        return AfterReport("queued", t, "undelivered", next_at=now)
    return AfterReport("undelivered", t, "undelivered")
