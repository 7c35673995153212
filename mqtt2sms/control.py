"""The control topics: what the daemon subscribes to besides the rules, and what each is.

Theory of operation. Three kinds of message are not alerts to route:

- ``<base>/ack``: an acknowledgement of an incident: its code, JSON ``{"id": ..., "by": ...}``,
  or ``all``. ``ack_request`` reads it; the engine hands it to the incidents' desk
  (``escalation.py``). A retained one is never acted on (it would acknowledge again at
  every reconnect);
- ``<base>/drill``: ``mqtt2sms incidents drill POLICY`` asks for a drill: the policy runs
  end to end, its texts marked TEST and its steps ``step`` seconds apart (``drill_request``);
- ``<base>/call``: ``mqtt2sms call CONTACT`` asks for one test call to a contact (the
  payload is the contact's name); the call's outcome is said on ``<base>/incident``;
- Home Assistant's birth message (``<prefix>/status``, with discovery on): it restarted and
  wants our discovery configs again; the daemon answers it;
- ``<base>/notify`` is an alert like any other: the built-in ``notify`` rule routes it.

``kind`` says which a topic is; this is the one place that knows. Pure: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from mqtt2sms import config as cfg
from mqtt2sms import discovery, rules

Kind = Literal["ack", "drill", "call", "birth", "alert"]
DRILL_STEP = 60.0  # seconds between a drill's steps, unless the command says otherwise
TEST_RING = 30.0  # seconds `mqtt2sms call` rings at most


def ack_topic(config: cfg.Config) -> str:
    return f"{config.mqtt.base_topic}/ack"


def drill_topic(config: cfg.Config) -> str:
    return f"{config.mqtt.base_topic}/drill"


def call_topic(config: cfg.Config) -> str:
    return f"{config.mqtt.base_topic}/call"


def subscriptions(config: cfg.Config) -> list[str]:
    """The filters to subscribe to, none covered by another: the broker sends a retained
    message once per matching filter, and one message must be one alert."""
    filters = {r.topic for r in config.rules}
    filters.add(ack_topic(config))
    filters.add(drill_topic(config))
    filters.add(call_topic(config))
    if config.homeassistant.discovery:
        filters.add(discovery.birth_topic(config))
    return rules.without_overlaps(filters)


def kind(config: cfg.Config, topic: str) -> Kind:
    if topic == ack_topic(config):
        return "ack"
    if topic == drill_topic(config):
        return "drill"
    if topic == call_topic(config):
        return "call"
    if config.homeassistant.discovery and topic == discovery.birth_topic(config):
        return "birth"
    return "alert"


@dataclass(frozen=True)
class AckRequest:
    code: str | None  # None: every open incident (``all``)
    by: str


def ack_request(payload: bytes) -> AckRequest | None:
    """What a message on ``<base>/ack`` asks: ``417``, ``all``, or JSON ``{"id": "417",
    "by": "kitchen panel"}`` (``id`` may be a number, or ``all``). None: it asks nothing
    we can read."""
    text = payload.decode("utf-8", "replace").strip()
    by = "mqtt"
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            return None
        if not isinstance(obj, dict):
            return None
        who = obj.get("by")
        if isinstance(who, str) and who.strip():
            by = " ".join(who.split())[:40]
        ident = obj.get("id")
        if isinstance(ident, int) and not isinstance(ident, bool):
            ident = str(ident)
        if not isinstance(ident, str):
            return None
        text = ident.strip()
    if text.lower() == "all":
        return AckRequest(None, by)
    if text.isascii() and text.isdigit() and 3 <= len(text) <= 4:
        return AckRequest(text, by)
    return None


@dataclass(frozen=True)
class DrillRequest:
    policy: str
    step: float = DRILL_STEP  # seconds between its steps


def drill_request(payload: bytes) -> DrillRequest | None:
    """``fire``, or JSON ``{"policy": "fire", "step": 30}`` (step: 5 s to 1 h)."""
    text = payload.decode("utf-8", "replace").strip()
    if not text.startswith("{"):
        return DrillRequest(text) if text else None
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("policy"), str):
        return None
    step = obj.get("step", DRILL_STEP)
    if not isinstance(step, int | float) or isinstance(step, bool) or not 5 <= step <= 3600:
        step = DRILL_STEP
    return DrillRequest(obj["policy"], float(step))
