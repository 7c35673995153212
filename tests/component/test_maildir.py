"""The dry run writes real Maildir files."""

from __future__ import annotations

from email import message_from_binary_file, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from mqtt2sms.errors import TemporaryDeliveryError
from mqtt2sms.transports.base import OutgoingText
from mqtt2sms.transports.maildir import MaildirTransport


def test_mail_appears_in_new(tmp_path: Path) -> None:
    box = tmp_path / "maildir"
    t = MaildirTransport(str(box))
    receipt = t.send(OutgoingText("7", "5551234567@tmomail.net", "Door open", "Alarm"))
    assert t.name == "smtp" and receipt.transport == "smtp"
    assert receipt.remote_id == "<7@localhost>"
    [path] = (box / "new").iterdir()
    assert path.name == receipt.detail
    assert receipt.dry_run  # the engine must not call it "sent"
    assert list((box / "tmp").iterdir()) == [] and (box / "cur").is_dir()
    with path.open("rb") as f:
        msg = message_from_binary_file(f, policy=policy.default)
    assert msg["To"] == "5551234567@tmomail.net"
    assert msg["From"] == "mqtt2sms@localhost"
    assert msg["Subject"] == "Alarm"
    assert isinstance(msg, EmailMessage)
    assert msg.get_content() == "Door open\n"
    assert t.probe() == f"dry run: maildir {box}"
    t.close()


def test_name_and_from_are_settable(tmp_path: Path) -> None:
    # tmp_path exists and is empty, as a StateDirectory= may be
    t = MaildirTransport(str(tmp_path), "House <h@example.org>", name="twilio")
    receipt = t.send(OutgoingText("1", "5551234567@tmomail.net", "x"))
    assert (receipt.transport, receipt.remote_id) == ("twilio", "<1@example.org>")


def test_a_file_in_the_way_is_a_transport_error(tmp_path: Path) -> None:
    (tmp_path / "box").write_text("not a directory")
    with pytest.raises(TemporaryDeliveryError, match="maildir"):
        MaildirTransport(str(tmp_path / "box")).send(OutgoingText("1", "a@b.c", "x"))


def test_only_the_dry_run_says_dry_run() -> None:
    from mqtt2sms.transports.base import Receipt

    assert Receipt("smtp").dry_run is False
