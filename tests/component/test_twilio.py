"""TwilioTransport over real HTTP on 127.0.0.1 against tests.fakes.twilio.FakeTwilio."""

from __future__ import annotations

import base64
import http.server
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from mqtt2sms.config.model import TwilioConfig
from mqtt2sms.errors import PermanentDeliveryError, TemporaryDeliveryError
from mqtt2sms.transports.base import OutgoingText
from mqtt2sms.transports.http import HttpClient, HttpPermanentError, HttpTemporaryError
from mqtt2sms.transports.twilio import TwilioTransport
from tests.conftest import TlsFiles
from tests.fakes.twilio import FakeTwilio

ALEX = "+15551230001"


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as tw:
        yield tw


def config(tw: FakeTwilio, **kw: object) -> TwilioConfig:
    values: dict[str, object] = {
        "account_sid": tw.account_sid,
        "auth_token": tw.auth_token,
        "from_number": tw.number,
        "api_base": tw.url,
    }
    values.update(kw)
    return TwilioConfig(**values)  # type: ignore[arg-type]


def text(to: str = ALEX, body: str = "Smoke in the kitchen") -> OutgoingText:
    return OutgoingText(id="t1", address=to, body=body)


def secrets_of(tw: FakeTwilio) -> list[str]:
    basic = base64.b64encode(f"{tw.account_sid}:{tw.auth_token}".encode()).decode()
    return [tw.auth_token, basic]


# -- send ---------------------------------------------------------------------------------


def test_send_posts_the_fields_with_basic_auth_and_returns_the_sid(fake: FakeTwilio) -> None:
    t = TwilioTransport(config(fake), timeout=5)
    receipt = t.send(text(body="Smoke in the kitchen €"))
    [req] = fake.requests
    assert req.method == "POST"
    assert req.path == f"/2010-04-01/Accounts/{fake.account_sid}/Messages.json"
    assert req.form == {"To": ALEX, "From": fake.number, "Body": "Smoke in the kitchen €"}
    assert req.authorized and req.authorization is not None  # sent at once, not after a 401
    [sent] = fake.sent()
    assert receipt.transport == "twilio"
    assert receipt.remote_id == sent["sid"]
    assert receipt.remote_id.startswith("SM") and len(receipt.remote_id) == 34
    assert receipt.detail == "queued"


def test_send_through_a_messaging_service(fake: FakeTwilio) -> None:
    sid = "MG" + "0" * 32
    t = TwilioTransport(config(fake, from_number=None, messaging_service_sid=sid))
    receipt = t.send(text())
    assert fake.requests[0].form == {"To": ALEX, "MessagingServiceSid": sid, "Body": text().body}
    assert receipt.detail == "accepted"


def test_send_refuses_a_number_that_is_not_e164_without_asking(fake: FakeTwilio) -> None:
    t = TwilioTransport(config(fake))
    with pytest.raises(PermanentDeliveryError, match=r"E\.164"):
        t.send(text(to="555-123-0001"))
    assert fake.requests == []


# -- reports ------------------------------------------------------------------------------


def test_reports_move_from_pending_to_delivered(fake: FakeTwilio) -> None:
    t = TwilioTransport(config(fake))
    sid = t.send(text()).remote_id
    assert sid is not None
    first = t.reports([sid])
    second = t.reports([sid])
    assert [(r.remote_id, r.state, r.detail) for r in first] == [(sid, "pending", "sent")]
    assert [(r.remote_id, r.state, r.detail) for r in second] == [(sid, "delivered", "delivered")]
    assert fake.requests[-1].path.endswith(f"/Messages/{sid}.json")
    assert fake.requests[-1].method == "GET"


def test_reports_undelivered_carry_the_error_code_and_its_meaning(fake: FakeTwilio) -> None:
    fake.script(ALEX, ["sent", ("undelivered", 30003)])
    t = TwilioTransport(config(fake))
    sid = t.send(text()).remote_id
    assert sid is not None
    assert t.reports([sid])[0].state == "pending"
    [report] = t.reports([sid])
    assert report.state == "undelivered"
    assert "30003" in report.detail and "unreachable" in report.detail
    assert report.detail.startswith("undelivered")


