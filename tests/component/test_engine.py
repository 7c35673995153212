"""The engine in-process: a real SQLite outbox, FakeTransports, fake clocks, no sleeps.

Each fault the integration tests drive through a subprocess is here in milliseconds:
outages, failover, expiry, quiet hours, the cap across a restart, reload, rows left in
`sending`, wall-clock steps, a disk that refuses writes, an unexpected error.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mqtt2sms import elapsed
from mqtt2sms.config import Loaded, parse_config
from mqtt2sms.engine import Engine
from mqtt2sms.errors import PermanentDeliveryError, StorageError, TemporaryDeliveryError
from mqtt2sms.model import Message
from mqtt2sms.outbox import Outbox
from mqtt2sms.transports.base import OutgoingText, Receipt, ReceivedText
from mqtt2sms.transports.fake import FakeTransport

UTC = dt.UTC
START = dt.datetime(2026, 6, 1, 16, 0, tzinfo=UTC)

BASE = """\
contacts:
  alex: {number: "+1 (555) 123-4567", carrier: tmobile}
  sam: {number: "+1 555 765 4321", carrier: verizon}
twilio: {account_sid: ACtest, auth_token: x, from: "+15550001111"}
"""


class Clock:
    def __init__(self) -> None:
        self.w = START
        self.m = 1000.0

    def wall(self) -> dt.datetime:
        return self.w

    def mono(self) -> float:
        return self.m

    def advance(self, seconds: float) -> None:
        self.w += dt.timedelta(seconds=seconds)
        self.m += seconds

    def step_wall(self, seconds: float) -> None:
        self.w += dt.timedelta(seconds=seconds)


class FullDisk(Outbox):
    """An outbox whose durable commits fail while ``full`` is set (a full SD card)."""

    full = False

    def enqueue(self, items: Any) -> None:
        if self.full:
            raise StorageError("database or disk is full")  # what the outbox raises
        super().enqueue(items)


_RIGS: list[Rig] = []


@pytest.fixture(autouse=True)
def _close_every_rig() -> Iterator[None]:
    """Each test's rigs are stopped and their outboxes closed (Python 3.13 warns of an
    unclosed SQLite connection, and warnings are errors here)."""
    yield
    while _RIGS:
        r = _RIGS.pop()
        r.engine.stop(0)
        r.outbox.close()


class Rig:
    def __init__(self, tmp: Path, extra: str = "", limits: str = "{per_recipient: 0}") -> None:
        _RIGS.append(self)
        self.tmp = tmp
        self.clock = Clock()
        self.published: list[tuple[str, str, bool]] = []
        self.acked: list[int] = []
        self.smtp = FakeTransport("smtp")
        self.twilio = FakeTransport("twilio")
        self.ids = itertools.count(1)
        self.mids = itertools.count(1)
        self.loaded = self.load(extra, limits)
        self.outbox: Outbox = FullDisk(str(tmp / "outbox.sqlite3"))
        self.engine = self.make()

    def load(self, extra: str = "", limits: str = "{per_recipient: 0}") -> Loaded:
        text = BASE + f"limits: {limits}\n" + textwrap.dedent(extra)
        if "defaults:" not in extra:
            text += "defaults: {to: [alex]}\n"
        return parse_config(text, "config.yaml", {"STATE_DIRECTORY": str(self.tmp)})

    def make(self, threaded: bool = False) -> Engine:
        e = Engine(
            self.loaded.config,
            self.outbox,
            {"smtp": self.smtp, "twilio": self.twilio},
            lambda t, p, r: self.published.append((t, p, r)),
            lambda m: self.acked.append(m.mid),
            tz=UTC,
            wall=self.clock.wall,
            mono=self.clock.mono,
            boot_id="boot-1",
            threaded=threaded,
            new_id=lambda: f"a{next(self.ids)}",
        )
        e.start()
        return e

    def restart(self) -> None:
        self.engine.stop(0)
        self.engine = self.make()

    def message(self, payload: str, topic: str = "home/alerts/sms", dup: bool = False) -> Message:
        return Message(topic, payload.encode(), self.clock.wall(), mid=next(self.mids), dup=dup)

    def send(self, payload: str, topic: str = "home/alerts/sms") -> Message:
        m = self.message(payload, topic)
        self.engine.submit(m)
        self.engine.drain()
        return m

    def tick(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.engine.drain()

    def events(self, state: str | None = None) -> list[dict[str, Any]]:
        out = [json.loads(p) for t, p, _ in self.published if t == "mqtt2sms/event"]
        return [e for e in out if state is None or e["state"] == state]

    def stats(self) -> dict[str, Any]:
        self.engine.publish_stats()
        return json.loads([p for t, p, _ in self.published if t == "mqtt2sms/stats"][-1])

    def bodies(self, fake: FakeTransport) -> list[str]:
        return [t.body for t in fake.delivered]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.engine.stop(0)
    r.outbox.close()


def down(_t: OutgoingText) -> Receipt:
    raise TemporaryDeliveryError("connection refused")


def test_a_healthy_alert_is_sent_then_acknowledged_and_recorded(rig: Rig) -> None:
    m = rig.send("Garage door open")
    assert rig.bodies(rig.smtp) == ["Garage door open"]
    assert rig.acked == [m.mid]
    (ev,) = rig.events("sent")
    assert ev["to"] == "alex" and ev["via"] == "smtp" and ev["attempts"] == 1
    assert rig.outbox.recent()[0].state == "sent"
    assert rig.outbox.queued_count() == 0


def test_an_outage_queues_in_order_backs_off_the_way_out_and_recovers(rig: Rig) -> None:
    rig.smtp._call = down
    for i in range(3):
        rig.send(f"alert {i}")
    # one try found the way out down; the next texts were committed without hammering it
    assert len(rig.smtp.sent) == 1
    assert rig.acked == [1, 2, 3]
    assert rig.outbox.queued_count() == 3
    deferred = rig.events("deferred")
    assert len(deferred) == 3
    # next_try is the way out's real next try, not "now"
    first_try = dt.datetime.fromisoformat(deferred[1]["next_try"])
    assert first_try > rig.clock.wall()
    assert rig.stats()["last_error"].startswith("smtp: connection refused")
    rig.smtp._call = None
    rig.tick(601)
    assert rig.bodies(rig.smtp) == ["alert 0", "alert 1", "alert 2"]
    assert rig.outbox.queued_count() == 0
    assert rig.stats()["last_error"] is None
    assert rig.stats()["sent_today"] == 3


def test_failover_after_failover_after_of_temporary_failures(rig: Rig) -> None:
    rig.loaded = rig.load("defaults: {to: [alex], via: [smtp, twilio], failover_after: 2m}\n")
    rig.restart()
    rig.smtp._call = down
    rig.send("Leak")
    assert rig.twilio.sent == []
    rig.tick(60)
    assert rig.twilio.sent == []
    rig.tick(61)
    assert rig.bodies(rig.twilio) == ["Leak"]
    assert rig.twilio.sent[0].address == "+15551234567"
    assert rig.events("sent")[0]["via"] == "twilio"


def test_a_permanent_failure_fails_over_at_once(rig: Rig) -> None:
    rig.loaded = rig.load("defaults: {to: [alex], via: [smtp, twilio]}\n")
    rig.restart()
    rig.smtp._outcomes = [PermanentDeliveryError("550 no such user")]
    rig.send("Smoke")
    assert rig.bodies(rig.twilio) == ["Smoke"]
    assert rig.outbox.queued_count() == 0
    assert rig.acked == [1]


def test_a_permanent_failure_on_the_last_way_out_fails_the_text(rig: Rig) -> None:
    rig.smtp._outcomes = [PermanentDeliveryError("550 no such user")]
    rig.send("x")
    (ev,) = rig.events("failed")
    assert "550" in ev["error"]
    assert rig.stats()["failed_today"] == 1


def test_a_text_expires_after_max_age_of_elapsed_time(tmp_path: Path) -> None:
    rig = Rig(tmp_path, limits="{per_recipient: 0, max_age: 1h}")
    rig.smtp._call = down
    rig.send("old news")
    rig.tick(3500)
    assert rig.events("expired") == []
    rig.tick(101)
    (ev,) = rig.events("expired")
    assert "not delivered within 3600s" in ev["error"]
    assert rig.stats()["failed_today"] == 1
    rig.engine.stop(0)


def test_a_wall_clock_stepped_forward_two_days_expires_nothing(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.smtp._call = down
    rig.send("leak in the basement")
    rig.clock.step_wall(2 * 86400)  # NTP after a power cut
    with caplog.at_level(logging.WARNING, "mqtt2sms"):
        rig.tick(1)
    assert "wall clock stepped forward by 2d 00:00:00" in caplog.text
    rig.smtp._call = None
    rig.tick(601)
    assert rig.bodies(rig.smtp) == ["leak in the basement"]
    assert rig.events("expired") == []


def test_a_wall_clock_stepped_back_does_not_stretch_a_cooldown(tmp_path: Path) -> None:
    rig = Rig(tmp_path, "rules:\n  - {name: door, topic: door, cooldown: 3s}\n")
    rig.send("open", "door")
    rig.clock.step_wall(-86400)
    rig.tick(4)
    rig.send("open again", "door")
    assert rig.bodies(rig.smtp) == ["open", "open again"]
    assert rig.events("suppressed") == []
    rig.engine.stop(0)


def test_a_cooldown_survives_a_restart(tmp_path: Path) -> None:
    rig = Rig(tmp_path, "rules:\n  - {name: door, topic: door, cooldown: 1h}\n")
    rig.send("open", "door")
    rig.restart()
    rig.tick(60)
    rig.send("open", "door")
    assert len(rig.events("suppressed")) == 1
    rig.tick(3600)
    rig.send("open", "door")
    assert rig.bodies(rig.smtp)[-1] == "open (+1 more)"
    rig.engine.stop(0)


def test_quiet_hours_hold_without_ageing_the_text(tmp_path: Path) -> None:
    rig = Rig(
        tmp_path,
        limits='{per_recipient: 0, max_age: 1h, quiet_hours: {start: "22:00", end: "07:00"}}',
    )
    rig.clock.w = dt.datetime(2026, 6, 1, 23, 0, tzinfo=UTC)
    rig.send("normal at night")
    (ev,) = rig.events("deferred")
    assert ev["next_try"].startswith("2026-06-02T07:00")
    assert rig.smtp.sent == []
    rig.tick(8 * 3600 + 30)
    assert rig.bodies(rig.smtp) == ["normal at night"]
    assert rig.events("expired") == []
    rig.engine.stop(0)


def test_a_held_text_follows_the_wall_clock_end_across_a_step(tmp_path: Path) -> None:
    rig = Rig(tmp_path, limits='{per_recipient: 0, quiet_hours: {start: "22:00", end: "07:00"}}')
    rig.clock.w = dt.datetime(2026, 6, 1, 23, 0, tzinfo=UTC)
    rig.send("normal at night")
    rig.clock.step_wall(8 * 3600)  # the clock was 8 hours behind: it is 07:00 already
    rig.tick(1)
    assert rig.bodies(rig.smtp) == ["normal at night"]
    rig.engine.stop(0)


def test_removing_quiet_hours_at_a_reload_releases_held_texts(tmp_path: Path) -> None:
    rig = Rig(tmp_path, limits='{per_recipient: 0, quiet_hours: {start: "22:00", end: "07:00"}}')
    rig.clock.w = dt.datetime(2026, 6, 1, 23, 0, tzinfo=UTC)
    rig.send("normal at night")
    rig.engine.reload(rig.load())
    rig.tick(1)
    assert rig.bodies(rig.smtp) == ["normal at night"]
    rig.engine.stop(0)


def test_the_daily_cap_holds_across_a_restart(tmp_path: Path) -> None:
    rig = Rig(tmp_path, limits="{per_recipient: 0, daily_cap: 2}")
    rig.send("one")
    rig.send("two")
    rig.restart()
    rig.send("three")
    assert rig.bodies(rig.smtp) == ["one", "two"]
    (ev,) = rig.events("suppressed")
    assert "daily cap of 2" in ev["error"]
    rig.engine.stop(0)


def test_counts_of_texts_sent_from_the_queue_survive_a_restart(rig: Rig) -> None:
    rig.smtp._call = down
    rig.send("during the outage")
    rig.smtp._call = None
    rig.tick(601)
    assert rig.stats()["sent_today"] == 1
    rig.clock.advance(2)
    rig.engine.drain()
    rig.restart()
    stats = rig.stats()
    assert stats["sent_today"] == 1
    assert stats["last_error"] is None


def test_a_row_left_sending_by_a_crash_is_sent_at_the_next_start(rig: Rig) -> None:
    rig.smtp._call = down
    rig.send("interrupted")
    (row,) = rig.outbox.open_rows()
    rig.outbox.update(row.id, "sending")
    rig.smtp._call = None
    rig.restart()
    rig.engine.drain()
    assert rig.bodies(rig.smtp) == ["interrupted"]


def test_a_redelivery_already_handled_is_acknowledged_without_a_text(rig: Rig) -> None:
    m = rig.send("once")
    again = Message(m.topic, m.payload, m.received_at, mid=m.mid, dup=True)
    rig.engine.submit(again)
    rig.engine.drain()
    assert rig.bodies(rig.smtp) == ["once"]
    assert rig.acked == [m.mid, m.mid]


def test_a_full_disk_holds_the_message_and_commits_it_when_space_returns(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    assert isinstance(rig.outbox, FullDisk)
    rig.smtp._call = down
    rig.outbox.full = True
    with caplog.at_level(logging.ERROR, "mqtt2sms"):
        rig.send("water on the floor")
    assert rig.acked == []  # not committed: the broker must not forget it
    assert rig.events("deferred") == []  # nothing was committed, nothing deferred
    assert "cannot commit" in caplog.text
    assert rig.stats()["last_error"].startswith("outbox:")
    assert rig.stats()["queued"] == 1
    rig.tick(2)
    assert rig.acked == []
    rig.outbox.full = False
    rig.tick(30)
    assert rig.acked == [1]
    assert rig.outbox.queued_count() == 1
    assert len(rig.events("deferred")) == 1


def test_a_full_disk_with_the_way_out_back_sends_from_memory(rig: Rig) -> None:
    assert isinstance(rig.outbox, FullDisk)
    rig.smtp._call = down
    rig.outbox.full = True
    rig.send("water on the floor")
    rig.smtp._call = None
    rig.tick(601)
    assert rig.bodies(rig.smtp) == ["water on the floor"]
    assert rig.acked == [1]


def test_a_full_disk_with_smtp_up_texts_nobody_twice(rig: Rig) -> None:
    assert isinstance(rig.outbox, FullDisk)
    rig.outbox.full = True
    for i in range(3):
        rig.send(f"alert {i}")
    rig.tick(5)
    assert rig.bodies(rig.smtp) == ["alert 0", "alert 1", "alert 2"]
    assert rig.acked == [1, 2, 3]


def test_an_unexpected_error_in_a_transport_keeps_the_text(rig: Rig) -> None:
    rig.smtp._outcomes = [UnicodeEncodeError("ascii", "pässwört", 1, 2, "not ascii")]
    rig.send("text")
    assert rig.acked == [1]
    assert rig.outbox.queued_count() == 1
    assert "unexpected error" in rig.stats()["last_error"]


def test_reload_applies_new_rules(rig: Rig) -> None:
    rig.send("x", "sensors/new")
    assert rig.smtp.sent == []
    done = rig.engine.reload(rig.load("rules:\n  - {name: new, topic: sensors/new}\n"))
    rig.engine.drain()
    assert done.is_set()
    rig.send("y", "sensors/new")
    assert rig.bodies(rig.smtp) == ["y"]


def test_throttle_state_is_saved_per_key(tmp_path: Path) -> None:
    rig = Rig(tmp_path, "rules:\n  - {name: t, topic: 's/+', key: '{{ topic }}', cooldown: 1h}\n")
    for i in range(50):
        rig.send("on", f"s/{i}")
    rig.tick(2)
    cds, _ = rig.outbox.load_throttle()
    assert len(cds) == 50
    assert rig.outbox.get_kv("throttle") is None  # no single blob rewritten every second
    rig.engine.stop(0)


def test_the_elapsed_clock_carries_on_across_a_restart(rig: Rig) -> None:
    before = rig.engine.now_e()
    rig.clock.advance(10)
    rig.restart()
    assert rig.engine.now_e() == pytest.approx(before + 10)
    saved = elapsed.Saved.from_json(rig.outbox.get_kv("clock"))
    assert saved is not None and saved.boot == "boot-1"


def test_a_slow_way_out_holds_back_no_other(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    release = threading.Event()

    def slow(t: OutgoingText) -> Receipt:
        release.wait(10)
        return Receipt("twilio", "SM1")

    rig.twilio._call = slow
    rig.loaded = rig.load(
        "rules:\n  - {name: modem, topic: slow, to: [sam], via: [twilio]}\n"
        "  - {name: fast, topic: fast, to: [alex]}\n"
    )
    rig.engine.stop(0)
    rig.engine = rig.make(threaded=True)
    try:
        rig.engine.submit(rig.message("stuck", "slow"))
        rig.engine.submit(rig.message("goes", "fast"))
        deadline = threading.Event()
        for _ in range(200):
            if rig.acked == [2]:
                break
            deadline.wait(0.02)
        assert rig.bodies(rig.smtp) == ["goes"]
        assert rig.acked == [2]  # the fast message is acknowledged; the slow one waits
        release.set()
        for _ in range(200):
            if sorted(rig.acked) == [1, 2]:
                break
            deadline.wait(0.02)
        assert sorted(rig.acked) == [1, 2]
    finally:
        release.set()
        rig.engine.stop(2)


def test_a_dry_run_text_says_so_in_its_event(rig: Rig) -> None:
    rig.smtp._outcomes = [Receipt("smtp", "m1", "new/1", dry_run=True)]
    rig.send("pretend")
    (ev,) = rig.events("sent")
    assert ev["dry_run"] is True and ev["via"] == "maildir"


def test_delivery_reports_are_polled_until_final(rig: Rig) -> None:
    rig.loaded = rig.load("defaults: {to: [alex], via: [twilio]}\n")
    rig.restart()
    rig.send("Leak")
    (sent,) = rig.events("sent")
    rig.tick(16)
    assert rig.twilio.report_calls[-1] == [sent["id"]]
    assert rig.events("delivered") == []  # pending: nothing to say
    rig.twilio.report(sent["id"], "delivered")
    rig.tick(16)
    (ev,) = rig.events("delivered")
    assert ev["id"] == sent["id"] and ev["via"] == "twilio"
    asked = len(rig.twilio.report_calls)
    rig.tick(16)
    assert len(rig.twilio.report_calls) == asked  # a final text is not asked about again


def test_an_undelivered_report_moves_the_text_to_the_next_way_out(rig: Rig) -> None:
    rig.loaded = rig.load("defaults: {to: [alex], via: [twilio, smtp]}\n")
    rig.restart()
    rig.send("Smoke")
    (sent,) = rig.events("sent")
    rig.twilio.report(sent["id"], "undelivered", "30003 unreachable")
    rig.tick(16)
    (ev,) = rig.events("undelivered")
    assert ev["error"] == "30003 unreachable"
    rig.tick(1)
    assert rig.bodies(rig.smtp) == ["Smoke"]


def test_received_texts_are_published_after_the_first_look(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    text = BASE.replace('"+15550001111"}', '"+15550001111", receive: true}')
    text += "defaults: {to: [alex]}\n"
    rig.loaded = parse_config(text, "config.yaml", {"STATE_DIRECTORY": str(tmp_path)})
    rig.twilio.receives = True  # what the registry builds from `receive: true`
    rig.twilio.inbox.append(ReceivedText("+15551234567", "old, already there"))
    rig.restart()
    rig.tick(16)  # the first look takes the mark
    rig.twilio.inbox.append(ReceivedText("+15551234567", "ACK 417"))
    rig.twilio.inbox.append(ReceivedText("+15559999999", "spam"))
    rig.tick(16)
    got = [json.loads(p) for t, p, _ in rig.published if t == "mqtt2sms/received"]
    assert [(g["contact"], g["text"], g["via"]) for g in got] == [("alex", "ACK 417", "twilio")]
    rig.restart()
    rig.tick(16)
    got = [json.loads(p) for t, p, _ in rig.published if t == "mqtt2sms/received"]
    assert len(got) == 1  # a restart never publishes a text twice
    rig.engine.stop(0)


def test_a_message_whose_handling_fails_is_retried_and_not_suppressed_by_its_own_cooldown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = Rig(tmp_path, "rules:\n  - {name: door, topic: door, cooldown: 1h}\n")
    real = rig.engine._dispatch
    calls = {"n": 0}

    def once(*a: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug")
        real(*a)

    monkeypatch.setattr(rig.engine, "_dispatch", once)
    rig.send("open", "door")
    assert rig.acked == [] and rig.smtp.sent == []
    assert "internal: RuntimeError" in rig.stats()["last_error"]
    rig.tick(6)
    assert rig.bodies(rig.smtp) == ["open"]
    assert rig.events("suppressed") == []
    assert rig.acked == [1]
    rig.engine.stop(0)


def test_a_text_with_no_configured_way_out_fails_visibly(rig: Rig) -> None:
    rig.loaded = rig.load("defaults: {to: [alex], via: [twilio]}\n")
    rig.engine.stop(0)
    rig.engine = Engine(
        rig.loaded.config,
        rig.outbox,
        {"smtp": rig.smtp},  # twilio is not built
        lambda t, p, r: rig.published.append((t, p, r)),
        lambda m: rig.acked.append(m.mid),
        tz=UTC,
        wall=rig.clock.wall,
        mono=rig.clock.mono,
        boot_id="boot-1",
        threaded=False,
    )
    rig.engine.start()
    rig.send("Leak")
    (ev,) = rig.events("failed")
    assert "transport twilio is not configured" in ev["error"]
    assert rig.stats()["failed_today"] == 1
    assert rig.acked == [1]
