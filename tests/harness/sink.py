"""One SMTP sink on aiosmtpd, in-process (tests) or as a process of its own (benchmarks).

In-process::

    sink = Sink(security="starttls", tls=tls_files, users={"u": "p"}); sink.start()
    sink.answer("RCPT", "451 4.3.0 later", times=3)   # scripted replies per SMTP step
    sink.mails[0].body; sink.connections; sink.drop(); sink.stop()

As a process (``python -m tests.harness sink --port P --out FILE --mode-file FILE``, see
``SinkProc``): it appends one line per accepted mail to FILE,

    <time.time() at the end of DATA> <seq> <publish time in microseconds>

with seq and the publish time read from a body ``bench <seq> <us>``; mails without one are
accepted and not written. The mode file holds ``ok``, ``451`` or ``421``: the reply DATA gets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.message import Message as LegacyMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from .tls import TlsFiles
from .wait import free_port, port_open, wait_for

ROOT = Path(__file__).resolve().parents[2]
BENCH_BODY = re.compile(rb"bench (\d+) (\d+)")
STEPS = ("MAIL", "RCPT", "DATA")


@dataclass
class Mail:
    sender: str
    rcpts: list[str]
    data: bytes

    @property
    def content(self) -> bytes:
        return self.data

    @property
    def msg(self) -> LegacyMessage:
        return message_from_bytes(self.data)

    def message(self) -> EmailMessage:
        msg = message_from_bytes(self.data.replace(b"\r\n", b"\n"), policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg

    @property
    def body(self) -> str:
        payload = self.msg.get_payload(decode=True)
        assert isinstance(payload, bytes)
        return payload.decode("utf-8").strip()


@dataclass
class SinkHandler:
    """Records mails. Replies can be scripted per step (MAIL, RCPT, DATA): ``answer`` queues
    replies, each used once; ``fail_next`` is the older list of (step, reply) pairs;
    ``reject_rcpt`` answers 550 for these addresses every time; ``data_reply`` (if set) is asked
    at each DATA and its non-None answer is the reply; ``on_mail`` sees each accepted mail."""

    mails: list[Mail] = field(default_factory=list)
    servers: list[Any] = field(default_factory=list)  # one per connection that sent MAIL
    replies: dict[str, list[str]] = field(default_factory=dict)
    fail_next: list[tuple[str, str]] = field(default_factory=list)
    reject_rcpt: set[str] = field(default_factory=set)
    data_reply: Callable[[], str | None] | None = None
    on_mail: Callable[[Mail], None] | None = None
    keep_mails: bool = True
    accepted: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, step: str, reply: str, times: int = 1) -> None:
        if step not in STEPS:
            raise ValueError(f"step must be one of {STEPS}, not {step!r}")
        with self.lock:
            self.replies.setdefault(step, []).extend([reply] * times)

    def _scripted(self, step: str) -> str | None:
        with self.lock:
            queue = self.replies.get(step)
            if queue:
                return queue.pop(0)
            for i, (cmd, code) in enumerate(self.fail_next):
                if cmd == step:
                    del self.fail_next[i]
                    return code
        return None

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self.lock:
            if server not in self.servers:
                self.servers.append(server)
        if reply := self._scripted("MAIL"):
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.reject_rcpt:
            return "550 5.1.1 no such user"
        if reply := self._scripted("RCPT"):
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply is not None and (reply := self.data_reply()):
            return reply
        if reply := self._scripted("DATA"):
            return reply
        mail = Mail(
            envelope.mail_from,
            list(envelope.rcpt_tos),
            bytes(envelope.original_content or envelope.content),
        )
        if self.on_mail is not None:
            self.on_mail(mail)
        with self.lock:
            self.accepted += 1
            if self.keep_mails:
                self.mails.append(mail)
            return f"250 2.0.0 OK queued as Q{self.accepted}"

    def bodies(self) -> list[str]:
        with self.lock:
            return [m.body for m in self.mails]


class Sink:
    """``security``: ``none``, ``starttls`` (required) or ``ssl`` (implicit TLS, needs ``tls``);
    ``users``: login -> password for AUTH; ``auth_required``: refuse mail without AUTH
    (default: when there are users). The port is chosen at once, so a test can give it to
    the daemon before ``start()``; ``start()`` after ``stop()`` listens on it again."""

    def __init__(
        self,
        users: dict[str, str] | None = None,
        *,
        security: str = "none",
        tls: TlsFiles | None = None,
        auth_required: bool | None = None,
        port: int | None = None,
        server_hostname: str | None = None,
    ) -> None:
        if security not in ("none", "starttls", "ssl"):
            raise ValueError(f"security must be none, starttls or ssl, not {security!r}")
        if security != "none" and tls is None:
            raise ValueError(f"security {security!r} needs tls files")
        self.port = port or free_port()
        self.users = users
        self.security = security
        self.tls = tls
        self.auth_required = users is not None if auth_required is None else auth_required
        self.server_hostname = server_hostname
        self.handler = SinkHandler()
        self.controller: Controller | None = None

    def _auth(self, *args: Any) -> AuthResult:
        data = args[-1]
        ok = (
            self.users is not None
            and isinstance(data, LoginPassword)
            and self.users.get(data.login.decode()) == data.password.decode()
        )
        return AuthResult(success=ok, handled=False)

    def start(self) -> Sink:
        kw: dict[str, Any] = {}
        if self.server_hostname is not None:
            kw["server_hostname"] = self.server_hostname
        if self.tls is not None and self.security != "none":
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.tls.cert, self.tls.key)
            if self.security == "starttls":
                kw.update(tls_context=ctx, require_starttls=True)
            else:  # implicit TLS: AUTH must be offered without STARTTLS
                kw.update(ssl_context=ctx, auth_require_tls=False)
        if self.users is not None:
            kw.update(authenticator=self._auth, auth_required=self.auth_required)
            if self.security == "none":
                kw["auth_require_tls"] = False
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **kw)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def mails(self) -> list[Mail]:
        with self.handler.lock:
            return list(self.handler.mails)

    @property
    def connections(self) -> int:
        """Connections that carried at least one MAIL FROM."""
        with self.handler.lock:
            return len(self.handler.servers)

    def answer(self, step: str, reply: str, times: int = 1) -> None:
        self.handler.answer(step, reply, times)

    def drop(self) -> None:
        """Close every connection from the server's side, as an idle timeout would."""
        assert self.controller is not None, "the sink is not running"

        async def close_all() -> None:
            for server in list(self.handler.servers):
                if server.transport is not None:
                    server.transport.close()
            await asyncio.sleep(0.05)  # let the loop run the closes before returning

        asyncio.run_coroutine_threadsafe(close_all(), self.controller.loop).result(5)

    @contextlib.contextmanager
    def stalled_data(self, seconds: float, reply: str) -> Iterator[asyncio.Event]:
        """DATA hangs for ``seconds`` then answers ``reply``; the event is set when a send
        reaches it."""
        entered = asyncio.Event()

        async def stall(server: Any, session: Any, envelope: Any) -> str:
            entered.set()
            await asyncio.sleep(seconds)
            return reply

        original = self.handler.handle_DATA
        self.handler.handle_DATA = stall  # type: ignore[method-assign]
        try:
            yield entered
        finally:
            self.handler.handle_DATA = original  # type: ignore[method-assign]


