"""Home Assistant MQTT discovery: the retained config messages that make mqtt2sms a device.

Pure: builds (topic, payload) pairs; the daemon publishes them (retained, QoS 1).

Theory of operation
-------------------
We use *device-based* discovery: one retained message on
``<prefix>/device/<node_id>/config`` holding the device (``dev``), the origin (``o``) and every
entity under ``cmps``. Home Assistant has read this form since 2024.11, so every release we
support (2024.12+) does. Compared with one config topic per entity it is:

- atomic: HA sees the whole device in one message, never half of it after a crash between two
  publishes, and the entities share one device block that cannot drift apart;
- one retained topic to publish, and one empty retained payload to remove everything
  (``removal_messages``);
- what HA's documentation recommends for a device with several entities; the origin ``o``,
  optional elsewhere, is required here, and we send it.

Entity ids. Each component has ``unique_id`` ``<node_id>_<key>`` (stable across restarts and
versions: it depends on ``mqtt.client_id`` only) and sets ``default_entity_id`` (read by HA
2025.10+; the older ``object_id`` is deprecated there and stops working in 2026.4, so we do not
send it). Older releases ignore the unknown key and derive the id from the device name and the
entity name, ``<device>_<name>`` slugified: we choose ``default_entity_id`` to be exactly that,
so every release creates the same ids. With the default client_id they are
``notify.mqtt2sms_sms``, ``sensor.mqtt2sms_queued``, ``sensor.mqtt2sms_sent_today``,
``sensor.mqtt2sms_suppressed_today``, ``sensor.mqtt2sms_failed_today``,
``sensor.mqtt2sms_dry_runs_today``,
``sensor.mqtt2sms_last_sent``, ``sensor.mqtt2sms_last_error``, and for escalation
``sensor.mqtt2sms_open_incidents``, ``button.mqtt2sms_acknowledge_all``,
``event.mqtt2sms_incident``, ``event.mqtt2sms_received_text``.

Escalation entities. The "Open incidents" sensor counts the retained JSON list on
``<base>/incidents`` and carries the list as its ``incidents`` attribute (an MQTT sensor's
attributes must be an object, so the template wraps the list). The "Acknowledge all" button
publishes ``all`` on ``<base>/ack``. Two ``event`` entities fire on ``<base>/incident`` (the
event type is the incident's ``state``) and on ``<base>/received`` (type ``received``); HA's
MQTT event reads a JSON object with ``event_type``, so each ``value_template`` adds it to the
payload, whose other keys become the event's attributes.

Availability. The sensors are unavailable while ``<base>/status`` says ``offline`` (their
values would be stale). The notify entity and the button deliberately have *no* availability:
Home Assistant silently skips an unavailable entity in an action call, so a
``notify.send_message`` made while mqtt2sms restarts would be dropped inside HA. Always
available, HA publishes it with QoS 1 and the broker keeps it for our persistent session:
the alert is delayed, not lost.

HA's birth message. HA publishes ``online`` on ``<prefix>/status`` (``birth_topic``) when it
starts; the daemon subscribes to it and republishes ``discovery_messages`` (and its retained
state) then, as HA's documentation advises, on top of the retained copy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mqtt2sms.config import Config

DEVICE_NAME = "mqtt2sms"
DEVICE_MODEL = "MQTT to SMS gateway"
MANUFACTURER = "mqtt2sms"
ORIGIN_NAME = "mqtt2sms"

PAYLOAD_ONLINE = "online"
PAYLOAD_OFFLINE = "offline"

_NODE_ID_BAD = re.compile(r"[^a-zA-Z0-9_-]")
_SLUG_BAD = re.compile(r"[^a-z0-9]+")

# Incident states published on <base>/incident (its `state` field); `call` reports a phone
# call of a step. HA ignores (and logs) an event whose type is not listed here.
INCIDENT_EVENT_TYPES = ("opened", "escalated", "acked", "resolved", "unacknowledged", "call")


@dataclass(frozen=True)
class _Entity:
    key: str  # the component id under `cmps` and the unique_id suffix
    platform: str
    name: str  # shown in HA; with the device name it also makes the entity id
    options: dict[str, Any]
    available_with_status: bool = True  # False: never unavailable (see the module docstring)


def node_id(config: Config) -> str:
    """The discovery node id: ``mqtt.client_id`` with every character outside
    ``[a-zA-Z0-9_-]`` replaced by ``_`` (``"mqtt2sms"`` when nothing is left)."""
    cleaned = _NODE_ID_BAD.sub("_", config.mqtt.client_id)
    return cleaned or "mqtt2sms"


def device_name(config: Config) -> str:
    """``mqtt2sms`` for the default client_id, else ``mqtt2sms <node_id>`` (two daemons on one
    broker get two devices, and two sets of entity ids, that a person can tell apart)."""
    nid = node_id(config)
    return DEVICE_NAME if nid == DEVICE_NAME else f"{DEVICE_NAME} {nid}"


def discovery_topic(config: Config, prefix: str | None = None) -> str:
    """``<prefix>/device/<node_id>/config`` (``prefix`` defaults to the configured one)."""
    return f"{prefix or config.homeassistant.prefix}/device/{node_id(config)}/config"


def birth_topic(config: Config) -> str:
    """Where Home Assistant announces itself (``online``) when it starts: ``<prefix>/status``."""
    return f"{config.homeassistant.prefix}/status"


def entity_ids(config: Config) -> list[str]:
    """The entity ids Home Assistant creates from ``discovery_messages``."""
    return [_entity_id(config, e) for e in _entities(config)]


def discovery_messages(
    config: Config,
    version: str,
    *,
    support_url: str | None = None,
) -> list[tuple[str, str]]:
    """The retained (topic, JSON payload) pairs that announce mqtt2sms to Home Assistant.

    ``version`` is mqtt2sms's version (the device's ``sw_version`` and the origin's).
    ``support_url`` goes into the origin when given. Besides the notify entity and the
    stats sensors, the escalation entities are always there: an "Open incidents" sensor on
    ``<base>/incidents``, an "Acknowledge all" button publishing ``all`` on ``<base>/ack``,
    an "Incident" event entity on ``<base>/incident`` and a "Received text" one on
    ``<base>/received``.

    Returns one pair (device-based discovery), whatever ``homeassistant.discovery`` says:
    the caller decides whether to publish. Raises nothing.
    """
    nid = node_id(config)
    base = config.mqtt.base_topic
    availability = [
        {
            "topic": f"{base}/status",
            "payload_available": PAYLOAD_ONLINE,
            "payload_not_available": PAYLOAD_OFFLINE,
        }
    ]
    components: dict[str, dict[str, Any]] = {}
    for entity in _entities(config):
        component: dict[str, Any] = {
            "p": entity.platform,
            "unique_id": f"{nid}_{entity.key}",
            "default_entity_id": _entity_id(config, entity),
            "name": entity.name,
            **entity.options,
        }
        if entity.available_with_status:
            component["availability"] = availability
        components[entity.key] = component
    origin: dict[str, str] = {"name": ORIGIN_NAME, "sw_version": version}
    if support_url:
        origin["support_url"] = support_url
    payload = {
        "dev": {
            "identifiers": [nid],
            "name": device_name(config),
            "model": DEVICE_MODEL,
            "manufacturer": MANUFACTURER,
            "sw_version": version,
        },
        "o": origin,
        "cmps": components,
    }
    return [(discovery_topic(config), json.dumps(payload, ensure_ascii=False, sort_keys=True))]


def removal_messages(config: Config, previous_prefix: str | None = None) -> list[tuple[str, str]]:
    """Empty retained payloads that remove what ``discovery_messages`` published: the device
    and all its entities go from Home Assistant, and the retained config from the broker.

    The topic under the configured prefix, and under ``previous_prefix`` too when it is given
    and differs (the prefix was changed in the config). Raises nothing.
    """
    prefixes = [config.homeassistant.prefix]
    if previous_prefix and previous_prefix not in prefixes:
        prefixes.append(previous_prefix)
    return [(discovery_topic(config, prefix), "") for prefix in prefixes]


# --------------------------------------------------------------------------- the entities


def _slug(text: str) -> str:
    """Home Assistant's slugify for ASCII: lower case, runs of anything else become ``_``."""
    return _SLUG_BAD.sub("_", text.lower()).strip("_")


