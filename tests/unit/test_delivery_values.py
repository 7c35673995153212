"""The delivery policy pinned by value: every decision compared whole, instants as literals.

With ``failover_after`` 120 s, ``max_age`` 3600 s and a retry curve of 5 s .. 600 s, and
``rand`` fixed, every instant below is a number worked out by hand from the rules in docs/config.md,
not by calling the code under test. A text whose age passes 3600 s expires at
3600.000001 s: the first instant at which it is older than ``max_age``.
"""

from __future__ import annotations

import datetime as dt

import pytest

from mqtt2sms import delivery
from mqtt2sms.config import RetryPolicy
from mqtt2sms.delivery import (
    HEALTHY,
    After,
    AfterReport,
    GiveUp,
    Health,
    Ok,
    Options,
    Permanent,
    Report,
    Send,
    Temporary,
    Track,
    Wait,
)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
OPTS = Options(failover_after=120.0, max_age=3600.0, retry=RetryPolicy(5.0, 600.0))
THREE = ("smtp", "twilio", "android")
EXPIRY = 3600.000001


def at(s: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=s)


def track(via: tuple[str, ...] = ("smtp", "twilio"), **kw: object) -> Track:
    return Track("t1", via, T0, **kw)  # type: ignore[arg-type]


def down(until: float, failures: int = 1, error: str | None = "refused") -> Health:
    return Health(down_until=at(until), failures=failures, last_error=error)


# --------------------------------------------------------------------------- Health, Track


@pytest.mark.parametrize(
    ("health", "now", "is_down"),
    [
        (HEALTHY, 0, False),
        (down(300), 299.999, True),
        (down(300), 300, False),  # the backoff has ended at its instant
        (down(300), 301, False),
        (Health(failures=3), 0, False),  # failures alone do not hold a way out
    ],
)
def test_health_is_down(health: Health, now: float, is_down: bool) -> None:
    assert health.is_down(at(now)) is is_down


def test_healthy_is_the_zero_health() -> None:
    assert Health(None, 0, None, False) == HEALTHY


@pytest.mark.parametrize(("index", "current"), [(0, "smtp"), (2, "android"), (3, None)])
def test_track_current(index: int, current: str | None) -> None:
    assert track(THREE, via_index=index).current == current


def test_a_new_track_starts_at_the_first_way_out_with_nothing_failed() -> None:
    assert track() == Track("t1", ("smtp", "twilio"), T0, 0, 0, None, None)


@pytest.mark.parametrize(
    ("last_error", "max_age", "error"),
    [
        (None, 3600.0, "not delivered within 3600s"),
        ("451 busy", 3600.0, "not delivered within 3600s: 451 busy"),
        ("", 90.5, "not delivered within 90.5s"),
        (None, 86400.0, "not delivered within 86400s"),
    ],
)
def test_expiry_error(last_error: str | None, max_age: float, error: str) -> None:
    opts = Options(120.0, max_age, RetryPolicy())
    assert delivery.expiry_error(track(last_error=last_error), opts) == error


# --------------------------------------------------------------------------- decide

NOT_CONF = "transport smtp is not configured"


