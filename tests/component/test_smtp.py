"""SmtpTransport against a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from mqtt2sms.config import SmtpConfig
from mqtt2sms.errors import PermanentDeliveryError, TemporaryDeliveryError
from mqtt2sms.transports.base import OutgoingText
from mqtt2sms.transports.smtp import SmtpTransport

if TYPE_CHECKING:  # conftest is not importable at run time
    from tests.component.conftest import MakeSink, Sink, TlsFiles

FROM = "house@example.org"
TO = "5551234567@tmomail.net"
USER, PASSWORD = "house@example.org", "s3cret-app-pw"


def text(n: int = 1, **kw: str) -> OutgoingText:
    fields: dict[str, str] = {"id": f"t{n}", "address": TO, "body": f"Water leak #{n}"}
    fields.update(kw)
    return OutgoingText(**fields)


def config(port: int, **kw: object) -> SmtpConfig:
    fields: dict[str, object] = {"host": "127.0.0.1", "from_addr": FROM, "port": port}
    fields.update(security="none", timeout=5.0)
    fields.update(kw)
    return SmtpConfig(**fields)  # type: ignore[arg-type]


@pytest.fixture
def sink(make_sink: MakeSink) -> Sink:
    return make_sink()


@pytest.fixture
def transport(sink: Sink) -> Iterator[SmtpTransport]:
    t = SmtpTransport(config(sink.port), clock=lambda: datetime(2026, 11, 3, 7, 30, tzinfo=UTC))
    yield t
    t.close()


def test_plain_delivery_headers_and_body(sink: Sink, transport: SmtpTransport) -> None:
    receipt = transport.send(text())
    assert receipt.transport == "smtp"
    assert receipt.remote_id == "<t1@example.org>"
    assert receipt.detail == "250 2.0.0 OK queued as Q1"
    [mail] = sink.mails
    assert (mail.sender, mail.rcpts) == (FROM, [TO])
    msg = mail.message()
    assert msg["From"] == FROM
    assert msg.get_all("To") == [TO]
    assert msg["Date"] == "Tue, 03 Nov 2026 07:30:00 +0000"
    assert msg["Message-ID"] == "<t1@example.org>"
    assert "Subject" not in msg
    assert msg.get_content() == "Water leak #1\n"


def test_subject_when_set(sink: Sink, transport: SmtpTransport) -> None:
    transport.send(text(subject="Alarm"))
    assert sink.mails[0].message()["Subject"] == "Alarm"


def test_starttls_with_ca_certs_and_login(make_sink: MakeSink, tls_files: TlsFiles) -> None:
    sink = make_sink("starttls", users={USER: PASSWORD})
    cfg = config(sink.port, security="starttls", ca_certs=tls_files.cert)
    t = SmtpTransport(SmtpConfig(**{**cfg.__dict__, "username": USER, "password": PASSWORD}))
    try:
        t.send(text())
        assert t.probe() == f"127.0.0.1:{sink.port} starttls, logged in as {USER}"
    finally:
        t.close()
    assert [m.rcpts for m in sink.mails] == [[TO]]


def test_wrong_password_is_auth_error_without_the_password(
    make_sink: MakeSink, tls_files: TlsFiles
) -> None:
    sink = make_sink("starttls", users={USER: PASSWORD})
    wrong = "wrong-" + PASSWORD
    t = SmtpTransport(
        config(
            sink.port, security="starttls", ca_certs=tls_files.cert, username=USER, password=wrong
        )
    )
    with pytest.raises(TemporaryDeliveryError) as info:
        t.send(text())
    err = info.value
    assert (err.scope, err.auth) == ("transport", True)
    assert "535" in str(err) and USER in str(err)
    for shown in (str(err), repr(err)):
        assert wrong not in shown and PASSWORD not in shown
    assert sink.mails == []


def test_untrusted_certificate_is_refused(make_sink: MakeSink) -> None:
    sink = make_sink("starttls")
    t = SmtpTransport(config(sink.port, security="starttls"))  # system CAs only
    with pytest.raises(TemporaryDeliveryError) as info:
        t.send(text())
    assert info.value.scope == "transport" and not info.value.auth
    assert "certificate" in str(info.value)
    assert sink.mails == []


def test_implicit_tls_untrusted_certificate(make_sink: MakeSink) -> None:
    sink = make_sink("ssl")
    with pytest.raises(TemporaryDeliveryError, match="certificate") as info:
        SmtpTransport(config(sink.port, security="ssl")).send(text())
    assert info.value.scope == "transport"


def test_starttls_required_never_plaintext(sink: Sink) -> None:
    t = SmtpTransport(config(sink.port, security="starttls", username=USER, password=PASSWORD))
    with pytest.raises(TemporaryDeliveryError, match="STARTTLS") as info:
        t.send(text())
    assert info.value.scope == "transport"
    assert sink.mails == []


def test_implicit_tls(make_sink: MakeSink, tls_files: TlsFiles) -> None:
    sink = make_sink("ssl", users={USER: PASSWORD})
    t = SmtpTransport(
        config(sink.port, security="ssl", ca_certs=tls_files.cert, username=USER, password=PASSWORD)
    )
    try:
        t.send(text())
    finally:
        t.close()
    assert [m.rcpts for m in sink.mails] == [[TO]]


def test_451_on_rcpt_backs_off_the_text_and_keeps_the_connection(
    sink: Sink, transport: SmtpTransport
) -> None:
    sink.answer("RCPT", "451 4.3.0 try later")
    with pytest.raises(TemporaryDeliveryError) as info:
        transport.send(text(1))
    assert info.value.scope == "text"
    assert str(info.value) == f"smtp 127.0.0.1:{sink.port}: 451 4.3.0 try later (RCPT)"
    transport.send(text(2))
    assert [m.message()["Message-ID"] for m in sink.mails] == ["<t2@example.org>"]
    assert sink.connections == 1


def test_550_on_rcpt_is_permanent(sink: Sink, transport: SmtpTransport) -> None:
    sink.answer("RCPT", "550 5.1.1 no such user")
    with pytest.raises(PermanentDeliveryError, match=r"550 5\.1\.1 no such user"):
        transport.send(text(1))
    transport.send(text(2))
    assert len(sink.mails) == 1 and sink.connections == 1


def test_451_on_data_backs_off_the_text(sink: Sink, transport: SmtpTransport) -> None:
    sink.answer("DATA", "451 4.7.1 greylisted")
    with pytest.raises(TemporaryDeliveryError) as info:
        transport.send(text(1))
    assert info.value.scope == "text" and "(DATA)" in str(info.value)
    transport.send(text(2))
    assert len(sink.mails) == 1 and sink.connections == 1


@pytest.mark.parametrize("step", ["MAIL", "RCPT", "DATA"])
def test_421_is_a_transport_error(sink: Sink, transport: SmtpTransport, step: str) -> None:
    sink.answer(step, "421 4.3.2 shutting down")
    with pytest.raises(TemporaryDeliveryError) as info:
        transport.send(text(1))
    assert info.value.scope == "transport"
    transport.send(text(2))  # a new connection
    assert len(sink.mails) == 1 and sink.connections == 2


def test_refused_mail_from_is_a_transport_error(sink: Sink, transport: SmtpTransport) -> None:
    sink.answer("MAIL", "550 5.7.1 sender not allowed")
    with pytest.raises(TemporaryDeliveryError, match=r"550 5\.7\.1.*\(MAIL\)") as info:
        transport.send(text())
    assert info.value.scope == "transport"


def test_connection_refused(free_port: Callable[[], int]) -> None:
    port = free_port()
    with pytest.raises(TemporaryDeliveryError, match=f"127.0.0.1:{port}") as info:
        SmtpTransport(config(port)).send(text())
    assert info.value.scope == "transport"


def test_timeout_is_a_transport_error() -> None:
    with socket.socket() as silent:  # accepts (backlog) but never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        t = SmtpTransport(config(silent.getsockname()[1], timeout=0.3))
        with pytest.raises(TemporaryDeliveryError, match=r"timed out|closed") as info:
            t.send(text())
    assert info.value.scope == "transport"


def test_one_connection_for_consecutive_sends_and_a_new_one_after_close(
    sink: Sink, transport: SmtpTransport
) -> None:
    for n in range(3):
        transport.send(text(n))
    assert sink.connections == 1
    transport.close()
    transport.send(text(4))
    assert (len(sink.mails), sink.connections) == (4, 2)


def test_server_drop_between_sends_reconnects_transparently(
    sink: Sink, transport: SmtpTransport
) -> None:
    transport.send(text(1))
    sink.drop()
    transport.send(text(2))
    assert (len(sink.mails), sink.connections) == (2, 2)


def test_probe(sink: Sink, transport: SmtpTransport) -> None:
    assert transport.probe() == f"127.0.0.1:{sink.port} none, no login"
    assert sink.mails == []


def test_probe_maps_errors(free_port: Callable[[], int]) -> None:
    with pytest.raises(TemporaryDeliveryError):
        SmtpTransport(config(free_port())).probe()


@pytest.mark.parametrize("field", ["subject", "body"])
def test_header_injection_in_subject_or_body(
    sink: Sink, transport: SmtpTransport, field: str
) -> None:
    evil = "hi\r\nBcc: evil@x\r\n\r\nmore"
    transport.send(text(subject=evil) if field == "subject" else text(body=evil))
    [mail] = sink.mails
    assert mail.rcpts == [TO]
    msg = mail.message()
    assert "Bcc" not in msg and msg.get_all("To") == [TO]
    assert b"\r\nBcc:" not in mail.content.split(b"\r\n\r\n", 1)[0]


def test_header_injection_in_address_is_refused(sink: Sink, transport: SmtpTransport) -> None:
    with pytest.raises(PermanentDeliveryError):
        transport.send(text(address=TO + "\r\nBcc: evil@x"))
    assert sink.mails == []


# --------------------------------------------------------------------------- hardening


class _AuthSink:
    """An aiosmtpd controller with AUTH options the shared sink does not take."""

    def __init__(self, controller: Any, handler: Any) -> None:
        self.controller = controller
        self.handler = handler

    @property
    def port(self) -> int:
        return int(self.controller.port)

    @property
    def mails(self) -> list[Any]:
        return list(self.handler.mails)


def _sink_with(tls_files: TlsFiles, users: dict[str, str], **kwargs: object) -> Iterator[_AuthSink]:
    """A STARTTLS sink like make_sink's, with extra aiosmtpd options (one AUTH mechanism)."""
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    from tests.component.conftest import SinkHandler, _free_port

    def authenticator(*args: object) -> AuthResult:
        data = args[-1]
        ok = isinstance(data, LoginPassword) and (
            users.get(data.login.decode()) == data.password.decode()
        )
        return AuthResult(success=ok, handled=False)

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls_files.cert, tls_files.key)
    handler = SinkHandler()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=_free_port(),
        server_hostname="sink.test",
        tls_context=ctx,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
        **kwargs,
    )
    controller.start()
    try:
        yield _AuthSink(controller, handler)
    finally:
        controller.stop()


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
@pytest.mark.parametrize(("user", "password"), [(USER, "pässwört"), ("hüs@example.org", "pw€")])
def test_non_ascii_credentials_are_sent_as_utf8(
    tls_files: TlsFiles, mechanism: str, user: str, password: str
) -> None:
    other = {"PLAIN": "LOGIN", "LOGIN": "PLAIN"}[mechanism]
    for sink in _sink_with(tls_files, {user: password}, auth_exclude_mechanism=[other]):
        cfg = config(
            sink.port,
            security="starttls",
            ca_certs=tls_files.cert,
            username=user,
            password=password,
        )
        t = SmtpTransport(cfg)
        try:
            t.send(text())
            assert t.probe().endswith(f"logged in as {user}")
        finally:
            t.close()
        assert [m.rcpts for m in sink.mails] == [[TO]]


