"""The delivery policy as tables: fake instants, no I/O."""

from __future__ import annotations

import datetime as dt

import pytest

from mqtt2sms import delivery, elapsed, rules
from mqtt2sms.config import RetryPolicy
from mqtt2sms.delivery import HEALTHY, Health, Track

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
OPTS = delivery.Options(failover_after=120.0, max_age=3600.0, retry=RetryPolicy(5.0, 600.0))


def at(s: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=s)


def track(via: tuple[str, ...] = ("smtp", "twilio"), **kw: object) -> Track:
    return Track("t1", via, T0, **kw)  # type: ignore[arg-type]


DOWN = Health(down_until=at(300), failures=1, last_error="refused")


@pytest.mark.parametrize(
    ("health", "t", "now", "expect", "transport"),
    [
        ({"smtp": HEALTHY, "twilio": HEALTHY}, track(), 0, delivery.Send, "smtp"),
        ({"twilio": HEALTHY}, track(), 0, delivery.Send, "twilio"),  # smtp not configured
        ({"smtp": DOWN, "twilio": HEALTHY}, track(), 10, delivery.Wait, None),
        (
            {"smtp": DOWN, "twilio": HEALTHY},
            track(first_fail_at=at(0)),
            120,
            delivery.Send,
            "twilio",
        ),
        ({"smtp": DOWN}, track(("smtp",)), 10, delivery.Wait, None),
        ({}, track(), 0, delivery.GiveUp, None),
        ({"smtp": HEALTHY}, track(), 3601, delivery.GiveUp, None),
    ],
)
def test_decide(
    health: dict[str, Health], t: Track, now: float, expect: type, transport: str | None
) -> None:
    d = delivery.decide(t, health, OPTS, at(now))
    assert isinstance(d, expect)
    if isinstance(d, delivery.Send):
        assert d.transport == transport


def test_a_wait_ends_at_the_failover_instant_when_that_comes_first() -> None:
    d = delivery.decide(track(first_fail_at=at(0)), {"smtp": DOWN, "twilio": HEALTHY}, OPTS, at(10))
    assert isinstance(d, delivery.Wait) and d.until == at(120)
    d = delivery.decide(track(("smtp",)), {"smtp": DOWN}, OPTS, at(10))
    assert isinstance(d, delivery.Wait) and d.until == at(300)


def test_expiry_and_no_way_out_say_why() -> None:
    d = delivery.decide(track(last_error="451 busy"), {"smtp": HEALTHY}, OPTS, at(4000))
    assert isinstance(d, delivery.GiveUp) and d.state == "expired"
    assert d.error == "not delivered within 3600s: 451 busy"
    d = delivery.decide(track(), {}, OPTS, at(0))
    assert isinstance(d, delivery.GiveUp) and d.state == "failed"
    assert "not configured" in d.error


SEND = delivery.Send("smtp", track())


@pytest.mark.parametrize(
    ("result", "state", "event", "reason"),
    [
        (delivery.Ok("id"), "sent", "sent", ""),
        (delivery.Permanent("550"), "queued", None, "failover"),
        (delivery.Temporary("451", "text"), "queued", "deferred", "retry"),
        (delivery.Temporary("refused", "transport"), "queued", "deferred", "transport"),
    ],
)
def test_after(result: delivery.Result, state: str, event: str | None, reason: str) -> None:
    a = delivery.after(SEND, result, HEALTHY, OPTS, at(0), 0.5)
    assert (a.state, a.event, a.reason) == (state, event, reason)
    assert a.track.attempts == 1


def test_a_transport_failure_backs_off_the_way_out_not_the_text() -> None:
    a = delivery.after(SEND, delivery.Temporary("refused"), HEALTHY, OPTS, at(0), 0.0)
    assert a.health.failures == 1 and a.health.down_until == at(2.5)
    assert a.next_at == at(0) and a.next_try == at(2.5)


def test_a_failure_of_a_way_out_known_down_does_not_extend_its_backoff() -> None:
    a = delivery.after(SEND, delivery.Temporary("refused"), DOWN, OPTS, at(10), 1.0)
    assert a.health == DOWN


def test_an_auth_failure_waits_long() -> None:
    a = delivery.after(SEND, delivery.Temporary("535", auth=True), HEALTHY, OPTS, at(0), 0.0)
    assert a.health.auth and a.health.down_until == at(300)


def test_temporary_failures_fail_over_after_failover_after() -> None:
    sent = delivery.Send("smtp", track(first_fail_at=at(0)))
    a = delivery.after(sent, delivery.Temporary("451", "text"), HEALTHY, OPTS, at(121), 0.5)
    assert a.state == "queued" and a.reason == "failover" and a.track.via_index == 1


def test_permanent_on_the_last_way_out_fails() -> None:
    sent = delivery.Send("twilio", track(via_index=1))
    a = delivery.after(sent, delivery.Permanent("21610 STOP"), HEALTHY, OPTS, at(0), 0.5)
    assert a.state == "failed" and a.event == "failed" and a.error == "21610 STOP"


def test_a_text_scope_retry_is_never_past_the_expiry() -> None:
    sent = delivery.Send("smtp", track(("smtp",), attempts=20))
    a = delivery.after(sent, delivery.Temporary("451", "text"), HEALTHY, OPTS, at(3590), 1.0)
    assert a.next_at is not None and a.next_at <= at(3600.001)
    a = delivery.after(sent, delivery.Temporary("451", "text"), HEALTHY, OPTS, at(3700), 1.0)
    assert a.state == "expired"


def test_reports() -> None:
    t = track(via_index=0)
    r = delivery.after_report(t, delivery.Report("delivered"), OPTS, at(10), True)
    assert (r.state, r.event) == ("delivered", "delivered")
    r = delivery.after_report(t, delivery.Report("undelivered", "30003"), OPTS, at(10), True)
    assert (r.state, r.event, r.track.via_index) == ("queued", "undelivered", 1)
    r = delivery.after_report(t, delivery.Report("undelivered"), OPTS, at(10), False)
    assert r.state == "undelivered"


def test_the_elapsed_axis_resumes_across_restarts() -> None:
    s = elapsed.Saved(e=500.0, mono=100.0, wall=1000.0, boot="a")
    assert elapsed.resume(None, 5.0, 42.0, "a") == 42.0
    assert elapsed.resume(s, 110.0, 5000.0, "a") == 510.0  # same boot: the monotonic clock
    assert elapsed.resume(s, 3.0, 1030.0, "b") == 530.0  # rebooted: the wall clock
    assert elapsed.resume(s, 3.0, 900.0, "b") == 500.0  # a wall clock behind: nothing
    off, jump = elapsed.step(None, 10.0, 100.0)
    assert jump is None
    assert elapsed.step(off, 20.0, 110.5)[1] is None
    assert elapsed.step(off, 20.0, 86500.0)[1] == pytest.approx(86390.0)


@pytest.mark.parametrize(
    ("wide", "narrow", "covers"),
    [
        ("a/#", "a/+", True),
        ("a/#", "a", True),
        ("a/+", "a/#", False),
        ("+/b", "a/b", True),
        ("#", "$SYS/x", False),
        ("a/b", "a/b", True),
        ("a/+/c", "a/+/d", False),
    ],
)
def test_filter_covers(wide: str, narrow: str, covers: bool) -> None:
    assert rules.filter_covers(wide, narrow) is covers


def test_subscriptions_without_overlaps() -> None:
    got = rules.without_overlaps(["zigbee2mqtt/+", "zigbee2mqtt/#", "home/alerts/sms", "x/y"])
    assert got == ["home/alerts/sms", "x/y", "zigbee2mqtt/#"]