# --------------------------------------------------------------------------- as a process


class SinkProc:
    """The sink in its own process; ``received()`` reads what it has recorded so far."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.out = workdir / "sink.txt"
        self.mode_file = workdir / "sink.mode"
        self.out.write_text("")
        self.mode_file.write_text("ok")
        self.proc: subprocess.Popen[bytes] | None = None
        self._pos = 0
        self._lines: list[tuple[float, int, int]] = []

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.harness", "sink", "--port", str(self.port),
             "--out", str(self.out), "--mode-file", str(self.mode_file)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(lambda: port_open(self.port), 10, "the SMTP sink to listen")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def set_mode(self, mode: str) -> None:
        """``ok``, or an SMTP reply code to give to DATA for a while (``451``, ``421``)."""
        tmp = self.mode_file.with_suffix(".tmp")
        tmp.write_text(mode)
        tmp.replace(self.mode_file)

    def received(self) -> list[tuple[float, int, int]]:
        """(arrival time, seq, publish time in us) of every mail so far."""
        with open(self.out, "rb") as f:
            f.seek(self._pos)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1
        self._pos += end
        for line in chunk[:end].splitlines():
            t, seq, sent = line.split()
            self._lines.append((float(t), int(seq), int(sent)))
        return self._lines


MODE_REPLIES = {
    "421": "421 4.3.2 service shutting down (bench)",
    "451": "451 4.3.0 try again later (bench)",
}


def serve(port: int, out: str, mode_file: str) -> None:
    """Run a Sink until SIGTERM or SIGINT, writing accepted bench mails to ``out``."""
    f = open(out, "ab", buffering=0)  # noqa: SIM115 (kept open for the life of the process)
    mode = ["ok"]
    checked = [0.0]

    def data_reply() -> str | None:
        now = time.monotonic()
        if now - checked[0] > 0.05:  # read the file at most 20 times a second
            checked[0] = now
            try:
                mode[0] = Path(mode_file).read_text().strip() or "ok"
            except OSError:
                mode[0] = "ok"
        return MODE_REPLIES.get(mode[0])

    def on_mail(mail: Mail) -> None:
        found = BENCH_BODY.search(mail.data)
        if found:
            f.write(b"%.6f %s %s\n" % (time.time(), found.group(1), found.group(2)))

    sink = Sink(port=port)
    sink.handler.data_reply = data_reply
    sink.handler.on_mail = on_mail
    sink.handler.keep_mails = False  # a soak run sends tens of thousands
    sink.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    sink.stop()
    f.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="the test and benchmark SMTP sink, as a process")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mode-file", required=True)
    a = ap.parse_args(argv)
    serve(a.port, a.out, a.mode_file)