def test_wrong_non_ascii_password_is_an_auth_error(tls_files: TlsFiles) -> None:
    for sink in _sink_with(tls_files, {USER: "pässwört"}):
        cfg = config(
            sink.port, security="starttls", ca_certs=tls_files.cert, username=USER, password="pä"
        )
        with pytest.raises(TemporaryDeliveryError) as info:
            SmtpTransport(cfg).send(text())
        assert (info.value.scope, info.value.auth) == ("transport", True)
        assert "535" in str(info.value) and "pä" not in str(info.value)


def test_a_host_name_idna_cannot_encode_is_a_transport_error() -> None:
    t = SmtpTransport(config(25, host="smtp..example.org"))  # empty label: refused before DNS
    for call in (lambda: t.send(text()), t.probe):
        with pytest.raises(TemporaryDeliveryError, match="unexpected error") as info:
            call()
        assert info.value.scope == "transport"


def test_any_unexpected_exception_becomes_a_transport_error(
    sink: Sink, transport: SmtpTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    import smtplib

    transport.send(text(1))

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(smtplib.SMTP, "rcpt", broken)
    with pytest.raises(
        TemporaryDeliveryError, match=r"unexpected error \(RCPT\): RuntimeError: boom"
    ):
        transport.send(text(2))
    monkeypatch.undo()
    transport.send(text(3))  # the broken connection was dropped: a new one
    assert (len(sink.mails), sink.connections) == (2, 2)


def _hang_up(sink: Sink, reply: bytes | None) -> None:
    """What Postfix does to an idle session: ``421 4.4.2 ... timeout exceeded``, then close."""
    import asyncio

    async def close_all() -> None:
        for server in sink.handler.servers:
            if server.transport is not None:
                if reply is not None:
                    server.transport.write(reply)
                server.transport.close()
        await asyncio.sleep(0.05)

    asyncio.run_coroutine_threadsafe(close_all(), sink.controller.loop).result(5)


@pytest.mark.parametrize(
    "reply", [b"421 4.4.2 sink.test Error: timeout exceeded\r\n", None], ids=["421", "closed"]
)
def test_idle_connection_closed_by_the_server_is_reopened_silently(
    sink: Sink, transport: SmtpTransport, reply: bytes | None
) -> None:
    transport.send(text(1))
    _hang_up(sink, reply)
    receipt = transport.send(text(2))  # no error: a new connection, at once
    assert receipt.remote_id == "<t2@example.org>"
    assert (len(sink.mails), sink.connections) == (2, 2)


def test_421_to_mail_on_a_reused_connection_reconnects_once(
    sink: Sink, transport: SmtpTransport
) -> None:
    transport.send(text(1))
    sink.answer("MAIL", "421 4.4.2 sink.test Error: timeout exceeded")
    transport.send(text(2))
    assert (len(sink.mails), sink.connections) == (2, 2)
    sink.answer("MAIL", "421 4.3.2 shutting down", times=2)  # the new connection too: an error
    with pytest.raises(TemporaryDeliveryError, match="421") as info:
        transport.send(text(3))
    assert info.value.scope == "transport"


def test_security_none_against_auth_after_starttls_suggests_starttls(make_sink: MakeSink) -> None:
    sink = make_sink("starttls", users={USER: PASSWORD})
    t = SmtpTransport(config(sink.port, security="none", username=USER, password=PASSWORD))
    for call in (lambda: t.send(text()), t.probe):
        with pytest.raises(TemporaryDeliveryError, match="security: starttls") as info:
            call()
        assert info.value.auth
    assert sink.mails == []


def test_non_ascii_addresses_are_mapped(sink: Sink) -> None:
    t = SmtpTransport(config(sink.port))
    with pytest.raises(PermanentDeliveryError):
        t.send(text(address="jösé@exämple.org"))
    bad_from = SmtpTransport(config(sink.port, from_addr="häus@example.org"))
    with pytest.raises(TemporaryDeliveryError, match=r"smtp\.from") as info:
        bad_from.send(text())
    assert info.value.scope == "transport"
    assert sink.mails == []
