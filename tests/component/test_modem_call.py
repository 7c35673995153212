"""The modem rings a phone (``ModemTransport.call``), against the fake modem on a pty."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqtt2sms.config.model import ModemConfig
from mqtt2sms.errors import PermanentDeliveryError, TemporaryDeliveryError
from mqtt2sms.transports.base import Calling, OutgoingText
from mqtt2sms.transports.modem import ModemTransport
from tests.fakes.modem import FakeModem

pytest.importorskip("serial")

NUMBER = "+15551234567"
TIMEOUTS = {"timeout": 0.5, "prompt_timeout": 0.5, "send_timeout": 1.0}
HOLD = 0.5  # seconds an answered call stays up (3 s on a real modem)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeModem]:
    with FakeModem(tmp_path) as modem:
        yield modem


@pytest.fixture
def modem(fake: FakeModem) -> Iterator[ModemTransport]:
    transport = ModemTransport(
        ModemConfig(device=str(fake.link)), **TIMEOUTS, answered_hold=HOLD, call_poll=0.2
    )
    try:
        yield transport
    finally:
        transport.close()


def never() -> bool:
    return False


def dials(fake: FakeModem) -> list[str]:
    return [c for c in fake.commands if c.upper().startswith("ATD")]


def test_an_answered_call_is_hung_up_a_few_seconds_later(
    fake: FakeModem, modem: ModemTransport
) -> None:
    assert isinstance(modem, Calling) and modem.can_call is None
    fake.answer_after = 0.6
    result = modem.call(NUMBER, 5.0, "Smoke in the kitchen", never)
    [call] = fake.calls
    assert result.outcome == "answered", result
    assert modem.can_call is True
    assert dials(fake) == ["ATD+15551234567;"]
    assert call.answered_at is not None and call.ended_at is not None
    assert call.ended_by == "ATH"
    held = call.ended_at - call.answered_at
    assert HOLD - 0.05 <= held <= HOLD + 1.0, held  # polled every 0.2 s
    assert "AT+CLCC" in fake.commands


def test_a_call_never_answered_is_hung_up_after_ring_for(
    fake: FakeModem, modem: ModemTransport
) -> None:
    fake.call_mode = "never"
    started = time.monotonic()
    result = modem.call(NUMBER, 1.5, "", never)
    took = time.monotonic() - started
    [call] = fake.calls
    assert result.outcome == "no-answer" and "alerting" in result.detail, result
    assert call.ended_by == "ATH" and call.ended_at is not None
    rang = call.ended_at - call.dialled_at
    assert 1.5 - 0.05 <= rang <= 2.2, rang
    assert took <= 2.5, took
    assert fake.hangups and fake.hangups[0][1] == "ATH"


def test_busy_is_busy(fake: FakeModem, modem: ModemTransport) -> None:
    fake.call_modes[NUMBER] = "busy"
    fake.call_mode = "never"  # the per-number mode wins
    result = modem.call(NUMBER, 5.0, "", never)
    assert (result.outcome, result.detail) == ("busy", "BUSY")
    assert fake.calls[0].ended_by == "BUSY"
    assert fake.hangups, "a call that ended is still hung up: no call is ever left up"


def test_a_rejected_call_is_no_answer_with_the_line(fake: FakeModem, modem: ModemTransport) -> None:
    fake.call_mode = "reject"
    started = time.monotonic()
    result = modem.call(NUMBER, 5.0, "", never)
    assert (result.outcome, result.detail) == ("no-answer", "NO CARRIER")
    assert time.monotonic() - started < 2.0


def test_no_answer_from_the_network_is_no_answer(fake: FakeModem, modem: ModemTransport) -> None:
    fake.call_mode, fake.no_answer_after = "no-answer", 0.6
    result = modem.call(NUMBER, 5.0, "", never)
    assert (result.outcome, result.detail) == ("no-answer", "NO ANSWER")


def test_a_call_cancelled_while_ringing_is_hung_up_at_once(
    fake: FakeModem, modem: ModemTransport
) -> None:
    fake.call_mode = "never"
    ack = threading.Event()
    threading.Timer(0.8, ack.set).start()
    result = modem.call(NUMBER, 10.0, "", ack.is_set)
    [call] = fake.calls
    assert result.outcome == "canceled", result
    assert call.ended_by == "ATH" and call.ended_at is not None
    assert call.ended_at - call.dialled_at < 0.8 + 0.4, call


def test_atd_refused_means_no_voice_calls_said_once(
    fake: FakeModem, modem: ModemTransport, caplog: pytest.LogCaptureFixture
) -> None:
    fake.call_mode = "refuse"
    caplog.set_level(logging.INFO, "mqtt2sms")
    with pytest.raises(PermanentDeliveryError, match="cannot place voice calls: ATD: ERROR"):
        modem.call(NUMBER, 5.0, "", never)
    assert modem.can_call is False
    assert len(dials(fake)) == 1  # AT+CMEE? showed the ERROR is the modem's answer
    assert "AT+CMEE?" in fake.commands
    before = list(fake.commands)
    with pytest.raises(PermanentDeliveryError, match="cannot place voice calls: ATD: ERROR"):
        modem.call(NUMBER, 5.0, "", never)
    assert fake.commands == before  # the modem is not touched again
    said = [r for r in caplog.records if "voice calls" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.ERROR, said
    assert "texts go as before" in said[0].getMessage()
    # and it still sends texts
    modem.send(OutgoingText(id="t1", address=NUMBER, body="smoke"))
    assert [s.text for s in fake.sent] == ["smoke"]
    assert "voice calls: refused (ATD: ERROR)" in modem.probe()


@pytest.mark.parametrize("answer", ["+CME ERROR: 4", "NO CARRIER", "NO DIALTONE"])
def test_other_refusals_of_atd(fake: FakeModem, modem: ModemTransport, answer: str) -> None:
    fake.call_mode, fake.refuse_with = "refuse", answer
    with pytest.raises(PermanentDeliveryError, match=re.escape(f"ATD: {answer}")):
        modem.call(NUMBER, 5.0, "", never)
    assert modem.can_call is False


def test_a_bare_error_after_a_silent_restart_is_not_a_refusal(
    fake: FakeModem, modem: ModemTransport
) -> None:
    modem.probe()  # initialised
    fake.forget()  # restarts silently: AT+CMEE=0 again, so ATD's answer would be bare
    fake.call_mode = "busy"
    original = fake._dial
    tries: list[str] = []

    def dial_then_work(number: str) -> None:
        tries.append(number)
        if len(tries) == 1:
            fake._write("\r\nERROR\r\n")  # a modem without AT+CMEE=1: no code
        else:
            original(number)

    fake._dial = dial_then_work  # type: ignore[method-assign]
    result = modem.call(NUMBER, 5.0, "", never)
    assert result.outcome == "busy" and modem.can_call is True
    assert len(dials(fake)) == 2
    asked = fake.commands.index("AT+CMEE?")  # the ERROR was no refusal: it had restarted
    after = fake.commands[asked:]
    assert after.index("AT+CMEE=1") < after.index("ATD+15551234567;")


def test_atd_with_the_network_down_is_temporary(fake: FakeModem, modem: ModemTransport) -> None:
    fake.call_mode, fake.refuse_with = "refuse", "+CME ERROR: 30"
    with pytest.raises(TemporaryDeliveryError, match="no network service") as info:
        modem.call(NUMBER, 5.0, "", never)
    assert info.value.scope == "transport"
    assert modem.can_call is None  # not known: it may call once the network is back


def test_a_bad_number_is_refused_before_the_modem_is_touched(
    fake: FakeModem, modem: ModemTransport
) -> None:
    with pytest.raises(PermanentDeliveryError, match=r"E\.164"):
        modem.call("+1555,,123", 5.0, "", never)
    assert fake.commands == []


def test_a_text_after_a_call_leaves_normally(fake: FakeModem, modem: ModemTransport) -> None:
    fake.call_mode = "reject"
    assert modem.call(NUMBER, 5.0, "", never).outcome == "no-answer"
    fake.inject("NO CARRIER")  # a stray late line
    receipt = modem.send(OutgoingText(id="t1", address=NUMBER, body="after the call"))
    assert receipt.remote_id == "1"
    assert [s.text for s in fake.sent] == ["after the call"]
    fake.call_mode = "answer"
    assert modem.call(NUMBER, 5.0, "", never).outcome == "answered"
    assert len(fake.calls) == 2 and all(c.ended_at is not None for c in fake.calls)


def test_atH_refused_hangs_up_with_chup(fake: FakeModem, modem: ModemTransport) -> None:
    fake.call_mode, fake.refuse_ath = "never", True
    result = modem.call(NUMBER, 1.0, "", never)
    assert result.outcome == "no-answer"
    assert [h[1] for h in fake.hangups] == ["ATH", "AT+CHUP"]
    assert fake.calls[0].ended_by == "AT+CHUP"


def test_a_modem_that_dies_mid_call_is_temporary(
    fake: FakeModem, modem: ModemTransport, caplog: pytest.LogCaptureFixture
) -> None:
    fake.call_mode = "never"
    threading.Timer(0.6, fake.hang, (30.0,)).start()
    started = time.monotonic()
    with pytest.raises(TemporaryDeliveryError, match="no answer to") as info:
        modem.call(NUMBER, 10.0, "", never)
    assert info.value.scope == "transport"
    assert time.monotonic() - started < 4.0
    # it tried to hang up (the modem heard nothing: it hangs)
    assert any("hanging up after a failed call" in r.getMessage() for r in caplog.records)
    fake._hang_until = 0.0
    assert modem.probe().startswith("modem ")  # opened and initialised again


def test_a_modem_unplugged_mid_call_is_temporary(fake: FakeModem, modem: ModemTransport) -> None:
    fake.call_mode = "never"
    threading.Timer(0.6, fake.unplug).start()
    with pytest.raises(TemporaryDeliveryError) as info:
        modem.call(NUMBER, 10.0, "", never)
    assert info.value.scope == "transport"


def test_probe_says_whether_it_can_call_without_dialling(
    fake: FakeModem, modem: ModemTransport
) -> None:
    line = modem.probe()
    assert line.endswith("; voice calls: not tried yet (AT+CLCC answered)"), line
    assert dials(fake) == []
    modem.call(NUMBER, 5.0, "", never)
    assert modem.probe().endswith("; voice calls: placed")


def test_a_call_cancelled_before_it_starts_never_dials(
    fake: FakeModem, modem: ModemTransport
) -> None:
    result = modem.call(NUMBER, 5.0, "", lambda: True)
    assert result.outcome == "canceled"
    assert fake.commands == [] and fake.calls == []


def test_a_modem_that_holds_atd_back_is_hung_up_after_ring_for(
    fake: FakeModem, modem: ModemTransport
) -> None:
    fake.call_mode, fake.hold_dial_result = "never", True
    result = modem.call(NUMBER, 1.0, "", never)
    [call] = fake.calls
    assert result.outcome == "no-answer", result
    assert call.ended_by == "ATH" and call.ended_at is not None
    assert 0.95 <= call.ended_at - call.dialled_at <= 1.6
    # the aborted ATD's late NO CARRIER and ATH's OK are not taken for a later reply
    fake.hold_dial_result = False
    modem.send(OutgoingText(id="t1", address=NUMBER, body="next"))
    assert [s.text for s in fake.sent] == ["next"]
    assert modem.probe().endswith("voice calls: not tried yet (AT+CLCC answered)")
