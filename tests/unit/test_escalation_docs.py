"""docs/escalation.md, the user's page on incidents: linked from where a user looks, covering
every policy key and way to acknowledge, and quoting `check`'s warning as `check` prints it."""

from __future__ import annotations

from pathlib import Path

from mqtt2sms.config import parse_config
from mqtt2sms.config.model import Escalation
from mqtt2sms.discovery import INCIDENT_EVENT_TYPES

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "escalation.md"


def _flat(path: Path) -> str:
    return " ".join(path.read_text(encoding="utf-8").split())


def test_the_page_is_linked_from_the_readme_and_the_config_reference() -> None:
    assert "(docs/escalation.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(escalation.md)" in (ROOT / "docs" / "config.md").read_text(encoding="utf-8")


def test_every_policy_key_and_way_to_acknowledge_is_described() -> None:
    text = _flat(PAGE)
    keys = [f.name for f in Escalation.__dataclass_fields__.values() if f.name != "name"]
    assert keys[:5] == ["steps", "repeat", "give_up", "hold_after_ack", "notify_ack"]
    missing = [k for k in keys if f"`{k}`" not in text]
    replies = ["`ACK 417`", "`OK 417`", "exactly `417`", "`ACK ALL`", "`ACK` alone", "STOP"]
    ways = ["`modem`", "`android`", "`twilio`", "`smtp`", "1.59", "`twilio.from`"]
    surface = [
        "mqtt2sms/ack",
        "mqtt2sms/incident",
        "mqtt2sms/incidents",
        "mqtt2sms/received",
        "button.mqtt2sms_acknowledge_all",
        "sensor.mqtt2sms_open_incidents",
        "mqtt2sms incidents ack 417",
        "drill",
        "`receive: true`",
        " Reply ACK 417",
    ]
    missing += [w for w in replies + ways + surface if w not in text]
    missing += [s for s in INCIDENT_EVENT_TYPES if s != "call" and f"`{s}`" not in text]
    assert missing == []


def test_the_quoted_warning_is_the_one_check_prints() -> None:
    text = (
        "smtp: {host: smtp.example.com, from: me@example.com}\n"
        "contacts:\n"
        "  alex: {email: 5551234567@tmomail.net}\n"
        "  sam: {email: 5557654321@vtext.com}\n"
        "rules:\n"
        "  - {name: smoke, topic: zigbee2mqtt/+/smoke, escalate: fire}\n"
        "defaults: {to: [alex]}\n"
        "escalations:\n"
        "  fire: {steps: [{to: [alex]}, {to: [sam], after: 5m}]}\n"
    )
    (warning,) = parse_config(text, "config.yaml", {"HOME": "/h"}).warnings
    assert warning.startswith("config.yaml:9: escalations.fire: nobody it texts can reply")
    assert f"warning: {warning}" in _flat(PAGE)
