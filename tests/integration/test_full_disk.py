"""A full disk under the state directory delays alerts; it never drops one.

A real tmpfs of a few MB is mounted for the state directory and filled up (root only:
skipped elsewhere). Before the engine, alerts the outbox could not take were left
unacknowledged "for redelivery", which a broker makes only on reconnect: 3 of 5 were lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Mosquitto, Sink, base_config, running, wait_for


@contextlib.contextmanager
def small_disk(where: Path) -> Iterator[Path]:
    where.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    return filler


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_alerts_wait_in_memory_while_the_disk_is_full_and_all_arrive(
    mosquitto: Mosquitto, daemon_factory: Any, tmp_path: Path
) -> None:
    sink = Sink()  # SMTP down: every alert has to be committed
    with small_disk(tmp_path / "disk") as disk:
        d = daemon_factory(
            base_config(mosquitto.port, sink.port), {"STATE_DIRECTORY": str(disk / "state")}
        )
        w = running(d, mosquitto.port)
        filler = fill(disk)
        for i in range(5):
            w.publish("home/alerts/sms", f"alert {i}")
        wait_for(
            lambda: (
                "outbox:"
                in (json.loads(w.retained.get("mqtt2sms/stats", "{}")).get("last_error") or "")
            ),
            15,
            "the disk error in stats",
        )
        assert w.states("deferred") == []  # nothing was committed, so nothing is deferred
        assert "cannot commit" in d.logtext()
        filler.unlink()
        wait_for(
            lambda: len(w.states("deferred")) >= 5, 40, "5 texts committed once space returned"
        )
        sink.start()
        try:
            wait_for(lambda: len(sink.mails) >= 5, 30, "5 mails")
            bodies = sorted(m.body.strip() for m in sink.mails)
            assert bodies == [f"alert {i}" for i in range(5)]
        finally:
            sink.stop()
        w.close()
        assert d.stop() == 0
