"""An Android phone running "SMS Gateway for Android" (capcom6/android-sms-gateway) in its
local-server mode, as a way out: send, delivery reports, cancel, received texts.

Written from the app's local-server routes (1.68.0; the inbox needs 1.59, cancel 1.67), with
Basic auth on every request (default user ``sms``, port 8080, no ``/3rdparty/v1`` prefix):

- ``send``: ``POST /message`` with JSON ``{"id": <our text id>, "textMessage": {"text": ...},
  "phoneNumbers": [E.164], "withDeliveryReport": true}`` and ``"priority": 100`` for a
  high-priority text (100 and up skip the app's send delays). 202: taken. 409: the phone
  already has that id, i.e. our own resend after a crash or a lost answer: success, the same
  receipt, nothing sent twice. The receipt's ``remote_id`` is our id.
- ``reports``: ``GET /message/{id}``; ``STATES`` maps the app's state to ours; an undelivered
  report carries the recipient's ``error``. A ``Delivered`` is the phone's word (some app
  versions reported failed texts as delivered).
- ``cancel``: ``DELETE /message/{id}`` (1.67); an older app answers 404/405: the text stays.
- ``receive``: ``GET /inbox`` (1.59) with ``from``; the mark is the newest received time seen
  and the ids at that time; the first look only takes it.
- ``probe``: the authenticated ``GET /`` (``/health`` needs no password, so it cannot tell a
  wrong one), which answers the phone's model, and the app's version when it tells it.

Errors are mapped by ``http.py``: 401/403 an auth failure, connection errors, timeouts and
5xx temporary, other 4xx permanent. The app's webhooks reach only ``https://`` or
``http://127.0.0.1`` targets, so we poll and need no inbound port. No thread, no state beyond
the connection settings: the engine keeps the schedule.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ..errors import PermanentDeliveryError
from .base import DeliveryReport, OutgoingText, Receipt, ReceivedText, each_report
from .http import HttpClient, HttpPermanentError, HttpTemporaryError, error_words, short

if TYPE_CHECKING:
    from ..config.model import AndroidConfig

log = logging.getLogger(__name__)

E164 = re.compile(r"\+[1-9][0-9]{1,14}")
HIGH_PRIORITY = 100  # the app skips its send limits and delays at 100 and up
INBOX_LIMIT = 100  # the app takes 1..500

State = Literal["pending", "delivered", "undelivered"]

# The app's ProcessingState -> ours.
STATES: Mapping[str, State] = {
    "Pending": "pending",
    "Processed": "pending",
    "Sent": "pending",  # the network took it; only the handset's receipt says delivered
    "Cancelling": "pending",
    "Delivered": "delivered",
    "Failed": "undelivered",
    "Cancelled": "undelivered",
}


# --------------------------------------------------------------------------- pure parts


def describe_error(status: int, body: Any) -> str | None:
    """The app's words for an error answer (its JSON ``message``), or None."""
    words = error_words(body)
    return f"the phone says: {words}" if words else None


def message_body(text: OutgoingText, address: str) -> dict[str, Any]:
    """The JSON of ``POST /message`` for ``text`` to ``address`` (E.164). Pure."""
    body: dict[str, Any] = {
        "id": text.id,
        "textMessage": {"text": text.body},
        "phoneNumbers": [address],
        "withDeliveryReport": True,
    }
    if text.priority == "high":
        body["priority"] = HIGH_PRIORITY
    if text.ttl is not None:
        # what is left of max_age: the phone drops a text it could not send by then, as we
        # would expire it (at least a minute, so a nearly expired text still gets its try)
        body["ttl"] = max(60, int(text.ttl))
    return body


def report_for(message: Mapping[str, Any], remote_id: str) -> DeliveryReport:
    """Our report for the app's answer to ``GET /message/{id}``. The message's state is
    the worst of its recipients' (we send to one); an unknown state is ``pending``."""
    state_word = str(message.get("state") or "")
    recipients = [r for r in message.get("recipients") or () if isinstance(r, Mapping)]
    errors = [str(r["error"]) for r in recipients if r.get("error")]
    for r in recipients:  # a recipient that failed fails the text, whatever the top says
        if STATES.get(str(r.get("state") or "")) == "undelivered":
            state_word = str(r.get("state"))
            break
    state = STATES.get(state_word, "pending")
    detail = state_word or "no state"
    if state == "undelivered" and errors:
        detail = f"{state_word}: {short('; '.join(errors), 200)}"
    return DeliveryReport(remote_id, state, detail)


