"""Issue 15, with real parts (Mosquitto, the aiosmtpd sink, the daemon as a subprocess): a
high-priority rule that repeats itself, a cleared retained alert, two daemons on one state
directory, a health file from another run, a dry run counted as sent, a full disk at start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import DaemonProc, Mosquitto, Sink, base_config, running, wait_for
from .test_full_disk import fill, small_disk

LEAK = """
rules:
  - name: leak
    topic: "home/+/leak"
    message: "Water leak: {{ topic_parts[1] }} {{ value_json.level | default('') }}"
    to: [family]
    cooldown: 15m
    priority: high
"""


def test_a_high_priority_rule_texts_a_repeating_leak_once_per_recipient(
    mosquitto: Mosquitto, sink: Sink, daemon_factory: Any
) -> None:
    d = daemon_factory(base_config(mosquitto.port, sink.port, LEAK))
    w = running(d, mosquitto.port)
    for _ in range(3):
        w.publish("home/basement/leak", '{"water_leak": true}')
    wait_for(lambda: len(w.states("suppressed")) == 2, 10, "two repeats suppressed")
    wait_for(lambda: len(sink.mails) == 2, 10, "one text per recipient")
    w.publish("home/basement/leak", '{"water_leak": true, "level": "high"}')
    wait_for(lambda: len(sink.mails) == 4, 10, "the new text, to each recipient")
    time.sleep(0.5)  # nothing more arrives
    bodies = sorted(m.body.strip() for m in sink.mails)
    assert bodies == [
        "Water leak: basement",
        "Water leak: basement",
        "Water leak: basement high (+2 more)",
        "Water leak: basement high (+2 more)",
    ]
    w.close()
    assert d.stop() == 0


def test_clearing_a_retained_alert_texts_no_one(
    mosquitto: Mosquitto, sink: Sink, daemon_factory: Any
) -> None:
    d = daemon_factory(base_config(mosquitto.port, sink.port))
    w = running(d, mosquitto.port)
    w.publish("home/alerts/sms", "the door is open", retain=True)
    wait_for(lambda: sink.mails, 10, "the live alert")
    w.publish("home/alerts/sms", b"", retain=True)  # mosquitto_pub -r -n: clears it
    w.publish("home/alerts/sms", b"  \n", retain=False)  # blank is no alert either
    wait_for(lambda: len(w.states("rejected")) == 2, 10, "two rejected events")
    assert all("empty payload" in e["error"] for e in w.states("rejected"))
    w.publish("home/alerts/sms", "after")
    wait_for(lambda: len(sink.mails) == 2, 10, "the next alert")
    assert [m.body.strip() for m in sink.mails] == ["the door is open", "after"]
    w.close()
    assert d.stop() == 0


def _second(tmp_path: Path, config: str, state: Path) -> DaemonProc:
    where = tmp_path / "second"
    where.mkdir(exist_ok=True)
    return DaemonProc(where, config, {"STATE_DIRECTORY": str(state)})


def test_a_second_daemon_on_one_state_directory_refuses_to_start(
    mosquitto: Mosquitto, sink: Sink, daemon_factory: Any, tmp_path: Path
) -> None:
    config = base_config(mosquitto.port, sink.port)
    first = daemon_factory(config)
    w = running(first, mosquitto.port)
    assert first.proc is not None
    second = _second(tmp_path, config, first.state)
    try:
        second.start()
        assert second.proc is not None
        assert second.proc.wait(20) == 1
        errors = [line for line in second.logtext().splitlines() if "another mqtt2sms" in line]
        assert len(errors) == 1 and f"pid {first.proc.pid}" in errors[0]
        # the first one was never knocked off the broker
        w.publish("home/alerts/sms", "still one daemon")
        wait_for(lambda: sink.mails, 10, "the text")
        assert "disconnected" not in first.logtext().lower()
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        second.start()  # the kernel released the lock with the process
        wait_for(lambda: "started" in second.logtext(), 20, "the second daemon to start")
        assert second.proc.poll() is None
        r = subprocess.run(
            [sys.executable, "-m", "mqtt2sms", "queue", "list", "-c", str(second.config)],
            env=second.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert r.returncode == 0, r.stderr  # a reader of the outbox needs no lock
        assert second.stop() == 0
    finally:
        second.kill()
        w.close()


def _health(d: DaemonProc) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mqtt2sms", "health", "-c", str(d.config)],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_health_speaks_for_this_run_only(
    mosquitto: Mosquitto, sink: Sink, daemon_factory: Any
) -> None:
    d = daemon_factory(base_config(mosquitto.port, sink.port))
    w = running(d, mosquitto.port)
    # online already: the file was written at start, and again when the broker took us
    wait_for(lambda: _health(d).returncode == 0, 4, "healthy before the first 5 s tick")
    assert "broker connected" in _health(d).stdout
    assert d.stop() == 0
    r = _health(d)  # a clean stop: not healthy for two more minutes
    assert r.returncode == 1 and "stopped" in r.stdout, r.stdout + r.stderr
    d.start()
    wait_for(lambda: _health(d).returncode == 0, 15, "healthy again after a restart")
    assert d.proc is not None
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(10)
    r = _health(d)
    assert r.returncode == 1 and "not running" in r.stdout, r.stdout + r.stderr
    w.close()


def test_a_dry_run_is_counted_apart_from_sent(mosquitto: Mosquitto, daemon_factory: Any) -> None:
    d = daemon_factory(base_config(mosquitto.port, None))  # no smtp: a dry run
    w = running(d, mosquitto.port)
    w.publish("home/alerts/sms", "pretend")
    wait_for(lambda: w.states("sent"), 10, "the dry run's event")

    def stats() -> dict[str, Any]:
        return dict(json.loads(w.retained.get("mqtt2sms/stats", "{}")))

    wait_for(lambda: stats().get("dry_run_today") == 1, 10, "dry_run_today 1")
    s = stats()
    assert (s["sent_today"], s["last_sent_at"]) == (0, None)
    w.close()
    assert d.stop() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_full_disk_at_start_exits_1_to_be_restarted(
    mosquitto: Mosquitto, daemon_factory: Any, tmp_path: Path
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        fill(disk)
        d = daemon_factory(
            base_config(mosquitto.port, None), {"STATE_DIRECTORY": str(disk / "state")}
        )
        d.start()
        assert d.proc is not None
        assert d.proc.wait(30) == 1  # 2 is a config error: systemd would never restart it
        errors = [line for line in d.logtext().splitlines() if "state_dir" in line]
        assert len(errors) == 1 and "restarted" in errors[0], d.logtext()
