"""Issue 19 with real parts: escalation and acknowledgement, from outside the daemon.

Mosquitto, the aiosmtpd sink (sam's gateway), the fake Twilio, the fake modem on a pty, the
fake Android gateway, and the daemon as a subprocess. The policy's steps are in seconds:
alex at once (by a way out that reads replies), sam by the gateway ``AFTER`` seconds later.
Times are measured here, against the moment the watcher saw the ``opened`` event."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.android import FakeAndroid
from tests.fakes.modem import FakeModem
from tests.fakes.twilio import FakeTwilio

from .conftest import Mail, Mosquitto, Sink, Watcher, base_config, running, wait_for

ALEX_E164 = "+15551234567"
SAM_GATEWAY = "5557654321@vtext.com"
STRANGER = "+15559990000"
AFTER = 4.0  # seconds from the opening to the second step
SLACK = 2.0  # seconds of tolerance on a step's time
TOPIC = "home/kitchen/smoke"
ALARM = '{"smoke": true}'
CLEAR = '{"smoke": false}'


def policy(via: str, after: float = AFTER) -> str:
    return f"""
escalations:
  fire:
    steps:
      - {{to: [alex]}}
      - {{to: [sam], after: {after:g}s}}
    repeat: 0s
rules:
  - name: smoke
    topic: home/+/smoke
    when: value_json.smoke
    resolve_when: value_json.smoke == false
    message: "Smoke in the {{{{ topic_parts[1] }}}}"
    escalate: fire
defaults: {{to: [alex], via: [{via}, smtp]}}
"""


def twilio_section(tw: FakeTwilio) -> str:
    return f"""
twilio:
  account_sid: {tw.account_sid}
  auth_token: {tw.auth_token}
  from: "{tw.number}"
  api_base: {tw.url}
  poll: 1s
"""


def android_section(phone: FakeAndroid) -> str:
    return f"""
android:
  url: {phone.url}
  username: {phone.username}
  password: '{phone.password}'
  poll: 1s
"""


class Clock:
    """When each incident event and each mail arrived (monotonic seconds)."""

    def __init__(self, w: Watcher, sink: Sink) -> None:
        self.w = w
        self.lock = threading.Lock()
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.mails: list[tuple[float, Mail]] = []
        inner = w.client.on_message

        def on_message(client: Any, userdata: Any, msg: Any) -> None:
            if msg.topic == f"{w.base}/incident":
                with self.lock:
                    self.events.append((time.monotonic(), json.loads(msg.payload)))
            assert inner is not None
            inner(client, userdata, msg)

        w.client.on_message = on_message

        def on_mail(mail: Mail) -> None:
            with self.lock:
                self.mails.append((time.monotonic(), mail))

        sink.handler.on_mail = on_mail

    def states(self) -> list[str]:
        with self.lock:
            return [e["state"] for _, e in self.events]

    def event(self, state: str, timeout: float = 10) -> tuple[float, dict[str, Any]]:
        def find() -> tuple[float, dict[str, Any]] | None:
            with self.lock:
                return next(((t, e) for t, e in self.events if e["state"] == state), None)

        found: tuple[float, dict[str, Any]] = wait_for(find, timeout, f"an {state!r} incident")
        return found

    def sam(self) -> list[tuple[float, str]]:
        with self.lock:
            return [(t, m.body) for t, m in self.mails if m.rcpts == [SAM_GATEWAY]]


def listing(w: Watcher) -> list[dict[str, Any]]:
    with w.lock:
        text = w.retained.get(f"{w.base}/incidents")
    return [] if text is None else list(json.loads(text))


def received(w: Watcher) -> list[dict[str, Any]]:
    with w.lock:
        return [json.loads(p) for t, p, _ in w.messages if t == f"{w.base}/received"]


def bodies(tw: FakeTwilio) -> list[tuple[str, str]]:
    return [(m["to"], m["body"]) for m in tw.sent()]


def twilio_reads(tw: FakeTwilio) -> int:
    """How many times the daemon read the texts sent to ``from``."""
    return sum(
        1 for r in list(tw.requests) if r.method == "GET" and r.path.endswith("/Messages.json")
    )


def no_second_step(clock: Clock, opened_at: float) -> None:
    """Waits past the second step's time: sam was never texted."""
    time.sleep(max(0.0, opened_at + AFTER + SLACK - time.monotonic()))
    assert clock.sam() == []


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as tw:
        yield tw


@pytest.fixture
def phone() -> Iterator[FakeAndroid]:
    with FakeAndroid() as fake:
        yield fake


@pytest.fixture
def modem(tmp_path: Path) -> Iterator[FakeModem]:
    pytest.importorskip("serial")
    (tmp_path / "dev").mkdir()
    with FakeModem(tmp_path / "dev") as fake:
        yield fake