def parse_time(value: Any) -> dt.datetime | None:
    """The app's ISO 8601 time, timezone-aware (UTC when it gives no offset); None when
    absent or unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _received_at(m: Mapping[str, Any]) -> dt.datetime | None:
    return parse_time(m.get("createdAt")) or parse_time(m.get("receivedAt"))


def _mark(when: dt.datetime | None, ids: Sequence[str]) -> str:
    return f"{when.isoformat() if when else ''}|{','.join(sorted(ids))}"


def _parse_mark(mark: str) -> tuple[dt.datetime | None, set[str]]:
    when, _, ids = mark.partition("|")
    return parse_time(when), {i for i in ids.split(",") if i}


def new_inbound(
    messages: Sequence[Mapping[str, Any]], mark: str | None
) -> tuple[list[ReceivedText], str]:
    """The received texts newer than ``mark``, oldest first, and the new mark. ``mark`` None:
    the first look, which returns none and only takes the mark. Pure.

    The mark is the newest received time seen and the ids received at that time (texts that
    share a second are neither lost nor read twice). A text without a time is skipped.
    """
    dated = [(w, m) for m in messages if (w := _received_at(m)) is not None]
    dated.sort(key=lambda wm: wm[0])
    since, seen = _parse_mark(mark) if mark is not None else (None, set())
    newest = since
    at_newest = set(seen)
    out: list[ReceivedText] = []
    for when, m in dated:
        mid = str(m.get("id") or "")
        if since is not None and (when < since or (when == since and mid in seen)):
            continue
        if newest is None or when > newest:
            newest, at_newest = when, set()
        if when == newest:
            at_newest.add(mid)
        if mark is not None:
            out.append(
                ReceivedText(
                    sender=str(m.get("sender") or m.get("phoneNumber") or ""),
                    text=str(m.get("contentPreview") or m.get("text") or m.get("message") or ""),
                    at=when,
                    remote_id=mid,
                )
            )
    return out, _mark(newest, sorted(at_newest))


def describe_device(answer: Any) -> str:
    """The probe's line from the answer to ``GET /``: the phone's model and, when the phone
    tells it, the app's version."""
    if not isinstance(answer, Mapping):
        return "the phone answered"
    model = answer.get("model")
    version = next(
        (answer[k] for k in ("version", "appVersion", "app_version") if answer.get(k)), None
    )
    parts = [f"phone {short(str(model), 64)!r}" if model else "the phone answered"]
    parts.append(f"app {short(str(version), 32)}" if version else "app version not told")
    status = answer.get("status")
    if status not in (None, "", "ok", "pass"):
        parts.append(f"status {short(str(status), 32)}")
    return ", ".join(parts)


# --------------------------------------------------------------------------- the shell


class AndroidTransport:
    """The phone's local server; see the module docstring. ``timeout`` is per request."""

    name = "android"

    def __init__(
        self, config: AndroidConfig, *, timeout: float = 10.0, ca_certs: str | None = None
    ) -> None:
        self._config = config
        self.poll_every = config.poll  # for the engine's poller (polling.py)
        self.receives = config.receive  # read the phone's inbox every poll_every
        self.can_receive = True  # and at the start, and while an incident waits
        # the phone takes our text id and answers a resend of it with 409 (done): the engine
        # commits a text for it before trying it, so a kill never sends it twice
        self.commit_first = True
        self._http = HttpClient(
            config.url,
            username=config.username,
            password=config.password,
            timeout=timeout,
            ca_certs=ca_certs,
            describe=describe_error,
        )

    def __repr__(self) -> str:
        return f"AndroidTransport(url={self._config.url!r}, username={self._config.username!r})"

    def send(self, text: OutgoingText) -> Receipt:
        """Hand ``text`` to the phone under our id; a 409 (it has that id already) is the
        receipt of an earlier try."""
        to = text.address.strip()
        if not E164.fullmatch(to):
            raise PermanentDeliveryError(f"not an E.164 number: {short(text.address, 40)!r}")
        try:
            resp = self._http.post_json("/message", message_body(text, to), label="send")
        except HttpPermanentError as exc:
            if exc.status == 409:
                log.info("android: the phone already has text %s: sent before", text.id)
                return Receipt(self.name, text.id, "409: the phone already had it")
            raise
        answer = resp.body_json_or_none()
        state = str(answer.get("state") or "") if isinstance(answer, Mapping) else ""
        return Receipt(self.name, text.id, f"{resp.status} {state}".strip())

    def reports(self, remote_ids: Sequence[str]) -> list[DeliveryReport]:
        """The state of each text. An id whose state cannot be read is left out (asked again
        next time); when the phone itself fails, the ids not yet asked are left out too, and
        the error is raised if no report was read at all."""

        def one(remote_id: str) -> DeliveryReport:
            resp = self._http.get(f"/message/{_quote(remote_id)}", label="report")
            answer = resp.body_json_or_none()
            if not isinstance(answer, Mapping):
                raise HttpTemporaryError("report: the phone's answer is not a JSON object")
            return report_for(answer, remote_id)

        return each_report("android", remote_ids, one)

    def cancel(self, remote_id: str) -> bool:
        """Ask the phone not to send ``remote_id``: True when it took the request (1.67 and
        newer); False when the app is older (404/405): the text stays and may be sent."""
        try:
            self._http.delete(f"/message/{_quote(remote_id)}", label="cancel")
        except HttpPermanentError as exc:
            if exc.status == 409:
                log.info("android: %s was sent already: too late to cancel", remote_id)
                return False
            if exc.status in (404, 405):
                log.warning(
                    "android: the phone cannot cancel %s (HTTP %s: app older than 1.67, or it "
                    "is gone): the text stays",
                    remote_id,
                    exc.status,
                )
                return False
            raise
        return True

    def receive(self, mark: str | None) -> tuple[list[ReceivedText], str | None]:
        """Texts the phone received since ``mark``; the first look (None) only takes it."""
        query = {"limit": str(INBOX_LIMIT)}
        since = _parse_mark(mark)[0] if mark else None
        if since is not None:
            query["from"] = since.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        resp = self._http.get("/inbox", query, label="inbox")
        answer = resp.body_json_or_none()
        items = answer.get("messages") if isinstance(answer, Mapping) else answer
        if not isinstance(items, list):
            raise HttpTemporaryError("inbox: the phone's answer is not a list of texts")
        return new_inbound([m for m in items if isinstance(m, Mapping)], mark)

    def probe(self) -> str:
        """The authenticated ``GET /`` (sends nothing); one line, or our error."""
        resp = self._http.get("/", label="device")
        return describe_device(resp.body_json_or_none())

    def close(self) -> None:
        """Nothing to drop: every request uses its own connection."""


def _quote(remote_id: str) -> str:
    return urllib.parse.quote(remote_id, safe="")
