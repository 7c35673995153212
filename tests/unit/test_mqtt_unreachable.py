"""mqtt.py: an unreachable broker is logged at once, then every few minutes, and its end."""

from __future__ import annotations

import datetime as dt
import logging
import socket
import ssl
from types import SimpleNamespace

import pytest

from mqtt2sms import mqtt
from mqtt2sms.config import MqttConfig


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def link(clock: Clock) -> mqtt.MqttLink:
    cfg = MqttConfig(host="127.0.0.1", port=1884)
    return mqtt.MqttLink(
        cfg, [], lambda _m: None, lambda _o: None, lambda: dt.datetime.now(dt.UTC), clock
    )


def fail(lk: mqtt.MqttLink, exc: OSError) -> None:
    try:
        raise exc
    except OSError:  # as paho calls on_connect_fail: inside its except clause
        lk._connect_failed(lk.client, None)


def test_first_failure_then_every_five_minutes_then_the_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "mqtt2sms.mqtt")
    clock = Clock()
    lk = link(clock)
    for _ in range(10):  # paho retries every 1-30 s: one line, not ten
        fail(lk, ConnectionRefusedError(111, "Connection refused"))
        clock.t += 20
    assert [r.getMessage() for r in caplog.records] == [
        "cannot reach the broker at 127.0.0.1:1884: connection refused "
        "(is the broker running, and on this port?); retrying"
    ]
    clock.t = 1000.0 + mqtt.UNREACHABLE_LOG_EVERY
    fail(lk, TimeoutError("timed out"))
    assert caplog.records[-1].getMessage() == (
        "still cannot reach the broker at 127.0.0.1:1884 (for 5m): timed out; retrying"
    )
    clock.t += 60
    lk._connected(lk.client, None, SimpleNamespace(session_present=False), _Ok(), None)
    assert caplog.records[-1].getMessage() == (
        "connected to 127.0.0.1:1884 (session new), reachable again after 6m"
    )
    caplog.clear()
    fail(lk, ConnectionRefusedError(111, "Connection refused"))  # a new outage: said at once
    assert len(caplog.records) == 1


class _Ok:
    is_failure = False


@pytest.mark.parametrize(
    ("exc", "said"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
        (socket.gaierror(-2, "Name or service not known"), "host name not known"),
        (TimeoutError("timed out"), "timed out"),
        (ssl.SSLError(1, "boom"), "TLS"),
        (OSError(113, "No route to host"), "No route to host"),
        (None, "connection failed"),
    ],
)
def test_connect_failure_reasons(exc: BaseException | None, said: str) -> None:
    assert said in mqtt.connect_failure(exc)