def start(
    daemon_factory: Any, mosquitto: Mosquitto, sink: Sink, extra: str
) -> tuple[Any, Watcher, Clock]:
    text = base_config(mosquitto.port, sink.port, extra)
    sam = 'sam: {email: "5557654321@vtext.com"}'
    assert sam in text
    text = text.replace(sam, sam[:-1] + ", via: [smtp]}")  # the gateway is sam's only way
    d = daemon_factory(text)
    w = running(d, mosquitto.port)
    return d, w, Clock(w, sink)


def open_incident(w: Watcher, clock: Clock) -> tuple[float, str]:
    w.publish(TOPIC, ALARM)
    at, ev = clock.event("opened")
    assert ev["rule"] == "smoke" and ev["key"] == TOPIC, ev
    return at, str(ev["id"])


# ------------------------------------------------------------------------ nobody answers


def test_nobody_answers_and_the_second_step_comes_at_its_time(
    mosquitto: Mosquitto, sink: Sink, twilio: FakeTwilio, daemon_factory: Any
) -> None:
    d, w, clock = start(daemon_factory, mosquitto, sink, twilio_section(twilio) + policy("twilio"))
    try:
        opened_at, code = open_incident(w, clock)
        wait_for(lambda: twilio.sent(), 10, "alex's text")
        assert bodies(twilio) == [(ALEX_E164, f"Smoke in the kitchen Reply ACK {code}")]
        assert [i["id"] for i in listing(w)] == [code]
        wait_for(clock.sam, AFTER + 10, "sam's text (the second step)")
        [(sam_at, body)] = clock.sam()
        assert body == f"Smoke in the kitchen ACK {code}"  # a gateway text: no "Reply"
        took = sam_at - opened_at
        assert AFTER - 0.5 <= took <= AFTER + SLACK, took
        escalated = clock.event("escalated")[1]
        assert escalated["id"] == code and escalated["step"] == 2, escalated
        assert len(twilio.sent()) == 1  # repeat: 0s, so alex is not texted again
    finally:
        d.stop()
        w.close()


# ---------------------------------------------------------------------- an MQTT ack


def test_an_mqtt_ack_stops_it_and_tells_the_one_texted(
    mosquitto: Mosquitto, sink: Sink, twilio: FakeTwilio, daemon_factory: Any
) -> None:
    d, w, clock = start(daemon_factory, mosquitto, sink, twilio_section(twilio) + policy("twilio"))
    try:
        opened_at, code = open_incident(w, clock)
        wait_for(lambda: twilio.sent(), 10, "alex's text")
        w.publish(f"{w.base}/ack", json.dumps({"id": code, "by": "kitchen panel"}))
        acked = clock.event("acked")[1]
        assert acked["id"] == code and acked["by"] == "kitchen panel", acked
        wait_for(lambda: len(twilio.sent()) >= 2, 10, "the ack's notice to alex")
        assert bodies(twilio)[1] == (ALEX_E164, f"ACK {code} by kitchen panel")
        wait_for(lambda: [i["state"] for i in listing(w)] == ["acked"], 5, "the listing says acked")
        assert listing(w)[0]["id"] == code
        no_second_step(clock, opened_at)
        assert len(twilio.sent()) == 2
        assert "escalated" not in clock.states()
    finally:
        d.stop()
        w.close()


# ---------------------------------------------------------------------- SMS replies


def test_a_modem_reply_acknowledges_is_published_and_deleted_by_its_index(
    mosquitto: Mosquitto, sink: Sink, modem: FakeModem, daemon_factory: Any
) -> None:
    extra = f"modem: {{device: {modem.link}, poll: 1s}}\n" + policy("modem")
    d, w, clock = start(daemon_factory, mosquitto, sink, extra)
    try:
        opened_at, code = open_incident(w, clock)
        wait_for(lambda: modem.sent, 10, "alex's text by the modem")
        assert [(s.number, s.text) for s in modem.sent] == [
            (ALEX_E164, f"Smoke in the kitchen Reply ACK {code}")
        ]
        # the service centre's stamp, now (the fake's default is an old one: too early to count)
        stamp = dt.datetime.now(dt.UTC).strftime("%y/%m/%d,%H:%M:%S+00")
        index = modem.receive_text(ALEX_E164, f"ACK {code}", stamp=stamp)
        acked = clock.event("acked")[1]
        assert acked["id"] == code and acked["by"] == "alex", acked
        [rx] = wait_for(lambda: received(w), 5, "the reply on mqtt2sms/received")
        assert (rx["from"], rx["contact"], rx["text"], rx["via"]) == (
            ALEX_E164,
            "alex",
            f"ACK {code}",
            "modem",
        )
        wait_for(lambda: modem.deletes, 10, "the reply deleted from the SIM")
        assert modem.deletes == [f"AT+CMGD={index}"]  # by its index, never a delete-all
        assert modem.store["SM"] == {}
        no_second_step(clock, opened_at)
        assert "escalated" not in clock.states()
        assert len(modem.sent) == 1  # alex, who acknowledged, is not told of it
    finally:
        d.stop()
        w.close()


