"""Faults at the worst moment: each lands while a text is on the wire (the sink's DATA is
slow), and every text is counted by recipient afterwards.

A reload, a broker restart and a kill -9 during a send; the promise is "none lost, at most
one repeat per kill per way out", and here, where the text on the wire never got its 250
before the kill, not even that one.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from .conftest import Mosquitto, Sink, base_config, running, wait_for


@contextlib.contextmanager
def slow_data(sink: Sink, seconds: float) -> Iterator[list[float]]:
    """Every DATA waits ``seconds`` before the sink takes the mail and answers 250; the list
    gets the monotonic time each DATA started."""
    started: list[float] = []
    original = sink.handler.handle_DATA

    async def slow(server: Any, session: Any, envelope: Any) -> str:
        started.append(time.monotonic())
        await asyncio.sleep(seconds)
        return str(await original(server, session, envelope))

    sink.handler.handle_DATA = slow  # type: ignore[method-assign]
    try:
        yield started
    finally:
        sink.handler.handle_DATA = original  # type: ignore[method-assign]


def by_recipient(sink: Sink) -> Counter[str]:
    return Counter(rcpt for m in sink.mails for rcpt in m.rcpts)


def test_a_reload_while_a_queued_text_is_on_the_wire_sends_it_once(
    mosquitto: Mosquitto, daemon_factory: Any
) -> None:
    sink = Sink()
    d = daemon_factory(base_config(mosquitto.port, sink.port))
    w = running(d, mosquitto.port)
    try:
        w.publish("home/alerts/sms", "Leak in the basement")
        wait_for(lambda: w.states("deferred"), 10, "the text queued while SMTP is down")
        with slow_data(sink, 3.0) as started:
            sink.start()
            wait_for(lambda: started, 15, "the queued text on the wire")
            d.signal(signal.SIGHUP)  # the reload lands inside the DATA
            wait_for(lambda: sink.mails, 15, "the text")
        time.sleep(5.0)  # a second copy would have arrived by now
        assert [m.body for m in sink.mails] == ["Leak in the basement"]
    finally:
        d.stop()
        sink.stop()
        w.close()


def test_a_broker_restart_while_a_text_is_on_the_wire_sends_it_once(
    mosquitto: Mosquitto, sink: Sink, daemon_factory: Any
) -> None:
    d = daemon_factory(base_config(mosquitto.port, sink.port))
    w = running(d, mosquitto.port)
    try:
        with slow_data(sink, 4.0) as started:
            w.publish("home/alerts/sms", "Smoke in the hall")
            wait_for(lambda: started, 10, "the text on the wire")
            w.close()
            mosquitto.restart()  # the broker sends the unacknowledged message again
            wait_for(lambda: sink.mails, 20, "the text")
        time.sleep(5.0)  # a second copy would have arrived by now
        assert [m.body for m in sink.mails] == ["Smoke in the hall"]
    finally:
        d.stop()


def test_a_kill_mid_message_sends_each_recipient_their_text_once(
    mosquitto: Mosquitto, sink: Sink, daemon_factory: Any
) -> None:
    d = daemon_factory(base_config(mosquitto.port, sink.port, "defaults: {to: [family]}\n"))
    w = running(d, mosquitto.port)
    try:
        with slow_data(sink, 1.5) as started:
            w.publish("home/alerts/sms", "Water in the basement")
            wait_for(lambda: len(sink.mails) == 1, 10, "the first recipient's text")
            wait_for(lambda: len(started) == 2, 10, "the second text on the wire")
            d.kill()  # kill -9 while the second text waits for its 250
        d.start()
        wait_for(lambda: len(sink.mails) >= 2, 20, "the second recipient's text")
        time.sleep(2.0)  # a repeat of the first would be under way by now
        assert by_recipient(sink) == {"5551234567@tmomail.net": 1, "5557654321@vtext.com": 1}
    finally:
        d.stop()
        w.close()
