"""mqtt.py against a real Mosquitto (issue 16): our errors at the edge, the session-present
flag of every connect, and the retain flag reaching the Message."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from mqtt2sms import mqtt
from mqtt2sms.config import MqttConfig
from mqtt2sms.config.model import TLSConfig
from mqtt2sms.errors import BrokerUnreachableError, Mqtt2SmsError, MqttError
from mqtt2sms.model import Message
from tests.harness import Mosquitto, free_port, have_mosquitto

PROTOCOLS = ["3.1.1", "5"]


MakeBroker = Callable[..., Mosquitto]


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[MakeBroker]:
    """Starts a Mosquitto with the harness's options (users=, persistence=); stops it after."""
    if not have_mosquitto():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    started: list[Mosquitto] = []

    def make(**kw: object) -> Mosquitto:
        m = Mosquitto(tmp_path / f"mosquitto{len(started)}", **kw)  # type: ignore[arg-type]
        started.append(m)
        m.start()
        return m

    yield make
    for m in started:
        m.stop()


@pytest.fixture
def mosquitto(make_broker: MakeBroker) -> Mosquitto:
    return make_broker()


def wait_until(what: Callable[[], bool], seconds: float = 10.0) -> None:
    end = time.monotonic() + seconds
    while not what():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Recorder:
    """An MqttLink's owner: what it was told, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.messages: list[Message] = []

    def session(self, present: bool) -> None:
        self.calls.append(("session", present))

    def online(self, up: bool) -> None:
        self.calls.append(("online", up))

    def message(self, msg: Message) -> None:
        self.messages.append(msg)

    def sessions(self) -> list[object]:
        return [v for k, v in self.calls if k == "session"]


def link(cfg: MqttConfig, rec: Recorder, filters: tuple[str, ...] = ("home/#",)) -> mqtt.MqttLink:
    return mqtt.MqttLink(
        cfg, filters, rec.message, rec.online, utcnow, on_session=rec.session
    )  # fmt: skip


# -- errors: ours, never ConnectionError / OSError / ssl.SSLError ------------------------------


def test_publish_once_to_a_closed_port_is_broker_unreachable() -> None:
    port = free_port()
    cfg = MqttConfig(port=port)
    where = f"cannot reach broker 127.0.0.1:{port}"
    with pytest.raises(BrokerUnreachableError, match=where) as info:
        mqtt.publish_once(cfg, "home/x", "hi", "t-closed", timeout=2)
    assert isinstance(info.value, MqttError) and isinstance(info.value, Mqtt2SmsError)
    assert not isinstance(info.value, OSError)  # ConnectionError is an OSError
    assert isinstance(info.value.__cause__, OSError)


def test_publish_once_refused_by_the_broker_is_our_mqtt_error(make_broker: MakeBroker) -> None:
    m = make_broker(users={"house": "pw"})
    cfg = MqttConfig(port=m.port, username="house", password="wrong")
    for n in range(10):  # the broker's hang-up races the publish: it once leaked RuntimeError
        with pytest.raises(MqttError, match="refused") as info:
            mqtt.publish_once(cfg, "home/x", "hi", f"t-refused-{n}", timeout=5)
        assert not isinstance(info.value, BrokerUnreachableError | OSError)


@pytest.mark.parametrize("which", ["ca_certs", "certfile"])
def test_tls_files_that_do_not_load_are_our_mqtt_error(tmp_path: Path, which: str) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    cfg = MqttConfig(port=free_port(), tls=TLSConfig(**{which: str(junk)}))
    with pytest.raises(MqttError, match=r"mqtt\.tls") as info:
        mqtt.publish_once(cfg, "home/x", "hi", "t-tls", timeout=2)
    assert not isinstance(info.value, OSError)
    with pytest.raises(MqttError, match=r"mqtt\.tls"):
        mqtt.MqttLink(cfg, [], lambda _m: None, lambda _o: None, utcnow)


def test_publish_once_to_a_topic_paho_refuses_is_our_mqtt_error(mosquitto: Mosquitto) -> None:
    with pytest.raises(MqttError, match="cannot publish"):
        mqtt.publish_once(MqttConfig(port=mosquitto.port), "home/+", "hi", "t-topic", timeout=2)


def test_publish_once_publishes(mosquitto: Mosquitto) -> None:
    rec = Recorder()
    lk = link(MqttConfig(port=mosquitto.port, client_id="t-pub-sub"), rec)
    lk.start()
    try:
        wait_until(lambda: ("online", True) in rec.calls)
        mqtt.publish_once(MqttConfig(port=mosquitto.port), "home/x", "hi", "t-pub", timeout=5)
        wait_until(lambda: len(rec.messages) == 1)
        assert rec.messages[0].payload == b"hi"
    finally:
        lk.stop()


# -- the session-present flag of every connect ----------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_each_connect_reports_whether_the_broker_kept_the_session(
    mosquitto: Mosquitto, protocol: str
) -> None:
    cfg = MqttConfig(port=mosquitto.port, client_id=f"t-session-{protocol}", protocol=protocol)
    first = Recorder()
    lk = link(cfg, first)
    lk.start()
    wait_until(lambda: ("online", True) in first.calls)
    lk.stop()
    # told before the subscriptions go out, so before the link says it is online
    assert first.calls[:2] == [("session", False), ("online", True)]

    again = Recorder()  # the same client id: the broker kept our session
    lk = link(cfg, again)
    lk.start()
    try:
        wait_until(lambda: ("online", True) in again.calls)
    finally:
        lk.stop()
    assert again.sessions() == [True]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_session_wiped_by_a_clean_start_reports_false(
    mosquitto: Mosquitto, protocol: str
) -> None:
    cfg = MqttConfig(port=mosquitto.port, client_id=f"t-wiped-{protocol}", protocol=protocol)
    rec = Recorder()
    lk = link(cfg, rec)
    lk.start()
    wait_until(lambda: ("online", True) in rec.calls)
    lk.stop()
    # someone connects with our client id and a clean start: the broker drops our session
    wiper = mqtt.make_client(cfg, cfg.client_id, clean=True, manual_ack=False)
    wiper.connect(**mqtt.connect_kwargs(cfg, clean=True))
    wiper.disconnect()
    rec = Recorder()
    lk = link(cfg, rec)
    lk.start()
    try:
        wait_until(lambda: ("online", True) in rec.calls)
    finally:
        lk.stop()
    assert rec.sessions() == [False]


def test_a_broker_that_lost_its_state_is_reported_on_the_reconnect(
    make_broker: MakeBroker,
) -> None:
    """A broker restarted without persistence: paho reconnects by itself, session gone."""
    m = make_broker(persistence=False)
    rec = Recorder()
    lk = link(MqttConfig(port=m.port, client_id="t-reset"), rec)
    lk.start()
    try:
        wait_until(lambda: rec.sessions() == [False])
        m.restart()
        wait_until(lambda: len(rec.sessions()) == 2, 20)
        wait_until(lambda: rec.calls.count(("online", True)) == 2)
    finally:
        lk.stop()
    assert rec.sessions() == [False, False]
    # each time told before the link went online again
    assert [c for c in rec.calls if c != ("online", False)] == [
        ("session", False),
        ("online", True),
        ("session", False),
        ("online", True),
    ]


# -- the retain flag reaches the Message ----------------------------------------------------


def test_retained_and_live_messages_are_told_apart(mosquitto: Mosquitto) -> None:
    pub = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="t-retainer")
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    try:
        pub.publish("home/door", "open", qos=1, retain=True).wait_for_publish(5)
        rec = Recorder()
        lk = link(MqttConfig(port=mosquitto.port, client_id="t-retained"), rec)
        lk.start()
        try:
            wait_until(lambda: len(rec.messages) == 1)
            wait_until(lambda: ("online", True) in rec.calls)
            pub.publish("home/door", "open", qos=1).wait_for_publish(5)
            wait_until(lambda: len(rec.messages) == 2)
        finally:
            lk.stop()
    finally:
        pub.loop_stop()
        pub.disconnect()
        pub.publish("home/door", "", qos=1, retain=True)  # never leave a retained message
    old, live = rec.messages
    assert (old.topic, old.payload, old.retained) == ("home/door", b"open", True)
    assert (live.topic, live.payload, live.retained) == ("home/door", b"open", False)
    assert old.digest == live.digest  # one (topic, payload), whichever way it came


def test_one_retained_message_under_two_overlapping_filters_comes_twice_with_one_digest(
    mosquitto: Mosquitto,
) -> None:
    """What the engine must recognise (issue 16, 5 d): the broker sends it once per filter."""
    pub = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="t-retainer2")
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    try:
        pub.publish("home/basement/leak", "wet", qos=1, retain=True).wait_for_publish(5)
    finally:
        pub.loop_stop()
        pub.disconnect()
    rec = Recorder()
    cfg = MqttConfig(port=mosquitto.port, client_id="t-overlap")
    lk = link(cfg, rec, ("home/+/leak", "home/basement/#"))
    lk.start()
    try:
        wait_until(lambda: len(rec.messages) == 2)
    finally:
        lk.stop()
    assert all(m.retained for m in rec.messages)
    assert len({(m.topic, m.digest) for m in rec.messages}) == 1


def test_the_session_callback_is_optional(mosquitto: Mosquitto) -> None:
    online = threading.Event()
    lk = mqtt.MqttLink(
        MqttConfig(port=mosquitto.port, client_id="t-none"),
        [],
        lambda _m: None,
        lambda up: online.set() if up else None,
        utcnow,
    )
    lk.start()
    try:
        assert online.wait(10)
    finally:
        lk.stop()
