"""``smtp.timeout`` bounds a whole send, not each read (issue 16, 5 l).

A raw socket SMTP server on 127.0.0.1 answers normally or drips one of its replies one byte
every ``DRIP`` seconds: a per-read timeout restarts with every byte, so only a deadline for
the whole send (connect to the final reply) keeps a slow server from holding a text.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqtt2sms.config import SmtpConfig
from mqtt2sms.errors import TemporaryDeliveryError
from mqtt2sms.transports.base import OutgoingText
from mqtt2sms.transports.smtp import SmtpTransport
from tests.harness import TlsFiles

DRIP = 0.5
TIMEOUT = 2.0


class DripServer:
    """An SMTP server that answers every command; the reply to ``drip`` comes a byte at a time.

    ``drip``: "greeting", "EHLO", "MAIL", "RCPT", "DATA" (the 354) or "." (the final reply
    after the data), or None for a server that answers everything at once; with ``tls``,
    "handshake-starttls" or "handshake-ssl": the TLS handshake after STARTTLS, or at once.
    """

    def __init__(self, drip: str | None, tls: TlsFiles | None = None, pace: float = DRIP) -> None:
        self.drip = drip
        self.tls = tls
        self.pace = pace  # seconds between two dripped bytes
        self.connections = 0
        self.mails = 0
        self._stop = threading.Event()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen()
        self._listener.settimeout(0.05)  # accept() wakes up to see stop()
        self._conns: list[socket.socket] = []
        self.port: int = self._listener.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def stop(self) -> None:
        self._stop.set()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            self._conns.append(conn)
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _reply(self, conn: socket.socket, step: str, line: str) -> None:
        data = (line + "\r\n").encode()
        if step != self.drip:
            conn.sendall(data)
            return
        for i in range(len(data)):
            if self._stop.is_set():
                raise OSError("stopped")
            conn.sendall(data[i : i + 1])
            time.sleep(self.pace)

    def _drip_handshake(self, conn: socket.socket) -> None:
        """Our side of a TLS handshake, every byte we send dripped."""
        assert self.tls is not None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.tls.cert, self.tls.key)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing, server_side=True)
        while not self._stop.is_set():
            with contextlib.suppress(ssl.SSLWantReadError):
                tls.do_handshake()
            pending = outgoing.read()
            for i in range(len(pending)):
                if self._stop.is_set():
                    return
                conn.sendall(pending[i : i + 1])
                time.sleep(self.pace)
            if not pending:
                data = conn.recv(65536)
                if not data:
                    return
                incoming.write(data)

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ssl.SSLError), conn, conn.makefile("rb") as lines:
            if self.drip == "handshake-ssl":
                self._drip_handshake(conn)
                return
            self._reply(conn, "greeting", "220 drip.test ESMTP")
            for raw in lines:
                verb = raw.decode("ascii", "replace").split(" ", 1)[0].strip().upper()
                if verb in ("EHLO", "HELO"):
                    self._reply(conn, "EHLO", "250-drip.test\r\n250 STARTTLS")
                elif verb == "STARTTLS":
                    self._reply(conn, verb, "220 ok")
                    self._drip_handshake(conn)
                    return
                elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                    self._reply(conn, verb, "250 2.0.0 OK")
                elif verb == "DATA":
                    self._reply(conn, "DATA", "354 go ahead")
                    for body in lines:
                        if body in (b".\r\n", b".\n"):
                            break
                    self.mails += 1
                    self._reply(conn, ".", "250 2.0.0 OK queued")
                elif verb == "QUIT":
                    self._reply(conn, "QUIT", "221 bye")
                    return
                else:
                    self._reply(conn, verb, "502 5.5.2 what")


@pytest.fixture
def drip_server(request: pytest.FixtureRequest) -> Iterator[DripServer]:
    server = DripServer(getattr(request, "param", None))
    yield server
    server.stop()


_made: list[SmtpTransport] = []


@pytest.fixture(autouse=True)
def _close_transports() -> Iterator[None]:
    yield
    while _made:
        _made.pop().close()


def transport(port: int, timeout: float = TIMEOUT, **kw: str) -> SmtpTransport:
    """A transport to ``port``, closed after the test."""
    t = SmtpTransport(
        SmtpConfig(
            host="127.0.0.1",
            port=port,
            from_addr="house@example.org",
            security=kw.pop("security", "none"),
            timeout=timeout,
            **kw,  # type: ignore[arg-type]
        )
    )
    _made.append(t)
    return t


def text(n: int = 1) -> OutgoingText:
    return OutgoingText(id=f"t{n}", address="5551234567@tmomail.net", body=f"leak {n}")


@pytest.mark.parametrize(
    "drip_server", ["greeting", "EHLO", "MAIL", "RCPT", "DATA", "."], indirect=True
)
def test_a_dripping_reply_ends_the_send_at_the_timeout(drip_server: DripServer) -> None:
    t = transport(drip_server.port)
    started = time.monotonic()
    with pytest.raises(TemporaryDeliveryError, match=r"timed out after 2s") as info:
        t.send(text())
    took = time.monotonic() - started
    assert info.value.scope == "transport"
    assert TIMEOUT - 0.1 <= took < TIMEOUT + 1.0, took
    t.close()


@pytest.mark.parametrize("drip_server", ["."], indirect=True)
def test_after_a_deadline_the_connection_is_discarded(drip_server: DripServer) -> None:
    t = transport(drip_server.port)
    with pytest.raises(TemporaryDeliveryError, match="timed out"):
        t.send(text(1))
    drip_server.drip = None  # the server is quick again
    t.send(text(2))  # on a new connection, not the one left mid-reply
    t.close()
    assert (drip_server.connections, drip_server.mails) == (2, 2)


def test_the_deadline_is_per_send_not_per_connection(drip_server: DripServer) -> None:
    t = transport(drip_server.port, timeout=0.6)
    t.send(text(1))
    time.sleep(0.8)  # longer than the timeout, idle between sends on the same connection
    t.send(text(2))
    t.close()
    assert (drip_server.connections, drip_server.mails) == (1, 2)


@pytest.mark.parametrize("drip_server", ["greeting"], indirect=True)
def test_probe_and_close_are_bounded_too(drip_server: DripServer) -> None:
    t = transport(drip_server.port)
    started = time.monotonic()
    with pytest.raises(TemporaryDeliveryError, match="timed out"):
        t.probe()
    assert time.monotonic() - started < TIMEOUT + 1.0


@pytest.mark.parametrize("drip_server", ["greeting"], indirect=True)
def test_a_dripping_server_holds_back_no_other_way_out_and_lets_go_at_the_timeout(
    drip_server: DripServer, tmp_path: Path
) -> None:
    from tests.component.test_engine import Rig

    rig = Rig(tmp_path)
    rig.smtp = transport(drip_server.port)  # type: ignore[assignment]
    rig.loaded = rig.load(
        "rules:\n  - {name: slow, topic: slow, to: [alex]}\n"
        "  - {name: other, topic: other, to: [sam], via: [twilio]}\n"
    )
    rig.engine.stop(0)
    rig.engine = rig.make(threaded=True)
    try:
        started = time.monotonic()
        rig.engine.submit(rig.message("by smtp", "slow"))
        rig.engine.submit(rig.message("by twilio", "other"))
        wait = threading.Event()
        while not rig.twilio.delivered and time.monotonic() - started < TIMEOUT:
            wait.wait(0.02)
        assert [t.body for t in rig.twilio.delivered] == ["by twilio"]
        assert time.monotonic() - started < TIMEOUT / 2  # not behind the dripping server
        while not rig.events("deferred") and time.monotonic() - started < 3 * TIMEOUT:
            wait.wait(0.02)
        took = time.monotonic() - started
        (deferred,) = rig.events("deferred")
        assert deferred["via"] == "smtp" and "timed out after 2s" in deferred["error"]
        assert took < TIMEOUT + 1.0, took
    finally:
        rig.engine.stop(2)
        rig.outbox.close()


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_a_dripping_tls_handshake_ends_the_send_at_the_timeout(
    tls_files: TlsFiles, security: str
) -> None:
    server = DripServer(f"handshake-{security}", tls_files)
    try:
        t = transport(server.port, security=security, ca_certs=tls_files.cert)
        started = time.monotonic()
        with pytest.raises(TemporaryDeliveryError, match=r"timed out after 2s") as info:
            t.send(text())
        took = time.monotonic() - started
        assert info.value.scope == "transport"
        assert TIMEOUT - 0.1 <= took < TIMEOUT + 1.0, took
    finally:
        server.stop()


def test_a_handshake_after_a_slow_starttls_reply_gets_only_what_is_left(
    tls_files: TlsFiles,
) -> None:
    """The reply to STARTTLS ends in time (1.75 s of 2); the handshake then may not start a
    fresh timeout of its own (CPython bounds a handshake by the socket's timeout)."""
    server = DripServer("STARTTLS", tls_files, pace=0.25)  # "220 ok\r\n": 8 bytes
    try:
        t = transport(server.port, security="starttls", ca_certs=tls_files.cert)
        started = time.monotonic()
        with pytest.raises(TemporaryDeliveryError, match=r"timed out after 2s"):
            t.send(text())
        took = time.monotonic() - started
        assert TIMEOUT - 0.1 <= took < TIMEOUT + 1.0, took
    finally:
        server.stop()