def test_a_twilio_reply_acknowledges(
    mosquitto: Mosquitto, sink: Sink, twilio: FakeTwilio, daemon_factory: Any
) -> None:
    d, w, clock = start(daemon_factory, mosquitto, sink, twilio_section(twilio) + policy("twilio"))
    try:
        opened_at, code = open_incident(w, clock)
        wait_for(lambda: twilio.sent(), 10, "alex's text")
        twilio.inbound(ALEX_E164, f"ack {code} on my way")
        acked = clock.event("acked")[1]
        assert acked["id"] == code and acked["by"] == "alex", acked
        time.sleep(1.2)  # a read already out comes back
        reads = twilio_reads(twilio)
        no_second_step(clock, opened_at)
        assert twilio_reads(twilio) == reads  # nothing waits for an ack: the inbox is left alone
        assert "escalated" not in clock.states()
        assert len(twilio.sent()) == 1  # alex, who acknowledged, is not told of it
    finally:
        d.stop()
        w.close()


def test_an_android_reply_acknowledges(
    mosquitto: Mosquitto, sink: Sink, phone: FakeAndroid, daemon_factory: Any
) -> None:
    d, w, clock = start(daemon_factory, mosquitto, sink, android_section(phone) + policy("android"))
    try:
        opened_at, code = open_incident(w, clock)
        wait_for(lambda: phone.posts(), 10, "alex's text by the phone")
        [posted] = phone.posts()
        assert posted["textMessage"]["text"] == f"Smoke in the kitchen Reply ACK {code}"
        phone.receive(ALEX_E164, f"OK {code}")
        acked = clock.event("acked")[1]
        assert acked["id"] == code and acked["by"] == "alex", acked
        no_second_step(clock, opened_at)
        assert "escalated" not in clock.states()
        assert len(phone.posts()) == 1  # alex, who acknowledged, is not told of it
    finally:
        d.stop()
        w.close()


# ----------------------------------------------------------------------- a stranger


def _way(request: pytest.FixtureRequest, way: str) -> tuple[str, Any]:
    """The config of ``way`` and a function that makes ``(sender, text)`` arrive by it."""
    if way == "twilio":
        tw: FakeTwilio = request.getfixturevalue("twilio")
        return twilio_section(tw), tw.inbound
    if way == "android":
        phone: FakeAndroid = request.getfixturevalue("phone")
        return android_section(phone), phone.receive
    modem: FakeModem = request.getfixturevalue("modem")
    stamp = dt.datetime.now(dt.UTC).strftime("%y/%m/%d,%H:%M:%S+00")
    return f"modem: {{device: {modem.link}, poll: 1s}}\n", lambda sender, text: modem.receive_text(
        sender, text, stamp=stamp
    )


@pytest.mark.parametrize("way", ["twilio", "modem", "android"])
def test_a_strangers_reply_does_not_acknowledge_and_is_not_logged(
    way: str,
    request: pytest.FixtureRequest,
    mosquitto: Mosquitto,
    sink: Sink,
    daemon_factory: Any,
) -> None:
    section, arrive = _way(request, way)
    # received: all, so the stranger's text is seen read (it goes to MQTT, not to the log)
    d, w, clock = start(daemon_factory, mosquitto, sink, section + "received: all\n" + policy(way))
    try:
        opened_at, code = open_incident(w, clock)
        wait_for(lambda: w.states("sent"), 10, "alex's text")
        reply = f"ACK {code} from next door, Flat 9B"
        arrive(STRANGER, reply)
        [rx] = wait_for(lambda: received(w), 5, "the stranger's text read")
        assert (rx["from"], rx["contact"], rx["text"]) == (STRANGER, None, reply)
        wait_for(clock.sam, AFTER + 10, "sam's text (the second step)")
        assert clock.sam()[0][0] - opened_at <= AFTER + SLACK
        assert "acked" not in clock.states()
        assert [i["state"] for i in listing(w)] == ["open"]
    finally:
        d.stop()
        w.close()
    log = d.logtext()
    assert STRANGER not in log and STRANGER[1:] not in log
    assert reply not in log and "Flat 9B" not in log


# ------------------------------------------------------------------- one key, one text