@pytest.mark.parametrize(
    ("t", "health", "now", "decision"),
    [
        pytest.param(
            track(),
            {"smtp": HEALTHY, "twilio": HEALTHY},
            0,
            Send("smtp", track()),
            id="healthy",
        ),
        pytest.param(
            track(),
            {"twilio": HEALTHY},
            0,
            Send("twilio", track(via_index=1, last_error=NOT_CONF)),
            id="first-not-configured",
        ),
        pytest.param(
            track(),
            {"smtp": down(300), "twilio": HEALTHY},
            10,
            # the failover instant (10 + 120) comes before the backoff's end (300)
            Wait(at(130), "transport", track(first_fail_at=at(10), last_error="refused")),
            id="down-wait-for-failover",
        ),
        pytest.param(
            track(),
            {"smtp": down(60), "twilio": HEALTHY},
            10,
            # the backoff ends (60) before the failover instant (130)
            Wait(at(60), "transport", track(first_fail_at=at(10), last_error="refused")),
            id="down-wait-for-backoff",
        ),
        pytest.param(
            track(first_fail_at=at(0), last_error="451"),
            {"smtp": down(300), "twilio": HEALTHY},
            119.999,
            Wait(at(120), "transport", track(first_fail_at=at(0), last_error="refused")),
            id="just-before-failover",
        ),
        pytest.param(
            track(first_fail_at=at(0)),
            {"smtp": down(300), "twilio": HEALTHY},
            120,
            Send("twilio", track(via_index=1, last_error="refused")),
            id="failover-due",
        ),
        pytest.param(
            track(("smtp",)),
            {"smtp": down(300)},
            10,
            Wait(
                at(300), "transport", track(("smtp",), first_fail_at=at(10), last_error="refused")
            ),
            id="only-way-out-down",
        ),
        pytest.param(
            track(("smtp",), first_fail_at=at(0)),
            {"smtp": down(900)},
            500,
            # long past failover_after, but there is nothing to fail over to
            Wait(at(900), "transport", track(("smtp",), first_fail_at=at(0), last_error="refused")),
            id="only-way-out-down-long",
        ),
        pytest.param(
            track(last_error="earlier"),
            {"smtp": down(300, error=None), "twilio": HEALTHY},
            10,
            Wait(at(130), "transport", track(first_fail_at=at(10), last_error="earlier")),
            id="down-without-error-keeps-the-texts",
        ),
        pytest.param(
            track(first_fail_at=at(5)),
            {"smtp": down(10), "twilio": HEALTHY},
            10,
            Send("smtp", track(first_fail_at=at(5))),
            id="backoff-ended",
        ),
        pytest.param(
            track(),
            {},
            0,
            GiveUp(
                "failed",
                "transport twilio is not configured",
                track(via_index=1, last_error="transport twilio is not configured"),
            ),
            id="nothing-configured",
        ),
        pytest.param(
            track(),
            {"smtp": HEALTHY},
            3600,
            Send("smtp", track()),
            id="exactly-max-age",
        ),
        pytest.param(
            track(last_error="451 busy"),
            {"smtp": HEALTHY},
            EXPIRY,
            GiveUp("expired", "not delivered within 3600s: 451 busy", track(last_error="451 busy")),
            id="expired",
        ),
        pytest.param(
            track(via_index=1, first_fail_at=at(100)),
            {"smtp": HEALTHY, "twilio": HEALTHY},
            3601,
            GiveUp(
                "expired", "not delivered within 3600s", track(via_index=1, first_fail_at=at(100))
            ),
            id="expired-on-a-later-way-out",
        ),
    ],
)
def test_decide(t: Track, health: dict[str, Health], now: float, decision: object) -> None:
    assert delivery.decide(t, health, OPTS, at(now)) == decision


def test_a_way_out_dropped_from_the_config_does_not_pass_its_failures_on() -> None:
    # smtp failed since 0, then a reload removed it: twilio's window starts afresh
    t = track(THREE, first_fail_at=at(0), last_error="refused")
    health = {"twilio": down(300, error="503"), "android": HEALTHY}
    d = delivery.decide(t, health, OPTS, at(100))
    assert d == Wait(
        at(220), "transport", track(THREE, via_index=1, first_fail_at=at(100), last_error="503")
    )


def test_the_only_way_out_not_configured_fails_on_it() -> None:
    d = delivery.decide(track(("smtp",)), {"twilio": HEALTHY}, OPTS, at(0))
    assert d == GiveUp("failed", NOT_CONF, track(("smtp",), last_error=NOT_CONF))


def test_no_way_out_at_all() -> None:
    d = delivery.decide(track(()), {"smtp": HEALTHY}, OPTS, at(0))
    assert isinstance(d, GiveUp)
    assert (d.state, d.error, d.track.current) == ("failed", "no way out left", None)


def test_a_failover_after_under_a_second() -> None:
    opts = Options(0.5, 3600.0, RetryPolicy())
    d = delivery.decide(track(), {"smtp": down(300), "twilio": HEALTHY}, opts, at(10))
    assert d == Wait(at(10.5), "transport", track(first_fail_at=at(10), last_error="refused"))


def test_max_age_zero_never_expires() -> None:
    opts = Options(120.0, 0.0, RetryPolicy())
    assert delivery.decide(track(), {"smtp": HEALTHY}, opts, at(10**8)) == Send("smtp", track())


