"""A broker that is down when the daemon starts: the log says so, and says when it is back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .conftest import Mosquitto, Watcher, base_config, wait_for, wait_online


def test_a_broker_that_is_down_is_logged_and_its_return_too(
    tmp_path: Path, daemon_factory: Any
) -> None:
    broker = Mosquitto(tmp_path / "mosquitto")  # its port is free: nothing listens yet
    d = daemon_factory(base_config(broker.port, None))
    d.start()
    where = f"127.0.0.1:{broker.port}"
    wait_for(
        lambda: f"cannot reach the broker at {where}: connection refused" in d.logtext(),
        20,
        "the unreachable broker in the log",
    )
    assert d.logtext().count("cannot reach the broker") == 1  # not once per retry
    broker.start()
    try:
        wait_for(
            lambda: f"connected to {where}" in d.logtext() and "reachable again" in d.logtext(),
            45,  # paho's retry delay grows to 30 s
            "the connection in the log",
        )
        w = Watcher(broker.port)
        try:
            wait_online(w)
        finally:
            w.close()
        assert d.stop() == 0
    finally:
        broker.stop()