def test_five_alarms_for_one_key_give_one_text(
    mosquitto: Mosquitto, sink: Sink, twilio: FakeTwilio, daemon_factory: Any
) -> None:
    d, w, clock = start(daemon_factory, mosquitto, sink, twilio_section(twilio) + policy("twilio"))
    try:
        for _ in range(5):
            w.publish(TOPIC, ALARM)
        clock.event("opened")
        wait_for(lambda: twilio.sent(), 10, "alex's text")
        time.sleep(1.5)  # the other four are handled meanwhile (each joins)
        assert len(twilio.sent()) == 1
        assert clock.states() == ["opened"]
        assert len(listing(w)) == 1
    finally:
        d.stop()
        w.close()


# ------------------------------------------------------------------- kill -9 between steps


def test_a_kill_between_steps_keeps_the_next_step_on_time_and_sends_none_twice(
    mosquitto: Mosquitto, sink: Sink, twilio: FakeTwilio, daemon_factory: Any
) -> None:
    after = 6.0
    d, w, clock = start(
        daemon_factory, mosquitto, sink, twilio_section(twilio) + policy("twilio", after)
    )
    try:
        opened_at, code = open_incident(w, clock)
        wait_for(lambda: w.states("sent"), 10, "alex's text sent")
        d.kill()  # SIGKILL: no goodbye
        killed_at = time.monotonic()
        assert killed_at - opened_at < after - 2, "too slow to kill between the steps"
        d.start()  # the same state directory
        wait_for(clock.sam, after + 15, "sam's text after the restart")
        [(sam_at, body)] = clock.sam()
        assert body == f"Smoke in the kitchen ACK {code}"
        took = sam_at - opened_at
        assert after - 0.5 <= took <= after + SLACK, took
        time.sleep(1.0)
        assert bodies(twilio) == [(ALEX_E164, f"Smoke in the kitchen Reply ACK {code}")]
    finally:
        d.stop()
        w.close()


# the modem returns every text on the SIM at its first read; twilio's and android's first look
# after a start reads from the stored mark, and could skip a reply that came meanwhile
@pytest.mark.parametrize("way", ["twilio", "android"])
def test_a_reply_that_came_while_the_daemon_was_down_acknowledges_at_its_start(
    way: str,
    request: pytest.FixtureRequest,
    mosquitto: Mosquitto,
    sink: Sink,
    daemon_factory: Any,
) -> None:
    after = 5.0
    section, arrive = _way(request, way)
    d, w, clock = start(daemon_factory, mosquitto, sink, section + policy(way, after))
    try:
        opened_at, code = open_incident(w, clock)
        wait_for(lambda: w.states("sent"), 10, "alex's text sent")
        d.kill()
        arrive(ALEX_E164, f"ACK {code}")  # alex answers while the Pi reboots
        d.start()
        acked = clock.event("acked", after)[1]
        assert acked["id"] == code and acked["by"] == "alex", acked
        time.sleep(max(0.0, opened_at + after + SLACK - time.monotonic()))
        assert clock.sam() == []
        assert "escalated" not in clock.states()
    finally:
        d.stop()
        w.close()


# ----------------------------------------------------------------------- resolve_when


def test_resolve_when_resolves_and_says_so(
    mosquitto: Mosquitto, sink: Sink, twilio: FakeTwilio, daemon_factory: Any
) -> None:
    d, w, clock = start(daemon_factory, mosquitto, sink, twilio_section(twilio) + policy("twilio"))
    try:
        opened_at, code = open_incident(w, clock)
        wait_for(lambda: twilio.sent(), 10, "alex's text")
        w.publish(TOPIC, CLEAR)
        resolved = clock.event("resolved")[1]
        assert resolved["id"] == code, resolved
        wait_for(lambda: len(twilio.sent()) >= 2, 10, "the resolution's text")
        assert bodies(twilio)[1] == (ALEX_E164, "Resolved: Smoke in the kitchen")
        wait_for(lambda: listing(w) == [], 5, "an empty listing")
        no_second_step(clock, opened_at)
        assert len(twilio.sent()) == 2
    finally:
        d.stop()
        w.close()


# ------------------------------------------------------------------- an idle daemon


def test_an_idle_daemon_reads_no_inbox_after_its_first_look(
    mosquitto: Mosquitto,
    sink: Sink,
    twilio: FakeTwilio,
    phone: FakeAndroid,
    daemon_factory: Any,
) -> None:
    def phone_reads() -> int:
        return sum(1 for r in list(phone.requests) if r.method == "GET" and r.path == "/inbox")

    extra = twilio_section(twilio) + android_section(phone) + policy("twilio")
    d, w, _ = start(daemon_factory, mosquitto, sink, extra)
    try:
        wait_for(lambda: twilio_reads(twilio) and phone_reads(), 10, "the first look at each inbox")
        time.sleep(5.0)  # five polls' worth
        assert (twilio_reads(twilio), phone_reads()) == (1, 1)
    finally:
        d.stop()
        w.close()
