"""A worker's one try, mapped into the delivery policy's terms (workers.attempt)."""

from __future__ import annotations

import time

from mqtt2sms import delivery
from mqtt2sms.errors import PermanentDeliveryError, TemporaryDeliveryError
from mqtt2sms.transports.base import OutgoingText
from mqtt2sms.transports.fake import FakeTransport
from mqtt2sms.transports.http import HttpTemporaryError
from mqtt2sms.workers import Done, Job, Worker, attempt

TEXT = OutgoingText("t1", "+15551234567", "Leak")


def test_a_servers_retry_after_reaches_the_policy() -> None:
    fake = FakeTransport("twilio", [HttpTemporaryError("HTTP 429", retry_after=30.0, status=429)])
    assert attempt(fake, TEXT) == delivery.Temporary("HTTP 429", "transport", False, 30.0)


def test_errors_map_to_their_results() -> None:
    fake = FakeTransport(
        "smtp",
        [
            TemporaryDeliveryError("451 later", scope="text"),
            TemporaryDeliveryError("535 auth", auth=True),
            PermanentDeliveryError("550 no such user"),
            RuntimeError("a bug"),
        ],
    )
    assert attempt(fake, TEXT) == delivery.Temporary("451 later", "text", False, None)
    assert attempt(fake, TEXT) == delivery.Temporary("535 auth", "transport", True, None)
    assert attempt(fake, TEXT) == delivery.Permanent("550 no such user")
    assert attempt(fake, TEXT) == delivery.Temporary("unexpected error: RuntimeError: a bug")
    assert attempt(fake, TEXT) == delivery.Ok("t1")


def test_a_way_out_that_keeps_its_connection_is_not_closed_when_idle() -> None:
    kept, closed = FakeTransport("modem"), FakeTransport("smtp")
    kept.keep_open = True  # type: ignore[attr-defined]  # what ModemTransport says
    done: list[Done] = []
    workers = [Worker(t.name, t, done.append, idle_close=0.05) for t in (kept, closed)]
    for w in workers:
        w.start()
        w.put(Job("t1", TEXT))
    time.sleep(0.1)
    for d in done:
        assert d.processed is not None
        d.processed.set()  # the engine has recorded the result
    time.sleep(0.3)  # idle for six times idle_close
    for w in workers:
        w.stop()
        w.join(2)
    assert kept.closed == 1  # only at the stop
    assert closed.closed >= 2  # when idle, and at the stop
