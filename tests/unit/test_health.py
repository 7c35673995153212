"""`mqtt2sms health`: the verdict on a snapshot, the file, and the command."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mqtt2sms import health

LIMITS = health.Limits(stale=120, broker_down=300, stuck=60)


def snap(**kw: object) -> health.Snapshot:
    base: dict[str, object] = dict(
        pid=1,
        mono=1000.0,
        wall="2026-12-01T22:00:00+00:00",
        sender_alive=True,
        sender_heartbeat=1000.0,
        watchdog_ok=True,
        broker_connected=True,
        broker_down_since=None,
    )
    base.update(kw)
    return health.Snapshot(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("s", "now", "ok", "words"),
    [
        (snap(), 1010.0, True, "ok"),
        (snap(), 1121.0, False, "not running"),
        (snap(sender_alive=False), 1001.0, False, "stopped"),
        (snap(watchdog_ok=False, sender_heartbeat=900.0), 1001.0, False, "stuck"),
        (snap(watchdog_ok=False), 1001.0, False, "MQTT loop"),
        (snap(broker_connected=False, broker_down_since=800.0), 1001.0, True, "unreachable"),
        (snap(broker_connected=False, broker_down_since=600.0), 1001.0, False, "unreachable"),
    ],
)
def test_verdict(s: health.Snapshot, now: float, ok: bool, words: str) -> None:
    got_ok, reason = health.verdict(s, now, LIMITS)
    assert got_ok is ok and words in reason


def test_write_read_round_trip_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = str(tmp_path / "health.json")
    health.write(path, snap())
    health.write(path, snap(broker_connected=False, broker_down_since=990.0))
    assert health.read(path) == snap(broker_connected=False, broker_down_since=990.0)
    assert os.listdir(tmp_path) == ["health.json"]


def test_a_bad_file_is_a_value_error(tmp_path: Path) -> None:
    (tmp_path / "h.json").write_text('{"pid": 1}')
    with pytest.raises(ValueError):
        health.read(str(tmp_path / "h.json"))


def test_the_recorder_writes_on_change_only(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    rec = health.Recorder(str(path))
    rec.tick(True, time.monotonic(), True, False)
    first = health.read(str(path))
    assert not first.broker_connected and first.broker_down_since is not None
    rec.tick(True, time.monotonic(), True, False)
    assert health.read(str(path)) == first  # nothing changed, so not rewritten
    rec.tick(True, time.monotonic(), True, True)
    assert health.read(str(path)).broker_down_since is None


def test_the_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert health.command(str(tmp_path), LIMITS) == 1
    assert "has not started" in capsys.readouterr().err
    health.write(str(tmp_path / "health.json"), snap(mono=time.monotonic()))
    assert health.command(str(tmp_path), LIMITS) == 0
    assert capsys.readouterr().out.startswith("healthy: ok")
