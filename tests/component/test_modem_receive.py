"""The modem way out reads received texts, against the fake modem on a pseudo-terminal."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqtt2sms.config.model import ModemConfig
from mqtt2sms.errors import TemporaryDeliveryError
from mqtt2sms.transports.base import OutgoingText, Receiving
from mqtt2sms.transports.modem import ModemTransport
from tests.fakes.modem import FakeModem

pytest.importorskip("serial")

SENDER = "+15551234567"
TIMEOUTS = {"timeout": 0.5, "prompt_timeout": 0.5, "send_timeout": 1.0}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeModem]:
    with FakeModem(tmp_path) as modem:
        yield modem


def transport(fake: FakeModem, clock: Clock | None = None, poll: float = 15.0) -> ModemTransport:
    config = ModemConfig(device=str(fake.link), poll=poll)
    if clock is None:
        return ModemTransport(config, **TIMEOUTS)
    return ModemTransport(config, **TIMEOUTS, clock=clock)


def listings(fake: FakeModem) -> int:
    return sum(c.upper().startswith("AT+CMGL") for c in fake.commands)


def settle() -> None:
    time.sleep(0.2)  # the fake's +CMTI reaches the port


def test_a_modem_reads_received_texts(fake: FakeModem) -> None:
    modem = transport(fake)
    assert isinstance(modem, Receiving) and modem.receives
    assert modem.receive_every == 2.0
    assert transport(fake, poll=1.0).receive_every == 1.0
    assert fake.commands == []  # nothing opened yet


def test_texts_on_the_sim_are_returned_decoded_with_sender_and_time(fake: FakeModem) -> None:
    fake.receive_text(SENDER, "ACK 417 @home $5", stamp="24/03/09,14:05:00-20")
    fake.receive_text("5551234567", "It\u2019s fine \U0001f44d \u201cok\u201d")
    fake.receive_text(SENDER, "4170")
    modem = transport(fake)
    try:
        texts, mark = modem.receive(None)
    finally:
        modem.close()
    assert "AT+CSDH=1" in fake.commands
    assert [(t.sender, t.text, t.remote_id) for t in texts] == [
        (SENDER, "ACK 417 @home $5", "SM:0"),
        ("5551234567", "It\u2019s fine \U0001f44d \u201cok\u201d", "SM:1"),
        (SENDER, "4170", "SM:2"),
    ]
    assert texts[0].at == dt.datetime(2024, 3, 9, 14, 5, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert texts[1].at == dt.datetime(2024, 3, 9, 14, 5, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert mark is not None and [m[:2] for m in json.loads(mark)] == [
        ["SM", 0],
        ["SM", 1],
        ["SM", 2],
    ]
    assert fake.deletes == []  # not before the engine has published them


def test_the_next_receive_deletes_them_by_index_and_returns_nothing_twice(fake: FakeModem) -> None:
    fake.receive_text(SENDER, "ACK 417")
    fake.receive_text(SENDER, "OK 417")
    modem = transport(fake)
    try:
        first, mark = modem.receive(None)
        assert len(first) == 2 and fake.deletes == []
        second, mark2 = modem.receive(mark)
    finally:
        modem.close()
    assert second == []
    assert fake.deletes == ["AT+CMGD=0", "AT+CMGD=1"]  # one index each, never a flag
    assert fake.store["SM"] == {}
    assert json.loads(mark2 or "null") == []


def test_a_cmti_while_idle_is_read_at_the_next_receive_without_waiting_for_poll(
    fake: FakeModem,
) -> None:
    clock = Clock()
    modem = transport(fake, clock)
    try:
        assert modem.receive(None) == ([], "[]")
        before = len(fake.commands)
        assert modem.receive("[]") == ([], "[]")
        assert len(fake.commands) == before  # idle: no AT command at all
        fake.receive_text(SENDER, "ACK 417")
        settle()
        texts, mark = modem.receive("[]")
        assert [t.text for t in texts] == ["ACK 417"]
        assert listings(fake) == 2
        clock.now += 15.0  # poll: a listing even without a notice
        fake.receive_text(SENDER, "quiet one", notify=False)
        texts, _ = modem.receive(mark)
        assert [t.text for t in texts] == ["quiet one"]
    finally:
        modem.close()


def test_a_notice_for_another_memory_lists_that_memory(fake: FakeModem) -> None:
    modem = transport(fake)
    try:
        modem.receive(None)
        fake.receive_text(SENDER, "from the phone memory", memory="ME")
        settle()
        texts, mark = modem.receive("[]")
        assert [(t.text, t.remote_id) for t in texts] == [("from the phone memory", "ME:0")]
        assert fake.memory == "SM"  # back to the default one
        modem.receive(mark)
    finally:
        modem.close()
    assert fake.store["ME"] == {} and fake.deletes == ["AT+CMGD=0"]
    assert 'AT+CPMS="ME"' in fake.commands


def test_an_index_reused_by_a_newer_text_is_not_deleted(fake: FakeModem) -> None:
    fake.receive_text(SENDER, "ACK 417")
    modem = transport(fake)
    try:
        texts, mark = modem.receive(None)
        assert [t.text for t in texts] == ["ACK 417"]
        # a crash after the delete, before the mark was stored; a new text takes index 0
        del fake.store["SM"][0]
        fake.receive_text(SENDER, "newer, unread", index=0, notify=False)
        texts, _ = modem.receive(mark)
    finally:
        modem.close()
    assert fake.deletes == []
    assert [(t.text, t.remote_id) for t in texts] == [("newer, unread", "SM:0")]
    assert 0 in fake.store["SM"]


def test_a_text_whose_delete_failed_is_not_returned_again(fake: FakeModem) -> None:
    fake.receive_text(SENDER, "ACK 417")
    clock = Clock()
    modem = transport(fake, clock)
    try:
        _, mark = modem.receive(None)
        fake.refuse_deletes = True
        texts, kept = modem.receive(mark)
        assert texts == [] and kept == mark and fake.deletes == ["AT+CMGD=0"]
        clock.now += 15.0  # a listing: the text is still there, and named by the mark
        texts, kept = modem.receive(kept)
        assert texts == [] and kept == mark and listings(fake) == 2
        fake.refuse_deletes = False
        assert modem.receive(kept) == ([], kept)  # not tried at every call: at each listing
        clock.now += 15.0
        texts, kept = modem.receive(kept)
    finally:
        modem.close()
    assert texts == [] and json.loads(kept or "null") == [] and fake.store["SM"] == {}


def test_a_memory_the_modem_refuses_keeps_its_texts_in_the_mark(fake: FakeModem) -> None:
    modem = transport(fake)
    try:
        modem.receive(None)
        odd = json.dumps([["XX", 0, "0123456789ab"]])
        texts, kept = modem.receive(odd)
        assert texts == [] and json.loads(kept or "null") == json.loads(odd)
        assert fake.deletes == []
        before = len(fake.commands)
        texts, again = modem.receive(kept)  # tried again with the next listing only
        assert (texts, again, len(fake.commands)) == ([], kept, before)
    finally:
        modem.close()


def test_a_restart_with_the_stored_mark_returns_nothing_twice(fake: FakeModem) -> None:
    fake.receive_text(SENDER, "ACK 417")
    modem = transport(fake)
    try:
        texts, mark = modem.receive(None)
        assert len(texts) == 1
    finally:
        modem.close()
    again = transport(fake)
    try:
        texts, _ = again.receive(mark)
    finally:
        again.close()
    assert texts == [] and fake.deletes == ["AT+CMGD=0"]


def test_a_modem_that_stops_answering_raises_and_the_mark_stays(fake: FakeModem) -> None:
    fake.receive_text(SENDER, "ACK 417")
    modem = transport(fake)
    try:
        _, mark = modem.receive(None)
        fake.hang(5.0)
        with pytest.raises(TemporaryDeliveryError) as info:
            modem.receive(mark)
        assert info.value.scope == "transport"
        assert fake.deletes == [] and 0 in fake.store["SM"]
        fake.hang(0)
        texts, _ = modem.receive(mark)  # the engine kept the old mark
    finally:
        modem.close()
    assert texts == [] and fake.deletes == ["AT+CMGD=0"]


def test_texts_are_read_in_gsm_after_a_ucs2_text_went(fake: FakeModem) -> None:
    modem = transport(fake)
    try:
        modem.send(OutgoingText(id="t1", address=SENDER, body="emoji 🔥"))
        assert fake.cscs == "UCS2"
        fake.receive_text(SENDER, "Ack 417 \u2019")
        settle()
        texts, _ = modem.receive(None)
    finally:
        modem.close()
    assert [t.text for t in texts] == ["Ack 417 \u2019"]
    assert 'AT+CSCS="GSM"' in fake.commands[fake.commands.index("AT+CSMP=17,167,0,8") :]
