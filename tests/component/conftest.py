"""Real parts for component tests: a self-signed certificate and an aiosmtpd sink."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.conftest import TlsFiles


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def free_port() -> Callable[[], int]:
    """Gives a TCP port on 127.0.0.1 that nothing listens on (right now)."""
    return _free_port


@dataclass
class Mail:
    sender: str
    rcpts: list[str]
    content: bytes

    def message(self) -> EmailMessage:
        msg = message_from_bytes(self.content.replace(b"\r\n", b"\n"), policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class SinkHandler:
    """Records mails; ``answer(step, reply)`` makes MAIL, RCPT or DATA fail on command."""

    mails: list[Mail] = field(default_factory=list)
    servers: list[Any] = field(default_factory=list)  # one per connection that sent MAIL
    replies: dict[str, list[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, step: str, reply: str, times: int = 1) -> None:
        with self.lock:
            self.replies.setdefault(step, []).extend([reply] * times)

    def _scripted(self, step: str) -> str | None:
        with self.lock:
            queue = self.replies.get(step)
            return queue.pop(0) if queue else None

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
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
        if reply := self._scripted("RCPT"):
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if reply := self._scripted("DATA"):
            return reply
        with self.lock:
            self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            return f"250 2.0.0 OK queued as Q{len(self.mails)}"


@dataclass
class Sink:
    controller: Controller
    handler: SinkHandler

    @property
    def port(self) -> int:
        return int(self.controller.port)

    @property
    def mails(self) -> list[Mail]:
        return self.handler.mails

    @property
    def connections(self) -> int:
        """Connections that carried at least one MAIL FROM."""
        return len(self.handler.servers)

    def answer(self, step: str, reply: str, times: int = 1) -> None:
        self.handler.answer(step, reply, times)

    def drop(self) -> None:
        """Close every connection from the server's side, as an idle timeout would."""

        async def close_all() -> None:
            for server in self.handler.servers:
                if server.transport is not None:
                    server.transport.close()
            await asyncio.sleep(0.05)

        asyncio.run_coroutine_threadsafe(close_all(), self.controller.loop).result(5)


MakeSink = Callable[..., Sink]


@pytest.fixture
def make_sink(request: pytest.FixtureRequest) -> Iterator[MakeSink]:
    """Start aiosmtpd sinks: ``make_sink(security="none"|"starttls"|"ssl", users={u: p})``."""
    started: list[Controller] = []

    def make(security: str = "none", users: dict[str, str] | None = None) -> Sink:
        handler = SinkHandler()
        kwargs: dict[str, Any] = {}
        if security != "none":
            tls_files: TlsFiles = request.getfixturevalue("tls_files")
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(tls_files.cert, tls_files.key)
            if security == "starttls":
                kwargs.update(tls_context=ctx, require_starttls=True)
            else:  # implicit TLS: AUTH must be offered without STARTTLS
                kwargs.update(ssl_context=ctx, auth_require_tls=False)
        if users is not None:

            def authenticator(*args: Any) -> AuthResult:
                data = args[-1]
                ok = isinstance(data, LoginPassword) and (
                    users.get(data.login.decode()) == data.password.decode()
                )
                return AuthResult(success=ok, handled=False)

            # auth_required with auth_require_tls=False would warn (warnings are errors here)
            kwargs.update(authenticator=authenticator, auth_required=security == "starttls")
        controller = Controller(
            handler, hostname="127.0.0.1", port=_free_port(), server_hostname="sink.test", **kwargs
        )
        controller.start()
        started.append(controller)
        return Sink(controller, handler)

    yield make
    for controller in started:
        controller.stop()
