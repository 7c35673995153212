"""The core pipeline end to end: the daemon as a subprocess, real Mosquitto, a real SMTP sink."""

from __future__ import annotations

import json
import mailbox
import signal
from pathlib import Path
from typing import Any

from .conftest import (
    Mosquitto,
    Sink,
    Watcher,
    base_config,
    free_port,
    running,
    stalled_data,
    wait_for,
    wait_online,
)

LEAK_RULE = """
rules:
  - name: leak
    topic: zigbee2mqtt/+
    when: value_json.water_leak
    message: "Water leak: {{ topic_parts[1] }}"
    to: [family]
"""


def test_alert_becomes_mail_to_the_gateway(
    mosquitto: Mosquitto, sink: Sink, daemon_factory: Any
) -> None:
    d = daemon_factory(base_config(mosquitto.port, sink.port))
    w = running(d, mosquitto.port)
    w.publish("home/alerts/sms", "Garage door open")
    wait_for(lambda: sink.mails, 10, "a mail")
    mail = sink.mails[0]
    assert mail.rcpts == ["5551234567@tmomail.net"]
    assert mail.sender == "alerts@example.org"
    msg = mail.msg
    assert msg["To"] == "5551234567@tmomail.net"
    assert msg["From"] == "alerts@example.org"
    assert msg["Date"] and msg["Message-ID"]
    assert msg["Subject"] is None
    assert mail.body == "Garage door open"
    sent = wait_for(lambda: w.states("sent"), 5, "a sent event")
    ev = sent[0]
    assert ev["rule"] == "sms" and ev["to"] == "alex" and ev["via"] == "smtp"
    assert ev["attempts"] == 1 and ev["latency_ms"] >= 0
    assert "+" in ev["at"][19:] or ev["at"].endswith("Z") or "-" in ev["at"][19:]
    stats = wait_for(lambda: w.retained.get("mqtt2sms/stats"), 5, "stats")
    assert set(json.loads(stats)) >= {
        "queued",
        "sent_today",
        "suppressed_today",
        "failed_today",
        "last_sent_at",
        "last_error",
    }
    assert d.stop() == 0
    wait_for(lambda: w.status() == "offline", 5, "status offline")
    w.close()


def test_json_payload_rules_and_bad_input(
    mosquitto: Mosquitto, sink: Sink, daemon_factory: Any
) -> None:
    d = daemon_factory(base_config(mosquitto.port, sink.port, LEAK_RULE))
    w = running(d, mosquitto.port)
    w.publish(
        "home/alerts/sms",
        json.dumps({"message": "Smoke in the hall", "to": "family", "priority": "high"}),
    )
    w.publish("zigbee2mqtt/basement", json.dumps({"water_leak": False, "battery": 90}))
    w.publish("zigbee2mqtt/kitchen", json.dumps({"water_leak": True, "battery": 90}))
    w.publish("home/alerts/sms", json.dumps({"message": "x", "to": "+15551112222"}))
    w.publish("home/alerts/sms", b"\xff\xfe broken \xc3")
    w.publish("home/alerts/sms", b"A" * (64 * 1024 + 1))
    w.publish("home/alerts/sms", "[" * 20000)
    w.publish("home/alerts/sms", "1" * 5000)
    w.publish("home/alerts/sms", "null")
    # 2 (smoke) + 2 (kitchen leak) + broken utf-8 + deep json + long number + null
    wait_for(lambda: len(sink.mails) >= 8, 15, "8 mails")
    bodies = sorted(m.body for m in sink.mails)
    assert bodies.count("Smoke in the hall") == 2
    assert bodies.count("Water leak: kitchen") == 2
    assert not any("basement" in b for b in bodies)
    rejected = wait_for(
        lambda: len(w.states("rejected")) >= 2 and w.states("rejected"), 5, "rejected events"
    )
    errors = " ".join(e["error"] for e in rejected)
    assert "raw number" in errors and "64 KiB" in errors
    rcpts = sorted(r for m in sink.mails for r in m.rcpts)
    assert "15551112222" not in " ".join(rcpts)
    assert d.proc.poll() is None
    assert d.stop() == 0
    w.close()


def test_retained_messages_are_ignored(
    mosquitto: Mosquitto, sink: Sink, daemon_factory: Any
) -> None:
    w = Watcher(mosquitto.port)
    w.publish("home/alerts/sms", "old retained alert", retain=True)
    d = daemon_factory(base_config(mosquitto.port, sink.port))
    d.start()
    wait_online(w)
    w.publish("home/alerts/sms", "fresh alert")
    wait_for(lambda: sink.mails, 10, "a mail")
    d.stop()
    assert [m.body for m in sink.mails] == ["fresh alert"]
    w.publish("home/alerts/sms", "", retain=True)
    w.close()


