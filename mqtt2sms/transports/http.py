"""The HTTP edge of the ways out that speak HTTP (Twilio, the Android phone's gateway).

This module is the one place where HTTP status codes and ``urllib`` / ``ssl`` / ``socket``
errors become our exceptions; it knows nothing of any provider. On the standard library only:

- connection refused or reset, a name that does not resolve, a timeout, a TLS failure
  (certificates are always verified), a redirect (we never follow one: it would carry the
  password elsewhere), an answer that is not HTTP, 408, 429 and 5xx:
  ``HttpTemporaryError`` scope ``"transport"``, with ``retry_after`` (seconds) when the
  server sent ``Retry-After``;
- 401 and 403: the same with ``auth=True``;
- any other 4xx: ``HttpPermanentError``, with the provider's own message.

The text of an error is ``<what was asked>: HTTP <status>: <provider's words>``; a provider
puts its words there through ``describe`` (given the status and the parsed JSON body, or
None), else the JSON's ``message`` / ``error`` / ``detail`` and ``code`` are used.

Basic auth goes with every request (never after a 401 challenge). The password never
appears in a message, a log line or a repr: every message is scrubbed of it, plain and
base64, before it leaves.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import http.client
import json
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import PermanentDeliveryError, TemporaryDeliveryError

_TEXT_LIMIT = 300
_BODY_LIMIT = 1 << 20  # an API answer bigger than a megabyte is not one we want

Describe = Callable[[int, Any], str | None]


class HttpTemporaryError(TemporaryDeliveryError):
    """A temporary failure over HTTP; ``retry_after`` is the server's ``Retry-After`` in
    seconds (None when it sent none), ``status`` the HTTP status (None: no answer)."""

    def __init__(
        self,
        message: str,
        *,
        scope: Literal["transport", "text"] = "transport",
        auth: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, scope=scope, auth=auth)
        self.retry_after = retry_after
        self.status = status


class HttpPermanentError(PermanentDeliveryError):
    """A 4xx the request itself caused; ``status`` the HTTP status, ``body`` the parsed
    JSON answer (None when it was not JSON), for a provider that wants to look closer."""

    def __init__(self, message: str, *, status: int, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes = field(repr=False)

    def json(self) -> Any:
        """The body as JSON; raises ``ValueError`` when it is not."""
        return json.loads(self.body.decode("utf-8"))

    def body_json_or_none(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return self.json()
        except ValueError:
            return None


# --------------------------------------------------------------------------- pure parts


def parse_retry_after(value: str | None, now: dt.datetime) -> float | None:
    """``Retry-After`` (RFC 9110: delay-seconds or an HTTP-date) as seconds from ``now``.

    In: the header's value (or None) and ``now`` (timezone-aware). Out: seconds, never
    negative; None when absent or unreadable. Raises nothing.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(int(value))
    try:
        seconds = float(value)  # not in the RFC, but some servers send "1.5"
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if seconds == seconds and seconds != float("inf") else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" parses naive; HTTP dates are GMT
        when = when.replace(tzinfo=dt.UTC)
    return max((when - now).total_seconds(), 0.0)


def error_words(body: Any) -> str | None:
    """A provider's own words from a JSON error body: ``message`` (or ``error``,
    ``detail``), with ``code`` in front when there is one. None when there is nothing."""
    if not isinstance(body, Mapping):
        return None
    words = next(
        (str(body[k]) for k in ("message", "error", "detail") if body.get(k) not in (None, "")),
        None,
    )
    code = body.get("code")
    if code not in (None, "") and words:
        return f"{code} {words}"
    if code not in (None, ""):
        return f"code {code}"
    return words


def short(text: str, limit: int = _TEXT_LIMIT) -> str:
    """One line, at most ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def status_error(
    status: int,
    words: str | None,
    *,
    what: str,
    retry_after: float | None = None,
    body: Any = None,
) -> HttpTemporaryError | HttpPermanentError:
    """The error for an HTTP answer of ``status`` (>= 300) to ``what`` (e.g. ``POST
    /Messages.json``); ``words`` is the provider's message. Raises nothing."""
    message = f"{what}: HTTP {status}" + (f": {short(words)}" if words else "")
    if status in (401, 403):
        return HttpTemporaryError(message, auth=True, status=status)
    if status in (408, 429) or status >= 500:
        if retry_after is not None:
            message += f" (retry after {retry_after:g} s)"
        return HttpTemporaryError(message, retry_after=retry_after, status=status)
    if 300 <= status < 400:
        return HttpTemporaryError(message + " (a redirect: check the URL)", status=status)
    return HttpPermanentError(message, status=status, body=body)


def _no_answer(exc: BaseException, what: str, sent: bool) -> HttpTemporaryError:
    """Map a failure that left us without an HTTP answer; ``sent``: the request went out
    (a timeout then may hide a request the server did act on)."""
    reason: BaseException | str = exc
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        reason = exc.reason
    if isinstance(reason, ssl.SSLCertVerificationError):
        text = f"TLS certificate not trusted: {reason.verify_message or reason}"
    elif isinstance(reason, ssl.SSLError):
        text = f"TLS failed: {reason}"
    elif isinstance(reason, socket.gaierror):
        text = f"name not resolved: {reason}"
    elif isinstance(reason, TimeoutError):
        text = "timed out" + (" waiting for the answer (it may have been acted on)" if sent else "")
    elif isinstance(reason, ConnectionRefusedError):
        text = "connection refused"
    elif isinstance(reason, http.client.RemoteDisconnected | ConnectionResetError):
        text = "the server closed the connection"
    elif isinstance(reason, http.client.HTTPException):
        text = f"not an HTTP answer: {type(reason).__name__}"
    else:
        text = f"{type(reason).__name__ if not isinstance(reason, str) else 'error'}: {reason}"
    return HttpTemporaryError(f"{what}: {short(text)}")


