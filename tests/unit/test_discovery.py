"""Home Assistant discovery payloads: shape, topics, ids, removal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import pytest

from mqtt2sms.config import Config, parse_config
from mqtt2sms.discovery import (
    birth_topic,
    device_name,
    discovery_messages,
    discovery_topic,
    entity_ids,
    node_id,
    removal_messages,
)

ENV = {"HOME": "/home/pi"}


def make_config(extra: str = "") -> Config:
    text = "homeassistant: {discovery: true}\n" + extra
    return parse_config(text, "config.yaml", ENV).config


def payload_of(config: Config, version: str = "1.2.3") -> dict[str, Any]:
    messages = discovery_messages(config, version)
    assert len(messages) == 1
    _topic, payload = messages[0]
    data = json.loads(payload)
    assert isinstance(data, dict)
    return data


def components(config: Config) -> dict[str, dict[str, Any]]:
    cmps = payload_of(config, "1.2.3")["cmps"]
    assert isinstance(cmps, dict)
    return cmps


@pytest.fixture
def config() -> Config:
    return make_config()


# --------------------------------------------------------------------------- topics


def test_one_device_topic_under_the_prefix(config: Config) -> None:
    messages = discovery_messages(config, "0.1.0")
    assert [topic for topic, _ in messages] == ["homeassistant/device/mqtt2sms/config"]
    assert discovery_topic(config) == "homeassistant/device/mqtt2sms/config"


def test_birth_topic(config: Config) -> None:
    assert birth_topic(config) == "homeassistant/status"


def test_payload_is_a_json_object_with_device_origin_components(config: Config) -> None:
    data = payload_of(config, "1.2.3")
    assert set(data) == {"dev", "o", "cmps"}
    assert data["o"]["name"] == "mqtt2sms"
    assert data["o"]["sw_version"] == "1.2.3"
    assert "support_url" not in data["o"]
    dev = data["dev"]
    assert dev["identifiers"] == ["mqtt2sms"]
    assert dev["name"] == "mqtt2sms"
    assert dev["model"] == "MQTT to SMS gateway"
    assert dev["manufacturer"] == "mqtt2sms"
    assert dev["sw_version"] == "1.2.3"


def test_support_url_goes_into_the_origin(config: Config) -> None:
    (_, payload), *_ = discovery_messages(config, "1", support_url="https://example.org/help")
    assert json.loads(payload)["o"]["support_url"] == "https://example.org/help"


# --------------------------------------------------------------------------- components


def test_every_component_is_complete(config: Config) -> None:
    cmps = components(config)
    unique_ids = [c["unique_id"] for c in cmps.values()]
    assert len(unique_ids) == len(set(unique_ids))
    for key, c in cmps.items():
        assert c["p"] in {"sensor", "notify", "button", "event"}, key
        assert c["unique_id"] == f"mqtt2sms_{key}"
        assert c.get("state_topic") or c.get("command_topic"), key
        assert c["name"], key
        platform, _, object_id = c["default_entity_id"].partition(".")
        assert platform == c["p"]
        assert object_id.startswith("mqtt2sms_")


def test_the_default_entities() -> None:
    cmps = components(make_config())
    assert set(cmps) == {
        "notify",
        "queued",
        "sent_today",
        "suppressed_today",
        "failed_today",
        "dry_run_today",
        "last_sent_at",
        "last_error",
        # escalation: always there (issue 19), whatever the config holds
        "open_incidents",
        "ack_all",
        "incident",
        "received",
    }
    assert cmps["notify"]["p"] == "notify"
    assert cmps["notify"]["command_topic"] == "mqtt2sms/notify"
    assert cmps["notify"]["qos"] == 1
    assert cmps["notify"]["retain"] is False
    for key in ("queued", "sent_today", "suppressed_today", "failed_today"):
        assert cmps[key]["state_topic"] == "mqtt2sms/stats"
        assert cmps[key]["value_template"] == f"{{{{ value_json.{key} }}}}"
    assert cmps["queued"]["state_class"] == "measurement"
    for key in ("sent_today", "suppressed_today", "failed_today"):
        assert cmps[key]["state_class"] == "total_increasing"
    assert cmps["last_sent_at"]["device_class"] == "timestamp"
    assert cmps["last_error"]["entity_category"] == "diagnostic"


def test_incident_and_received_entities() -> None:
    cmps = components(make_config())
    assert cmps["open_incidents"]["p"] == "sensor"
    assert cmps["open_incidents"]["name"] == "Open incidents"
    assert cmps["open_incidents"]["state_topic"] == "mqtt2sms/incidents"
    assert cmps["open_incidents"]["json_attributes_topic"] == "mqtt2sms/incidents"
    assert cmps["ack_all"]["p"] == "button"
    assert cmps["ack_all"]["name"] == "Acknowledge all"
    assert cmps["ack_all"]["command_topic"] == "mqtt2sms/ack"
    assert cmps["ack_all"]["payload_press"] == "all"
    assert (cmps["ack_all"]["qos"], cmps["ack_all"]["retain"]) == (1, False)
    assert cmps["incident"]["p"] == "event"
    assert cmps["incident"]["state_topic"] == "mqtt2sms/incident"
    assert cmps["incident"]["event_types"] == [
        "opened",
        "escalated",
        "acked",
        "resolved",
        "unacknowledged",
        "call",
    ]
    assert cmps["received"]["p"] == "event"
    assert cmps["received"]["state_topic"] == "mqtt2sms/received"
    assert cmps["received"]["event_types"] == ["received"]


def test_availability(config: Config) -> None:
    for key, c in components(config).items():
        if "command_topic" in c:
            # HA skips an unavailable entity in an action call: the notify entity and the
            # button stay available so a call made while we restart waits in the broker.
            assert "availability" not in c, key
            continue
        assert c["availability"] == [
            {
                "topic": "mqtt2sms/status",
                "payload_available": "online",
                "payload_not_available": "offline",
            }
        ], key


def test_entity_ids(config: Config) -> None:
    assert entity_ids(config) == [
        "notify.mqtt2sms_sms",
        "sensor.mqtt2sms_queued",
        "sensor.mqtt2sms_sent_today",
        "sensor.mqtt2sms_suppressed_today",
        "sensor.mqtt2sms_failed_today",
        "sensor.mqtt2sms_dry_runs_today",
        "sensor.mqtt2sms_last_sent",
        "sensor.mqtt2sms_last_error",
        "sensor.mqtt2sms_open_incidents",
        "button.mqtt2sms_acknowledge_all",
        "event.mqtt2sms_incident",
        "event.mqtt2sms_received_text",
    ]


def test_default_entity_id_is_what_ha_derives_from_the_names(config: Config) -> None:
    """HA before 2025.10 ignores default_entity_id and slugifies "<device> <name>"."""
    data = payload_of(config, "1.2.3")
    for c in data["cmps"].values():
        words = f"{data['dev']['name']} {c['name']}".lower()
        slug = "_".join("".join(ch if ch.isalnum() else " " for ch in words).split())
        assert c["default_entity_id"] == f"{c['p']}.{slug}"


def test_stable_across_calls_and_versions(config: Config) -> None:
    first = discovery_messages(config, "0.1.0")
    assert discovery_messages(config, "0.1.0") == first
    old = payload_of(config, "0.1.0")["cmps"]
    new = payload_of(config, "9.9.9")["cmps"]
    assert {k: c["unique_id"] for k, c in old.items()} == {
        k: c["unique_id"] for k, c in new.items()
    }
    assert [t for t, _ in first] == [t for t, _ in discovery_messages(config, "9.9.9")]


# --------------------------------------------------------------------------- templates


def _render(template: str, payload: object) -> str:
    """Render like HA's MQTT value templates (close enough: plain Jinja2, value_json set)."""
    env = jinja2.Environment(autoescape=False)
    return env.from_string(template).render(value_json=payload, value=json.dumps(payload))