def test_failover_after_zero_skips_a_way_out_that_is_down() -> None:
    opts = Options(0.0, 3600.0, RetryPolicy())
    d = delivery.decide(track(), {"smtp": down(300), "twilio": HEALTHY}, opts, at(10))
    assert d == Send("twilio", track(via_index=1, last_error="refused"))


def test_a_negative_failover_after_counts_as_zero() -> None:
    opts = Options(-30.0, 3600.0, RetryPolicy())
    d = delivery.decide(track(), {"smtp": down(300), "twilio": down(200)}, opts, at(10))
    # twilio is the last way out: it waits for its own backoff, never earlier
    assert d == Wait(
        at(200), "transport", track(via_index=1, first_fail_at=at(10), last_error="refused")
    )


def test_three_ways_out_each_get_their_own_failover_window() -> None:
    health = {"smtp": down(10_000), "twilio": down(10_000, error="503"), "android": HEALTHY}
    t = track(THREE)
    d = delivery.decide(t, health, OPTS, at(0))
    assert d == Wait(at(120), "transport", track(THREE, first_fail_at=at(0), last_error="refused"))
    # at 120 smtp's window is over: twilio gets a window of its own, from 120 to 240
    d = delivery.decide(d.track, health, OPTS, at(120))
    assert d == Wait(
        at(240), "transport", track(THREE, via_index=1, first_fail_at=at(120), last_error="503")
    )
    d = delivery.decide(d.track, health, OPTS, at(239.999))
    assert d == Wait(
        at(240), "transport", track(THREE, via_index=1, first_fail_at=at(120), last_error="503")
    )
    d = delivery.decide(d.track, health, OPTS, at(240))
    assert d == Send("android", track(THREE, via_index=2, last_error="503"))


def test_a_wait_never_outlasts_the_texts_expiry() -> None:
    # a text near its max_age waits on a long backoff: it comes back when it expires
    d = delivery.decide(track(("smtp",)), {"smtp": down(4000)}, OPTS, at(3500))
    assert d == Wait(
        at(EXPIRY), "transport", track(("smtp",), first_fail_at=at(3500), last_error="refused")
    )
    d = delivery.decide(track(), {"smtp": down(4000), "twilio": down(5000)}, OPTS, at(3590))
    assert d == Wait(at(EXPIRY), "transport", track(first_fail_at=at(3590), last_error="refused"))
    # no max_age: the backoff's end
    opts = Options(120.0, 0.0, RetryPolicy())
    d = delivery.decide(track(("smtp",)), {"smtp": down(4000)}, opts, at(3500))
    assert d == Wait(
        at(4000), "transport", track(("smtp",), first_fail_at=at(3500), last_error="refused")
    )


# --------------------------------------------------------------------------- after

SEND = Send("smtp", track())