def test_one_report_that_cannot_be_read_does_not_fail_the_others(fake: FakeTwilio) -> None:
    t = TwilioTransport(config(fake))
    a = t.send(text()).remote_id
    b = t.send(text(to="+15551230002")).remote_id
    assert a is not None and b is not None
    unknown = "SM" + "f" * 32
    got = t.reports([a, unknown, b])
    assert [(r.remote_id, r.state) for r in got] == [(a, "pending"), (b, "pending")]


def test_reports_raise_when_the_way_out_is_down(free_port: Callable[[], int]) -> None:
    cfg = TwilioConfig(
        account_sid="AC" + "1" * 32,
        auth_token="tok",
        from_number="+15550001111",
        api_base=f"http://127.0.0.1:{free_port()}",
    )
    with pytest.raises(TemporaryDeliveryError, match="connection refused"):
        TwilioTransport(cfg, timeout=2).reports(["SM" + "a" * 32])


# -- errors -------------------------------------------------------------------------------


def test_429_is_temporary_with_retry_after(fake: FakeTwilio) -> None:
    fake.fail(429, retry_after="7")
    with pytest.raises(HttpTemporaryError) as err:
        TwilioTransport(config(fake)).send(text())
    assert err.value.scope == "transport" and not err.value.auth
    assert err.value.retry_after == 7.0
    assert err.value.status == 429
    assert "20429" in str(err.value)
    assert fake.sent() == []


