"""What the user docs keep saying about the ways out (issue 17): which carrier gateways are
closing, that Twilio refuses US registration for personal use, how to add a USB modem; and
that twilio and the modem are no longer called "not built"."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mqtt2sms import carriers

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "docs/config.md"]

CLOSING = [
    "2025-06-17",  # AT&T's shut down
    "Sprint",
    "Rogers",
    "T-Mobile",
    "reported dead by some",
    "2027-03-31",  # Verizon's reported retirement
]
TWILIO_US = ["30532", "Personal use cases are not supported", "10DLC", "toll-free"]
MODEM = ["/dev/serial/by-id/", "systemd/modem.conf", "dialout", "internet down"]


def _flat(path: Path) -> str:
    return " ".join(path.read_text(encoding="utf-8").split())


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_docs_say_which_gateways_are_closing_and_what_to_add(doc: Path) -> None:
    text = _flat(doc)
    missing = [w for w in CLOSING + TWILIO_US + MODEM if w not in text]
    assert missing == []
    # who Twilio suits, and where a US household goes instead
    assert re.search(r"outside the US", text)
    assert re.search(r"registered business", text)
    assert re.search(r"US household.{0,40}(should use|use).{0,12}USB GSM modem", text) or re.search(
        r"USB GSM modem.{0,40}what a US household should use", text
    )


@pytest.mark.parametrize("doc", [*DOCS, ROOT / "docs/raspberry-pi.md"], ids=lambda p: p.name)
def test_twilio_and_the_modem_are_not_called_unbuilt(doc: Path) -> None:
    lines = doc.read_text(encoding="utf-8").splitlines()
    stale = [
        line
        for line in lines
        if re.search(r"not built|not in this version|does not send through them", line, re.I)
        and re.search(r"twilio|modem", line, re.I)
        and "modem.poll" not in line
    ]
    assert stale == []


def test_carriers_command_text_says_the_same() -> None:
    text = " ".join(carriers.CLOSING)
    for word in ("AT&T", "2025-06-17", "Sprint", "Rogers", "T-Mobile", "2027-03-31"):
        assert word in text
    for word in ("`twilio`", "`modem`", "30532", "internet down", "Android"):
        assert word in text
    assert carriers.CARRIERS["verizon"].note.endswith("2027-03-31")
    assert carriers.CARRIERS["att"].status == carriers.SHUT_DOWN