@pytest.mark.parametrize(
    ("send", "result", "health", "now", "rand", "expect"),
    [
        pytest.param(
            SEND,
            Ok("id"),
            HEALTHY,
            0,
            0.5,
            After("sent", track(attempts=1), HEALTHY, "sent"),
            id="ok",
        ),
        pytest.param(
            Send("smtp", track(attempts=2, first_fail_at=at(0), last_error="451")),
            Ok(None, dry_run=True),
            HEALTHY,
            30,
            0.5,
            After("sent", track(attempts=3), HEALTHY, "sent", extra={"dry_run": True}),
            id="ok-dry-run-clears-the-failure",
        ),
        pytest.param(
            SEND,
            Ok("id"),
            down(300, failures=4, error="refused"),
            400,
            0.5,
            After("sent", track(attempts=1), HEALTHY, "sent"),
            id="ok-resets-health",
        ),
        pytest.param(
            Send("smtp", track(first_fail_at=at(0))),
            Permanent("550 no such user"),
            down(300),
            10,
            0.5,
            After(
                "queued",
                track(via_index=1, attempts=1, last_error="550 no such user"),
                down(300),
                None,
                next_at=at(10),
                reason="failover",
            ),
            id="permanent-fails-over-at-once",
        ),
        pytest.param(
            Send("twilio", track(via_index=1, first_fail_at=at(0))),
            Permanent("21610 STOP"),
            HEALTHY,
            10,
            0.5,
            After(
                "failed",
                track(via_index=1, attempts=1, last_error="21610 STOP"),
                HEALTHY,
                "failed",
                error="21610 STOP",
            ),
            id="permanent-on-the-last-fails",
        ),
        pytest.param(
            SEND,
            Temporary("451", "text"),
            HEALTHY,
            0,
            0.5,
            # attempt 1: base 5 s, rand 0.5 -> 3.75 s
            After(
                "queued",
                track(attempts=1, first_fail_at=at(0), last_error="451"),
                HEALTHY,
                "deferred",
                next_at=at(3.75),
                reason="retry",
                next_try=at(3.75),
                error="451",
            ),
            id="text-retry",
        ),
        pytest.param(
            Send("smtp", track(attempts=3, first_fail_at=at(0))),
            Temporary("452", "text"),
            HEALTHY,
            60,
            1.0,
            # attempt 4: base 40 s, rand 1 -> 40 s; first_fail_at kept
            After(
                "queued",
                track(attempts=4, first_fail_at=at(0), last_error="452"),
                HEALTHY,
                "deferred",
                next_at=at(100),
                reason="retry",
                next_try=at(100),
                error="452",
            ),
            id="text-retry-doubles",
        ),
        pytest.param(
            SEND,
            Temporary("refused"),
            HEALTHY,
            0,
            0.0,
            # failure 1 of the way out: base 5 s, rand 0 -> 2.5 s
            After(
                "queued",
                track(attempts=1, first_fail_at=at(0), last_error="refused"),
                Health(at(2.5), 1, "refused", False),
                "deferred",
                next_at=at(0),
                reason="transport",
                next_try=at(2.5),
                error="refused",
            ),
            id="transport-backoff",
        ),
        pytest.param(
            Send("smtp", track(first_fail_at=at(0))),
            Temporary("timeout"),
            down(20, failures=2, error="refused"),
            50,
            1.0,
            # failure 3 of the way out (its backoff had ended): base 20 s
            After(
                "queued",
                track(attempts=1, first_fail_at=at(0), last_error="timeout"),
                Health(at(70), 3, "timeout", False),
                "deferred",
                next_at=at(50),
                reason="transport",
                next_try=at(70),
                error="timeout",
            ),
            id="transport-backoff-grows",
        ),
        pytest.param(
            SEND,
            Temporary("refused"),
            down(300, failures=2),
            10,
            1.0,
            # known down already: the way out's backoff is not extended; the text is due at
            # its failover instant (10 + 120), before the backoff's end (300)
            After(
                "queued",
                track(attempts=1, first_fail_at=at(10), last_error="refused"),
                down(300, failures=2),
                "deferred",
                next_at=at(10),
                reason="transport",
                next_try=at(130),
                error="refused",
            ),
            id="transport-known-down",
        ),
        pytest.param(
            SEND,
            Temporary("535 auth", auth=True),
            HEALTHY,
            0,
            0.0,
            # authentication: base max(600, 600) from the first failure, rand 0 -> 300 s;
            # the text is due at its failover instant (120), before the way out's (300)
            After(
                "queued",
                track(attempts=1, first_fail_at=at(0), last_error="535 auth"),
                Health(at(300), 1, "535 auth", True),
                "deferred",
                next_at=at(0),
                reason="transport",
                next_try=at(120),
                error="535 auth",
            ),
            id="auth",
        ),
        pytest.param(
            Send("smtp", track(("smtp",))),
            Temporary("535 auth", auth=True),
            down(100, failures=3, error="535 auth"),
            200,
            1.0,
            # the only way out: the text waits the whole 600 s, whatever the failure count
            After(
                "queued",
                track(("smtp",), attempts=1, first_fail_at=at(200), last_error="535 auth"),
                Health(at(800), 4, "535 auth", True),
                "deferred",
                next_at=at(200),
                reason="transport",
                next_try=at(800),
                error="535 auth",
            ),
            id="auth-only-way-out",
        ),
        pytest.param(
            Send("smtp", track(("smtp",))),
            Temporary("refused"),
            down(100, failures=3, error="535 auth"),
            200,
            0.0,
            # after an auth failure a plain one follows the ramp again: failure 4, base 40 s
            After(
                "queued",
                track(("smtp",), attempts=1, first_fail_at=at(200), last_error="refused"),
                Health(at(220), 4, "refused", False),
                "deferred",
                next_at=at(200),
                reason="transport",
                next_try=at(220),
                error="refused",
            ),
            id="plain-after-auth",
        ),
        pytest.param(
            Send("smtp", track(first_fail_at=at(0))),
            Temporary("451", "text"),
            HEALTHY,
            119.999,
            0.5,
            After(
                "queued",
                track(attempts=1, first_fail_at=at(0), last_error="451"),
                HEALTHY,
                "deferred",
                next_at=at(123.749),
                reason="retry",
                next_try=at(123.749),
                error="451",
            ),
            id="text-just-before-failover",
        ),
        pytest.param(
            Send("smtp", track(first_fail_at=at(0))),
            Temporary("451", "text"),
            HEALTHY,
            120,
            0.5,
            After(
                "queued",
                track(via_index=1, attempts=1, last_error="451"),
                HEALTHY,
                None,
                next_at=at(120),
                reason="failover",
            ),
            id="text-failover",
        ),
        pytest.param(
            Send("smtp", track(first_fail_at=at(0))),
            Temporary("refused"),
            HEALTHY,
            130,
            0.0,
            # the way out still backs off; the text moves on at once
            After(
                "queued",
                track(via_index=1, attempts=1, last_error="refused"),
                Health(at(132.5), 1, "refused", False),
                None,
                next_at=at(130),
                reason="failover",
            ),
            id="transport-failover",
        ),
        pytest.param(
            Send("smtp", track(("smtp",), first_fail_at=at(0))),
            Temporary("refused"),
            HEALTHY,
            500,
            0.0,
            # the only way out: no failover however long it fails
            After(
                "queued",
                track(("smtp",), attempts=1, first_fail_at=at(0), last_error="refused"),
                Health(at(502.5), 1, "refused", False),
                "deferred",
                next_at=at(500),
                reason="transport",
                next_try=at(502.5),
                error="refused",
            ),
            id="only-way-out-never-fails-over",
        ),
        pytest.param(
            Send("smtp", track(("smtp",), attempts=20)),
            Temporary("451", "text"),
            HEALTHY,
            3590,
            1.0,
            # a 600 s backoff would overshoot: the text is due when it expires
            After(
                "queued",
                track(("smtp",), attempts=21, first_fail_at=at(3590), last_error="451"),
                HEALTHY,
                "deferred",
                next_at=at(EXPIRY),
                reason="retry",
                next_try=at(EXPIRY),
                error="451",
            ),
            id="text-retry-brought-forward-to-expiry",
        ),
        pytest.param(
            Send("smtp", track(("smtp",), first_fail_at=at(3000))),
            Temporary("refused"),
            down(100, failures=8),
            3590,
            1.0,
            # a way-out backoff past the expiry: the text is due when it expires
            After(
                "queued",
                track(("smtp",), attempts=1, first_fail_at=at(3000), last_error="refused"),
                Health(at(4190), 9, "refused", False),
                "deferred",
                next_at=at(3590),
                reason="transport",
                next_try=at(EXPIRY),
                error="refused",
            ),
            id="transport-backoff-bounded-by-expiry",
        ),
        pytest.param(
            Send("smtp", track(("smtp",), last_error="x")),
            Temporary("451", "text"),
            HEALTHY,
            3700,
            1.0,
            After(
                "expired",
                track(("smtp",), attempts=1, first_fail_at=at(3700), last_error="451"),
                HEALTHY,
                "expired",
                error="not delivered within 3600s: 451",
            ),
            id="text-retry-expired",
        ),
    ],
)
def test_after(
    send: Send, result: delivery.Result, health: Health, now: float, rand: float, expect: After
) -> None:
    assert delivery.after(send, result, health, OPTS, at(now), rand) == expect


