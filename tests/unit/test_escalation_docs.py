"""docs/escalation.md, the user's page on incidents: linked from where a user looks, covering
every policy key, way to acknowledge and call outcome, and quoting `check`'s warnings as
`check` prints them."""

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
    missing += [s for s in INCIDENT_EVENT_TYPES if f"`{s}`" not in text]
    assert missing == []


def test_phone_calls_have_their_section_and_every_outcome() -> None:
    page = PAGE.read_text(encoding="utf-8")
    assert "\n## Phone calls: waking someone up\n" in page
    assert "(#phone-calls-waking-someone-up)" in page  # the policy table's link finds it
    text = _flat(PAGE)
    outcomes = ["`answered`", "`no-answer`", "`busy`", "`failed`", "`canceled`"]
    keys = ["`call: 1`", "`call: 2`", "`call_gap`", "`ring_for`", "`twilio.from`"]
    facts = [
        "not an acknowledgement",
        "daily cap",
        "Allow Repeated Calls",
        "Allow repeat callers",
        "Starred contacts",
        "Favorites",
        "3 minutes",
        "15 minutes",
        "SIM800",
        "SIM7600",
        "E3372",
        "21216",
        "Primary Customer Profile",
        "Trust Hub",
        "mqtt2sms call sam",
        "check --probe",
    ]
    assert [w for w in outcomes + keys + facts if w not in text] == []


def test_the_quoted_call_warning_is_the_one_check_prints() -> None:
    text = (
        "android: {url: 'http://127.0.0.1:8080', username: sms, password: p}\n"
        "contacts:\n"
        "  alex: {number: '+15551234567', via: [android]}\n"
        "  sam: {number: '+15557654321', via: [android]}\n"
        "rules:\n"
        "  - {name: smoke, topic: zigbee2mqtt/+/smoke, escalate: fire}\n"
        "escalations:\n"
        "  fire:\n"
        "    steps:\n"
        "      - {to: [alex]}\n"
        "      - {to: [sam], after: 5m, call: 2}\n"
    )
    (warning,) = parse_config(text, "config.yaml", {"HOME": "/h"}).warnings
    assert warning.startswith("config.yaml:11: escalations.fire.steps[1]: sam: step 2 calls")
    assert f"warning: {warning}" in _flat(PAGE)


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
