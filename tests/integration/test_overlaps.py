"""One MQTT message is one alert, whichever and however many of our filters match it."""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as paho

from .conftest import Mosquitto, Sink, base_config, running, wait_for

OVERLAP = """
rules:
  - {name: one, topic: "zigbee2mqtt/+", retained: true, message: "one {{ value }}"}
  - {name: all, topic: "zigbee2mqtt/#", retained: true, message: "all {{ value }}"}
"""


def _retain(port: int, topic: str, payload: str) -> None:
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="retainer")
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def test_a_retained_message_matching_two_filters_is_texted_once_per_rule(
    mosquitto: Mosquitto, sink: Sink, daemon_factory: Any
) -> None:
    _retain(mosquitto.port, "zigbee2mqtt/door", "open")
    d = daemon_factory(base_config(mosquitto.port, sink.port, OVERLAP))
    w = running(d, mosquitto.port)
    wait_for(lambda: len(w.states("sent")) >= 2, 10, "the two rules' texts")
    # a later message proves the first was handled completely
    w.publish("zigbee2mqtt/window", "shut")
    wait_for(lambda: len(w.states("sent")) >= 4, 10, "the texts of the later message")
    bodies = sorted(m.body.strip() for m in sink.mails)
    assert bodies == ["all open", "all shut", "one open", "one shut"]
    w.close()
    assert d.stop() == 0