@pytest.mark.parametrize("rand", [-0.01, 1.01])
def test_after_refuses_a_draw_outside_the_unit_interval(rand: float) -> None:
    with pytest.raises(ValueError, match="rand"):
        delivery.after(SEND, Temporary("refused"), HEALTHY, OPTS, at(0), rand)


def test_a_success_after_failures_resets_the_way_out() -> None:
    health = HEALTHY
    now = 0.0
    for n, until in ((1, 5.0), (2, 10.0), (3, 20.0), (4, 40.0)):
        a = delivery.after(SEND, Temporary("refused"), health, OPTS, at(now), 1.0)
        assert a.health == Health(at(now + until), n, "refused", False)
        health, now = a.health, now + until
    a = delivery.after(SEND, Ok("id"), health, OPTS, at(now), 1.0)
    assert a.health == HEALTHY
    # the next failure starts the ramp again: seconds, not minutes
    a = delivery.after(SEND, Temporary("refused"), a.health, OPTS, at(now + 1), 1.0)
    assert a.health == Health(at(now + 6), 1, "refused", False)


def test_three_ways_out_fail_over_one_window_each() -> None:
    """smtp fails for 120 s, then twilio for its own 120 s, then android takes it."""
    t = track(THREE)
    health = {"smtp": HEALTHY, "twilio": HEALTHY, "android": HEALTHY}
    a = delivery.after(Send("smtp", t), Temporary("refused"), health["smtp"], OPTS, at(0), 0.0)
    assert a.track == track(THREE, attempts=1, first_fail_at=at(0), last_error="refused")
    a = delivery.after(Send("smtp", a.track), Temporary("refused"), HEALTHY, OPTS, at(120), 0.0)
    assert (a.state, a.event, a.reason, a.next_at) == ("queued", None, "failover", at(120))
    assert a.track == track(THREE, via_index=1, attempts=2, last_error="refused")
    # twilio's first failure starts its own window
    a = delivery.after(Send("twilio", a.track), Temporary("503"), HEALTHY, OPTS, at(121), 0.0)
    assert a == After(
        "queued",
        track(THREE, via_index=1, attempts=3, first_fail_at=at(121), last_error="503"),
        Health(at(123.5), 1, "503", False),
        "deferred",
        next_at=at(121),
        reason="transport",
        next_try=at(123.5),
        error="503",
    )
    a = delivery.after(Send("twilio", a.track), Temporary("503"), HEALTHY, OPTS, at(240.999), 0.0)
    assert (a.event, a.track.via_index, a.track.first_fail_at) == ("deferred", 1, at(121))
    a = delivery.after(Send("twilio", a.track), Temporary("503"), HEALTHY, OPTS, at(241), 0.0)
    assert a == After(
        "queued",
        track(THREE, via_index=2, attempts=5, last_error="503"),
        Health(at(243.5), 1, "503", False),
        None,
        next_at=at(241),
        reason="failover",
    )
    # android, the last: its failures never fail it before max_age
    a = delivery.after(Send("android", a.track), Temporary("x"), HEALTHY, OPTS, at(1000), 0.0)
    assert (a.state, a.event, a.track.via_index) == ("queued", "deferred", 2)
    a = delivery.after(Send("android", a.track), Temporary("x"), HEALTHY, OPTS, at(3000), 0.0)
    assert (a.state, a.event, a.track.via_index) == ("queued", "deferred", 2)