def _entity_id(config: Config, entity: _Entity) -> str:
    return f"{entity.platform}.{_slug(device_name(config))}_{_slug(entity.name)}"


def _entities(config: Config) -> Iterable[_Entity]:
    base = config.mqtt.base_topic
    stats = f"{base}/stats"

    def counter(field: str, icon: str) -> dict[str, Any]:
        return {
            "state_topic": stats,
            "value_template": f"{{{{ value_json.{field} }}}}",
            "state_class": "total_increasing",  # HA reads the daily drop to 0 as a reset
            "unit_of_measurement": "texts",
            "icon": icon,
        }

    yield _Entity(
        "notify",
        "notify",
        "SMS",
        {
            # The message is the payload, read like any other: text, or JSON with `message`.
            "command_topic": f"{base}/notify",
            "qos": 1,
            "retain": False,
            "icon": "mdi:message-text",
        },
        available_with_status=False,
    )
    yield _Entity(
        "queued",
        "sensor",
        "Queued",
        {
            "state_topic": stats,
            "value_template": "{{ value_json.queued }}",
            "state_class": "measurement",
            "unit_of_measurement": "texts",
            "icon": "mdi:tray-full",
        },
    )
    yield _Entity("sent_today", "sensor", "Sent today", counter("sent_today", "mdi:message-check"))
    yield _Entity(
        "suppressed_today",
        "sensor",
        "Suppressed today",
        counter("suppressed_today", "mdi:message-minus"),
    )
    yield _Entity(
        "failed_today", "sensor", "Failed today", counter("failed_today", "mdi:message-alert")
    )
    yield _Entity(
        "dry_run_today",
        "sensor",
        "Dry runs today",
        {
            # texts a dry run (no `smtp`) wrote to the maildir: never counted as sent
            **counter("dry_run_today", "mdi:email-off-outline"),
            "value_template": "{{ value_json.dry_run_today | default(0) }}",
            "entity_category": "diagnostic",
        },
    )
    if config.modem is not None:
        yield _Entity(
            "modem_signal",
            "sensor",
            "Modem signal",
            {
                "state_topic": stats,
                "value_template": "{{ value_json.modem_signal | default(None) }}",
                "state_class": "measurement",
                "unit_of_measurement": "/31",  # AT+CSQ's 0-31; 99 never reaches us
                "entity_category": "diagnostic",
                "icon": "mdi:signal",
            },
        )
        yield _Entity(
            "modem_registered",
            "binary_sensor",
            "Modem registered",
            {
                "state_topic": stats,
                # not known yet (or the modem did not answer): None, which HA shows unknown
                "value_template": (
                    "{% set r = value_json.get('modem_registered') %}"
                    "{{ None if r is none else ('ON' if r else 'OFF') }}"
                ),
                "device_class": "connectivity",
                "entity_category": "diagnostic",
            },
        )
        yield _Entity(
            "modem_sim_used",
            "sensor",
            "Modem SIM texts",
            {
                "state_topic": stats,
                "value_template": "{{ value_json.modem_sim_used | default(None) }}",
                "state_class": "measurement",
                "unit_of_measurement": "texts",
                "entity_category": "diagnostic",
                "icon": "mdi:sim",
            },
        )
    yield _Entity(
        "last_sent_at",
        "sensor",
        "Last sent",
        {
            "state_topic": stats,
            # null (or missing) renders "None", which HA's MQTT sensor reads as unknown.
            "value_template": "{{ value_json.last_sent_at | default(None) }}",
            "device_class": "timestamp",
        },
    )
    yield _Entity(
        "last_error",
        "sensor",
        "Last error",
        {
            "state_topic": stats,
            # A state holds at most 255 characters; null means no error (unknown).
            "value_template": (
                "{{ value_json.last_error[:255] if value_json.last_error else None }}"
            ),
            "entity_category": "diagnostic",
            "icon": "mdi:alert-circle-outline",
        },
    )
    yield from _escalation_entities(base)


