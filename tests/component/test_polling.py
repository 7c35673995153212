"""When the engine asks a way out for delivery reports and received texts (polling.py), on a
real outbox and with the scripted fake transport."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

from mqtt2sms.disk import Disk
from mqtt2sms.events import EventSink
from mqtt2sms.model import Text
from mqtt2sms.outbox import Outbox
from mqtt2sms.polling import REPORT_MAX, Poller
from mqtt2sms.texts import Record
from mqtt2sms.transports.fake import FakeTransport

T0 = dt.datetime(2026, 6, 1, 16, 0, tzinfo=dt.UTC)


def sent_row(text_id: str, remote: str) -> Record:
    text = Text(text_id, "a1", "sms", "k", "alex", ("twilio",), {}, "Leak", T0)
    return Record.of(
        text, state="sent", transport="twilio", remote_id=remote, finished_at=T0.timestamp()
    )


def asks(poller: Poller, fake: FakeTransport, times: list[float]) -> list[float]:
    """The instants (monotonic) at which a reports question went out."""
    out = []
    for t in times:
        for job in poller.due("twilio", fake, t, since=0.0):
            if job.kind == "reports":
                out.append(t)
                poller._out.clear()  # answered at once
    return out


def test_a_report_is_asked_for_after_5s_then_at_doubling_gaps(tmp_path: Path) -> None:
    box = Outbox(str(tmp_path / "outbox.sqlite3"))
    try:
        box.record([sent_row("a1-1", "SM1")])
        sink = EventSink(lambda *_: None, "mqtt2sms", dt.UTC)
        poller = Poller(box, Disk(box, sink, lambda: 0.0), sink, default_every=15.0)
        fake = FakeTransport("twilio", poll_every=15.0)
        got = asks(poller, fake, [float(t) for t in range(0, 200)])
        assert got == [5.0, 15.0, 35.0, 75.0, 155.0]
        # once final, it is never asked again
        box.update("a1-1", "delivered")
        assert asks(poller, fake, [float(t) for t in range(200, 200 + int(REPORT_MAX) * 2)]) == []
    finally:
        box.close()


def test_the_gap_stops_growing_at_ten_minutes(tmp_path: Path) -> None:
    box = Outbox(str(tmp_path / "outbox.sqlite3"))
    try:
        box.record([sent_row("a1-1", "SM1")])
        sink = EventSink(lambda *_: None, "mqtt2sms", dt.UTC)
        poller = Poller(box, Disk(box, sink, lambda: 0.0), sink)
        fake = FakeTransport("twilio")
        got = asks(poller, fake, [float(t) for t in range(0, 4000, 5)])
        gaps = [b - a for a, b in itertools.pairwise(got)]
        assert gaps[:6] == [10.0, 20.0, 40.0, 80.0, 160.0, 320.0]
        assert set(gaps[6:]) == {600.0}
    finally:
        box.close()