def test_published_while_stopped_is_sent_after_start(
    mosquitto: Mosquitto, sink: Sink, daemon_factory: Any
) -> None:
    d = daemon_factory(base_config(mosquitto.port, sink.port))
    w = running(d, mosquitto.port)
    assert d.stop() == 0
    for i in range(5):
        w.publish("home/alerts/sms", f"while away {i}")
    d.start()
    wait_for(lambda: len(sink.mails) >= 5, 15, "5 mails")
    assert sorted(m.body for m in sink.mails) == [f"while away {i}" for i in range(5)]
    d.stop()
    w.close()


def test_sigkill_before_the_send_is_redelivered(
    mosquitto: Mosquitto, sink: Sink, daemon_factory: Any
) -> None:
    """The broker delivered, the daemon died mid-send: the text arrives after a restart."""
    d = daemon_factory(base_config(mosquitto.port, sink.port))
    w = running(d, mosquitto.port)
    with stalled_data(sink, 60, "250 late") as entered:
        w.publish("home/alerts/sms", "smoke in the attic")
        wait_for(entered.is_set, 10, "the send to start")
        d.kill()
    d.start()
    wait_for(lambda: sink.mails, 15, "the text after restart")
    assert [m.body for m in sink.mails] == ["smoke in the attic"]
    d.stop()
    w.close()


def test_embedded_broker_dry_run_maildir(tmp_path: Path, daemon_factory: Any) -> None:
    port = free_port()
    d = daemon_factory(f"""
    mqtt: {{host: 127.0.0.1, port: {port}, embedded: true}}
    contacts:
      alex: {{number: "5551234567", carrier: tmobile}}
    defaults: {{to: [alex]}}
    """)
    d.start()
    w = wait_for(lambda: _try_watcher(port), 20, "the embedded broker")
    wait_online(w)
    w.publish("home/alerts/sms", "Garage door open")
    box = d.state / "maildir"
    wait_for(
        lambda: box.exists() and len(mailbox.Maildir(str(box), create=False)) > 0,
        10,
        "a mail in the maildir",
    )
    msgs = list(mailbox.Maildir(str(box), create=False))
    assert msgs[0]["To"] == "5551234567@tmomail.net"
    assert msgs[0].get_payload(decode=True).decode().strip() == "Garage door open"
    assert d.stop() == 0
    w.close()


def _try_watcher(port: int) -> Watcher | None:
    try:
        return Watcher(port)
    except OSError:
        return None


def test_sigterm_stops_cleanly(mosquitto: Mosquitto, sink: Sink, daemon_factory: Any) -> None:
    d = daemon_factory(base_config(mosquitto.port, sink.port))
    w = running(d, mosquitto.port)
    d.signal(signal.SIGINT)
    assert d.proc.wait(15) == 0
    wait_for(lambda: w.status() == "offline", 5, "offline")
    w.close()


def test_mqtt5_persistent_session(mosquitto: Mosquitto, sink: Sink, daemon_factory: Any) -> None:
    d = daemon_factory(
        base_config(mosquitto.port, sink.port).replace(
            "client_id: mqtt2sms-test", 'client_id: mqtt2sms-test\n  protocol: "5"'
        )
    )
    w = running(d, mosquitto.port)
    w.publish("home/alerts/sms", "over MQTT 5")
    wait_for(lambda: sink.mails, 10, "a mail")
    assert d.stop() == 0
    w.publish("home/alerts/sms", "while away, MQTT 5")
    d.start()
    wait_for(lambda: len(sink.mails) >= 2, 15, "the text published while away")
    assert [m.body for m in sink.mails] == ["over MQTT 5", "while away, MQTT 5"]
    d.stop()
    w.close()


def test_long_text_split_with_subject_and_gsm7(
    mosquitto: Mosquitto, sink: Sink, daemon_factory: Any
) -> None:
    d = daemon_factory(
        base_config(
            mosquitto.port,
            sink.port,
            """
            defaults:
              to: [alex]
              long: split
              max_parts: 3
              subject: "{{ rule }} alert"
            """,
        )
    )
    w = running(d, mosquitto.port)
    words = " ".join(f"word{i}" for i in range(36))  # about 250 characters
    w.publish("home/alerts/sms", f"“Leak” — {words} 🔥")
    wait_for(lambda: len(sink.mails) >= 2, 10, "two parts")
    wait_for(lambda: len(w.states("sent")) >= 2, 10, "a sent event for each part")
    bodies = [m.body for m in sink.mails]
    assert len(bodies) == 2
    assert bodies[0].startswith('(1/2) "Leak" - word0') and bodies[1].startswith("(2/2) ")
    # a concatenated part carries 153 septets, and the subject the gateway shows counts too
    assert all(len(b) + len("sms alert") + 1 <= 153 for b in bodies)
    assert "🔥" not in "".join(bodies) and "word35" in bodies[1]
    assert {m.msg["Subject"] for m in sink.mails} == {"sms alert"}
    d.stop()
    w.close()