def _escalation_entities(base: str) -> Iterable[_Entity]:
    """Incidents and received texts (see "Escalation entities" in the module docstring)."""
    yield _Entity(
        "open_incidents",
        "sensor",
        "Open incidents",
        {
            "state_topic": f"{base}/incidents",
            "value_template": "{{ value_json | length }}",
            "json_attributes_topic": f"{base}/incidents",
            "json_attributes_template": "{{ {'incidents': value_json} | tojson }}",
            "state_class": "measurement",
            "icon": "mdi:bell-ring",
        },
    )
    yield _Entity(
        "ack_all",
        "button",
        "Acknowledge all",
        {
            "command_topic": f"{base}/ack",
            "payload_press": "all",
            "qos": 1,
            "retain": False,
            "icon": "mdi:check-all",
        },
        available_with_status=False,
    )
    yield _Entity(
        "incident",
        "event",
        "Incident",
        {
            "state_topic": f"{base}/incident",
            "event_types": list(INCIDENT_EVENT_TYPES),
            "value_template": "{{ dict(value_json, event_type=value_json.state) | tojson }}",
            "icon": "mdi:bell-alert",
        },
    )
    yield _Entity(
        "received",
        "event",
        "Received text",
        {
            "state_topic": f"{base}/received",
            "event_types": ["received"],
            "value_template": "{{ dict(value_json, event_type='received') | tojson }}",
            "icon": "mdi:message-reply-text",
        },
    )
