"""Real parts for integration tests: Mosquitto, an aiosmtpd sink, the daemon as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message as EmailMessage
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from paho.mqtt.enums import CallbackAPIVersion

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(pred: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# --------------------------------------------------------------------------- Mosquitto


class Mosquitto:
    def __init__(
        self,
        workdir: Path,
        users: dict[str, str] | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        """``users``: name -> password (anonymous refused); ``tls``: (certfile, keyfile)."""
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1"]
        if tls is not None:
            lines += [f"certfile {tls[0]}", f"keyfile {tls[1]}"]
        if users:
            pwfile = workdir / "passwd"
            pwfile.write_text("")
            for name, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pwfile), name, password], check=True)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        lines += [
            "persistence true",
            f"persistence_location {workdir}/",
            "autosave_interval 1",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with open(self.workdir / "mosquitto.log", "ab") as logf:
            self.proc = subprocess.Popen(
                [exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=logf
            )

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return True
            except OSError:
                return False

        wait_for(up, 10, "mosquitto to listen")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _have_mosquitto() -> bool:
    return bool(shutil.which("mosquitto") or os.path.exists("/usr/sbin/mosquitto"))


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    if not _have_mosquitto():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    m = Mosquitto(tmp_path / "mosquitto")
    m.start()
    yield m
    m.stop()


# --------------------------------------------------------------------------- SMTP sink


@dataclass
class Mail:
    sender: str
    rcpts: list[str]
    data: bytes

    @property
    def msg(self) -> EmailMessage:
        return message_from_bytes(self.data)

    @property
    def body(self) -> str:
        payload = self.msg.get_payload(decode=True)
        assert isinstance(payload, bytes)
        return payload.decode("utf-8").strip()


@dataclass
class SinkHandler:
    mails: list[Mail] = field(default_factory=list)
    # each item: (command, code) to answer once; command in RCPT, DATA
    fail_next: list[tuple[str, str]] = field(default_factory=list)
    reject_rcpt: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _take(self, command: str) -> str | None:
        with self.lock:
            for i, (cmd, code) in enumerate(self.fail_next):
                if cmd == command:
                    del self.fail_next[i]
                    return code
        return None

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address in self.reject_rcpt:
            return "550 5.1.1 no such user"
        code = self._take("RCPT")
        if code:
            return code
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        code = self._take("DATA")
        if code:
            return code
        with self.lock:
            self.mails.append(
                Mail(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    bytes(envelope.original_content or envelope.content),
                )
            )
        return "250 2.0.0 queued"

    def bodies(self) -> list[str]:
        with self.lock:
            return [m.body for m in self.mails]


class Sink:
    def __init__(self, users: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.handler = SinkHandler()
        self.controller: Controller | None = None
        self.users = users

    def _auth(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            self.users is not None
            and isinstance(data, LoginPassword)
            and self.users.get(data.login.decode()) == data.password.decode()
        )
        return AuthResult(success=ok, handled=False)

    def start(self) -> None:
        kw: dict[str, Any] = {}
        if self.users is not None:
            kw = {"authenticator": self._auth, "auth_required": True, "auth_require_tls": False}
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **kw)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def mails(self) -> list[Mail]:
        with self.handler.lock:
            return list(self.handler.mails)


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    s.start()
    yield s
    s.stop()


# --------------------------------------------------------------------------- MQTT client


class Watcher:
    """A test client: subscribes to the daemon's topics and publishes alerts."""

    def __init__(
        self,
        port: int,
        base: str = "mqtt2sms",
        auth: tuple[str, str] | None = None,
        ca_certs: str | None = None,
    ) -> None:
        self.base = base
        self.events: list[dict[str, Any]] = []
        self.retained: dict[str, str] = {}
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"watcher-{port}-{id(self)}"
        )
        self.client.on_message = self._on_message
        if auth is not None:
            self.client.username_pw_set(*auth)
        if ca_certs is not None:
            self.client.tls_set(ca_certs=ca_certs)
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{base}/#", qos=1)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))
            if msg.topic == f"{self.base}/event":
                self.events.append(json.loads(msg.payload))
            else:
                self.retained[msg.topic] = msg.payload.decode()

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(5)

    def states(self, state: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if e["state"] == state]

    def status(self) -> str | None:
        with self.lock:
            return self.retained.get(f"{self.base}/status")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --------------------------------------------------------------------------- the daemon


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
    entered = asyncio.Event()

    async def stall(server: Any, session: Any, envelope: Any) -> str:
        entered.set()
        await asyncio.sleep(seconds)
        return reply

    original = sink.handler.handle_DATA
    sink.handler.handle_DATA = stall  # type: ignore[method-assign]
    try:
        yield entered
    finally:
        sink.handler.handle_DATA = original  # type: ignore[method-assign]
