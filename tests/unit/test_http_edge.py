"""The pure parts of transports/http.py: Retry-After, error words, the status mapping."""

from __future__ import annotations

import datetime as dt
import http.client
import socket
import ssl
import urllib.error

import pytest

from mqtt2sms.errors import PermanentDeliveryError, TemporaryDeliveryError
from mqtt2sms.transports.http import (
    HttpClient,
    HttpPermanentError,
    HttpTemporaryError,
    _no_answer,
    error_words,
    parse_retry_after,
    status_error,
)

NOW = dt.datetime(2026, 12, 5, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("Sat, 05 Dec 2026 12:00:30 GMT", 30.0),
        ("Sat, 05 Dec 2026 13:00:00 +0100", 0.0),  # the same instant, another zone
        ("Sat, 05 Dec 2026 11:00:00 GMT", 0.0),  # in the past: at once, never negative
        ("Sat, 05 Dec 2026 12:01:00 -0000", 60.0),
        ("-5", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"code": 21610, "message": "Attempt to send"}, "21610 Attempt to send"),
        ({"message": "nope"}, "nope"),
        ({"error": "bad id"}, "bad id"),
        ({"detail": "why"}, "why"),
        ({"code": 7}, "code 7"),
        ({"code": None, "message": ""}, None),
        ([1, 2], None),
        (None, None),
        ("text", None),
    ],
)
def test_error_words(body: object, words: str | None) -> None:
    assert error_words(body) == words


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_are_temporary_auth_failures(status: int) -> None:
    err = status_error(status, "Authenticate", what="send")
    assert isinstance(err, TemporaryDeliveryError)
    assert err.auth and err.scope == "transport"
    assert str(err) == f"send: HTTP {status}: Authenticate"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_429_408_and_5xx_are_temporary_for_the_way_out(status: int) -> None:
    err = status_error(status, None, what="send", retry_after=4.0)
    assert isinstance(err, HttpTemporaryError)
    assert not err.auth and err.scope == "transport"
    assert err.retry_after == 4.0 and err.status == status
    assert "retry after 4 s" in str(err)


@pytest.mark.parametrize("status", [400, 404, 409, 410, 413, 422])
def test_other_4xx_are_permanent_with_the_providers_words(status: int) -> None:
    err = status_error(status, "21211 Invalid 'To'", what="send", body={"code": 21211})
    assert isinstance(err, HttpPermanentError) and isinstance(err, PermanentDeliveryError)
    assert str(err) == f"send: HTTP {status}: 21211 Invalid 'To'"
    assert err.status == status and err.body == {"code": 21211}


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_temporary_and_says_so(status: int) -> None:
    err = status_error(status, None, what="send")
    assert isinstance(err, HttpTemporaryError) and not err.auth
    assert "redirect" in str(err)


def test_long_provider_words_are_cut_to_one_line() -> None:
    err = status_error(400, "a\nb " + "x" * 1000, what="send")
    assert "\n" not in str(err) and len(str(err)) < 340 and str(err).endswith("...")


def test_client_refuses_urls_it_cannot_use_safely() -> None:
    with pytest.raises(ValueError, match="http"):
        HttpClient("ftp://example.test")
    for url in ("https://user:secret@example.test", "ftp://user:secret@example.test"):
        with pytest.raises(ValueError, match="own keys") as err:
            HttpClient(url)
        assert "secret" not in str(err.value)


def test_scrub_and_repr_never_show_the_password() -> None:
    client = HttpClient("https://example.test/", username="sms", password="p@ss wörd")
    auth = client._headers["Authorization"].removeprefix("Basic ")
    text = f"a p@ss wörd b {auth} c p%40ss%20w%C3%B6rd"
    assert client.scrub(text) == "a *** b *** c ***"
    assert "p@ss" not in repr(client) and auth not in repr(client)
    assert client.base_url == "https://example.test"


def test_scrub_without_a_password_changes_nothing() -> None:
    assert HttpClient("http://127.0.0.1:1").scrub("abc") == "abc"


@pytest.mark.parametrize(
    ("exc", "sent", "words"),
    [
        (urllib.error.URLError(socket.gaierror(-2, "Name or service not known")), False,
         "name not resolved"),
        (urllib.error.URLError(ConnectionRefusedError(111, "refused")), False,
         "connection refused"),
        (urllib.error.URLError(TimeoutError("timed out")), False, "send: timed out"),
        (TimeoutError("timed out"), True, "timed out waiting for the answer"),
        (http.client.RemoteDisconnected("closed"), True, "closed the connection"),
        (ConnectionResetError(104, "reset"), True, "closed the connection"),
        (http.client.BadStatusLine("garbage"), True, "not an HTTP answer"),
        (urllib.error.URLError(ssl.SSLError(1, "handshake failure")), False, "TLS failed"),
        (urllib.error.URLError(OSError(101, "Network is unreachable")), False, "unreachable"),
    ],
)  # fmt: skip
def test_no_answer_is_temporary_for_the_way_out(exc: BaseException, sent: bool, words: str) -> None:
    err = _no_answer(exc, "send", sent)
    assert isinstance(err, HttpTemporaryError)
    assert err.scope == "transport" and not err.auth and err.status is None
    assert words in str(err)


def test_an_untrusted_certificate_says_so() -> None:
    cert = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cert.verify_message = "self-signed certificate"
    err = _no_answer(urllib.error.URLError(cert), "send", False)
    assert str(err) == "send: TLS certificate not trusted: self-signed certificate"
