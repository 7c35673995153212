"""Real parts for integration tests, from tests.harness: Mosquitto, an aiosmtpd sink, the daemon
as a subprocess. The names here are the ones the tests import; the marker is applied by the
hook in tests/conftest.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import missing_binary
from tests.harness import (
    DaemonProc,
    Mail,
    Mosquitto,
    Sink,
    SinkHandler,
    WaitTimeout,
    Watcher,
    base_config,
    free_port,
    have_mosquitto,
    running,
    stalled_data,
    wait_for,
    wait_online,
)

__all__ = [
    "DaemonProc",
    "Mail",
    "Mosquitto",
    "Sink",
    "SinkHandler",
    "WaitTimeout",
    "Watcher",
    "base_config",
    "free_port",
    "running",
    "stalled_data",
    "wait_for",
    "wait_online",
]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    if not have_mosquitto():
        missing_binary("mosquitto", "apt-get install mosquitto")
    m = Mosquitto(tmp_path / "mosquitto")
    m.start()
    yield m
    m.stop()


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    s.start()
    yield s
    s.stop()


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[..., DaemonProc]]:
    made: list[DaemonProc] = []

    def make(config_text: str, env: dict[str, str] | None = None) -> DaemonProc:
        d = DaemonProc(tmp_path, config_text, env)
        made.append(d)
        return d

    yield make
    for d in made:
        d.kill()
