"""`mqtt2sms health`: the verdict on a snapshot, the file, and the command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


# ------------------------------------------------------------------ a file from another run


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _me(**kw: object) -> health.Snapshot:
    rec = health.Recorder(os.devnull)
    mine: dict[str, object] = {"pid": os.getpid(), "pid_start": rec._pid_start}
    return snap(**{**mine, "pid_ns": rec._pid_ns, **kw})


def test_a_snapshot_marked_stopped_is_unhealthy_however_fresh() -> None:
    ok, reason = health.verdict(snap(stopped=True), 1001.0, LIMITS)
    assert not ok and "stopped" in reason


def test_a_snapshot_whose_process_is_gone_is_unhealthy_however_fresh() -> None:
    ok, reason = health.verdict(snap(pid=4242), 1001.0, LIMITS, running=False)
    assert not ok and "pid 4242" in reason and "not running" in reason


def test_process_running_checks_the_pid_and_its_start_time() -> None:
    me = _me()
    assert me.pid_start is not None and me.pid_ns is not None
    assert health.process_running(me)
    assert not health.process_running(snap(pid=_dead_pid()))
    assert not health.process_running(_me(pid_start=(me.pid_start or 0) + 1))  # pid reused
    assert health.process_running(_me(pid_start=None))  # an older daemon's file: pid only
    assert not health.process_running(snap(pid=0))


def test_a_pid_from_another_pid_namespace_is_not_looked_up() -> None:
    assert health.process_running(snap(pid=_dead_pid(), pid_ns="pid:[1]"))


def test_a_file_written_before_these_fields_still_reads(tmp_path: Path) -> None:
    old = snap()
    data = json.loads(old.to_json())
    for name in ("stopped", "pid_start", "pid_ns"):
        del data[name]
    (tmp_path / "h.json").write_text(json.dumps(data))
    assert health.read(str(tmp_path / "h.json")) == old
    data["surprise"] = 1
    (tmp_path / "h.json").write_text(json.dumps(data))
    with pytest.raises(ValueError):
        health.read(str(tmp_path / "h.json"))


def test_the_recorder_writes_at_once_when_forced_and_marks_a_clean_stop(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    rec = health.Recorder(str(path))
    rec.tick(True, time.monotonic(), True, True)
    first = health.read(str(path))
    rec.tick(True, time.monotonic(), True, True, force=True)
    assert health.read(str(path)).mono > first.mono  # nothing changed, written anyway
    assert health.process_running(first) and first.pid == os.getpid()
    rec.stopped()
    assert health.read(str(path)).stopped


def test_the_command_believes_no_file_from_a_dead_or_stopped_daemon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "health.json")
    health.write(path, _me(mono=time.monotonic()))
    assert health.command(str(tmp_path), LIMITS) == 0
    capsys.readouterr()
    health.write(path, snap(pid=_dead_pid(), mono=time.monotonic()))
    assert health.command(str(tmp_path), LIMITS) == 1
    assert "not running" in capsys.readouterr().out
    health.write(path, _me(mono=time.monotonic(), stopped=True))
    assert health.command(str(tmp_path), LIMITS) == 1
    assert "stopped" in capsys.readouterr().out