STATS = {
    "queued": 2,
    "sent_today": 5,
    "suppressed_today": 1,
    "failed_today": 0,
    "last_sent_at": "2025-01-31T08:15:00+00:00",
    "last_error": None,
}


def test_value_templates_read_the_stats(config: Config) -> None:
    cmps = components(config)
    assert _render(cmps["queued"]["value_template"], STATS) == "2"
    assert _render(cmps["sent_today"]["value_template"], STATS) == "5"
    assert _render(cmps["failed_today"]["value_template"], STATS) == "0"
    assert _render(cmps["last_sent_at"]["value_template"], STATS) == "2025-01-31T08:15:00+00:00"
    # "None" is what HA's MQTT sensor turns into `unknown`.
    assert _render(cmps["last_error"]["value_template"], STATS) == "None"
    never = {**STATS, "last_sent_at": None, "last_error": "SMTP 535 authentication failed"}
    assert _render(cmps["last_sent_at"]["value_template"], never) == "None"
    assert _render(cmps["last_error"]["value_template"], never) == "SMTP 535 authentication failed"
    # texts a dry run wrote are their own counter (0 from a daemon that predates it)
    assert _render(cmps["dry_run_today"]["value_template"], {**STATS, "dry_run_today": 3}) == "3"
    assert _render(cmps["dry_run_today"]["value_template"], STATS) == "0"
    assert cmps["dry_run_today"]["state_class"] == "total_increasing"
    long_error = {**STATS, "last_error": "x" * 1000}
    assert len(_render(cmps["last_error"]["value_template"], long_error)) == 255


