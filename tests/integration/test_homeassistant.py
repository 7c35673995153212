"""Home Assistant: discovery configs, the birth message, the notify entity, retained stats."""

from __future__ import annotations

import json
from typing import Any

from .conftest import Mosquitto, Sink, Watcher, base_config, wait_for, wait_online


class HaWatcher(Watcher):
    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.configs: list[tuple[str, bytes]] = []
        self.client.message_callback_add("homeassistant/#", self._on_config)
        self.client.subscribe("homeassistant/#", qos=1)

    def _on_config(self, _c: Any, _u: Any, msg: Any) -> None:
        with self.lock:
            self.configs.append((msg.topic, bytes(msg.payload)))


def test_discovery_birth_notify_and_stats(
    mosquitto: Mosquitto, sink: Sink, daemon_factory: Any
) -> None:
    d = daemon_factory(
        base_config(
            mosquitto.port,
            sink.port,
            """
    homeassistant: {discovery: true, prefix: homeassistant}
    defaults: {to: [family]}
    """,
        )
    )
    w = HaWatcher(mosquitto.port)
    d.start()
    wait_online(w)
    wait_for(lambda: w.configs, 10, "a discovery config")
    topic, payload = w.configs[-1]
    assert topic.startswith("homeassistant/")
    cfg = json.loads(payload)
    assert cfg["dev"]["identifiers"] and cfg["o"]["name"] == "mqtt2sms"
    comps = cfg["cmps"]
    uids = [c["unique_id"] for c in comps.values()]
    assert len(uids) == len(set(uids))
    platforms = {c["p"] for c in comps.values()}
    assert {"sensor", "notify"} <= platforms
    for c in comps.values():
        assert "state_topic" in c or "command_topic" in c
        if c["p"] == "sensor":
            assert "mqtt2sms/status" in json.dumps(c.get("availability", cfg.get("availability")))
    notify = next(c for c in comps.values() if c["p"] == "notify")
    assert notify["command_topic"] == "mqtt2sms/notify"
    # escalation: the open incidents, the button that acknowledges them, two event entities
    assert comps["open_incidents"]["state_topic"] == "mqtt2sms/incidents"
    assert (comps["ack_all"]["command_topic"], comps["ack_all"]["payload_press"]) == (
        "mqtt2sms/ack",
        "all",
    )
    events = {c["state_topic"] for c in comps.values() if c["p"] == "event"}
    assert events == {"mqtt2sms/incident", "mqtt2sms/received"}

    # Home Assistant restarts: the configs come again
    n = len(w.configs)
    w.publish("homeassistant/status", "online")
    wait_for(lambda: len(w.configs) > n, 10, "discovery again after HA's birth message")

    # the notify entity texts the default recipients
    w.publish("mqtt2sms/notify", "Front door left open")
    wait_for(lambda: len(sink.mails) >= 2, 10, "two mails from notify")
    assert sorted(r for m in sink.mails for r in m.rcpts) == [
        "5551234567@tmomail.net",
        "5557654321@vtext.com",
    ]
    assert {m.body for m in sink.mails} == {"Front door left open"}

    def sent_today() -> int:
        raw = w.retained.get("mqtt2sms/stats")
        return int(json.loads(raw)["sent_today"]) if raw else 0

    wait_for(lambda: sent_today() >= 2, 5, "stats to count the two texts")
    d.stop()
    w.close()

    # the stats are retained: a new client sees them at once
    late = Watcher(mosquitto.port)
    try:
        wait_for(lambda: late.retained.get("mqtt2sms/stats"), 5, "retained stats")
        assert json.loads(late.retained["mqtt2sms/stats"])["sent_today"] >= 2
    finally:
        late.close()


def test_discovery_off_removes_the_device(
    mosquitto: Mosquitto, sink: Sink, daemon_factory: Any
) -> None:
    d = daemon_factory(base_config(mosquitto.port, sink.port, "homeassistant: {discovery: true}\n"))
    w = HaWatcher(mosquitto.port)
    d.start()
    wait_online(w)
    wait_for(lambda: w.configs, 10, "a discovery config")
    topic = w.configs[-1][0]
    d.stop()
    d.write_config(base_config(mosquitto.port, sink.port, "homeassistant: {discovery: false}\n"))
    d.start()
    wait_for(
        lambda: any(t == topic and p == b"" for t, p in w.configs), 10, "an empty retained config"
    )
    d.stop()
    w.close()
    fresh = HaWatcher(mosquitto.port)
    # the broker sends retained messages when it takes a subscription, so a message published
    # after subscribing comes back after all of them
    fresh.publish("homeassistant/harness-probe", "probe", retain=False)
    wait_for(
        lambda: any(t == "homeassistant/harness-probe" for t, _ in fresh.configs),
        10,
        "the probe after the retained configs",
    )
    assert not [p for t, p in fresh.configs if t == topic and p]
    fresh.close()


def test_a_birth_message_after_the_broker_lost_its_retained_topics_restores_status_and_stats(
    mosquitto: Mosquitto, sink: Sink, daemon_factory: Any
) -> None:
    d = daemon_factory(base_config(mosquitto.port, sink.port, "homeassistant: {discovery: true}\n"))
    w = HaWatcher(mosquitto.port)
    d.start()
    wait_online(w)
    wait_for(lambda: "mqtt2sms/stats" in w.retained, 10, "retained stats")
    # the broker lost its retained messages (a restart without persistence, say)
    for topic in ("mqtt2sms/status", "mqtt2sms/stats"):
        w.publish(topic, b"", retain=True)
    wait_for(lambda: w.status() in (None, ""), 10, "status cleared")
    w.publish("homeassistant/status", "online")
    wait_for(lambda: w.status() == "online", 10, "status online again after HA's birth")
    wait_for(
        lambda: json.loads(w.retained.get("mqtt2sms/stats") or "null") is not None,
        10,
        "stats again after HA's birth",
    )
    w.close()
    assert d.stop() == 0
