"""What the fakes of an HTTP service share: a request handler that reads the path, the
query and the body, asks the fake for its answer, and writes it back as JSON."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Mapping
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import Any

# (method, path, query, raw body, headers) -> (status, JSON body or None, extra headers)
Answer = Callable[
    [str, str, dict[str, str], bytes, Message],
    tuple[int, Any, Mapping[str, str]],
]


def json_handler(answer: Answer) -> type[BaseHTTPRequestHandler]:
    """A handler class whose every GET, POST and DELETE is answered by ``answer``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self, method: str) -> None:
            parts = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            status, body, headers = answer(method, parts.path, query, raw, self.headers)
            data = b"" if body is None else json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet; the fakes record the requests

    return Handler
