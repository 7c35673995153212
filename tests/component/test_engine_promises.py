"""The promises a red team broke, each with the fault landing inside a send.

In-process, real SQLite, fake clocks. A fault "during a send" is made by the transport
itself: while the engine waits for that send, the transport does what another thread (the
engine applying a reload, paho handing over a redelivery) or a kill would do at that moment.
Every text is counted per recipient afterwards.
"""

from __future__ import annotations

import collections
import datetime as dt
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mqtt2sms.config import Loaded, parse_config
from mqtt2sms.engine import Session
from mqtt2sms.errors import StorageError, TemporaryDeliveryError
from mqtt2sms.model import Message
from mqtt2sms.transports.base import OutgoingText, Receipt
from mqtt2sms.transports.fake import FakeTransport
from mqtt2sms.workers import Done, Job, run
from tests.component.test_engine import BASE, UTC, FullDisk
from tests.component.test_engine import Rig as BaseRig

KIM = '  kim: {number: "+1 555 222 3333", carrier: tmobile}\n'


class Rig(BaseRig):
    """The engine tests' rig, with a third contact and a way to change alex's number."""

    alex: str | None = '"+1 (555) 123-4567"'  # None: alex is removed

    def load(self, extra: str = "", limits: str = "{per_recipient: 0}") -> Loaded:
        base = BASE.replace("twilio:", KIM + "twilio:", 1)
        if self.alex is None:
            base = "\n".join(x for x in base.split("\n") if not x.startswith("  alex:"))
        else:
            base = base.replace('"+1 (555) 123-4567"', self.alex)
        text = base + f"limits: {limits}\n" + textwrap.dedent(extra)
        if "defaults:" not in extra:
            text += "defaults: {to: [alex]}\n"
        return parse_config(text, "config.yaml", {"STATE_DIRECTORY": str(self.tmp)})


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.engine.stop(0)
    r.outbox.close()


class SteppedWorker:
    """A worker whose sends the test runs one at a time, as a worker thread does: it starts
    the next send only once the engine has taken the last result."""

    def __init__(self, name: str, transport: FakeTransport, done: Callable[[Done], None]) -> None:
        self.name = name
        self.transport = transport
        self.done = done
        self.busy_since: float | None = None
        self.jobs: list[Job] = []

    def start(self) -> None:
        pass

    def put(self, job: Job) -> None:
        self.jobs.append(job)

    def run_one(self) -> None:
        self.done(run(self.name, self.transport, self.jobs.pop(0), lambda: 0.0))

    def recall(self) -> None:
        """Hand back the jobs not started, as not tried (the way out went down)."""
        jobs, self.jobs = self.jobs, []
        for job in jobs:
            self.done(Done(job, self.name, None))

    def stop(self) -> None:
        pass

    def join(self, timeout: float) -> bool:
        return True


def per_recipient(rig: Rig) -> collections.Counter[str]:
    return collections.Counter(t.address for t in rig.smtp.delivered)


def during_send(n: int, fault: Callable[[], None]) -> Callable[[OutgoingText], Receipt]:
    """A transport script whose ``n``-th send (1-based) runs ``fault`` before it returns."""
    count = 0

    def send(t: OutgoingText) -> Receipt:
        nonlocal count
        count += 1
        if count == n:
            fault()
        return Receipt("smtp", t.id, "ok")

    return send


def down(_t: OutgoingText) -> Receipt:
    raise TemporaryDeliveryError("connection refused")


def test_a_reload_while_an_outbox_text_is_sent_sends_it_once(rig: Rig) -> None:
    rig.smtp._call = down
    rig.send("Leak")
    assert rig.outbox.queued_count() == 1
    # the way out is back; the reload is applied while the queued text is on the wire
    rig.smtp._call = during_send(2, lambda: rig.engine._apply_reload(rig.load()))
    rig.tick(601)
    rig.tick(601)
    assert rig.bodies(rig.smtp) == ["Leak"]
    assert rig.outbox.queued_count() == 0
    assert [e["state"] for e in rig.events() if e["state"] != "deferred"] == ["sent"]


