"""Twilio's REST API (2010-04-01) as a way out: send, delivery reports, received texts, calls.

- ``send``: ``POST Accounts/{sid}/Messages.json`` with ``To`` (E.164), ``From`` or
  ``MessagingServiceSid``, ``Body``; the message's ``sid`` is the receipt's ``remote_id``.
  Errors are mapped by ``http.py`` (429/5xx/timeouts/TLS temporary, 401/403 an auth failure,
  other 4xx permanent); Twilio's ``code`` and ``message`` go into the text, with a plain
  meaning for the codes a user meets (21610: the recipient texted STOP).
- ``reports``: ``GET Messages/{sid}.json``; ``STATES`` maps Twilio's status to ours.
  Twilio sends no callback for the first status and we have no public URL: polling is the
  way. One id that cannot be fetched does not hold back the others.
- ``receive``: ``GET Messages.json?To=<from>``, newest first; the mark is the newest
  message seen (``sid@date``); the first look only takes it.
- ``call``: ``POST Accounts/{sid}/Calls.json`` with ``To``, ``From`` (``twilio.from``: a
  messaging service cannot call), ``Timeout`` (= ``ring_for``) and inline ``Twiml`` that says
  the text twice (``twiml``), so no public URL is needed; then ``GET Calls/{sid}.json`` every
  ``call_poll`` seconds until the call has ended (``call_outcome``), never longer than
  ``ring_for + CALL_GRACE``. ``cancelled()`` turning true hangs up: ``POST Calls/{sid}.json``
  with ``Status=canceled`` (queued, ringing) or ``Status=completed`` (answered). Error 21216
  (no Primary Customer Profile: no calls to +1 numbers) and 21215 (geographic permissions)
  are permanent and say so plainly. ``can_call`` is False without ``from``. The clock and
  sleep the polling uses come in as arguments (tests move a fake clock).
- ``probe``: ``GET Accounts/{sid}.json``, which sends nothing and places no call.

No thread and no state beyond the connection settings: the engine keeps the schedule.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal
from xml.sax.saxutils import escape

from ..errors import PermanentDeliveryError, TemporaryDeliveryError
from .base import (
    CallOutcome,
    CallResult,
    DeliveryReport,
    OutgoingText,
    Receipt,
    ReceivedText,
    each_report,
)
from .http import HttpClient, HttpPermanentError, HttpTemporaryError, short

if TYPE_CHECKING:
    from ..config.model import TwilioConfig

log = logging.getLogger(__name__)

API = "/2010-04-01"
E164 = re.compile(r"\+[1-9][0-9]{1,14}")

State = Literal["pending", "delivered", "undelivered"]

# Twilio's message status (Message resource, "Message Status values") -> ours.
STATES: Mapping[str, State] = {
    "queued": "pending",
    "accepted": "pending",
    "scheduled": "pending",
    "sending": "pending",
    "sent": "pending",  # the carrier took it; only a handset receipt says delivered
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "undelivered",
    "canceled": "undelivered",
    # part of the text reached the phone: send it whole another way rather than leave a
    # person with half an alarm
    "partially_delivered": "undelivered",
}

# Error codes a user of a home alarm meets, each with a short human meaning.
MEANINGS: Mapping[int, str] = {
    20003: "authentication failed: check twilio.account_sid and twilio.auth_token",
    20429: "too many requests",
    21211: "invalid 'To' number",
    21408: "sending to this country is not enabled in the account's geo permissions",
    21606: "the 'From' number is not an SMS-capable number of this account",
    21608: "a trial account can only text numbers verified in the Twilio console",
    21610: (
        "the recipient texted STOP to this number; they must text START to it "
        "before Twilio will deliver to them again"
    ),
    21614: "'To' is not a mobile number",
    30003: "unreachable handset (off or out of coverage; a retry may work)",
    30004: "message blocked by the recipient or their carrier",
    30005: "unknown or inactive handset",
    30006: "landline or unreachable carrier",
    30007: "filtered by the carrier as spam",
    30008: "unknown error at the carrier",
    30032: "toll-free number not verified",
    30034: "US A2P 10DLC number not registered",
    30532: "personal use is not supported for US 10DLC and toll-free senders",
    # calls
    21208: "invalid call Timeout",
    21210: "the 'From' number is not a voice-capable number or verified caller ID of this account",
    21215: "the account's voice geographic permissions do not allow calling this number",
    21216: "this account may not call this number (+1 numbers need a Primary Customer Profile)",
    21219: "a trial account can only call numbers verified in the Twilio console",
    32018: "the call's TwiML is longer than 4000 characters",
}

# A call refused for the account, not for this one call: said plainly (error pages 21216, 21215).
CALL_REFUSED: Mapping[int, str] = {
    21216: (
        "this account may not call +1 numbers without a Primary Customer Profile; "
        "see Twilio's Trust Hub"
    ),
    21215: (
        "the account's voice geographic permissions do not allow calling this number; "
        "see Voice Geographic Permissions in the Twilio console"
    ),
}

# A call's status (Call resource, "Call Status values"): still going, or ended.
CALL_WAITING = frozenset({"queued", "initiated", "ringing", "in-progress"})
CALL_GRACE = 90.0  # seconds past ring_for a call is followed at most (queue, speech, hang-up)
SAY_LIMIT = 600  # characters of escaped text per <Say>: about 40 s of speech, twice
TIMEOUT_RANGE = (1, 600)  # Twilio's Timeout: whole seconds (error 21208), at most 600
_CALL_ENDS: Mapping[str, CallOutcome] = {
    "completed": "answered",  # or no-answer: see call_outcome
    "busy": "busy",
    "no-answer": "no-answer",
    "failed": "failed",
    "canceled": "canceled",
}


# --------------------------------------------------------------------------- pure parts


def _code(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def explain(code: int | None, message: str | None = None) -> str:
    """``Twilio <code>: <our meaning> (Twilio's message)``, or what of it is known."""
    meaning = MEANINGS.get(code) if code is not None else None
    parts = [f"Twilio {code}" if code is not None else "Twilio"]
    said = " ".join(str(message).split()) if message else ""
    if meaning:
        parts.append(f": {meaning}")
        if said and said.lower().rstrip(".") != meaning.lower():
            parts.append(f" ({short(said, 120)})")
    elif said:
        parts.append(f": {short(said, 200)}")
    return "".join(parts) if len(parts) > 1 else ""


def describe_error(status: int, body: Any) -> str | None:
    """The words for an error answer: Twilio's JSON (``code``, ``message``, ``more_info``,
    ``status``) with our meaning of the code. None when the body is not Twilio's."""
    if not isinstance(body, Mapping):
        return None
    code = _code(body.get("code"))
    message = body.get("message")
    detail = body.get("detail")
    if detail and message and str(detail) not in str(message):
        message = f"{message}: {detail}"
    return explain(code, message if isinstance(message, str) else None) or None


def parse_date(value: Any) -> dt.datetime | None:
    """Twilio's RFC 2822 date (``Fri, 13 Aug 2010 01:16:24 +0000``), timezone-aware; None
    when absent or unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def report_for(message: Mapping[str, Any], remote_id: str) -> DeliveryReport:
    """Our report for one Message resource. An unknown status is ``pending`` (asked again)."""
    status = str(message.get("status") or "")
    state = STATES.get(status, "pending")
    detail = status or "no status"
    if state == "undelivered":
        code = _code(message.get("error_code"))
        words = explain(code, message.get("error_message"))
        if words:
            detail = f"{status}: {words}"
    return DeliveryReport(remote_id, state, detail)


def _mark_of(message: Mapping[str, Any] | None) -> str:
    if message is None:
        return "@"  # nothing seen: every message found later is new
    when = parse_date(message.get("date_sent")) or parse_date(message.get("date_created"))
    return f"{message.get('sid') or ''}@{when.isoformat() if when else ''}"


def _parse_mark(mark: str) -> tuple[str, dt.datetime | None]:
    sid, _, when = mark.partition("@")
    try:
        return sid, dt.datetime.fromisoformat(when) if when else None
    except ValueError:
        return sid, None


def new_inbound(
    messages: Sequence[Mapping[str, Any]], mark: str | None
) -> tuple[list[ReceivedText], str]:
    """The inbound texts newer than ``mark`` in a list Twilio gave newest first, oldest
    first, and the new mark. ``mark`` None: the first look, which returns none and only
    takes the mark. Pure.

    The list stops at the mark's sid; when the sid is gone (deleted, or more new messages
    than one page) it stops at the mark's date. A message still ``receiving`` is not
    stepped over: it and those after it are read at the next look.
    """
    if mark is None:
        return [], _mark_of(messages[0] if messages else None)
    seen_sid, since = _parse_mark(mark)
    newer: list[Mapping[str, Any]] = []
    for m in messages:
        if seen_sid and m.get("sid") == seen_sid:
            break
        when = parse_date(m.get("date_sent")) or parse_date(m.get("date_created"))
        if since is not None and when is not None and when < since:
            break
        newer.append(m)
    out: list[ReceivedText] = []
    last: Mapping[str, Any] | None = None
    for m in reversed(newer):
        if m.get("status") == "receiving":
            break
        last = m
        if m.get("direction") != "inbound":
            continue
        out.append(
            ReceivedText(
                sender=str(m.get("from") or ""),
                text=str(m.get("body") or ""),
                at=parse_date(m.get("date_sent")) or parse_date(m.get("date_created")),
                remote_id=str(m.get("sid") or ""),
            )
        )
    return out, (_mark_of(last) if last is not None else mark)


# XML 1.0 has no place for these (the C0 controls but tab and newlines, lone surrogates, and
# the non-characters U+FFFE, U+FFFF): dropped before escaping.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_QUOTES = {'"': "&quot;", "'": "&apos;"}


def say_text(say: str, limit: int = SAY_LIMIT) -> str:
    """``say`` as the text of a ``<Say>``: one line, without what XML forbids, escaped
    (``<&>"'``), at most ``limit`` characters once escaped, cut between characters (never
    inside an entity) and ended with ``...`` when cut. An empty ``say`` says "Alert". Pure."""
    text = " ".join(_NOT_XML.sub(" ", say).split()) or "Alert"
    escaped = escape(text, _QUOTES)
    if len(escaped) <= limit:
        return escaped
    out: list[str] = []
    used = 0
    for ch in text:
        piece = escape(ch, _QUOTES)
        if used + len(piece) > limit - 3:
            break
        out.append(piece)
        used += len(piece)
    return "".join(out).rstrip() + "..."


def twiml(say: str, limit: int = SAY_LIMIT) -> str:
    """The inline TwiML of a call: ``say`` spoken twice, a second apart. Pure; the result
    stays far under Twilio's 4000 characters for any ``limit`` up to 1900."""
    text = say_text(say, limit)
    return f'<Response><Say>{text}</Say><Pause length="1"/><Say>{text}</Say></Response>'


