"""The floor for bench/e2e.py: the least a Python MQTT-to-SMTP bridge can do.

A paho 2.x subscriber (QoS 1; paho acknowledges when on_message returns, that is after the
mail is sent) that calls smtplib ``sendmail`` on one reused connection per message. No
rules, no templates, no outbox. Prints ``ready <time.time()>`` once the SUBACK is in.

    python bench/floor.py --mqtt-port 1883 --smtp-port 2525 --topic 'bench/#'
"""

from __future__ import annotations

import argparse
import signal
import smtplib
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

SENDER = "floor@example.org"
RCPT = "5551234567@tmomail.net"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mqtt-port", type=int, required=True)
    ap.add_argument("--smtp-port", type=int, required=True)
    ap.add_argument("--topic", default="bench/#")
    a = ap.parse_args()

    smtp: list[smtplib.SMTP] = []

    def conn() -> smtplib.SMTP:
        if not smtp:
            smtp.append(smtplib.SMTP("127.0.0.1", a.smtp_port, timeout=10))
        return smtp[0]

    def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        body = (
            f"From: {SENDER}\r\nTo: {RCPT}\r\n\r\n".encode()
            + msg.payload.replace(b"\n", b" ")
            + b"\r\n"
        )
        for _ in range(2):  # one reconnect if the kept connection went stale
            try:
                conn().sendmail(SENDER, [RCPT], body)
                return
            except (smtplib.SMTPServerDisconnected, OSError):
                smtp.clear()

    def on_subscribe(*_a: Any) -> None:
        print(f"ready {time.time():.6f}", flush=True)

    def on_connect(c: paho.Client, *_a: Any) -> None:
        c.subscribe(a.topic, qos=1)

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-floor")
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    client.connect("127.0.0.1", a.mqtt_port)
    client.loop_start()
    while not stop.wait(1.0):
        pass
    client.disconnect()
    client.loop_stop()
    if smtp:
        smtp[0].quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