def test_event_templates_add_event_type(config: Config) -> None:
    cmps = components(config)
    incident = {"id": "417", "rule": "smoke", "key": "hall", "state": "acked", "by": "alex"}
    out = json.loads(_render(cmps["incident"]["value_template"], incident))
    assert out["event_type"] == "acked"
    assert out["event_type"] in cmps["incident"]["event_types"]
    assert out["id"] == "417"
    received = {"from": "+15551234567", "contact": "alex", "text": "ACK 417", "via": "modem"}
    out = json.loads(_render(cmps["received"]["value_template"], received))
    assert out == {**received, "event_type": "received"}
    incidents = [{"id": "417", "rule": "smoke", "step": 1}, {"id": "52", "rule": "leak"}]
    assert _render(cmps["open_incidents"]["value_template"], incidents) == "2"
    assert _render(cmps["open_incidents"]["value_template"], []) == "0"
    # an MQTT sensor's attributes must be a JSON object: the list goes under `incidents`
    attributes = json.loads(_render(cmps["open_incidents"]["json_attributes_template"], incidents))
    assert attributes == {"incidents": incidents}
    call = {"id": "417", "state": "call", "to": "sam", "via": "modem", "outcome": "busy"}
    out = json.loads(_render(cmps["incident"]["value_template"], call))
    assert out["event_type"] == "call" and out["event_type"] in cmps["incident"]["event_types"]


# --------------------------------------------------------------------------- removal


def test_removal_clears_what_discovery_published(config: Config) -> None:
    published = [topic for topic, _ in discovery_messages(config, "1")]
    removal = removal_messages(config)
    assert [topic for topic, _ in removal] == published
    assert all(payload == "" for _, payload in removal)


def test_removal_under_a_previous_prefix(config: Config) -> None:
    assert removal_messages(config, previous_prefix="ha") == [
        ("homeassistant/device/mqtt2sms/config", ""),
        ("ha/device/mqtt2sms/config", ""),
    ]
    assert removal_messages(config, previous_prefix="homeassistant") == removal_messages(config)


# --------------------------------------------------------------------------- settings flow through


def test_base_topic_prefix_and_client_id_flow_through() -> None:
    config = parse_config(
        "mqtt: {client_id: 'garage pi/2', base_topic: house/sms}\n"
        "homeassistant: {discovery: true, prefix: ha}\n",
        "config.yaml",
        ENV,
    ).config
    assert node_id(config) == "garage_pi_2"
    assert device_name(config) == "mqtt2sms garage_pi_2"
    assert birth_topic(config) == "ha/status"
    ((topic, payload),) = discovery_messages(config, "1")
    assert topic == "ha/device/garage_pi_2/config"
    data = json.loads(payload)
    assert data["dev"]["identifiers"] == ["garage_pi_2"]
    for key, c in data["cmps"].items():
        assert c["unique_id"] == f"garage_pi_2_{key}"
        assert c["default_entity_id"].startswith(f"{c['p']}.mqtt2sms_garage_pi_2_")
        for field in ("state_topic", "command_topic", "json_attributes_topic"):
            if field in c:
                assert c[field].startswith("house/sms/"), (key, field)
        for avail in c.get("availability", []):
            assert avail["topic"] == "house/sms/status"
    assert data["cmps"]["notify"]["command_topic"] == "house/sms/notify"
    assert removal_messages(config) == [("ha/device/garage_pi_2/config", "")]


@pytest.mark.parametrize(
    ("client_id", "expected"),
    [("mqtt2sms", "mqtt2sms"), ("my-box_1", "my-box_1"), ("a.b c", "a_b_c"), ("é", "_")],
)
def test_node_id_is_sanitised(client_id: str, expected: str) -> None:
    config = parse_config(f"mqtt: {{client_id: '{client_id}'}}\n", "c.yaml", ENV).config
    assert node_id(config) == expected


def test_a_modem_adds_its_signal_registration_and_sim_sensors(tmp_path: Path) -> None:
    device = tmp_path / "ttyUSB0"
    device.write_text("")
    cmps = components(make_config(f"modem: {{device: {device}}}\n"))
    assert {"modem_signal", "modem_registered", "modem_sim_used"} <= set(cmps)
    assert cmps["modem_registered"]["p"] == "binary_sensor"
    assert "value_json.modem_signal" in json.dumps(cmps["modem_signal"])
    assert "modem_signal" not in components(make_config())