# --------------------------------------------------------------------------- the client


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx reaches us as an HTTPError and is mapped like any status


class HttpClient:
    """A small JSON-over-HTTP client for one base URL; see the module docstring.

    ``timeout`` is per socket operation (connect, each read); ``ca_certs`` replaces the
    system's trust store (a local server in tests); ``describe`` turns an error answer's
    status and JSON body into the provider's words. Holds no connection between requests.
    """

    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        ca_certs: str | None = None,
        describe: Describe | None = None,
        user_agent: str = "mqtt2sms",
    ) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.username or parts.password:  # and never echo the URL: it holds a password
            raise ValueError("put the user and password in their own keys, not in the URL")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http:// or https:// URL: {short(base_url, 80)}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._describe = describe
        self._username = username
        self._password = password
        headers = {"Accept": "application/json", "User-Agent": user_agent}
        if username is not None or password is not None:
            token = f"{username or ''}:{password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(token).decode("ascii")
        self._headers = headers
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if parts.scheme == "https":
            # Verified always; ca_certs replaces the system's trust store.
            context = ssl.create_default_context(cafile=ca_certs)
            handlers.append(urllib.request.HTTPSHandler(context=context))
        # No ProxyHandler: the environment's proxy is not ours to use with a password.
        handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self) -> str:
        return f"HttpClient({self.base_url!r}, username={self._username!r})"

    def get(
        self, path: str, query: Mapping[str, str] | None = None, *, label: str | None = None
    ) -> HttpResponse:
        return self.request("GET", path, query=query, label=label)

    def post_form(
        self, path: str, fields: Mapping[str, str], *, label: str | None = None
    ) -> HttpResponse:
        return self.request("POST", path, form=fields, label=label)

    def delete(self, path: str, *, label: str | None = None) -> HttpResponse:
        return self.request("DELETE", path, label=label)

    def post_json(self, path: str, body: Any, *, label: str | None = None) -> HttpResponse:
        """``POST`` ``body`` as JSON (``Content-Type: application/json``)."""
        return self.request("POST", path, json_body=body, label=label)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
        label: str | None = None,
        json_body: Any = None,
    ) -> HttpResponse:
        """One request; a 2xx answer is returned, anything else raised as our error, whose
        text starts with ``label`` (default: the method and path)."""
        what = label or f"{method} {path}"
        try:
            return self._request(method, path, query, form, what, json_body)
        except (HttpTemporaryError, HttpPermanentError) as exc:
            exc.args = (self.scrub(str(exc)),)
            raise
        except Exception as exc:  # a bug or an unmapped library error: the way out is down
            raise HttpTemporaryError(self.scrub(f"{what}: unexpected {_name(exc)}")) from exc

    def scrub(self, text: str) -> str:
        """``text`` without the password, plain or as Basic auth sends it."""
        if not self._password:
            return text
        secrets = {self._password, self._headers.get("Authorization", "").removeprefix("Basic ")}
        secrets.add(base64.b64encode(self._password.encode()).decode())
        secrets.add(urllib.parse.quote(self._password, safe=""))
        for secret in sorted((s for s in secrets if s), key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def _request(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None,
        form: Mapping[str, str] | None,
        what: str,
        json_body: Any = None,
    ) -> HttpResponse:
        url = self.base_url + (path if path.startswith("/") else "/" + path)
        if query:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(query)
        data = None
        headers = dict(self._headers)
        if form is not None:
            data = urllib.parse.urlencode(form).encode("ascii")
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        try:
            req = urllib.request.Request(url, data=data, headers=headers, method=method)
        except ValueError as exc:
            raise HttpTemporaryError(f"{what}: bad URL: {exc}") from exc
        sent = False
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                sent = True
                status = resp.status
                headers_in = {k.lower(): v for k, v in resp.headers.items()}
                body = resp.read(_BODY_LIMIT)
        except urllib.error.HTTPError as exc:
            raise self._status_error(exc, what) from exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise _no_answer(exc, what, sent or data is not None) from exc
        if not 200 <= status < 300:
            raise status_error(status, None, what=what)
        return HttpResponse(status, headers_in, body)

    def _status_error(
        self, exc: urllib.error.HTTPError, what: str
    ) -> HttpTemporaryError | HttpPermanentError:
        try:
            raw = exc.read(_BODY_LIMIT)
        except (OSError, http.client.HTTPException):
            raw = b""
        finally:
            exc.close()
        body: Any = None
        try:
            body = json.loads(raw.decode("utf-8")) if raw else None
        except ValueError:
            body = None
        words: str | None = None
        if self._describe is not None:
            try:
                words = self._describe(exc.code, body)
            except Exception:  # a provider's describe must not hide the status
                words = None
        if words is None:
            words = error_words(body)
        if words is None and raw and body is None:
            words = short(raw.decode("utf-8", "replace"), 120)
        headers = exc.headers
        retry_after = parse_retry_after(
            headers.get("Retry-After") if headers is not None else None, dt.datetime.now(dt.UTC)
        )
        return status_error(exc.code, words, what=what, retry_after=retry_after, body=body)


def _name(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {short(str(exc), 120)}"
