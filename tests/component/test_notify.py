"""sd_notify on real AF_UNIX datagram sockets."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqtt2sms.notify import Notifier


def receive_all(sock: socket.socket) -> list[str]:
    out = []
    sock.settimeout(0.2)
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            return out


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        yield str(tmp_path / "notify"), sock


@pytest.fixture
def abstract_socket() -> Iterator[tuple[str, socket.socket]]:
    name = f"mqtt2sms-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        yield "@" + name, sock


@pytest.mark.parametrize("kind", ["path_socket", "abstract_socket"])
def test_messages_arrive_in_order(request: pytest.FixtureRequest, kind: str) -> None:
    address, sock = request.getfixturevalue(kind)
    n = Notifier.from_env({"NOTIFY_SOCKET": address})
    n.ready()
    n.watchdog()
    n.status("waiting for broker\r\n127.0.0.1:1883\x00")
    n.stopping()
    assert receive_all(sock) == [
        "READY=1",
        "WATCHDOG=1",
        "STATUS=waiting for broker 127.0.0.1:1883",
        "STOPPING=1",
    ]


def test_reloading_carries_the_monotonic_clock(path_socket: tuple[str, socket.socket]) -> None:
    address, sock = path_socket
    before = time.monotonic_ns() // 1000
    Notifier.from_env({"NOTIFY_SOCKET": address}).reloading()
    [message] = receive_all(sock)
    first, second = message.split("\n")
    assert first == "RELOADING=1"
    assert second.startswith("MONOTONIC_USEC=")
    assert before <= int(second.split("=")[1]) <= time.monotonic_ns() // 1000


def test_no_op_without_notify_socket() -> None:
    n = Notifier.from_env({})
    n.ready()
    n.status("x")
    n.stopping()
    assert n.watchdog_interval() is None


def test_systemd_gone_is_not_an_error(tmp_path: Path) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    n.ready()
    n.watchdog()


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "20000000"}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], interval: float | None) -> None:
    assert Notifier.from_env(env).watchdog_interval() == interval
