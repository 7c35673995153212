"""The dry run's failures are ours (issue 16, 3): nothing of ``mailbox``'s own leaves ``send``."""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest

from mqtt2sms.errors import TemporaryDeliveryError
from mqtt2sms.transports.base import OutgoingText
from mqtt2sms.transports.maildir import MaildirTransport


def test_a_mailbox_error_is_a_temporary_transport_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = MaildirTransport(str(tmp_path / "maildir"), "house@example.org")
    text = OutgoingText(id="t1", address="5551234567@tmomail.net", body="leak")
    t.send(text)

    def clash(*_a: object) -> str:
        raise mailbox.ExternalClashError("Name clash prevented file creation: x")

    monkeypatch.setattr(mailbox.Maildir, "add", clash)
    with pytest.raises(TemporaryDeliveryError, match="Name clash") as info:
        t.send(text)
    assert info.value.scope == "transport"
    assert isinstance(info.value.__cause__, mailbox.Error)