def _run(
    via: tuple[str, ...],
    up_at: dict[str, float],
    opts: Options = OPTS,
    until: float = 10_000,
) -> list[tuple[float, str, str | None]]:
    """A small engine: decide, try, apply ``after``, until the text is done.

    ``up_at``: when each way out starts working (it refuses before). Returns the events
    (instant in seconds, state, way out).
    """
    t, health = track(via), dict.fromkeys(via, HEALTHY)
    now, events = 0.0, []
    for _ in range(1000):
        d = delivery.decide(t, health, opts, at(now))
        if isinstance(d, GiveUp):
            events.append((now, d.state, d.track.current))
            return events
        t = d.track
        if isinstance(d, Wait):
            assert d.until > at(now)
            now = (d.until - T0).total_seconds()
            continue
        ok = now >= up_at[d.transport]
        result: delivery.Result = Ok("id") if ok else Temporary("refused")
        a = delivery.after(d, result, health[d.transport], opts, at(now), 0.5)
        health[d.transport], t = a.health, a.track
        if a.event is not None:
            events.append((now, a.event, d.transport))
        if a.state != "queued":
            return events
        nxt = a.next_try if a.reason == "transport" and a.next_try else a.next_at
        assert nxt is not None
        now = max(now, (nxt - T0).total_seconds())
        if now > until:
            break
    raise AssertionError(f"the text never finished: {events[-3:]}")


