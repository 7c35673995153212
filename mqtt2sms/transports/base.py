"""What every transport takes and returns.

``send`` either returns a ``Receipt`` or raises ``TemporaryDeliveryError`` (scope
``"transport"``: the way out is down; ``"text"``: only this text) or
``PermanentDeliveryError``. It never returns False.

Two optional abilities, each one method the engine calls on the way out's own worker, on a
schedule the engine keeps (a transport never runs a thread that touches state):

- ``reports(remote_ids) -> [DeliveryReport]``: the state of texts it took (Twilio's message
  status, the Android gateway's ``GET /message/{id}``); ``pending`` ones are asked again;
- ``receive(mark) -> ([ReceivedText], mark)``: texts received since the high-water ``mark``
  (None: the first look, which only takes the mark), and the new mark to store.

Failures travel as our exceptions, never as strings or library errors: like ``send``,
``probe``, ``reports`` and ``receive`` raise only ``DeliveryError`` (for a poll,
``TemporaryDeliveryError`` scope ``"transport"``, with ``auth=True`` when the credentials were
refused), so whoever runs them can tell "down" from "refused" by type and flag, not by text.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from mqtt2sms.errors import DeliveryError, TemporaryDeliveryError

log = logging.getLogger("mqtt2sms")


@dataclass(frozen=True)
class OutgoingText:
    id: str  # our text id, stable across retries (a Message-ID / idempotency key)
    address: str  # gateway e-mail address for smtp, E.164 number for phone transports
    body: str  # the final text, already formatted to fit
    subject: str | None = None
    priority: str = "normal"
    ttl: float | None = None  # seconds left before the text expires (None: no limit)


@dataclass(frozen=True)
class Receipt:
    transport: str
    remote_id: str | None = None  # the server's id for the text, when it gives one
    detail: str = ""  # e.g. the SMTP reply, the maildir file name
    dry_run: bool = False  # written somewhere for a person to read (maildir), not sent


class Transport(Protocol):
    name: str

    def send(self, text: OutgoingText) -> Receipt: ...

    def close(self) -> None:
        """Drop any open connection (called when idle and at stop)."""
        ...

    def probe(self) -> str:
        """Try the way out without sending; return a one-line description or raise DeliveryError."""
        ...


@dataclass(frozen=True)
class DeliveryReport:
    remote_id: str
    state: Literal["pending", "delivered", "undelivered"]
    detail: str = ""  # the provider's own status or error code, for the event


@dataclass(frozen=True)
class ReceivedText:
    sender: str  # E.164, or the gateway address digits
    text: str
    at: dt.datetime | None = None  # the phone's or provider's timestamp, when it gives one
    remote_id: str = ""


# Attributes a transport may have, read by the engine with a default:
# - ``poll_every`` and ``receive_every`` (seconds), ``receives`` and ``can_receive`` (bool):
#   see ``polling.py``;
# - ``keep_open`` (bool): its worker never closes it when idle (a modem's port);
# - ``commit_first`` (bool): the way out takes our text id and answers a resend of it as done
#   (the Android gateway's 409), so a text for it is committed before it is tried and a kill
#   never sends it twice.


@runtime_checkable
class Checking(Protocol):
    def stats(self) -> dict[str, object]:
        """What the way out says of itself for ``<base>/stats`` (a modem's signal,
        registration and SIM fill), asked every few minutes; raises ``DeliveryError``."""
        ...


CallOutcome = Literal["answered", "no-answer", "busy", "failed", "canceled"]


@dataclass(frozen=True)
class CallResult:
    outcome: CallOutcome
    detail: str = ""  # the way out's own words (a modem's final result, Twilio's status)


@runtime_checkable
class Calling(Protocol):
    def call(
        self, number: str, ring_for: float, say: str, cancelled: Callable[[], bool]
    ) -> CallResult:
        """Ring ``number`` (E.164) once, at most ``ring_for`` seconds, then hang up (a few
        seconds after it is answered: the ring is the message; a way out that can speak
        says ``say``). Blocks until the call has ended; ``cancelled()`` turning true (an
        acknowledgement) hangs up at once (outcome ``canceled``). Raises
        ``PermanentDeliveryError`` when the way out cannot place voice calls at all (a
        modem that answers ERROR to ATD; a Twilio account refused calls),
        ``TemporaryDeliveryError`` when it is down."""
        ...


@runtime_checkable
class Cancelling(Protocol):
    def cancel(self, remote_id: str) -> bool:
        """Ask the way out to drop a text it still holds (a phone gateway's queue)."""
        ...


@runtime_checkable
class Reporting(Protocol):
    def reports(self, remote_ids: Sequence[str]) -> list[DeliveryReport]: ...


@runtime_checkable
class Receiving(Protocol):
    def receive(self, mark: str | None) -> tuple[list[ReceivedText], str | None]: ...


def each_report(
    name: str, remote_ids: Sequence[str], fetch: Callable[[str], DeliveryReport]
) -> list[DeliveryReport]:
    """``reports`` for a way out that is asked one text at a time: an id whose state cannot
    be read is left out (asked again next time); when the way out itself fails, the ids not
    asked yet are left out too, and the error is raised if no report was read at all."""
    out: list[DeliveryReport] = []
    for remote_id in remote_ids:
        try:
            out.append(fetch(remote_id))
        except TemporaryDeliveryError as exc:
            if exc.scope == "transport":
                if not out:
                    raise
                log.warning("%s: reports stopped at %s: %s", name, remote_id, exc)
                break
            log.warning("%s: no report for %s: %s", name, remote_id, exc)
        except DeliveryError as exc:
            log.warning("%s: no report for %s: %s", name, remote_id, exc)
    return out