def test_429_with_an_http_date(fake: FakeTwilio) -> None:
    fake.fail(429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")  # in the past: at once
    with pytest.raises(HttpTemporaryError) as err:
        TwilioTransport(config(fake)).send(text())
    assert err.value.retry_after == 0.0


def test_500_is_temporary(fake: FakeTwilio) -> None:
    fake.fail(500)
    with pytest.raises(TemporaryDeliveryError) as err:
        TwilioTransport(config(fake)).send(text())
    assert err.value.scope == "transport" and not err.value.auth
    assert "HTTP 500" in str(err.value)


def test_21610_is_permanent_and_says_the_recipient_must_text_start(fake: FakeTwilio) -> None:
    fake.stopped.add(ALEX)
    with pytest.raises(PermanentDeliveryError) as err:
        TwilioTransport(config(fake)).send(text())
    message = str(err.value)
    assert "21610" in message and "STOP" in message and "START" in message
    assert "HTTP 400" in message


@pytest.mark.parametrize(("code", "words"), [(21211, "invalid"), (21614, "not a mobile")])
def test_invalid_or_landline_numbers_are_permanent(fake: FakeTwilio, code: int, words: str) -> None:
    fake.fail(400, code=code)
    with pytest.raises(PermanentDeliveryError, match=words) as err:
        TwilioTransport(config(fake)).send(text())
    assert str(code) in str(err.value)


def test_401_is_a_temporary_auth_failure(fake: FakeTwilio) -> None:
    t = TwilioTransport(config(fake, auth_token="wrong-token-123456"))
    with pytest.raises(TemporaryDeliveryError) as err:
        t.send(text())
    assert err.value.auth and err.value.scope == "transport"
    assert "20003" in str(err.value) and "auth_token" in str(err.value)
    assert "wrong-token-123456" not in str(err.value)
    assert fake.requests[0].authorized is False


def test_a_scripted_401_is_an_auth_failure(fake: FakeTwilio) -> None:
    fake.fail(401)
    with pytest.raises(TemporaryDeliveryError) as err:
        TwilioTransport(config(fake)).send(text())
    assert err.value.auth


def test_a_closed_port_is_temporary(free_port: Callable[[], int]) -> None:
    cfg = TwilioConfig(
        account_sid="AC" + "1" * 32,
        auth_token="tok",
        from_number="+15550001111",
        api_base=f"http://127.0.0.1:{free_port()}",
    )
    with pytest.raises(TemporaryDeliveryError, match="connection refused") as err:
        TwilioTransport(cfg, timeout=2).send(text())
    assert err.value.scope == "transport"


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and reads, but never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except (TimeoutError, OSError):
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    srv.close()


def test_a_server_that_never_answers_times_out_as_temporary(silent_server: str) -> None:
    cfg = TwilioConfig(
        account_sid="AC" + "1" * 32,
        auth_token="tok",
        from_number="+15550001111",
        api_base=silent_server,
    )
    started = time.monotonic()
    with pytest.raises(TemporaryDeliveryError, match="timed out") as err:
        TwilioTransport(cfg, timeout=0.5).send(text())
    assert time.monotonic() - started < 5
    assert err.value.scope == "transport"
    assert "may have been acted on" in str(err.value)  # a POST that timed out may have gone


def test_tls_is_verified(fake: FakeTwilio, tls_files: TlsFiles) -> None:
    with FakeTwilio(tls=(tls_files.cert, tls_files.key)) as tw:
        trusted = TwilioTransport(config(tw), ca_certs=tls_files.cert)
        assert trusted.send(text()).remote_id is not None
        untrusted = TwilioTransport(config(tw), timeout=5)  # the system's trust store
        with pytest.raises(TemporaryDeliveryError, match="TLS") as err:
            untrusted.send(text())
        assert err.value.scope == "transport"
    assert tw.url.startswith("https://")


def test_the_token_is_never_in_a_message_a_log_record_or_a_repr(
    fake: FakeTwilio, caplog: pytest.LogCaptureFixture, free_port: Callable[[], int]
) -> None:
    caplog.set_level(logging.DEBUG)
    t = TwilioTransport(config(fake))
    messages: list[str] = [repr(t), repr(t._http)]
    for status in (401, 429, 500, 400):
        fake.fail(status, retry_after="1" if status == 429 else None)
        with pytest.raises((TemporaryDeliveryError, PermanentDeliveryError)) as err:
            t.send(text())
        messages.append(str(err.value))
        messages.append(repr(err.value))
    sid = t.send(text()).remote_id or ""
    t.reports([sid, "SM" + "0" * 32])  # the unknown one is logged
    fake.fail(500)
    with pytest.raises(TemporaryDeliveryError) as err3:
        t.reports([sid])
    messages.append(str(err3.value))
    messages.append(t.probe())  # Twilio's account answer holds the token itself
    down = TwilioTransport(
        config(fake, api_base=f"http://127.0.0.1:{free_port()}"),
        timeout=2,
    )
    for call in (lambda: down.send(text()), down.probe, lambda: down.receive(None)):
        with pytest.raises(TemporaryDeliveryError) as err2:
            call()
        messages.append(str(err2.value))
    messages += [r.getMessage() for r in caplog.records]
    messages += [str(r.args) for r in caplog.records]
    for secret in secrets_of(fake):
        for m in messages:
            assert secret not in m


# -- probe --------------------------------------------------------------------------------


def test_probe_reads_the_account_and_sends_nothing(fake: FakeTwilio) -> None:
    line = TwilioTransport(config(fake)).probe()
    assert "Home alarms" in line and "active" in line and fake.number in line
    assert fake.auth_token not in line
    assert fake.sent() == []
    assert fake.requests[0].path == f"/2010-04-01/Accounts/{fake.account_sid}.json"


def test_probe_of_a_trial_account_says_what_it_cannot_do(fake: FakeTwilio) -> None:
    fake.account_type = "Trial"
    assert "verified numbers" in TwilioTransport(config(fake)).probe()


def test_probe_fails_on_a_wrong_token(fake: FakeTwilio) -> None:
    with pytest.raises(TemporaryDeliveryError) as err:
        TwilioTransport(config(fake, auth_token="nope")).probe()
    assert err.value.auth and "20003" in str(err.value)


def test_probe_fails_on_a_suspended_account(fake: FakeTwilio) -> None:
    fake.account_status = "suspended"
    with pytest.raises(TemporaryDeliveryError, match="suspended"):
        TwilioTransport(config(fake)).probe()


# -- receive ------------------------------------------------------------------------------


def test_receive_first_look_takes_the_mark_then_returns_only_new_texts(
    fake: FakeTwilio,
) -> None:
    t = TwilioTransport(config(fake))
    fake.inbound(ALEX, "old reply")
    got, mark = t.receive(None)
    assert got == [] and mark is not None
    assert fake.requests[-1].query == {"To": fake.number, "PageSize": "50"}
    t.send(text())  # our own outbound text is not a received one
    first = fake.inbound(ALEX, "ACK 417")
    second = fake.inbound("+15551230002", "on my way")
    got, mark2 = t.receive(mark)
    assert [(r.sender, r.text, r.remote_id) for r in got] == [
        (ALEX, "ACK 417", first),
        ("+15551230002", "on my way", second),
    ]
    assert all(r.at is not None and r.at.tzinfo is not None for r in got)
    again, mark3 = t.receive(mark2)
    assert again == [] and mark3 == mark2


def test_receive_first_look_on_an_empty_inbox_then_a_text(fake: FakeTwilio) -> None:
    t = TwilioTransport(config(fake))
    got, mark = t.receive(None)
    assert got == [] and mark is not None
    sid = fake.inbound(ALEX, "ACK")
    got, _ = t.receive(mark)
    assert [r.remote_id for r in got] == [sid]


# -- the HTTP edge against answers Twilio would not give -----------------------------------


class RawServer:
    """Answers every request with ``answer`` (status, headers, body), or closes the
    connection without a word when ``answer`` is None; records the requests' headers."""

    def __init__(self) -> None:
        self.answer: tuple[int, dict[str, str], bytes] | None = (200, {}, b"{}")
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                owner.seen.append((self.command, self.path, dict(self.headers)))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                if owner.answer is None:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status, headers, body = owner.answer
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _any

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def raw() -> Iterator[RawServer]:
    server = RawServer()
    yield server
    server.stop()


def client(url: str) -> HttpClient:
    return HttpClient(url, username="sms", password="s3cret-pw", timeout=2)


def test_a_redirect_is_not_followed_so_the_password_goes_nowhere_else(raw: RawServer) -> None:
    elsewhere = RawServer()
    try:
        raw.answer = (302, {"Location": elsewhere.url + "/steal"}, b"")
        with pytest.raises(HttpTemporaryError, match="redirect"):
            client(raw.url).post_form("/message", {"a": "b"})
        assert elsewhere.seen == []
    finally:
        elsewhere.stop()


def test_every_request_carries_basic_auth_and_the_methods(raw: RawServer) -> None:
    c = client(raw.url + "/api")
    c.get("/x", {"q": "1 2"})
    c.post_form("/y", {"text": "é"})
    c.delete("/z")
    expected = "Basic " + base64.b64encode(b"sms:s3cret-pw").decode()
    assert [(m, p) for m, p, _ in raw.seen] == [
        ("GET", "/api/x?q=1+2"),
        ("POST", "/api/y"),
        ("DELETE", "/api/z"),
    ]
    assert all(h.get("Authorization") == expected for _, _, h in raw.seen)
    assert raw.seen[1][2]["Content-Type"] == "application/x-www-form-urlencoded"


def test_an_error_page_that_is_not_json_keeps_its_words(raw: RawServer) -> None:
    raw.answer = (502, {"Content-Type": "text/html"}, b"<h1>Bad gateway</h1>")
    with pytest.raises(HttpTemporaryError, match="HTTP 502: <h1>Bad gateway") as err:
        client(raw.url).get("/x", label="inbox")
    assert str(err.value).startswith("inbox: ")


def test_a_404_is_permanent_with_the_servers_message(raw: RawServer) -> None:
    raw.answer = (404, {}, b'{"message": "message not found"}')
    with pytest.raises(HttpPermanentError, match="404: message not found") as err:
        client(raw.url).delete("/message/abc")
    assert err.value.body == {"message": "message not found"}


def test_a_2xx_that_is_not_json_is_temporary_for_twilio(raw: RawServer) -> None:
    raw.answer = (200, {"Content-Type": "text/html"}, b"<html>captive portal</html>")
    cfg = TwilioConfig(account_sid="AC" + "1" * 32, auth_token="t", from_number="+15550001111",
                       api_base=raw.url)  # fmt: skip
    with pytest.raises(HttpTemporaryError, match="not a JSON object"):
        TwilioTransport(cfg).send(text())


def test_a_server_that_hangs_up_is_temporary(raw: RawServer) -> None:
    raw.answer = None
    with pytest.raises(HttpTemporaryError) as err:
        client(raw.url).get("/x")
    assert err.value.scope == "transport" and err.value.status is None
    assert "s3cret-pw" not in str(err.value)
