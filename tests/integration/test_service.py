"""The daemon as a systemd service: sd_notify, watchdog, reload, stop, and no secret in a log."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    Mosquitto,
    Sink,
    base_config,
    free_port,
    running,
    stalled_data,
    wait_for,
)


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.got: list[tuple[float, str]] = []

    def drain(self) -> list[str]:
        while True:
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, BlockingIOError):
                break
            self.got.append((time.monotonic(), data.decode()))
        return [m for _, m in self.got]

    def lines(self) -> list[str]:
        return [line for m in self.drain() for line in m.splitlines()]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Any:
    s = NotifySocket(tmp_path / "notify.sock")
    yield s
    s.close()


def test_ready_watchdog_status_before_the_broker(
    tmp_path: Path, notify_socket: NotifySocket, daemon_factory: Any
) -> None:
    """READY comes at once, even while the broker is down; STATUS says why nothing happens."""
    port = free_port()  # nothing listens here
    d = daemon_factory(
        base_config(port, None),
        env={"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "1000000"},
    )
    started = time.monotonic()
    d.start()
    wait_for(lambda: "READY=1" in notify_socket.lines(), 10, "READY=1")
    ready_at = next(t for t, m in notify_socket.got if "READY=1" in m)
    print(f"READY after {ready_at - started:.2f}s (includes the interpreter's start)")
    wait_for(
        lambda: sum("WATCHDOG=1" in m for m in notify_socket.drain()) >= 3,
        10,
        "three watchdog pings",
    )
    statuses = [line for line in notify_socket.lines() if line.startswith("STATUS=")]
    assert any(f"waiting for broker 127.0.0.1:{port}" in s for s in statuses)
    d.signal(signal.SIGTERM)
    assert d.proc.wait(15) == 0
    assert "STOPPING=1" in notify_socket.lines()


def test_reload_bad_config_keeps_old_and_new_rule_applies(
    mosquitto: Mosquitto, sink: Sink, notify_socket: NotifySocket, daemon_factory: Any
) -> None:
    d = daemon_factory(
        base_config(mosquitto.port, sink.port), env={"NOTIFY_SOCKET": str(notify_socket.path)}
    )
    w = running(d, mosquitto.port)
    wait_for(
        lambda: any("connected to" in line for line in notify_socket.lines()),
        10,
        "a connected STATUS",
    )
    # a broken config: logged, the old one keeps working
    d.write_config("rules:\n  - name: x\n    topic: a/#/b\n    to: [nobody]\n")
    d.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in d.logtext(), 10, "the refused reload in the log")
    assert "config.yaml:3" in d.logtext()
    lines = notify_socket.lines()
    assert "RELOADING=1" in " ".join(lines)
    w.publish("home/alerts/sms", "still here")
    wait_for(lambda: sink.mails, 10, "a text with the old config")
    # a good config with a new rule
    d.write_config(
        base_config(
            mosquitto.port,
            sink.port,
            """
    rules:
      - name: door
        topic: house/door
        message: "Door: {{ value }}"
    """,
        )
    )
    notify_socket.drain()
    seen = len(notify_socket.got)
    d.signal(signal.SIGHUP)

    def ready_again() -> bool:
        notify_socket.drain()
        after = [m for _, m in notify_socket.got[seen:]]
        reloading = [i for i, m in enumerate(after) if "RELOADING=1" in m]
        return bool(reloading) and any("READY=1" in m for m in after[reloading[0] :])

    # READY=1 comes once the new rule is in force: a message right after it is not missed
    wait_for(ready_again, 10, "RELOADING=1 then READY=1")
    w.publish("house/door", "open")
    wait_for(lambda: len(sink.mails) >= 2, 10, "a text from the new rule")
    assert [m.body for m in sink.mails] == ["still here", "Door: open"]
    assert d.stop() == 0
    w.close()


def test_sigterm_during_a_send_exits_0_and_loses_nothing(
    mosquitto: Mosquitto, sink: Sink, daemon_factory: Any
) -> None:
    d = daemon_factory(base_config(mosquitto.port, sink.port))
    w = running(d, mosquitto.port)
    with stalled_data(sink, 30, "451 too late") as entered:
        w.publish("home/alerts/sms", "in flight at the stop")
        wait_for(entered.is_set, 10, "the send to start")
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        assert d.proc.wait(15) == 0
        took = time.monotonic() - t0
        assert took < 12, f"the stop took {took:.1f}s"
    # either sent or still queued / unacknowledged: after a restart it arrives
    d.start()
    wait_for(lambda: sink.mails, 20, "the text after the restart")
    assert [m.body for m in sink.mails] == ["in flight at the stop"]
    d.stop()
    w.close()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_no_secret_in_any_log_line(mosquitto: Mosquitto, daemon_factory: Any) -> None:
    secret = "s3cret-Passw0rd-XYZ"
    sink = Sink(users={"alerts@example.org": "another-one"})
    sink.start()
    d = daemon_factory(
        base_config(
            mosquitto.port,
            None,
            f"""
    smtp:
      host: 127.0.0.1
      port: {sink.port}
      security: none
      username: alerts@example.org
      password: ${{SMTP_PASSWORD}}
      from: alerts@example.org
    """,
        ),
        env={"SMTP_PASSWORD": secret},
    )
    w = running(d, mosquitto.port)
    try:
        w.publish("home/alerts/sms", "hello")
        wait_for(lambda: w.states("deferred"), 10, "the failed login")
        d.signal(signal.SIGHUP)
        wait_for(lambda: "config reloaded" in d.logtext(), 10, "the reload")
    finally:
        d.stop()
        sink.stop()
        w.close()
    everything = d.logtext() + "".join(str(e) for e in w.events) + str(w.retained)
    assert "535" in everything or "auth" in everything.lower()
    assert secret not in everything
    import base64

    assert base64.b64encode(secret.encode()).decode() not in everything
