"""`mqtt2sms incidents` and `mqtt2sms test` against the real daemon, Mosquitto and the fake
Twilio (its inbox holds the replies): list, ack from the command line, and a drill the user
answers from their phone."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.twilio import FakeTwilio

from .conftest import Mosquitto, Watcher, running, wait_for

ALEX = "+15551234567"
DRILL = [sys.executable, "-m", "mqtt2sms", "incidents", "drill", "fire", "--step", "5s"]


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as tw:
        yield tw


def config(mosquitto: Mosquitto, tw: FakeTwilio) -> str:
    return f"""\
mqtt: {{host: 127.0.0.1, port: {mosquitto.port}, client_id: mqtt2sms-test}}
contacts:
  alex: {{number: "+1 (555) 123-4567", via: [twilio]}}
  sam: {{email: "5557654321@vtext.com"}}
limits: {{per_recipient: 0, daily_cap: 0, retry: {{first: 0.2s, max: 1s}}}}
twilio:
  account_sid: {tw.account_sid}
  auth_token: {tw.auth_token}
  from: "{tw.number}"
  api_base: {tw.url}
  poll: 1s
defaults: {{to: [alex]}}
escalations:
  fire:
    steps:
      - {{to: [alex]}}
      - {{to: [sam], after: 1h}}
rules:
  - name: smoke
    topic: zigbee2mqtt/+/smoke
    when: value_json.smoke
    message: "Smoke in the {{{{ topic_parts[1] }}}}"
    escalate: fire
"""


def cli(d: Any, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mqtt2sms", *args, "-c", str(d.config)],
        env=d.env,
        cwd=d.tmp,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def incident_events(w: Watcher) -> list[dict[str, Any]]:
    with w.lock:
        return [json.loads(p) for t, p, _ in w.messages if t == "mqtt2sms/incident"]


def test_list_then_ack_from_the_command_line(
    mosquitto: Mosquitto, twilio: FakeTwilio, daemon_factory: Any
) -> None:
    d = daemon_factory(config(mosquitto, twilio))
    w = running(d, mosquitto.port)
    try:
        w.publish("zigbee2mqtt/hall/smoke", '{"smoke": true}')
        opened = wait_for(lambda: incident_events(w), 15, "the incident opened")[0]
        code = opened["id"]
        wait_for(lambda: twilio.sent(), 15, "the first step's text")
        listed = cli(d, "incidents")
        assert listed.returncode == 0, listed.stderr
        row = next(line for line in listed.stdout.splitlines() if line.startswith(code))
        assert "smoke" in row and "open" in row and "1/2" in row and "alex" in row
        acked = cli(d, "incidents", "ack", code, "--by", "sam at the door")
        assert acked.returncode == 0, acked.stderr
        ev = wait_for(
            lambda: [e for e in incident_events(w) if e["state"] == "acked"], 15, "acked"
        )[0]
        assert ev["by"] == "sam at the door" and ev["id"] == code
        assert "acked by sam at the door" in cli(d, "incidents").stdout
        bad = cli(d, "incidents", "ack", "12")
        assert bad.returncode == 1 and "3 or 4 digits" in bad.stderr
    finally:
        d.stop()
        w.close()


def test_test_shows_what_each_step_would_send(
    mosquitto: Mosquitto, twilio: FakeTwilio, daemon_factory: Any
) -> None:
    d = daemon_factory(config(mosquitto, twilio))
    out = cli(d, "test", "zigbee2mqtt/hall/smoke", '{"smoke": true}')
    assert out.returncode == 0, out.stderr
    assert "opens an incident (policy fire)" in out.stdout
    assert "step 1 at +0s to alex via twilio:" in out.stdout
    assert "Smoke in the hall Reply ACK <code>" in out.stdout
    assert "step 2 at +3600s to sam" in out.stdout
    as_json = json.loads(cli(d, "test", "zigbee2mqtt/hall/smoke", '{"smoke": 1}', "--json").stdout)
    assert as_json["texts"] == [] and as_json["incidents"][0]["does"] == "opens an incident"


def test_a_drill_runs_the_policy_and_passes_when_answered_from_the_phone(
    mosquitto: Mosquitto, twilio: FakeTwilio, daemon_factory: Any
) -> None:
    d = daemon_factory(config(mosquitto, twilio))
    w = running(d, mosquitto.port)
    drill = subprocess.Popen(
        [*DRILL, "-c", str(d.config)],
        env=d.env,
        cwd=d.tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        [first] = wait_for(lambda: twilio.sent(), 20, "the drill's first text")
        assert first["to"] == ALEX and first["body"].startswith("TEST: a drill of the fire")
        code = first["body"].rsplit(" ", 1)[1]
        assert first["body"].endswith(f"Reply ACK {code}")
        twilio.inbound(ALEX, f"ACK {code}")
        out, err = drill.communicate(timeout=40)
        assert drill.returncode == 0, (out, err)
        assert "drill passed: acknowledged by alex" in out
        time.sleep(6)  # its second step (5 s) never comes
        assert [m["to"] for m in twilio.sent()] == [ALEX]
    finally:
        if drill.poll() is None:
            drill.kill()
            drill.communicate()
        d.stop()
        w.close()