def ring_timeout(ring_for: float) -> int:
    """``ring_for`` as Twilio's ``Timeout``: whole seconds in its range. Pure."""
    low, high = TIMEOUT_RANGE
    return max(low, min(high, round(ring_for)))


def call_outcome(call: Mapping[str, Any], answered: bool) -> CallResult | None:
    """Our result for a Call resource, or None while the call goes on (queued, ringing,
    in-progress, or a status we do not know). ``answered``: it was seen in-progress before.
    ``completed`` is ``answered`` when it was ever in progress or lasted, else ``no-answer``.
    Pure."""
    status = str(call.get("status") or "")
    if not status or status in CALL_WAITING or status not in _CALL_ENDS:
        return None
    if status == "completed":
        duration = _code(call.get("duration")) or 0
        if answered or duration > 0:
            return CallResult("answered", f"completed, {duration} s" if duration else "completed")
        return CallResult("no-answer", "completed, not answered")
    if status == "failed":
        words = explain(_code(call.get("error_code")), call.get("error_message") or None)
        return CallResult("failed", f"failed: {words}" if words else "failed")
    return CallResult(_CALL_ENDS[status], status)


# --------------------------------------------------------------------------- the shell


class TwilioTransport:
    """Twilio's Messages API; see the module docstring. ``timeout`` is per request;
    ``ca_certs`` replaces the system's trust store (a local fake in tests)."""

    name = "twilio"

    def __init__(
        self,
        config: TwilioConfig,
        *,
        timeout: float = 10.0,
        ca_certs: str | None = None,
        page_size: int = 50,
        call_poll: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._config = config
        self._call_poll = call_poll  # seconds between two looks at a call's status
        self._clock = clock
        self._sleep = sleep
        self.can_call = bool(config.from_number)  # a messaging service cannot place calls
        self.poll_every = config.poll  # for the engine's poller (polling.py)
        self.receives = config.receive  # read the texts sent to `from` every poll_every
        # the replies to `from` can be read (not those to a messaging service's pool)
        self.can_receive = bool(config.from_number)
        self._page_size = page_size
        self._base = f"{API}/Accounts/{config.account_sid}"
        self._http = HttpClient(
            config.api_base,
            username=config.account_sid,
            password=config.auth_token or "",
            timeout=timeout,
            ca_certs=ca_certs,
            describe=describe_error,
        )

    def __repr__(self) -> str:
        return f"TwilioTransport(account_sid={self._config.account_sid!r})"

    def send(self, text: OutgoingText) -> Receipt:
        """Hand ``text`` to Twilio; the receipt's ``remote_id`` is the message sid."""
        to = text.address.strip()
        if not E164.fullmatch(to):
            raise PermanentDeliveryError(f"not an E.164 number: {short(text.address, 40)!r}")
        fields = {"To": to, "Body": text.body}
        cfg = self._config
        if cfg.messaging_service_sid:
            fields["MessagingServiceSid"] = cfg.messaging_service_sid
        elif cfg.from_number:
            fields["From"] = cfg.from_number
        else:
            raise TemporaryDeliveryError("twilio: set `from` or `messaging_service_sid`")
        self._need_token()
        resp = self._http.post_form(f"{self._base}/Messages.json", fields, label="send")
        message = self._json(resp.body_json_or_none(), "send")
        sid = message.get("sid")
        if not isinstance(sid, str) or not sid:
            raise HttpTemporaryError("send: Twilio's answer has no message sid")
        return Receipt(self.name, sid, str(message.get("status") or ""))

    def reports(self, remote_ids: Sequence[str]) -> list[DeliveryReport]:
        """The state of each message. An id whose message cannot be read is left out (it is
        asked again next time); when the way out itself fails, the ids not yet asked are
        left out too, and the error is raised if no report was read at all."""
        self._need_token()

        def one(remote_id: str) -> DeliveryReport:
            resp = self._http.get(f"{self._base}/Messages/{remote_id}.json", label="report")
            return report_for(self._json(resp.body_json_or_none(), "report"), remote_id)

        return each_report("twilio", remote_ids, one)

    def receive(self, mark: str | None) -> tuple[list[ReceivedText], str | None]:
        """Texts sent to ``from`` since ``mark``; the first look (None) only takes the mark."""
        number = self._config.from_number
        if not number:
            raise TemporaryDeliveryError("twilio: receiving needs `from` (the number texted)")
        self._need_token()
        resp = self._http.get(
            f"{self._base}/Messages.json",
            {"To": number, "PageSize": str(self._page_size)},
            label="inbox",
        )
        page = self._json(resp.body_json_or_none(), "inbox")
        messages = page.get("messages")
        if not isinstance(messages, list):
            raise HttpTemporaryError("inbox: Twilio's answer has no message list")
        return new_inbound([m for m in messages if isinstance(m, Mapping)], mark)

    def call(
        self, number: str, ring_for: float, say: str, cancelled: Callable[[], bool]
    ) -> CallResult:
        """Ring ``number`` once (see ``base.Calling`` and the module docstring); the call
        says ``say`` twice when answered, and ends by itself. Blocks until it has ended."""
        to = number.strip()
        if not E164.fullmatch(to):
            raise PermanentDeliveryError(f"not an E.164 number: {short(number, 40)!r}")
        sender = self._config.from_number
        if not sender:
            raise PermanentDeliveryError(
                "twilio: calls need `twilio.from` (a voice-capable number of the account); "
                "a messaging_service_sid cannot place calls"
            )
        self._need_token()
        if cancelled():
            return CallResult("canceled", "acknowledged before the call was placed")
        fields = {
            "To": to,
            "From": sender,
            "Timeout": str(ring_timeout(ring_for)),
            "Twiml": twiml(say),
        }
        try:
            resp = self._http.post_form(f"{self._base}/Calls.json", fields, label="call")
        except HttpPermanentError as exc:
            code = _code(exc.body.get("code")) if isinstance(exc.body, Mapping) else None
            plainly = CALL_REFUSED.get(code) if code is not None else None
            if plainly is not None:
                raise PermanentDeliveryError(
                    f"Twilio refused the call ({code}): {plainly}"
                ) from exc
            raise
        call: Mapping[str, Any] | None = self._json(resp.body_json_or_none(), "call")
        sid = call.get("sid") if call is not None else None
        if not isinstance(sid, str) or not sid:
            raise HttpTemporaryError("call: Twilio's answer has no call sid")
        bound = max(ring_for, 0.0) + CALL_GRACE
        deadline = self._clock() + bound
        answered = False
        status = ""
        trouble = ""  # why the last look at the status failed ("": it did not)
        while True:
            if call is not None:
                status = str(call.get("status") or "")
                answered = answered or status == "in-progress"
                result = call_outcome(call, answered)
                if result is not None:
                    log.info("twilio: call %s: %s (%s)", sid, result.outcome, result.detail)
                    return result
            if cancelled():
                detail = self._hang_up(sid, answered, status)
                log.info("twilio: call %s: canceled (%s)", sid, detail)
                return CallResult("canceled", detail)
            left = deadline - self._clock()
            if left <= 0:
                return self._give_up(sid, answered, status, trouble, bound)
            self._sleep(min(self._call_poll, left))
            try:
                resp = self._http.get(f"{self._base}/Calls/{sid}.json", label="call status")
                call, trouble = self._json(resp.body_json_or_none(), "call status"), ""
            except TemporaryDeliveryError as exc:
                if exc.auth:
                    raise
                log.warning("twilio: call %s: status not read: %s", sid, exc)
                trouble, call = str(exc), None

    def _hang_up(self, sid: str, answered: bool, status: str) -> str:
        """End call ``sid``: ``canceled`` while it rings (then ``completed`` if it was
        answered meanwhile), ``completed`` once answered. Returns what happened; raises
        nothing (Twilio's own Timeout ends a ringing call anyway)."""
        path = f"{self._base}/Calls/{sid}.json"
        try:
            if not answered:
                resp = self._http.post_form(path, {"Status": "canceled"}, label="hang up")
                body = resp.body_json_or_none()
                now = str(body.get("status") or "") if isinstance(body, Mapping) else ""
                if now != "in-progress":
                    return f"hung up while {status or 'queued'}"
            self._http.post_form(path, {"Status": "completed"}, label="hang up")
            return "hung up after it was answered"
        except (TemporaryDeliveryError, PermanentDeliveryError) as exc:
            log.warning("twilio: call %s: hang-up failed: %s", sid, exc)
            return f"hang-up failed: {exc}"

    def _give_up(
        self, sid: str, answered: bool, status: str, trouble: str, bound: float
    ) -> CallResult:
        """The call outlived ``bound`` seconds: hang it up and say what it was (``failed``
        when its status could not be read at the end: it may have rung or not)."""
        detail = self._hang_up(sid, answered, status)
        after = f"after {bound:g} s"
        if answered:
            result = CallResult("answered", f"still in progress {after}; {detail}")
        elif trouble or not status:
            words = short(trouble or "no status", 160)
            result = CallResult("failed", f"status unknown {after} ({words}); {detail}")
        else:
            result = CallResult("no-answer", f"still {status} {after}; {detail}")
        log.warning("twilio: call %s: %s (%s)", sid, result.outcome, result.detail)
        return result

    def probe(self) -> str:
        """Read the account (sends nothing); one line, or our error."""
        self._need_token()
        resp = self._http.get(f"{self._base}.json", label="account")
        account = self._json(resp.body_json_or_none(), "account")
        status = str(account.get("status") or "unknown")
        name = short(str(account.get("friendly_name") or self._config.account_sid), 64)
        kind = str(account.get("type") or "")
        if status != "active":
            raise TemporaryDeliveryError(f"account {name!r} is {status}")
        cfg = self._config
        sender = (
            f"service {cfg.messaging_service_sid}"
            if cfg.messaging_service_sid
            else (cfg.from_number or "no `from`")
        )
        trial = ": a trial account texts only verified numbers" if kind == "Trial" else ""
        # a `from` is what calls need: said only when it is missing
        calls = "" if cfg.from_number else "; no calls (they need `from`)"
        return f"account {name!r} ({kind or 'type unknown'}, {status}), from {sender}{trial}{calls}"

    def close(self) -> None:
        """Nothing to drop: every request uses its own connection."""

    def _need_token(self) -> None:
        if not self._config.auth_token:
            raise TemporaryDeliveryError("twilio.auth_token is empty", auth=True)

    @staticmethod
    def _json(body: Any, what: str) -> Mapping[str, Any]:
        if not isinstance(body, Mapping):
            raise HttpTemporaryError(f"{what}: Twilio's answer is not a JSON object")
        return body
