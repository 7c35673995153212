"""The daemon as a subprocess, a config for the test broker and sink, and waiting for it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

from .mqtt import Watcher
from .sink import Sink
from .wait import wait_for


class DaemonProc:
    def __init__(self, tmp: Path, config_text: str, env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.config = tmp / "config.yaml"
        self.config.write_text(textwrap.dedent(config_text))
        self.state = tmp / "state"
        self.log = tmp / "daemon.log"
        self.env = {**os.environ, "STATE_DIRECTORY": str(self.state), "PYTHONUNBUFFERED": "1"}
        self.env.pop("NOTIFY_SOCKET", None)
        self.env.update(env or {})
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mqtt2sms", "run", "-c", str(self.config)],
                cwd=self.tmp,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=logf,
            )

    def write_config(self, text: str) -> None:
        self.config.write_text(textwrap.dedent(text))

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 15) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def logtext(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def base_config(broker_port: int, smtp_port: int | None, extra: str = "") -> str:
    """A config for the test broker and sink; `extra` is YAML appended at top level."""
    parts = [
        f"""
        mqtt:
          host: 127.0.0.1
          port: {broker_port}
          client_id: mqtt2sms-test
        contacts:
          alex: {{number: "+1 (555) 123-4567", carrier: tmobile}}
          sam: {{email: "5557654321@vtext.com"}}
        groups:
          family: [alex, sam]
        """
    ]
    if "limits:" not in extra:
        parts.append("limits: {per_recipient: 0, daily_cap: 0, retry: {first: 0.2s, max: 1s}}\n")
    if smtp_port is not None:
        parts.append(
            f"""
            smtp:
              host: 127.0.0.1
              port: {smtp_port}
              security: none
              from: alerts@example.org
              timeout: 5s
            """
        )
    if "defaults:" not in extra:
        parts.append("defaults: {to: [alex]}\n")
    parts.append(extra)
    return "\n".join(textwrap.dedent(p) for p in parts)


def wait_online(w: Watcher, timeout: float = 15) -> None:
    wait_for(lambda: w.status() == "online", timeout, "mqtt2sms/status online")


def running(d: DaemonProc, port: int) -> Watcher:
    """Start the daemon with a watcher on the broker; return once it says `online`."""
    w = Watcher(port)
    d.start()
    wait_online(w)
    return w


@contextlib.contextmanager
def stalled_data(sink: Sink, seconds: float, reply: str) -> Iterator[asyncio.Event]:
    """The sink hangs in DATA (the event is set when a send reaches it), then answers."""
    with sink.stalled_data(seconds, reply) as entered:
        yield entered
