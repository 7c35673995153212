"""A fake of Twilio's REST API (2010-04-01, JSON), written from Twilio's published docs.

Only what mqtt2sms uses, answered in Twilio's shape:

- ``POST /2010-04-01/Accounts/{sid}/Messages.json`` (form: ``To``, ``From`` or
  ``MessagingServiceSid``, ``Body``): 201 and a Message resource (``sid`` "SM" + 32 hex,
  ``status`` queued, or accepted through a Messaging Service); 400 with Twilio's error
  codes for a missing or invalid field (21604, 21603, 21602, 21211) and for a recipient who
  texted STOP (21610);
- ``GET .../Messages/{sid}.json``: the message; each GET moves it one step along its
  number's script (``queued -> sent -> delivered`` unless ``script`` says otherwise);
  404 (20404) for an unknown sid;
- ``GET .../Messages.json`` with ``To``, ``From``, ``PageSize``: newest first;
- ``POST .../Calls.json`` (form: ``To``, ``From``, ``Timeout``, ``Twiml`` or ``Url``): 201
  and a Call resource (``sid`` "CA" + 32 hex, ``status`` queued); 400 for a missing field
  (21201 To, 21213 From, 21205 Twiml/Url), an invalid number (21211), a Timeout that is not
  a positive whole number (21208), TwiML over 4000 characters (32018), and, with
  ``primary_customer_profile = False``, any +1 number (21216);
- ``GET .../Calls/{sid}.json``: the call; each GET moves it one step along its number's
  call script (``ringing -> in-progress -> completed`` unless ``call_script`` says
  otherwise); ``duration`` counts the steps it spent in progress; ``("failed", 32009)``
  sets ``error_code`` and ``error_message`` (Twilio's Call resource carries no error
  fields; the fake adds them so a failure's code can be tested);
- ``POST .../Calls/{sid}.json`` with ``Status``: ``canceled`` ends a queued or ringing call
  (an answered one goes on, as Twilio's does), ``completed`` ends any call still going;
- ``GET /2010-04-01/Accounts/{sid}.json``: the account (with its ``auth_token``, as Twilio
  sends it);
- Basic auth on every request: 401 with error 20003 otherwise;
- scripted failures, one per request, in order: ``fail(429, retry_after="2")``,
  ``fail(500)``, ``fail(400, code=21610)``, ``fail(401)``.

::

    with FakeTwilio() as tw:
        tw.script("+15551230001", ["sent", ("undelivered", 30003)])
        ... TwilioConfig(account_sid=tw.account_sid, auth_token=tw.auth_token,
                         from_number=tw.number, api_base=tw.url) ...
        tw.call_script("+15551230001", ["ringing", "no-answer"])
        tw.requests   # every request: method, path, query, form, whether auth passed
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import re
import secrets
import ssl
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.http import json_handler

E164 = re.compile(r"\+[1-9][0-9]{1,14}")
DEFAULT_SCRIPT: tuple[str | tuple[str, int], ...] = ("sent", "delivered")
DEFAULT_CALL_SCRIPT: tuple[str | tuple[str, int], ...] = ("ringing", "in-progress", "completed")
CALL_ENDS = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})

ERRORS = {  # code -> Twilio's message, as its error pages word them
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    21201: "No 'To' number is specified",
    21205: "Url parameter is required.",
    21208: "Invalid Timeout",
    21211: "Invalid 'To' Phone Number",
    21213: "No 'From' number is specified",
    21216: "Account not allowed to call this number (a Primary Customer Profile is required)",
    21602: "Message body is required.",
    21603: "A 'From' or 'MessagingServiceSid' parameter is required to send a message",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    32018: "Twiml size exceeded maximum allowed value of 4000 characters",
}
ERROR_MESSAGES = {  # error_code on an undelivered message -> its error_message
    30003: "Unreachable destination handset",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered",
    32009: "Call failed: the carrier could not complete the call",
}
DEFAULT_CODE = {400: 21211, 401: 20003, 404: 20404, 429: 20429, 500: 20500}


def sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def rfc2822(when: dt.datetime) -> str:
    return email.utils.format_datetime(when.astimezone(dt.UTC), usegmt=False)


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    authorized: bool
    authorization: str | None  # the header as sent (None: no header at all)


@dataclass
class Failure:
    status: int
    code: int | None = None
    retry_after: str | None = None
    method: str | None = None  # None: any request


@dataclass
class _Message:
    data: dict[str, Any]
    steps: list[str | tuple[str, int]] = field(default_factory=list)


@dataclass
class _Call:
    data: dict[str, Any]
    steps: list[str | tuple[str, int]] = field(default_factory=list)
    in_progress: int = 0  # GETs it answered in progress: its duration in seconds


class FakeTwilio:
    """A Twilio API on 127.0.0.1 (a free port), in a thread. ``tls``: (cert, key) files
    to serve HTTPS."""

    def __init__(self, *, tls: tuple[str, str] | None = None) -> None:
        self.account_sid = sid("AC")
        self.auth_token = secrets.token_hex(16)
        self.number = "+15550001111"
        self.friendly_name = "Home alarms"
        self.account_status = "active"
        self.account_type = "Full"
        self.requests: list[Recorded] = []
        self.messages: dict[str, _Message] = {}  # sid -> message, in creation order
        self.stopped: set[str] = set()  # numbers that texted STOP (sends answer 21610)
        self.calls: dict[str, _Call] = {}  # sid -> call, in creation order
        self.primary_customer_profile = True  # False: calls to +1 numbers answer 21216
        self._call_scripts: dict[str, list[str | tuple[str, int]]] = {}
        self._scripts: dict[str, list[str | tuple[str, int]]] = {}
        self._failures: list[Failure] = []
        self._lock = threading.Lock()
        self._clock = dt.datetime.now(dt.UTC).replace(microsecond=0)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeTwilio:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting ------------------------------------------------------------------------

    def script(self, number: str, steps: list[str | tuple[str, int]]) -> None:
        """The statuses a message to ``number`` takes, one per GET after the POST's
        ``queued``; ``("undelivered", 30003)`` sets ``error_code`` too."""
        self._scripts[number] = list(steps)

    def call_script(self, number: str, steps: list[str | tuple[str, int]]) -> None:
        """The statuses a call to ``number`` takes, one per GET after the POST's ``queued``
        (``["ringing", "in-progress", "completed"]`` unless told); ``("failed", 32009)``
        sets ``error_code`` too. The last status stays."""
        self._call_scripts[number] = list(steps)

    def placed(self) -> list[dict[str, Any]]:
        """The calls placed, oldest first, each with the form it was placed with
        (``form``: ``To``, ``From``, ``Timeout``, ``Twiml``)."""
        with self._lock:
            return [dict(c.data) for c in self.calls.values()]

    def fail(
        self,
        status: int,
        *,
        code: int | None = None,
        retry_after: str | None = None,
        method: str | None = None,
    ) -> None:
        """Answer the next request (of ``method``, when given) with an error."""
        with self._lock:
            self._failures.append(Failure(status, code, retry_after, method))

    def inbound(self, sender: str, body: str, *, status: str = "received") -> str:
        """A text someone sent to ``number``; returns its sid."""
        with self._lock:
            return self._add(sender, self.number, body, "inbound", status, [])

    def sent(self) -> list[dict[str, Any]]:
        """The outbound messages, oldest first."""
        with self._lock:
            return [m.data for m in self.messages.values() if m.data["direction"] != "inbound"]

    # -- the resources --------------------------------------------------------------------

    def _tick(self) -> dt.datetime:
        self._clock += dt.timedelta(seconds=1)  # each message a second after the last
        return self._clock

    def _add(
        self,
        sender: str | None,
        to: str,
        body: str,
        direction: str,
        status: str,
        steps: list[str | tuple[str, int]],
        service: str | None = None,
    ) -> str:
        now = rfc2822(self._tick())
        message_sid = sid("SM")
        self.messages[message_sid] = _Message(
            {
                "account_sid": self.account_sid,
                "api_version": "2010-04-01",
                "body": body,
                "date_created": now,
                "date_sent": now if direction == "inbound" else None,
                "date_updated": now,
                "direction": direction,
                "error_code": None,
                "error_message": None,
                "from": sender,
                "messaging_service_sid": service,
                "num_media": "0",
                "num_segments": "1",
                "price": None,
                "price_unit": "USD",
                "sid": message_sid,
                "status": status,
                "subresource_uris": {
                    "media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/"
                    f"{message_sid}/Media.json"
                },
                "to": to,
                "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{message_sid}.json",
            },
            steps,
        )
        return message_sid

    def _advance(self, message: _Message) -> None:
        if not message.steps:
            return
        step = message.steps.pop(0)
        status, code = (step, None) if isinstance(step, str) else step
        data = message.data
        data["status"] = status
        data["date_updated"] = rfc2822(self._tick())
        if status in ("sent", "delivered") and data["date_sent"] is None:
            data["date_sent"] = data["date_updated"]
        if code is not None:
            data["error_code"] = code
            data["error_message"] = ERROR_MESSAGES.get(code)

    def _call(self, form: dict[str, str], base: str) -> tuple[int, Any, dict[str, str]]:
        to, sender = form.get("To"), form.get("From")
        if not to:
            return 400, _error(400, 21201), {}
        if not sender:
            return 400, _error(400, 21213), {}
        if not form.get("Twiml") and not form.get("Url"):
            return 400, _error(400, 21205), {}
        if not E164.fullmatch(to):
            return 400, _error(400, 21211, f"Invalid 'To' Phone Number: {to}"), {}
        timeout = form.get("Timeout", "60")
        if not timeout.isdigit() or int(timeout) < 1:
            return 400, _error(400, 21208), {}
        if len(form.get("Twiml", "")) > 4000:
            return 400, _error(400, 32018), {}
        if to.startswith("+1") and not self.primary_customer_profile:
            return 400, _error(400, 21216), {}
        call_sid = sid("CA")
        now = rfc2822(self._tick())
        self.calls[call_sid] = _Call(
            {
                "account_sid": self.account_sid,
                "answered_by": None,
                "api_version": "2010-04-01",
                "caller_name": None,
                "date_created": now,
                "date_updated": now,
                "direction": "outbound-api",
                "duration": None,
                "end_time": None,
                "form": dict(form),
                "from": sender,
                "parent_call_sid": None,
                "price": None,
                "price_unit": "USD",
                "sid": call_sid,
                "start_time": None,
                "status": "queued",
                "to": to,
                "uri": f"{base}/Calls/{call_sid}.json",
            },
            list(self._call_scripts.get(to, DEFAULT_CALL_SCRIPT)),
        )
        return 201, self._call_view(self.calls[call_sid]), {}

    @staticmethod
    def _call_view(call: _Call) -> dict[str, Any]:
        return {k: v for k, v in call.data.items() if k != "form"}

    def _call_status(self, call: _Call, status: str, code: int | None = None) -> None:
        data = call.data
        if data["status"] == "in-progress":
            call.in_progress += 1
        data["status"] = status
        data["date_updated"] = rfc2822(self._tick())
        if status in ("ringing", "in-progress") and data["start_time"] is None:
            data["start_time"] = data["date_updated"]
        if status in CALL_ENDS:
            call.steps = []
            data["end_time"] = data["date_updated"]
            data["duration"] = str(call.in_progress)
        if code is not None:
            data["error_code"] = code
            data["error_message"] = ERROR_MESSAGES.get(code)

    def _advance_call(self, call: _Call) -> None:
        if not call.steps:
            return
        step = call.steps.pop(0)
        status, code = (step, None) if isinstance(step, str) else step
        self._call_status(call, status, code)

    def _update_call(self, call: _Call, form: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        wanted = form.get("Status")
        now = call.data["status"]
        if wanted == "canceled" and now in ("queued", "ringing"):
            self._call_status(call, "canceled")
        elif wanted == "completed" and now not in CALL_ENDS:
            self._call_status(call, "completed" if now == "in-progress" else "canceled")
        return 200, self._call_view(call), {}

    def _account(self) -> dict[str, Any]:
        return {
            "auth_token": self.auth_token,
            "date_created": rfc2822(self._clock),
            "date_updated": rfc2822(self._clock),
            "friendly_name": self.friendly_name,
            "owner_account_sid": self.account_sid,
            "sid": self.account_sid,
            "status": self.account_status,
            "subresource_uris": {},
            "type": self.account_type,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}.json",
        }

    def answer(
        self, method: str, path: str, query: dict[str, str], form: dict[str, str], auth: str | None
    ) -> tuple[int, Any, dict[str, str]]:
        """(status, JSON body, extra headers) for one request; records it."""
        expected = "Basic " + base64.b64encode(
            f"{self.account_sid}:{self.auth_token}".encode()
        ).decode("ascii")
        authorized = auth == expected
        with self._lock:
            self.requests.append(Recorded(method, path, query, form, authorized, auth))
            failure = next(
                (f for f in self._failures if f.method in (None, method)),
                None,
            )
            if failure is not None:
                self._failures.remove(failure)
                headers = {"Retry-After": failure.retry_after} if failure.retry_after else {}
                code = failure.code or DEFAULT_CODE.get(failure.status, 20500)
                return failure.status, _error(failure.status, code), headers
            if not authorized:
                return 401, _error(401, 20003), {"WWW-Authenticate": 'Basic realm="Twilio API"'}
            return self._route(method, path, query, form)

    def _route(
        self, method: str, path: str, query: dict[str, str], form: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        base = f"/2010-04-01/Accounts/{self.account_sid}"
        if method == "GET" and path == base + ".json":
            return 200, self._account(), {}
        if path == base + "/Messages.json" and method == "POST":
            return self._create(form)
        if path == base + "/Messages.json" and method == "GET":
            return 200, self._list(query, base), {}
        if path == base + "/Calls.json" and method == "POST":
            return self._call(form, base)
        found = re.fullmatch(re.escape(base) + r"/Calls/(\w+)\.json", path)
        if found and method in ("GET", "POST"):
            call = self.calls.get(found.group(1))
            if call is None:
                return 404, _error(404, 20404), {}
            if method == "POST":
                return self._update_call(call, form)
            self._advance_call(call)
            return 200, self._call_view(call), {}
        found = re.fullmatch(re.escape(base) + r"/Messages/(\w+)\.json", path)
        if found and method == "GET":
            message = self.messages.get(found.group(1))
            if message is None:
                return 404, _error(404, 20404), {}
            self._advance(message)
            return 200, dict(message.data), {}
        return 404, _error(404, 20404), {}

    def _create(self, form: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        to = form.get("To")
        if not to:
            return 400, _error(400, 21604), {}
        service = form.get("MessagingServiceSid")
        sender = form.get("From")
        if not service and not sender:
            return 400, _error(400, 21603), {}
        if "Body" not in form or not form["Body"]:
            return 400, _error(400, 21602), {}
        if not E164.fullmatch(to):
            return 400, _error(400, 21211, f"Invalid 'To' Phone Number: {to}"), {}
        if to in self.stopped:
            return 400, _error(400, 21610), {}
        steps = list(self._scripts.get(to, DEFAULT_SCRIPT))
        status = "accepted" if service else "queued"
        message_sid = self._add(sender, to, form["Body"], "outbound-api", status, steps, service)
        return 201, dict(self.messages[message_sid].data), {}

    def _list(self, query: dict[str, str], base: str) -> dict[str, Any]:
        size = int(query.get("PageSize", "50"))
        found = [
            dict(m.data)
            for m in reversed(self.messages.values())
            if all(m.data.get(k.lower()) == query[k] for k in ("To", "From") if k in query)
        ][:size]
        uri = f"{base}/Messages.json?" + urllib.parse.urlencode(query)
        return {
            "end": max(len(found) - 1, 0),
            "first_page_uri": uri,
            "messages": found,
            "next_page_uri": None,
            "page": 0,
            "page_size": size,
            "previous_page_uri": None,
            "start": 0,
            "uri": uri,
        }


def _error(status: int, code: int, message: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": code,
        "message": message or ERRORS.get(code, "Error"),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    if code == 20003:
        body["detail"] = "Your AccountSid or AuthToken was incorrect."
    return body


def _handler(fake: FakeTwilio) -> type[BaseHTTPRequestHandler]:
    def answer(
        method: str, path: str, query: dict[str, str], raw: bytes, headers: Message
    ) -> tuple[int, Any, Mapping[str, str]]:
        form: dict[str, str] = {}
        if headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            form = dict(urllib.parse.parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        return fake.answer(method, path, query, form, headers.get("Authorization"))

    return json_handler(answer)