def test_a_redelivery_while_the_message_is_being_sent_is_not_sent_again(rig: Rig) -> None:
    m = rig.message("Smoke in the hall")
    again = Message(m.topic, m.payload, m.received_at, dup=True, mid=m.mid)
    # a broker restart mid-send: paho reconnects and the broker sends the message again
    # the engine takes the redelivery while the first send is still on the wire
    rig.smtp._call = during_send(1, lambda: rig.engine._handle(again))
    rig.engine.submit(m)
    rig.engine.drain()
    rig.tick(1)
    assert rig.bodies(rig.smtp) == ["Smoke in the hall"]
    assert rig.acked == [m.mid]


def test_a_redelivery_just_after_the_message_ended_is_acknowledged_not_sent(rig: Rig) -> None:
    m = rig.message("Smoke in the hall")
    again = Message(m.topic, m.payload, m.received_at, dup=True, mid=m.mid)
    rig.smtp._call = during_send(1, lambda: rig.engine.submit(again))
    rig.engine.submit(m)
    rig.engine.drain()
    assert rig.bodies(rig.smtp) == ["Smoke in the hall"]
    assert rig.acked == [m.mid, m.mid]  # each delivery of it gets its PUBACK


def test_a_kill_mid_message_resends_only_the_texts_not_sent(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.loaded = rig.load("defaults: {to: [alex, sam, kim]}\n")
    rig.restart()

    worker = SteppedWorker("smtp", rig.smtp, rig.engine._result)
    rig.engine.workers["smtp"] = worker
    m = rig.message("Water in the basement")
    rig.engine.submit(m)
    rig.engine.drain()
    for _ in range(2):
        worker.run_one()
        rig.engine.drain()
    # two texts were sent and published as sent; the third is next: kill -9 now (the engine
    # is dropped without a stop: nothing more is saved)
    assert len(rig.events("sent")) == 2
    assert rig.acked == []
    # systemd starts it again; the broker redelivers the unacknowledged message
    rig.engine = rig.make()
    rig.engine.submit(Message(m.topic, m.payload, m.received_at, dup=True, mid=m.mid))
    rig.engine.drain()
    assert per_recipient(rig) == {
        "5551234567@tmomail.net": 1,
        "5557654321@vtext.com": 1,
        "5552223333@tmomail.net": 1,
    }
    assert rig.acked == [m.mid]


def test_a_redelivery_of_a_message_handled_whole_sends_nothing(rig: Rig) -> None:
    m = rig.send("Garage door open")
    rig.restart()
    rig.engine.submit(Message(m.topic, m.payload, m.received_at, dup=True, mid=m.mid))
    rig.engine.drain()
    assert rig.bodies(rig.smtp) == ["Garage door open"]
    assert rig.acked == [m.mid, m.mid]


def test_after_a_new_broker_session_an_old_packet_id_is_not_taken_for_a_redelivery(
    rig: Rig,
) -> None:
    m = rig.send("Door open")
    # the broker lost our session: packet ids start again at 1
    rig.engine.submit(Session(present=False))
    rig.engine.drain()
    again = Message(m.topic, m.payload, rig.clock.wall(), dup=True, mid=m.mid)
    rig.engine.submit(again)
    rig.engine.drain()
    assert rig.bodies(rig.smtp) == ["Door open", "Door open"]


def test_a_kept_session_still_recognises_a_redelivery(rig: Rig) -> None:
    m = rig.send("Door open")
    rig.engine.submit(Session(present=True))
    rig.engine.drain()
    rig.engine.submit(Message(m.topic, m.payload, rig.clock.wall(), dup=True, mid=m.mid))
    rig.engine.drain()
    assert rig.bodies(rig.smtp) == ["Door open"]


def retained(rig: Rig, payload: str, topic: str = "home/leak", keep: bool = True) -> None:
    m = rig.message(payload, topic)
    rig.engine.submit(
        Message(m.topic, m.payload, m.received_at, retained=keep, mid=m.mid, qos=m.qos)
    )
    rig.engine.drain()


RETAINED = "rules:\n  - {name: leak, topic: home/leak, retained: true}\n"


def test_a_retained_message_is_acted_on_once_until_it_changes(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RETAINED)
    retained(rig, "Leak")  # at subscribe
    retained(rig, "Leak")  # the same message under a second, overlapping filter
    rig.restart()
    retained(rig, "Leak")  # every reconnect sends it again
    assert rig.bodies(rig.smtp) == ["Leak"]
    retained(rig, "Dry", keep=False)  # a live message changes it
    retained(rig, "Dry")  # ... and the broker kept it
    assert rig.bodies(rig.smtp) == ["Leak", "Dry"]
    retained(rig, "Leak")
    assert rig.bodies(rig.smtp) == ["Leak", "Dry", "Leak"]
    assert len(rig.acked) == 6  # each acknowledged


def test_a_live_message_then_its_retained_copy_is_one_text(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RETAINED)
    retained(rig, "Smoke", keep=False)
    rig.restart()
    retained(rig, "Smoke")
    assert rig.bodies(rig.smtp) == ["Smoke"]


def test_the_embedded_broker_commits_a_text_before_sending_it(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.engine.stop(0)
    make = rig.make

    def committed_first() -> object:
        e = make()
        e.commit_first = True
        return e

    rig.engine = committed_first()  # type: ignore[assignment]
    seen: list[str | None] = []

    def send(t: OutgoingText) -> Receipt:
        row = rig.outbox.get(t.id)
        seen.append(row.state if row else None)
        return Receipt("smtp", t.id, "ok")

    rig.smtp._call = send
    rig.send("Smoke")
    rig.tick(1)
    assert seen == ["sending"]
    assert rig.bodies(rig.smtp) == ["Smoke"]
    assert rig.outbox.recent()[0].state == "sent"
    assert len(rig.events("sent")) == 1


def test_a_clock_stepped_forward_shortens_a_cooldown(tmp_path: Path) -> None:
    rig = Rig(tmp_path, "rules:\n  - {name: door, topic: door, cooldown: 1h}\n")
    rig.send("open", "door")
    # a Pi after a power cut: it came back with the old time; NTP now steps it 3 h forward
    rig.clock.step_wall(3 * 3600)
    rig.tick(1)
    rig.send("open", "door")
    assert rig.bodies(rig.smtp) == ["open", "open"]
    assert rig.events("suppressed") == []
    rig.engine.stop(0)


def test_a_forward_step_before_a_restart_still_counts_after_it(tmp_path: Path) -> None:
    rig = Rig(tmp_path, "rules:\n  - {name: door, topic: door, cooldown: 1h}\n")
    rig.send("open", "door")
    rig.clock.step_wall(3 * 3600)
    rig.tick(1)
    rig.restart()
    rig.send("open", "door")
    assert rig.bodies(rig.smtp) == ["open", "open"]
    rig.engine.stop(0)


def test_a_clock_stepped_back_in_quiet_hours_does_not_hold_a_text_longer(tmp_path: Path) -> None:
    rig = Rig(tmp_path, limits='{per_recipient: 0, quiet_hours: {start: "22:00", end: "07:00"}}')
    rig.clock.w = dt.datetime(2026, 6, 2, 6, 0, tzinfo=UTC)
    rig.send("normal at dawn")
    assert rig.smtp.sent == []
    rig.clock.step_wall(-17 * 3600)  # a bad NTP answer: 13:00 the day before
    rig.tick(1)
    assert rig.bodies(rig.smtp) == ["normal at dawn"]
    rig.engine.stop(0)


def test_a_clock_stepped_back_into_quiet_hours_holds_to_that_window_end(tmp_path: Path) -> None:
    rig = Rig(tmp_path, limits='{per_recipient: 0, quiet_hours: {start: "22:00", end: "07:00"}}')
    rig.clock.w = dt.datetime(2026, 6, 2, 6, 0, tzinfo=UTC)
    rig.send("normal at dawn")
    rig.clock.step_wall(-2 * 3600)  # 04:00: still quiet, until 07:00 of this local day
    rig.tick(1)
    rig.tick(2 * 3600 + 60)
    assert rig.smtp.sent == []
    rig.tick(3600)
    assert rig.bodies(rig.smtp) == ["normal at dawn"]
    rig.engine.stop(0)


def test_a_reload_changes_where_a_waiting_text_goes(rig: Rig) -> None:
    rig.smtp._call = down
    rig.send("Leak")
    rig.alex = '"+1 555 999 0000"'
    rig.engine.reload(rig.load())
    rig.smtp._call = None
    rig.tick(601)
    assert [t.address for t in rig.smtp.delivered] == ["5559990000@tmomail.net"]


def test_a_removed_contact_gets_nothing_and_the_event_says_why(rig: Rig) -> None:
    rig.smtp._call = down
    rig.send("Leak")
    rig.alex = None
    rig.engine.reload(rig.load("defaults: {to: [sam]}\n"))
    rig.smtp._call = None
    rig.tick(601)
    assert rig.smtp.delivered == []
    (ev,) = rig.events("failed")
    assert ev["to"] == "alex" and "no longer in the config" in ev["error"]


class UpdateRefused(FullDisk):
    """The disk is full: no row can be moved either."""

    def update(self, text_id: str, new_state: str, **fields: object) -> None:
        if self.full:
            raise StorageError("database or disk is full")
        super().update(text_id, new_state, **fields)


def test_a_full_disk_does_not_keep_a_queued_text_from_leaving(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.engine.stop(0)
    rig.outbox.close()
    rig.outbox = UpdateRefused(str(tmp_path / "outbox.sqlite3"))
    rig.engine = rig.make()
    rig.smtp._call = down
    rig.send("Leak")
    assert rig.outbox.queued_count() == 1
    rig.outbox.full = True  # type: ignore[attr-defined]
    rig.smtp._call = None
    rig.tick(601)
    assert rig.bodies(rig.smtp) == ["Leak"]
    rig.tick(5)
    assert rig.bodies(rig.smtp) == ["Leak"]  # not again while the disk is full
    rig.outbox.full = False  # type: ignore[attr-defined]
    rig.tick(5)
    rig.tick(601)
    assert rig.bodies(rig.smtp) == ["Leak"]
    assert rig.outbox.queued_count() == 0
    assert rig.outbox.recent()[0].state == "sent"


def test_a_hung_way_out_holds_back_no_other_and_does_not_wedge_the_engine(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.engine.stop(0)
    rig.loaded = rig.load(
        "rules:\n  - {name: tw, topic: home/alerts/tw, to: [sam], via: [twilio]}\n"
    )
    release = threading.Event()

    def hang(t: OutgoingText) -> Receipt:
        release.wait(10)  # a modem that stopped answering
        return Receipt("smtp", t.id, "ok")

    rig.smtp._call = hang
    rig.engine = rig.make(threaded=True)
    try:
        rig.engine.submit(rig.message('{"message": "Leak", "to": "alex"}'))
        deadline = time.monotonic() + 5
        while not rig.smtp.sent and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(1.5)  # the worker is stuck in its send
        assert rig.engine.stuck_for() < 1.0  # the watchdog keeps being fed
        rig.engine.submit(rig.message("Smoke", "home/alerts/tw"))
        while not rig.twilio.delivered and time.monotonic() < deadline + 5:
            time.sleep(0.01)
        assert [t.body for t in rig.twilio.delivered] == ["Smoke"]
    finally:
        release.set()
        rig.engine.stop(2)


def test_texts_handed_back_by_a_way_out_that_went_down_are_queued_and_said_so(
    rig: Rig,
) -> None:
    worker = SteppedWorker("smtp", rig.smtp, rig.engine._result)
    rig.engine.workers["smtp"] = worker
    first, second = rig.message("alert 0"), rig.message("alert 1")
    rig.engine.submit(first)
    rig.engine.submit(second)
    rig.engine.drain()
    assert len(worker.jobs) == 2  # both handed to the worker while it looked healthy
    rig.smtp._call = down
    worker.run_one()  # the first finds it down: the second is handed back, not tried
    rig.engine.drain()
    assert len(rig.smtp.sent) == 1
    assert {e["id"] for e in rig.events("deferred")} == {"a1-1", "a2-1"}
    assert rig.outbox.queued_count() == 2
    assert rig.acked == [first.mid, second.mid]
    rig.smtp._call = None
    for _ in range(4):
        rig.tick(601)
        while worker.jobs:
            worker.run_one()
            rig.engine.drain()
    assert rig.bodies(rig.smtp) == ["alert 0", "alert 1"]
    assert rig.outbox.queued_count() == 0


class Checkpoints(FullDisk):
    """Counts the WAL checkpoints the engine asks for."""

    calls = 0

    def checkpoint(self) -> None:
        self.calls += 1
        super().checkpoint()


def test_the_wal_is_copied_back_only_while_the_engine_is_idle(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.engine.stop(0)
    rig.outbox.close()
    box = Checkpoints(str(tmp_path / "outbox.sqlite3"))
    rig.outbox = box
    rig.engine = rig.make()
    worker = SteppedWorker("smtp", rig.smtp, rig.engine._result)
    rig.engine.workers["smtp"] = worker
    rig.engine.submit(rig.message("Leak"))
    rig.tick(10)
    assert box.calls == 0  # a text is on the wire: no fsyncs now
    worker.run_one()
    rig.tick(10)
    assert box.calls == 1
    rig.tick(1)
    assert box.calls == 1  # at most one every few seconds
    assert rig.bodies(rig.smtp) == ["Leak"]


def test_a_text_for_a_way_out_that_takes_our_id_is_committed_before_it_is_tried(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    rig.loaded = rig.load("defaults: {to: [alex], via: [twilio]}\n")
    rig.restart()
    rig.twilio.commit_first = True  # as the Android gateway's transport says
    seen: list[str | None] = []

    def send(t: OutgoingText) -> Receipt:
        row = rig.outbox.get(t.id)
        seen.append(row.state if row else None)
        return Receipt("twilio", t.id, "ok")

    rig.twilio._call = send
    m = rig.send("Smoke")
    assert rig.acked == [m.mid]  # committed, then acknowledged, then sent from the outbox
    rig.tick(1)
    assert seen == ["sending"]
    assert [t.id for t in rig.twilio.delivered] == ["a1-1"]
    row = rig.outbox.get("a1-1")
    assert row is not None and row.state == "sent"
    assert [e["state"] for e in rig.events()] == ["sent"]


class SaysItsHealth(FakeTransport):
    """A fake that, like the modem, tells its signal for the stats."""

    answers: list[dict[str, object] | Exception]

    def stats(self) -> dict[str, object]:
        got = self.answers.pop(0)
        if isinstance(got, Exception):
            raise got
        return got


def test_a_way_outs_word_on_itself_is_published_with_the_stats(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.engine.stop(0)
    modem = SaysItsHealth("twilio")
    modem.answers = [
        {"modem_signal": 20, "modem_registered": True},
        TemporaryDeliveryError("modem: no answer to AT"),
    ]
    rig.twilio = modem
    rig.engine = rig.make()
    rig.tick(301)
    assert {k: rig.stats()[k] for k in ("modem_signal", "modem_registered")} == {
        "modem_signal": 20,
        "modem_registered": True,
    }
    rig.tick(301)  # the modem stopped answering: not known, never the last good values
    assert rig.stats()["modem_signal"] is None and rig.stats()["modem_registered"] is None


def test_a_text_carries_what_is_left_of_max_age(rig: Rig) -> None:
    rig.smtp._call = down
    rig.send("Leak")
    rig.smtp._call = None
    rig.tick(601)
    first, second = rig.smtp.sent
    assert first.ttl == 86400.0  # limits.max_age, untouched at the first try
    assert second.ttl == pytest.approx(86400.0 - 601, abs=1.0)
