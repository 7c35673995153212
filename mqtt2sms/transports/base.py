"""What every transport takes and returns.

``send`` either returns a ``Receipt`` or raises ``TemporaryDeliveryError`` (scope
``"transport"``: the way out is down; ``"text"``: only this text) or
``PermanentDeliveryError``. It never returns False.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class OutgoingText:
    id: str  # our text id, stable across retries (a Message-ID / idempotency key)
    address: str  # gateway e-mail address for smtp, E.164 number for phone transports
    body: str  # the final text, already formatted to fit
    subject: str | None = None
    priority: str = "normal"


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
