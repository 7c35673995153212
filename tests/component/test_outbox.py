"""The outbox on a real SQLite file: the state table, scheduling, housekeeping, durability."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mqtt2sms.model import Text
from mqtt2sms.outbox import TRANSITIONS, Outbox, OutboxError, Row, ts
from mqtt2sms.texts import Record

T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
STATES = tuple(TRANSITIONS)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def text(
    n: int | str,
    *,
    created: dt.datetime = T0,
    not_before: dt.datetime | None = None,
    recipient: str = "alex",
) -> Text:
    return Text(
        id=f"t-{n}",
        alert_id="t",
        rule="leak",
        key="zigbee2mqtt/basement/leak",
        recipient=recipient,
        via=("smtp", "twilio"),
        addresses={"smtp": "5551234567@tmomail.net", "twilio": "+15551234567"},
        body=f"Water leak {n}",
        created_at=created,
        not_before=not_before,
    )


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "state" / "outbox.sqlite3")


@pytest.fixture
def box(path: str) -> Iterator[Outbox]:
    b = Outbox(path)
    yield b
    b.close()


def ids(rows: list[Row]) -> list[str]:
    return [r.id for r in rows]


def row(box: Outbox, text_id: str) -> Row:
    r = box.get(text_id)
    assert r is not None
    return r


def put(box: Outbox, n: int | str, state: str, **fields: object) -> str:
    """A row in ``state`` (written as history, the way the daemon records finished texts)."""
    t = text(n)
    box.record([(t, {"state": state, **fields})])
    return t.id


# --------------------------------------------------------------------------- basics


def test_the_file_is_wal_with_full_sync_and_a_private_directory(path: str, box: Outbox) -> None:
    assert box.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert box.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert (Path(path).parent.stat().st_mode & 0o777) == 0o700
    other = sqlite3.connect(path)
    try:  # WAL is a property of the file: another connection sees it too
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()


def test_enqueued_rows_round_trip_and_survive_a_reopen(path: str, box: Outbox) -> None:
    box.enqueue([(text(1), {}), (text(2, not_before=at(60)), {"reason": "quiet"})])
    box.close()
    again = Outbox(path)
    try:
        one, two = again.open_rows()
    finally:
        again.close()
    assert (one.id, one.state, one.reason, one.next_at, one.attempts) == (
        "t-1",
        "queued",
        "new",
        ts(T0),
        0,
    )
    assert one.via == ("smtp", "twilio")
    assert one.addresses == {"smtp": "5551234567@tmomail.net", "twilio": "+15551234567"}
    assert one.current_via == "smtp"
    assert (two.reason, two.next_at, two.created_at) == ("quiet", ts(at(60)), ts(T0))


def test_enqueue_ignores_an_id_already_there(box: Outbox) -> None:
    box.enqueue([(text(1), {})])
    box.update("t-1", "sending")
    box.enqueue([(text(1), {})])
    assert [(r.id, r.state) for r in box.open_rows()] == [("t-1", "sending")]


# --------------------------------------------------------------------------- scheduling


def test_due_returns_queued_rows_whose_time_has_come_in_seq_order(box: Outbox) -> None:
    box.enqueue([(text(1, created=at(30)), {}), (text(2, not_before=at(300)), {})])
    box.enqueue([(text(3, created=at(10)), {})])
    box.enqueue([(text(4), {})])
    put(box, 5, "sent")
    box.enqueue([(text(6), {})])
    box.update("t-6", "sending")

    assert ids(box.due(at(0))) == ["t-4"]
    assert ids(box.due(at(60))) == ["t-1", "t-3", "t-4"]  # arrival order, not next_at order
    assert ids(box.due(at(600))) == ["t-1", "t-2", "t-3", "t-4"]
    assert ids(box.due(at(600), limit=2)) == ["t-1", "t-2"]


def test_next_due_is_the_earliest_open_row(box: Outbox) -> None:
    assert box.next_due() is None
    put(box, 0, "sent", next_at=ts(at(-100)))
    assert box.next_due() is None
    box.enqueue([(text(1, not_before=at(300)), {}), (text(2, not_before=at(120)), {})])
    assert box.next_due() == ts(at(120))
    box.update("t-2", "sending")
    assert box.next_due() == ts(at(120))  # a row in flight is still open
    box.update("t-2", "sent", finished_at=ts(at(121)))
    assert box.next_due() == ts(at(300))
    assert box.queued_count() == 1


# --------------------------------------------------------------------------- the state table


@pytest.mark.parametrize(("old", "new"), list(itertools.product(STATES, STATES)))
def test_update_enforces_the_transition_table(box: Outbox, old: str, new: str) -> None:
    text_id = put(box, 1, old)
    if new in TRANSITIONS[old]:
        box.update(text_id, new, attempts=1)
        assert (row(box, text_id).state, row(box, text_id).attempts) == (new, 1)
    else:
        with pytest.raises(OutboxError, match=f"{old} -> {new}"):
            box.update(text_id, new, attempts=1)
        assert (row(box, text_id).state, row(box, text_id).attempts) == (old, 0)


def test_a_text_goes_queued_sending_sent(box: Outbox) -> None:
    box.enqueue([(text(1), {})])
    box.update("t-1", "sending")
    box.update("t-1", "sent", attempts=1, finished_at=ts(at(2)), transport="smtp", remote_id="Q1")
    r = row(box, "t-1")
    assert (r.state, r.attempts, r.finished_at, r.transport) == ("sent", 1, ts(at(2)), "smtp")
    with pytest.raises(OutboxError):
        box.update("t-1", "queued")
    assert row(box, "t-1").state == "sent"


def test_update_of_a_missing_text_raises(box: Outbox) -> None:
    with pytest.raises(OutboxError, match="no text t-9"):
        box.update("t-9", "sending")


def test_requeue_on_start(box: Outbox) -> None:
    box.enqueue(
        [
            (text("crashed"), {}),
            (text("retry", not_before=at(400)), {"reason": "retry"}),
            (text("transport", not_before=at(500)), {"reason": "transport"}),
            (text("quiet", not_before=at(36000)), {"reason": "quiet"}),
            (text("early-retry", not_before=at(-50)), {"reason": "retry"}),
        ]
    )
    box.update("t-crashed", "sending")
    put(box, "done", "sent", finished_at=ts(T0))

    assert box.requeue_on_start(at(10)) == 3
    state = {r.id: (r.state, r.next_at) for r in box.open_rows()}
    assert state == {
        "t-crashed": ("queued", ts(at(10))),
        "t-retry": ("queued", ts(at(10))),
        "t-transport": ("queued", ts(at(10))),
        "t-quiet": ("queued", ts(at(36000))),  # quiet hours keep their time
        "t-early-retry": ("queued", ts(at(-50))),  # already due: left alone
    }
    assert row(box, "t-done").state == "sent"
    assert ids(box.due(at(10))) == ["t-crashed", "t-retry", "t-transport", "t-early-retry"]


# --------------------------------------------------------------------------- housekeeping


def test_expire_finishes_old_open_rows_and_returns_them_as_they_were(box: Outbox) -> None:
    box.enqueue([(text("old", created=at(-7200)), {}), (text("new", created=at(-60)), {})])
    box.enqueue([(text("old-sending", created=at(-7200)), {"last_error": "451 try later"})])
    box.update("t-old-sending", "sending")
    put(box, "old-sent", "sent", created_at=ts(at(-7200)), finished_at=ts(at(-7000)))

    expired = box.expire(at(-3600), T0)

    assert [(r.id, r.state) for r in expired] == [("t-old", "queued"), ("t-old-sending", "sending")]
    old, old_sending = row(box, "t-old"), row(box, "t-old-sending")
    assert (old.state, old.finished_at, old.last_error) == ("expired", ts(T0), "expired")
    assert (old_sending.state, old_sending.last_error) == ("expired", "451 try later")
    assert row(box, "t-new").state == "queued"
    assert row(box, "t-old-sent").state == "sent"
    assert box.expire(at(-3600), T0) == []


def test_prune_deletes_only_finished_rows_older_than_the_cutoff(box: Outbox) -> None:
    put(box, "sent-old", "sent", finished_at=ts(at(-8 * 86400)))
    put(box, "failed-old", "failed", finished_at=ts(at(-8 * 86400)))
    put(box, "sent-new", "sent", finished_at=ts(at(-86400)))
    box.enqueue([(text("queued-old", created=at(-8 * 86400)), {})])

    assert box.prune(at(-7 * 86400)) == 2
    assert box.get("t-sent-old") is None and box.get("t-failed-old") is None
    assert row(box, "t-sent-new").state == "sent"
    assert row(box, "t-queued-old").state == "queued"


def test_retry_now_on_a_queued_text_makes_it_due_now(box: Outbox) -> None:
    box.enqueue([(text(1, not_before=at(600)), {"reason": "transport", "attempts": 3})])
    box.retry_now("t-1", at(5))
    r = row(box, "t-1")
    assert (r.state, r.next_at, r.reason, r.attempts) == ("queued", ts(at(5)), "new", 3)
    assert ids(box.due(at(5))) == ["t-1"]


@pytest.mark.parametrize("state", ["failed", "expired"])
def test_retry_now_on_a_finished_text_starts_it_over(box: Outbox, state: str) -> None:
    put(
        box,
        1,
        state,
        attempts=7,
        via_index=1,
        first_fail_at=ts(at(-900)),
        finished_at=ts(at(-10)),
        last_error="550 no such user",
    )
    box.retry_now("t-1", at(5))
    r = row(box, "t-1")
    assert (r.state, r.attempts, r.via_index, r.next_at, r.created_at) == (
        "queued",
        0,
        0,
        ts(at(5)),
        ts(at(5)),
    )
    assert (r.first_fail_at, r.finished_at, r.reason) == (None, None, "new")
    assert ids(box.due(at(5))) == ["t-1"]


def test_retry_now_refuses_a_sent_or_missing_text(box: Outbox) -> None:
    put(box, 1, "sent", finished_at=ts(T0))
    with pytest.raises(OutboxError, match="sent already"):
        box.retry_now("t-1", at(5))
    assert row(box, "t-1").state == "sent"
    with pytest.raises(OutboxError, match="no text"):
        box.retry_now("t-404", at(5))


def test_recorded_history_is_readable_and_not_open(box: Outbox) -> None:
    box.record(
        [
            (text(1), {"state": "sent", "finished_at": ts(T0), "transport": "smtp"}),
            (text(2), {"state": "failed", "finished_at": ts(T0), "last_error": "550 refused"}),
        ]
    )
    assert [(r.id, r.state) for r in box.recent()] == [("t-2", "failed"), ("t-1", "sent")]
    assert row(box, "t-2").last_error == "550 refused"
    assert box.open_rows() == [] and box.due(at(3600)) == []
    assert box.next_due() is None and box.queued_count() == 0
    # history is written without an fsync, and the connection goes back to FULL after it
    assert box.db.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_handled_finds_the_texts_of_the_newest_message_with_that_packet_id(box: Outbox) -> None:
    def of(n: int, alert: str, recipient: str, mid: int, digest: str, epoch: int) -> Record:
        return Record.of(
            replace(text(n, recipient=recipient), alert_id=alert),
            state="sent",
            mid=mid,
            digest=digest,
            epoch=epoch,
        )

    box.record([of(1, "old", "alex", 7, "d", 2)])  # an older message that had id 7 and "d"
    box.record([of(2, "new", "alex", 7, "d", 4), of(3, "new", "sam", 7, "d", 4)])
    box.record([of(4, "other", "alex", 8, "e", 4)])
    assert box.handled(7, "d", since_epoch=4) == [("leak", "alex"), ("leak", "sam")]
    assert box.handled(7, "d", since_epoch=5) == []  # a broker session begun since
    assert box.handled(7, "x", since_epoch=0) == []  # id 7's newest message is not this one
    assert box.handled(9, "d", since_epoch=0) == []


def test_data_version_changes_when_another_connection_commits(path: str, box: Outbox) -> None:
    before = box.data_version()
    box.set_kv({"mine": "1"})
    assert box.data_version() == before  # our own commits do not count
    other = Outbox(path)
    try:
        other.enqueue([(text(1), {})])
    finally:
        other.close()
    after = box.data_version()
    assert after != before
    assert box.data_version() == after
    assert ids(box.open_rows()) == ["t-1"]


def test_kv_get_and_set(path: str, box: Outbox) -> None:
    assert box.get_kv("throttle") is None
    box.set_kv({"throttle": "{}", "epoch": "1"})
    box.set_kv({"epoch": "2"})
    assert (box.get_kv("throttle"), box.get_kv("epoch")) == ("{}", "2")
    other = Outbox(path)
    try:
        assert other.get_kv("epoch") == "2"
    finally:
        other.close()


# --------------------------------------------------------------------------- a long history


def _plans(box: Outbox, call: Callable[[], object]) -> list[str]:
    """The query plan of every SELECT that ``call`` runs on the outbox's connection."""
    statements: list[str] = []
    box.db.set_trace_callback(statements.append)
    try:
        call()
    finally:
        box.db.set_trace_callback(None)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert selects
    return [
        " / ".join(str(r[3]) for r in box.db.execute(f"EXPLAIN QUERY PLAN {s}").fetchall())
        for s in selects
    ]


