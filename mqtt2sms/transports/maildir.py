"""The dry run: what would go by smtp is written into a Maildir instead.

Failures leave ``send`` as our errors only: ``build_email``'s ``DeliveryError`` for a bad
address or ``smtp.from``, and ``TemporaryDeliveryError`` scope ``"transport"`` for anything the
file system or ``mailbox`` refuses (a full disk, permissions, a name clash in tmp/).
"""

from __future__ import annotations

import logging
import mailbox
import os
from collections.abc import Callable
from datetime import datetime

from ..errors import TemporaryDeliveryError
from .base import OutgoingText, Receipt
from .smtp import build_email, parse_from

log = logging.getLogger("mqtt2sms.dryrun")


class MaildirTransport:
    """Writes the mail ``build_email`` makes into ``directory`` (created on first use)."""

    def __init__(
        self,
        directory: str,
        from_addr: str = "mqtt2sms@localhost",
        *,
        name: str = "smtp",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.name = name
        self._directory = directory
        self._from = from_addr
        try:
            self._domain = parse_from(from_addr)[1].rpartition("@")[2]
        except ValueError:
            self._domain = "localhost"  # build_email reports the bad address on every send
        self._clock = clock or (lambda: datetime.now().astimezone())
        self._box: mailbox.Maildir | None = None

    def send(self, text: OutgoingText) -> Receipt:
        """Write one mail into new/; the receipt (``dry_run=True``) names the file in detail."""
        message = build_email(text, self._from, self._clock(), self._domain)
        data = message.as_bytes().replace(b"\r\n", b"\n")  # files on disk use LF
        try:
            if self._box is None:
                # Maildir(create=True) leaves an existing, empty directory without tmp/new/cur
                for sub in ("tmp", "new", "cur"):
                    os.makedirs(os.path.join(self._directory, sub), mode=0o700, exist_ok=True)
                self._box = mailbox.Maildir(self._directory, factory=None, create=False)
            key = self._box.add(data)
        except (OSError, mailbox.Error) as exc:
            what = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
            raise TemporaryDeliveryError(
                f"maildir {self._directory}: {what or type(exc).__name__}", scope="transport"
            ) from exc
        log.info("dry run, not sent: to %s: %s", message.recipient, text.body.replace("\n", " "))
        return Receipt(self.name, str(message["Message-ID"]), key, dry_run=True)

    def close(self) -> None:
        """Nothing to close."""

    def probe(self) -> str:
        """Describe the dry run; nothing is tried."""
        return f"dry run: maildir {self._directory}"
