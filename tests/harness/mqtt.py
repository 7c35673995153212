"""A test MQTT client: collects the daemon's events and retained topics, publishes alerts."""

from __future__ import annotations

import json
import threading
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


class Watcher:
    """A test client: subscribes to the daemon's topics and publishes alerts."""

    def __init__(
        self,
        port: int,
        base: str = "mqtt2sms",
        auth: tuple[str, str] | None = None,
        ca_certs: str | None = None,
    ) -> None:
        self.base = base
        self.events: list[dict[str, Any]] = []
        self.retained: dict[str, str] = {}
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"watcher-{port}-{id(self)}"
        )
        self.client.on_message = self._on_message
        if auth is not None:
            self.client.username_pw_set(*auth)
        if ca_certs is not None:
            self.client.tls_set(ca_certs=ca_certs)
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{base}/#", qos=1)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            if msg.topic == f"{self.base}/event":
                self.events.append(json.loads(msg.payload))
            else:
                self.retained[msg.topic] = msg.payload.decode()

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(5)

    def states(self, state: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if e["state"] == state]

    def status(self) -> str | None:
        with self.lock:
            return self.retained.get(f"{self.base}/status")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