def test_a_long_outage_of_the_only_way_out_fails_nothing_before_max_age() -> None:
    events = _run(("smtp",), {"smtp": 10**9})
    assert {e[1] for e in events[:-1]} == {"deferred"}
    assert events[-1] == (EXPIRY, "expired", "smtp")


def test_a_400_second_outage_of_the_only_way_out_is_delivered_when_it_ends() -> None:
    events = _run(("smtp",), {"smtp": 400})
    assert {e[1] for e in events[:-1]} == {"deferred"}
    last = events[-1]
    assert last[1:] == ("sent", "smtp") and 400 <= last[0] <= 400 + 600


def test_an_outage_of_two_ways_out_reaches_the_third() -> None:
    events = _run(THREE, {"smtp": 10**9, "twilio": 10**9, "android": 0})
    sent = [e for e in events if e[1] == "sent"]
    assert sent == [(240.0, "sent", "android")]
    assert {e[1] for e in events[:-1]} == {"deferred"}


def test_a_way_out_that_comes_back_keeps_the_text() -> None:
    events = _run(THREE, {"smtp": 50, "twilio": 0, "android": 0})
    assert events[-1][1:] == ("sent", "smtp") and 50 <= events[-1][0] < 120


# --------------------------------------------------------------------------- reports


@pytest.mark.parametrize(
    ("t", "report", "now", "fail_over", "expect"),
    [
        pytest.param(
            track(attempts=1),
            Report("delivered"),
            10,
            True,
            AfterReport("delivered", track(attempts=1), "delivered"),
            id="delivered",
        ),
        pytest.param(
            track(attempts=1, last_error="old"),
            Report("delivered", "ok"),
            EXPIRY + 100,
            False,
            AfterReport("delivered", track(attempts=1, last_error="old"), "delivered"),
            id="delivered-late",
        ),
        pytest.param(
            track(attempts=1, first_fail_at=at(3)),
            Report("undelivered", "30003"),
            10,
            True,
            AfterReport(
                "queued",
                track(via_index=1, attempts=1, last_error="30003"),
                "undelivered",
                next_at=at(10),
            ),
            id="undelivered-fails-over",
        ),
        pytest.param(
            track(),
            Report("undelivered"),
            3600,
            True,
            AfterReport(
                "queued", track(via_index=1, last_error="undelivered"), "undelivered", at(3600)
            ),
            id="undelivered-at-max-age-fails-over",
        ),
        pytest.param(
            track(via_index=1, attempts=2),
            Report("undelivered", "30005"),
            10,
            True,
            AfterReport(
                "undelivered", track(via_index=1, attempts=2, last_error="30005"), "undelivered"
            ),
            id="undelivered-on-the-last",
        ),
        pytest.param(
            track(),
            Report("undelivered", "30003"),
            EXPIRY,
            True,
            AfterReport("undelivered", track(last_error="30003"), "undelivered"),
            id="undelivered-expired",
        ),
        pytest.param(
            track(),
            Report("undelivered", "30003"),
            10,
            False,
            AfterReport("undelivered", track(last_error="30003"), "undelivered"),
            id="undelivered-no-failover",
        ),
    ],
)
def test_after_report(
    t: Track, report: Report, now: float, fail_over: bool, expect: AfterReport
) -> None:
    assert delivery.after_report(t, report, OPTS, at(now), fail_over) == expect


def test_a_retry_after_longer_than_the_backoff_is_honoured() -> None:
    send = delivery.Send("twilio", Track("t1", ("twilio",), T0))
    hint = delivery.Temporary("429 Too Many Requests", retry_after=120.0)
    a = delivery.after(send, hint, HEALTHY, OPTS, at(10), 0.5)
    assert a.health.down_until == at(130)
    assert (a.state, a.reason, a.next_try) == ("queued", "transport", at(130))


def test_a_retry_after_shorter_than_the_backoff_changes_nothing() -> None:
    send = delivery.Send("twilio", Track("t1", ("twilio",), T0))
    plain = delivery.after(send, delivery.Temporary("503"), HEALTHY, OPTS, at(10), 0.5)
    hint = delivery.after(
        send, delivery.Temporary("503", retry_after=0.1), HEALTHY, OPTS, at(10), 0.5
    )
    assert hint == plain
