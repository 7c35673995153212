"""A fake of "SMS Gateway for Android"'s local server (capcom6/android-sms-gateway, as its
1.68 routes read), on 127.0.0.1 (a free port), in a thread.

Only what mqtt2sms uses, answered in the app's shape:

- Basic auth on every route but ``/health``: 401 otherwise;
- ``POST /message`` and ``/messages`` (one route): JSON ``textMessage.text``,
  ``phoneNumbers`` (required), ``id`` (generated when absent), ``withDeliveryReport``,
  ``priority`` (-128..127); 202 and the message's state; 409 when the id exists; 400 for a
  missing field;
- ``GET /message/{id}``: ``{id, deviceId, state, recipients: [{phoneNumber, state, error}],
  isEncrypted, states}``; each GET moves it one step along its number's script
  (``Pending -> Sent -> Delivered`` unless ``script`` says otherwise); 404 for an unknown id;
- ``DELETE /message/{id}``: Cancelled when not yet sent (409 when it was); ``cancel=False``
  plays an app older than 1.67 (405);
- ``GET /health``: open, ``{"status": "pass", ...}``; ``GET /``: ``{"status": "ok",
  "model": ...}`` (and ``version`` when ``version`` is set);
- ``GET /inbox`` with ``limit``, ``offset``, ``from``, ``to``: received texts, newest first;
- ``closed=True``: nothing listens on ``url``'s port (the phone is off); ``stop()`` closes it
  later.

::

    with FakeAndroid() as phone:
        phone.script("+15551230001", ["Sent", ("Failed", "RESULT_ERROR_NO_SERVICE")])
        ... AndroidConfig(url=phone.url, username=phone.username, password=phone.password)
        phone.messages   # id -> what was posted, in order
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import secrets
import socket
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.http import json_handler

DEFAULT_SCRIPT: tuple[str | tuple[str, str], ...] = ("Sent", "Delivered")
ID = re.compile(r"/messages?/([^/]+)")


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    authorized: bool


@dataclass
class _Message:
    id: str
    posted: dict[str, Any]
    steps: list[str | tuple[str, str]]
    state: str = "Pending"
    error: str | None = None
    states: dict[str, str] = field(default_factory=dict)


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FakeAndroid:
    def __init__(
        self,
        *,
        closed: bool = False,
        cancel: bool = True,
        version: str | None = None,
        model: str = "Pixel 4a",
    ) -> None:
        self.username = "sms"
        self.password = secrets.token_urlsafe(12)
        self.model = model
        self.version = version
        self.cancel_supported = cancel
        self.answer_delay = 0.0  # seconds a POST's answer waits once the text is taken
        self.requests: list[Recorded] = []
        self.messages: dict[str, _Message] = {}
        self.inbox: list[dict[str, Any]] = []  # oldest first
        self._scripts: dict[str, list[str | tuple[str, str]]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        if closed:
            with socket.socket() as s:  # a port nobody listens on any more
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        else:
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
            self._server.daemon_threads = True
            port = self._server.server_address[1]
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> FakeAndroid:
        if self._thread is not None:
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeAndroid:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting ------------------------------------------------------------------------

    def script(self, number: str, steps: list[str | tuple[str, str]]) -> None:
        """The states a text to ``number`` goes through, one per ``GET /message/{id}``;
        ``(state, error)`` gives the recipient's error."""
        self._scripts[number] = list(steps)

    def receive(self, sender: str, text: str, at: dt.datetime | None = None) -> str:
        """A text the phone received."""
        mid = secrets.token_hex(8)
        when = at or dt.datetime.now(dt.UTC)
        with self._lock:
            self.inbox.append(
                {
                    "id": mid,
                    "type": "SMS",
                    "sender": sender,
                    "recipient": None,
                    "simNumber": 1,
                    "contentPreview": text,
                    "createdAt": _iso(when),
                }
            )
        return mid

    def posts(self) -> list[dict[str, Any]]:
        """The bodies of the texts the phone took, in order."""
        with self._lock:
            return [m.posted for m in self.messages.values()]

    # -- the server -----------------------------------------------------------------------

    def _view(self, m: _Message) -> dict[str, Any]:
        number = m.posted["phoneNumbers"][0]
        return {
            "id": m.id,
            "deviceId": "fake-device",
            "state": m.state,
            "isHashed": False,
            "isEncrypted": False,
            "recipients": [{"phoneNumber": number, "state": m.state, "error": m.error}],
            "states": dict(m.states),
        }

    def answer(
        self, method: str, path: str, query: dict[str, str], body: Any, auth: str | None
    ) -> tuple[int, Any]:
        expected = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode(
            "ascii"
        )
        authorized = auth == expected
        with self._lock:
            self.requests.append(Recorded(method, path, query, body, authorized))
            if path == "/health" and method == "GET":
                return 200, {"status": "pass", "version": self.version or "", "checks": {}}
            if not authorized:
                return 401, {"message": "Unauthorized"}
            if path == "/" and method == "GET":
                out = {"status": "ok", "model": self.model}
                if self.version:
                    out["version"] = self.version
                return 200, out
            if path in ("/message", "/messages") and method == "POST":
                return self._post(body)
            found = ID.fullmatch(path)
            if found and method == "GET":
                m = self.messages.get(urllib.parse.unquote(found[1]))
                if m is None:
                    return 404, {"message": "message not found"}
                self._advance(m)
                return 200, self._view(m)
            if found and method == "DELETE":
                if not self.cancel_supported:
                    return 405, {"message": "Method Not Allowed"}
                m = self.messages.get(urllib.parse.unquote(found[1]))
                if m is None:
                    return 404, {"message": "message not found"}
                if m.state not in ("Pending", "Processed"):
                    return 409, {"message": f"message is {m.state}"}
                self._set(m, "Cancelled", None)
                m.steps = []
                return 204, None
            if path == "/inbox" and method == "GET":
                return 200, self._inbox(query)
            return 404, {"message": "Not Found"}

    def _post(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            return 400, {"message": "bad request"}
        numbers = body.get("phoneNumbers")
        text = (body.get("textMessage") or {}).get("text")
        if not numbers or not isinstance(numbers, list) or not text:
            return 400, {"message": "phoneNumbers and textMessage.text are required"}
        priority = body.get("priority", 0)
        if not isinstance(priority, int) or not -128 <= priority <= 127:
            return 400, {"message": "priority must be between -128 and 127"}
        mid = str(body.get("id") or secrets.token_urlsafe(16))
        if mid in self.messages:
            return 409, {"message": f"message with id {mid} already exists"}
        steps = list(self._scripts.get(numbers[0], DEFAULT_SCRIPT))
        m = _Message(mid, body, steps)
        self._set(m, "Pending", None)
        self.messages[mid] = m
        return 202, self._view(m)

    def _advance(self, m: _Message) -> None:
        if m.steps:
            step = m.steps.pop(0)
            state, error = step if isinstance(step, tuple) else (step, None)
            self._set(m, state, error)

    @staticmethod
    def _set(m: _Message, state: str, error: str | None) -> None:
        m.state, m.error = state, error
        m.states[state] = _iso(dt.datetime.now(dt.UTC))

    def _inbox(self, query: dict[str, str]) -> list[dict[str, Any]]:
        limit = max(1, min(500, int(query.get("limit", "50"))))
        offset = int(query.get("offset", "0"))
        since = query.get("from")
        until = query.get("to")

        def when(m: dict[str, Any]) -> dt.datetime:
            return dt.datetime.fromisoformat(str(m["createdAt"]).replace("Z", "+00:00"))

        items = list(reversed(self.inbox))
        if since:
            start = dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
            items = [m for m in items if when(m) >= start]
        if until:
            end = dt.datetime.fromisoformat(until.replace("Z", "+00:00"))
            items = [m for m in items if when(m) <= end]
        return items[offset : offset + limit]


def _handler(fake: FakeAndroid) -> type[BaseHTTPRequestHandler]:
    def answer(
        method: str, path: str, query: dict[str, str], raw: bytes, headers: Message
    ) -> tuple[int, Any, Mapping[str, str]]:
        body: Any = None
        if raw:
            try:
                body = json.loads(raw.decode("utf-8"))
            except ValueError:
                body = None
        status, out = fake.answer(method, path, query, body, headers.get("Authorization"))
        if method == "POST" and status == 202 and fake.answer_delay:
            time.sleep(fake.answer_delay)  # the phone has it; the answer is slow
        challenge = {"WWW-Authenticate": 'Basic realm="Access to SMS Gateway"'}
        return status, out, challenge if status == 401 else {}

    return json_handler(answer)