def _uses_an_open_index(plan: str) -> bool:
    """An index on open rows only, and no full scan of the table."""
    full_scan = re.search(r"SCAN texts(?! USING)", plan) is not None
    return not full_scan and re.search(r"USING (COVERING )?INDEX texts_open", plan) is not None


@pytest.fixture
def long_history(box: Outbox) -> Outbox:
    """100,000 sent texts (inserted in one statement: the setup is not what is tested), then
    a few open ones through the API."""
    box.db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)"
        " INSERT INTO texts (id, alert_id, rule, key, recipient, via, addresses, body, priority,"
        " state, created_at, next_at, finished_at)"
        " SELECT 'h-' || i, 'h', 'leak', 'k', 'alex', '[\"smtp\"]', '{}', 'old', 'normal', 'sent',"
        " ?1 - i, ?1 - i, ?1 - i FROM n",
        (ts(T0),),
    )
    box.enqueue([(text(1), {}), (text(2, not_before=at(60)), {}), (text(3), {})])
    box.update("t-3", "sending")
    return box


def test_a_long_history_does_not_change_what_is_due(long_history: Outbox) -> None:
    assert ids(long_history.due(T0)) == ["t-1"]
    assert long_history.next_due() == ts(T0)
    assert long_history.queued_count() == 3


def test_next_due_uses_an_open_row_index(long_history: Outbox) -> None:
    (plan,) = _plans(long_history, long_history.next_due)
    assert _uses_an_open_index(plan), plan


def test_queued_count_uses_an_open_row_index(long_history: Outbox) -> None:
    (plan,) = _plans(long_history, long_history.queued_count)
    assert _uses_an_open_index(plan), plan


def test_due_uses_an_open_row_index(long_history: Outbox) -> None:
    (plan,) = _plans(long_history, lambda: long_history.due(T0))
    assert _uses_an_open_index(plan), plan


def test_expire_uses_an_open_row_index(long_history: Outbox) -> None:
    # expire() runs on every pass over the due texts
    (plan,) = _plans(long_history, lambda: long_history.expire(at(-86400), T0))
    assert _uses_an_open_index(plan), plan
