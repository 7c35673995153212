"""The files under examples/ are valid, and say what the docs say they do."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from paho.mqtt.client import topic_matches_sub

from mqtt2sms import ways
from mqtt2sms.config import Config, Rule, parse_config
from mqtt2sms.discovery import discovery_messages, entity_ids
from mqtt2sms.render import NOT_JSON, Templates, variables

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
NOW = dt.datetime(2025, 1, 31, 12, 0, tzinfo=dt.UTC)


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture
def credentials(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "smtp_password").write_text("abcd efgh ijkl mnop\n", encoding="utf-8")
    return {"CREDENTIALS_DIRECTORY": str(tmp_path), "HOME": str(tmp_path)}


def _parse(name: str, env: dict[str, str]) -> tuple[Config, tuple[str, ...]]:
    text = (EXAMPLES / name).read_text(encoding="utf-8")
    loaded = parse_config(text, f"examples/{name}", env)
    return loaded.config, loaded.warnings


# --------------------------------------------------------------------------- gmail.yaml


def test_gmail_parses_and_reads_the_credential(credentials: dict[str, str]) -> None:
    config, warnings = _parse("gmail.yaml", credentials)
    assert warnings == ()
    assert config.smtp is not None
    assert config.smtp.host == "smtp.gmail.com"
    assert config.smtp.port == 587
    assert config.smtp.security == "starttls"
    assert config.smtp.password == "abcd efgh ijkl mnop"  # trailing newline stripped
    assert config.homeassistant.discovery is True
    assert config.alert_topic == "home/alerts/sms"


# --------------------------------------------------------------------------- zigbee2mqtt


@pytest.fixture
def z2m(credentials: dict[str, str]) -> Config:
    config, warnings = _parse("zigbee2mqtt/config.yaml", credentials)
    assert warnings == ()
    return config


def _fired(config: Config, topic: str, payload: object) -> dict[str, str]:
    """{rule name: rendered text} for the user rules this Zigbee2MQTT message triggers."""
    templates = Templates()
    text = json.dumps(payload)
    out: dict[str, str] = {}
    for rule in config.rules:
        if rule.builtin or not topic_matches_sub(rule.topic, topic):
            continue
        v = variables(text, payload, topic, False, rule.name, NOW)
        if rule.when is not None and not templates.when(rule.when, v):
            continue
        out[rule.name] = templates.render(rule.message, v) if rule.message else text
    return out


def _rule(config: Config, name: str) -> Rule:
    (rule,) = [r for r in config.rules if r.name == name]
    return rule


def test_z2m_rules(z2m: Config) -> None:
    leak = _rule(z2m, "leak")
    assert (leak.topic, leak.options.priority, leak.options.cooldown) == (
        "zigbee2mqtt/+",
        "high",
        900.0,
    )
    assert _rule(z2m, "smoke").options.priority == "high"
    battery = _rule(z2m, "low_battery")
    assert (battery.options.priority, battery.options.cooldown) == ("normal", 86400.0)
    assert _rule(z2m, "front_door").topic == "zigbee2mqtt/front_door"


@pytest.mark.parametrize(
    ("topic", "payload", "expected"),
    [
        (
            "zigbee2mqtt/kitchen",
            {"water_leak": True, "battery": 90},
            {"leak": "Water leak: kitchen"},
        ),
        ("zigbee2mqtt/kitchen", {"water_leak": False, "battery": 90}, {}),
        (
            "zigbee2mqtt/laundry_room",
            {"water_leak": True, "battery": 9},
            {"leak": "Water leak: laundry room", "low_battery": "Low battery (9%): laundry room"},
        ),
        ("zigbee2mqtt/hall", {"smoke": True, "battery": 100}, {"smoke": "Smoke: hall"}),
        ("zigbee2mqtt/hall", {"smoke": False}, {}),
        (
            "zigbee2mqtt/front_door",
            {"contact": False, "battery": 80},
            {"front_door": "Front door open"},
        ),
        ("zigbee2mqtt/front_door", {"contact": True, "battery": 80}, {}),
        ("zigbee2mqtt/front_door", {"battery": 80}, {}),  # no `contact`: nothing
        ("zigbee2mqtt/back_door", {"contact": False}, {}),  # another door: not this rule
        ("zigbee2mqtt/bulb", {"state": "ON", "brightness": 3}, {}),  # no battery: nothing
        ("zigbee2mqtt/bridge/state", {"state": "online"}, {}),  # one level only
    ],
)
def test_z2m_messages(z2m: Config, topic: str, payload: object, expected: dict[str, str]) -> None:
    assert _fired(z2m, topic, payload) == expected


def test_z2m_plain_text_payload_fires_nothing(z2m: Config) -> None:
    templates = Templates()
    for rule in z2m.rules:
        if rule.when is None:
            continue
        v = variables("online", NOT_JSON, "zigbee2mqtt/kitchen", False, rule.name, NOW)
        assert templates.when(rule.when, v) is False


# --------------------------------------------------------------------------- Home Assistant


def _ha_default_config() -> Config:
    return parse_config("homeassistant: {discovery: true}\n", "c.yaml", {"HOME": "/h"}).config


def _check_alert_payload(data: object) -> None:
    """What a payload for the alert topic may hold (docs/config.md, Payloads)."""
    assert isinstance(data, dict)
    assert isinstance(data["message"], str) and data["message"]
    assert data.get("priority", "normal") in ("normal", "high")
    to = data.get("to", [])
    for name in [to] if isinstance(to, str) else to:
        assert isinstance(name, str)
        assert "@" not in name and not any(ch.isdigit() for ch in name), name


def test_ha_automations_are_a_list_of_automations() -> None:
    automations = _load(EXAMPLES / "homeassistant" / "automations.yaml")
    assert isinstance(automations, list) and len(automations) >= 2
    ids = [a["id"] for a in automations]
    assert len(ids) == len(set(ids))
    for a in automations:
        assert a["alias"]
        assert a["triggers"] and a["actions"]
        for trigger in a["triggers"]:
            assert trigger["trigger"] in {"state", "mqtt", "event"}


def _automation(automation_id: str) -> dict[str, Any]:
    automations = _load(EXAMPLES / "homeassistant" / "automations.yaml")
    (found,) = [a for a in automations if a["id"] == automation_id]
    assert isinstance(found, dict)
    return found


def test_ha_leak_automation_publishes_json() -> None:
    a = _automation("mqtt2sms_kitchen_leak")
    assert a["triggers"] == [
        {"trigger": "state", "entity_id": "binary_sensor.kitchen_leak", "to": "on"}
    ]
    (action,) = a["actions"]
    assert action["action"] == "mqtt.publish"
    data = action["data"]
    assert data["topic"] == "home/alerts/sms"
    assert data["qos"] == 1
    assert data["retain"] is False
    payload = json.loads(data["payload"])
    assert payload == {"message": "Water leak in the kitchen", "priority": "high"}
    _check_alert_payload(payload)


def test_ha_notify_automation_targets_the_discovered_entity() -> None:
    a = _automation("mqtt2sms_garage_door_left_open")
    (action,) = a["actions"]
    assert action["action"] == "notify.send_message"
    assert action["target"] == {"entity_id": "notify.mqtt2sms_sms"}
    assert action["target"]["entity_id"] in entity_ids(_ha_default_config())
    assert isinstance(action["data"]["message"], str) and action["data"]["message"]


def test_ha_template_automation_renders_a_valid_payload() -> None:
    a = _automation("mqtt2sms_smoke")
    (action,) = a["actions"]
    assert action["action"] == "mqtt.publish"
    assert action["data"]["topic"] == "home/alerts/sms"
    trigger = {
        "entity_id": "binary_sensor.hall_smoke",
        "to_state": {"name": 'Hall "smoke" detector'},
    }
    rendered = jinja2.Environment().from_string(action["data"]["payload"]).render(trigger=trigger)
    payload = json.loads(rendered)
    assert payload["message"] == 'Smoke: Hall "smoke" detector'
    assert payload["key"] == "binary_sensor.hall_smoke"
    _check_alert_payload(payload)


def test_ha_manual_notify_matches_discovery() -> None:
    config = _ha_default_config()
    ha = _load(EXAMPLES / "homeassistant" / "configuration.yaml")
    (entry,) = ha["mqtt"]
    manual = entry["notify"]
    discovered = json.loads(discovery_messages(config, "1")[0][1])["cmps"]["notify"]
    assert manual["command_topic"] == discovered["command_topic"] == "mqtt2sms/notify"
    assert manual["qos"] == 1
    # No device: HA slugifies the name alone into the same entity id.
    assert manual["name"].lower().replace(" ", "_") == "mqtt2sms_sms"


# --------------------------------------------------------------------------- Node-RED


@pytest.fixture
def flow() -> list[dict[str, Any]]:
    nodes = json.loads((EXAMPLES / "node-red" / "flows.json").read_text(encoding="utf-8"))
    assert isinstance(nodes, list)
    return nodes


def test_node_red_flow_is_well_formed(flow: list[dict[str, Any]]) -> None:
    ids = [node["id"] for node in flow]
    assert len(ids) == len(set(ids))
    (tab,) = [node for node in flow if node["type"] == "tab"]
    config_nodes = {"tab", "mqtt-broker"}
    for node in flow:
        assert isinstance(node["id"], str) and node["id"]
        if node["type"] in config_nodes:
            assert "wires" not in node
            continue
        assert node["z"] == tab["id"], node["id"]
        assert isinstance(node["wires"], list)
        for port in node["wires"]:
            for target in port:
                assert target in ids, (node["id"], target)


def test_node_red_flow_sends_to_mqtt2sms(flow: list[dict[str, Any]]) -> None:
    by_type: dict[str, list[dict[str, Any]]] = {}
    for node in flow:
        by_type.setdefault(node["type"], []).append(node)
    (broker,) = by_type["mqtt-broker"]
    assert (broker["broker"], str(broker["port"])) == ("127.0.0.1", "1883")
    (out,) = by_type["mqtt out"]
    assert out["topic"] == "home/alerts/sms"
    assert str(out["qos"]) == "1"
    assert str(out["retain"]) == "false"
    assert out["broker"] == broker["id"]
    (change,) = by_type["change"]
    assert change["wires"] == [[out["id"]]]

    injects = by_type["inject"]
    assert len(injects) == 2
    for inject in injects:
        assert inject["wires"] == [[change["id"]]]
    by_kind = {inject["payloadType"]: inject["payload"] for inject in injects}
    assert by_kind["str"] == "Garage door open"
    payload = json.loads(by_kind["json"])
    assert payload["to"] == "family" and payload["priority"] == "high"
    _check_alert_payload(payload)


# --------------------------------------------------------------------------- every file

# Files under examples/ that are not mqtt2sms configs: Docker Compose's, Home Assistant's,
# Zigbee2MQTT's-side snippets and Mosquitto's are read by those programs, not by `check`.
NOT_CONFIGS = {"compose.yaml"}


def test_every_yaml_file_under_examples_loads() -> None:
    files = sorted([*EXAMPLES.rglob("*.yaml"), *EXAMPLES.rglob("*.yml")])
    assert EXAMPLES / "smoke-alarm.yaml" in files
    for path in files:
        assert _load(path) is not None, path


def _configs() -> list[Path]:
    top = [p for p in sorted(EXAMPLES.glob("*.yaml")) if p.name not in NOT_CONFIGS]
    return [*top, EXAMPLES / "zigbee2mqtt" / "config.yaml"]


@pytest.mark.parametrize("path", _configs(), ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_check_accepts_every_example_config(
    path: Path, credentials: dict[str, str], tmp_path: Path
) -> None:
    """`mqtt2sms check -c examples/X.yaml`, as a user runs it, with the secrets it names."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        **credentials,
        "SMSGATE_PASSWORD": "not a real one",
        "TWILIO_AUTH_TOKEN": "not a real one",
    }
    done = subprocess.run(
        [sys.executable, "-m", "mqtt2sms", "check", "-c", str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout
    if path.name == "smoke-alarm.yaml":  # its two people can reply, by a phone in the house
        assert "warning" not in (done.stdout + done.stderr).lower()


# --------------------------------------------------------------------------- smoke-alarm.yaml


@pytest.fixture
def smoke() -> Config:
    env = {"HOME": "/h", "SMSGATE_PASSWORD": "pw", "TWILIO_AUTH_TOKEN": "tok"}
    config, warnings = _parse("smoke-alarm.yaml", env)
    assert warnings == ()
    return config


def test_smoke_alarm_policy(smoke: Config) -> None:
    fire = smoke.escalations["fire"]
    assert [(step.to, step.after, step.call) for step in fire.steps] == [
        (("alex",), 0.0, 0),
        (("sam",), 300.0, 2),
    ]
    assert (fire.repeat, fire.give_up, fire.call_gap, fire.ring_for) == (600.0, 7200.0, 120.0, 30.0)
    assert smoke.android is not None and smoke.android.password == "pw"
    assert smoke.contacts["alex"].via == ("android",)
    assert smoke.contacts["sam"].via == ("android", "twilio")
    assert all(smoke.contacts[name].e164 for name in ("alex", "sam"))


def test_smoke_alarm_rings_sam_by_twilio_inside_iphones_repeated_calls_window(
    smoke: Config,
) -> None:
    """Sam's texts go by the phone, which cannot call; the calls go by Twilio, from a number,
    with the token from the environment; the second call comes within 3 minutes."""
    assert smoke.twilio is not None
    assert (smoke.twilio.from_number, smoke.twilio.auth_token) == ("+15550001111", "tok")
    sam = smoke.contacts["sam"]
    assert sam.via is not None
    callers = [w for w in sam.via if ways.can_call(smoke, w)]
    assert callers == ["twilio"]
    assert not ways.can_call(smoke, "android")
    assert smoke.escalations["fire"].call_gap < 180.0


def test_smoke_alarm_rule(smoke: Config) -> None:
    rule = _rule(smoke, "smoke")
    assert (rule.topic, rule.escalate, rule.options.priority) == (
        "zigbee2mqtt/+/smoke",
        "fire",
        "high",
    )
    assert rule.resolve_when is not None and rule.when is not None and rule.message is not None
    templates = Templates()

    def v(payload: object, topic: str = "zigbee2mqtt/living_room/smoke") -> dict[str, object]:
        return variables(json.dumps(payload), payload, topic, False, rule.name, NOW)

    alarm = v({"smoke": True, "battery": 100})
    assert templates.when(rule.when, alarm) is True
    assert templates.when(rule.resolve_when, alarm) is False
    assert templates.render(rule.message, alarm) == "Smoke in the living room!"
    clear = v({"smoke": False, "battery": 100})
    assert templates.when(rule.when, clear) is False
    assert templates.when(rule.resolve_when, clear) is True
    # another device's report (no `smoke`) neither opens nor resolves
    battery = v({"battery": 40})
    assert templates.when(rule.when, battery) is False
    assert topic_matches_sub(rule.topic, "zigbee2mqtt/hall/smoke")
    assert not topic_matches_sub(rule.topic, "zigbee2mqtt/hall")


# --------------------------------------------------------------------------- acknowledging from HA


def _ha_render(template: str, **context: object) -> str:
    """Render like Home Assistant does (plain Jinja2 stands in for HA's environment)."""
    return jinja2.Environment().from_string(template).render(**context)


def _render_all(value: object, **context: object) -> object:
    """Every string inside ``value`` rendered as a template (HA renders action data so)."""
    if isinstance(value, str):
        return _ha_render(value, **context)
    if isinstance(value, dict):
        return {k: _render_all(v, **context) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_all(v, **context) for v in value]
    return value


def test_ha_incident_notification_offers_the_code() -> None:
    a = _automation("mqtt2sms_incident_notification")
    (trigger,) = a["triggers"]
    assert trigger == {"trigger": "mqtt", "topic": "mqtt2sms/incident"}
    discovered = json.loads(discovery_messages(_ha_default_config(), "1")[0][1])["cmps"]
    assert discovered["incident"]["state_topic"] == trigger["topic"]
    (condition,) = a["conditions"]

    def passes(state: str) -> bool:
        payload = {"id": "417", "rule": "smoke", "key": "zigbee2mqtt/hall/smoke", "state": state}
        out = _ha_render(condition["value_template"], trigger={"payload_json": payload})
        return out == "True"

    assert [s for s in discovered["incident"]["event_types"] if passes(s)] == [
        "opened",
        "escalated",
    ]
    (action,) = a["actions"]
    assert action["action"].startswith("notify.mobile_app_")
    payload = {"id": "417", "rule": "smoke", "key": "hall", "state": "escalated", "step": 2}
    data = _render_all(action["data"], trigger={"payload_json": payload})
    assert isinstance(data, dict)
    assert data["title"] == "Alarm: smoke"
    assert "417" in data["message"]
    assert data["data"]["actions"] == [{"action": "ACK_417", "title": "Acknowledge"}]


def test_ha_acknowledge_automation_publishes_id_and_by() -> None:
    a = _automation("mqtt2sms_incident_acknowledge")
    assert a["triggers"] == [{"trigger": "event", "event_type": "mobile_app_notification_action"}]
    (condition,) = a["conditions"]
    (action,) = a["actions"]
    assert action["action"] == "mqtt.publish"
    data = action["data"]
    assert (data["topic"], data["qos"], data["retain"]) == ("mqtt2sms/ack", 1, False)
    people = [
        {"name": "Alex", "attributes": {"user_id": "u-alex"}},
        {"name": "Sam", "attributes": {"user_id": "u-sam"}},
    ]

    def press(action_id: object, user_id: str) -> tuple[str, str]:
        trigger = {"event": {"data": {"action": action_id}, "context": {"user_id": user_id}}}
        states = {"person": people}
        cond = _ha_render(condition["value_template"], trigger=trigger, states=states)
        if cond != "True":  # HA stops at the condition: the payload is never rendered
            return cond, ""
        return cond, _ha_render(data["payload"], trigger=trigger, states=states)

    cond, payload = press("ACK_417", "u-sam")
    assert cond == "True"
    assert json.loads(payload) == {"id": "417", "by": "Sam"}
    cond, payload = press("ACK_52", "someone else")
    assert json.loads(payload) == {"id": "52", "by": "Home Assistant app"}
    # another automation's notification button is not ours
    assert press("OPEN_GARAGE", "u-alex")[0] == "False"
    assert press(None, "u-alex")[0] == "False"
