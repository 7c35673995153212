"""The modem way out against a fake modem on a pseudo-terminal (tests/fakes/modem.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqtt2sms.config.model import ModemConfig
from mqtt2sms.errors import PermanentDeliveryError, TemporaryDeliveryError
from mqtt2sms.transports.base import OutgoingText
from mqtt2sms.transports.modem import ModemTransport
from tests.fakes.modem import FakeModem

pytest.importorskip("serial")

NUMBER = "+15551234567"
# Short timeouts: ordinary commands, the prompt, the result after Ctrl-Z.
TIMEOUTS = {"timeout": 0.5, "prompt_timeout": 0.5, "send_timeout": 1.0}


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeModem]:
    with FakeModem(tmp_path) as modem:
        yield modem


def transport(fake: FakeModem, pin: str | None = None) -> ModemTransport:
    return ModemTransport(ModemConfig(device=str(fake.link), pin=pin), **TIMEOUTS)


def text(body: str, n: int = 1) -> OutgoingText:
    return OutgoingText(id=f"t{n}", address=NUMBER, body=body)


def test_a_gsm_text_goes_as_gsm_code_points(fake: FakeModem) -> None:
    modem = transport(fake)
    try:
        receipt = modem.send(text("Leak @home: $5 damage_x"))
    finally:
        modem.close()
    [sms] = fake.sent
    assert (sms.number, sms.text, sms.charset, sms.dcs) == (
        NUMBER,
        "Leak @home: $5 damage_x",
        "GSM",
        0,
    )
    assert sms.raw.startswith(b"Leak \x00home: \x025 damage\x11x")
    assert receipt.transport == "modem" and receipt.remote_id == "1"
    # The initialisation ran, echo off before anything else.
    assert fake.commands[:3] == ["AT", "AT", "ATE0"]
    for wanted in (
        "AT+CMEE=1",
        "AT+CMGF=1",
        'AT+CSCS="GSM"',
        'AT+CPMS="SM","SM","SM"',
        "AT+CNMI=2,1,0,0,0",
    ):
        assert wanted in fake.commands


@pytest.mark.parametrize(
    "body",
    ["Price 5€ [ok] {x} a\\b ^ ~ |", "Протечка на кухне!", "Ξ is Ctrl-Z in GSM", "emoji 🔥 too"],
)
def test_texts_gsm_text_mode_cannot_carry_go_as_ucs2(fake: FakeModem, body: str) -> None:
    modem = transport(fake)
    try:
        modem.send(text(body))
        modem.send(text("back to GSM @", 2))
    finally:
        modem.close()
    first, second = fake.sent
    assert (first.number, first.text, first.charset, first.dcs) == (NUMBER, body, "UCS2", 8)
    assert fake.aborted == []
    assert (second.text, second.charset, second.dcs) == ("back to GSM @", "GSM", 0)
    assert "AT+CSMP=17,167,0,8" in fake.commands


def test_a_text_too_long_for_one_sms_this_way_is_permanent(fake: FakeModem) -> None:
    modem = transport(fake)
    try:
        with pytest.raises(PermanentDeliveryError, match="too long for one SMS"):
            modem.send(text("Протечка " * 10))
        modem.send(text("[kitchen] " + "x" * 100, 2))  # GSM-7 but for the brackets
    finally:
        modem.close()
    [sms] = fake.sent
    assert (sms.text, sms.charset) == ("(kitchen) " + "x" * 100, "GSM")


def test_the_pin_is_given_when_the_sim_asks(tmp_path: Path) -> None:
    with FakeModem(tmp_path, pin="4321") as fake:
        modem = transport(fake, pin="4321")
        try:
            modem.send(text("hello"))
        finally:
            modem.close()
        assert [s.text for s in fake.sent] == ["hello"]
        assert 'AT+CPIN="4321"' in fake.commands


def test_a_pin_wanted_but_not_configured_is_a_clear_auth_error(tmp_path: Path) -> None:
    with FakeModem(tmp_path, pin="4321") as fake:
        modem = transport(fake)
        with pytest.raises(TemporaryDeliveryError, match="the SIM wants a PIN") as info:
            modem.send(text("hello"))
        assert info.value.auth and info.value.scope == "transport"
        with pytest.raises(TemporaryDeliveryError, match="the SIM wants a PIN"):
            modem.probe()
        modem.close()
        assert fake.sent == []


def test_a_refused_pin_is_never_sent_again(tmp_path: Path) -> None:
    with FakeModem(tmp_path, pin="4321") as fake:
        modem = transport(fake, pin="1111")
        for _ in range(3):
            with pytest.raises(TemporaryDeliveryError, match=r"refused modem\.pin") as info:
                modem.send(text("hello"))
            assert info.value.auth
            assert "1111" not in str(info.value)
        modem.close()
        assert sum(c.startswith("AT+CPIN=") for c in fake.commands) == 1
        assert fake.pin_tries == 2


@pytest.mark.parametrize(
    ("code", "kind", "scope"),
    [
        (331, TemporaryDeliveryError, "transport"),  # no network service
        (314, TemporaryDeliveryError, "transport"),  # SIM busy
        (322, TemporaryDeliveryError, "transport"),  # SIM memory full
        (27, TemporaryDeliveryError, "text"),  # destination out of service
        (500, PermanentDeliveryError, None),  # unknown error
        (1, PermanentDeliveryError, None),  # unassigned number
    ],
)
def test_cms_errors_are_mapped(
    fake: FakeModem, code: int, kind: type[Exception], scope: str | None
) -> None:
    fake.cms_errors.append(code)
    modem = transport(fake)
    try:
        with pytest.raises(kind, match=f"CMS ERROR: {code}") as info:
            modem.send(text("first"))
        if scope is not None:
            assert getattr(info.value, "scope", None) == scope
        modem.send(text("second", 2))  # the way out works again at once
    finally:
        modem.close()
    assert [s.text for s in fake.sent] == ["second"]


def test_unsolicited_lines_in_the_middle_of_a_send_do_not_break_it(fake: FakeModem) -> None:
    fake.urcs_mid_send = ['+CMTI: "SM",4', "RING", "Call Ready", "+CREG: 1", "^BOOT:1,0,0,0,23", ""]
    modem = transport(fake)
    try:
        receipts = [modem.send(text(f"text {n}", n)) for n in range(1, 4)]
        assert "registered" in modem.probe()
    finally:
        modem.close()
    assert [s.text for s in fake.sent] == ["text 1", "text 2", "text 3"]
    assert [r.remote_id for r in receipts] == ["1", "2", "3"]
    assert ("SM", 4) in modem.new_texts
    assert fake.aborted == []


def test_a_hung_modem_fails_the_text_in_time_and_the_next_send_works(fake: FakeModem) -> None:
    modem = transport(fake)
    try:
        modem.send(text("before"))
        fake.hang(1.5)
        started = time.monotonic()
        with pytest.raises(TemporaryDeliveryError, match="no prompt") as info:
            modem.send(text("during", 2))
        assert info.value.scope == "transport"
        assert time.monotonic() - started < 1.2  # the prompt timeout (0.5 s), not the hang
        while fake.hanging:
            time.sleep(0.05)
        modem.send(text("during", 2))  # the engine's retry
        modem.send(text("after", 3))
    finally:
        modem.close()
    assert [s.text for s in fake.sent] == ["before", "during", "after"]
    # The port was opened again and the modem initialised again before the retry.
    assert fake.commands.count("ATE0") >= 2


def test_a_late_prompt_is_left_with_esc_so_nothing_half_typed_is_sent(fake: FakeModem) -> None:
    fake.prompt_delay = 0.8  # longer than the prompt timeout; the modem waits for text
    modem = transport(fake)
    try:
        with pytest.raises(TemporaryDeliveryError, match="no prompt"):
            modem.send(text("late"))
        fake.prompt_delay = 0.0
        time.sleep(0.5)  # the late prompt arrives on the old port, closed now
        modem.send(text("late"))
    finally:
        modem.close()
    assert fake.aborted == [b""]  # ESC left the text before anything was typed
    assert [s.text for s in fake.sent] == ["late"]


def test_a_modem_that_restarts_between_texts_is_initialised_again(fake: FakeModem) -> None:
    modem = transport(fake)
    try:
        modem.send(text("before"))
        fake.reboot()  # RDY, echo on, PDU mode: a send now would fail
        time.sleep(0.1)
        modem.send(text("after", 2))
    finally:
        modem.close()
    assert [s.text for s in fake.sent] == ["before", "after"]
    assert fake.commands.count("AT+CMGF=1") == 2


def test_a_modem_that_restarts_silently_gets_the_text_at_once(fake: FakeModem) -> None:
    modem = transport(fake)
    try:
        modem.send(text("before"))
        fake.forget()  # echo on, CMEE=0, PDU mode, and not a word about it
        modem.send(text("after", 2))
    finally:
        modem.close()
    assert [s.text for s in fake.sent] == ["before", "after"]
    assert fake.commands.count("AT+CMGF=1") == 2


def test_a_text_whose_result_never_comes_is_temporary_and_may_repeat(fake: FakeModem) -> None:
    fake.hang_after_text = 1.2
    modem = transport(fake)
    try:
        started = time.monotonic()
        with pytest.raises(TemporaryDeliveryError, match="may have gone") as info:
            modem.send(text("alarm"))
        assert info.value.scope == "transport"
        assert time.monotonic() - started < 1.8  # the result timeout (1 s)
        fake.hang_after_text = 0.0
        while fake.hanging:
            time.sleep(0.05)
        modem.send(text("alarm"))  # the engine's retry
    finally:
        modem.close()
    # The modem had sent it: the retry repeats it (at most one repeat per hang).
    assert [s.text for s in fake.sent] == ["alarm", "alarm"]


def test_a_device_that_vanishes_and_comes_back_is_found_again(fake: FakeModem) -> None:
    modem = transport(fake)
    try:
        modem.send(text("before"))
        fake.unplug()
        with pytest.raises(TemporaryDeliveryError, match=r"not found|failed") as info:
            modem.send(text("during", 2))
        assert info.value.scope == "transport"
        fake.plug()  # a new pty; the link moved to it
        modem.send(text("during", 2))
        # Moved again while the port is open: followed without an error.
        fake.unplug()
        fake.plug()
        modem.send(text("after", 3))
    finally:
        modem.close()
    assert [s.text for s in fake.sent] == ["before", "during", "after"]
    assert len(set(fake.ptys)) >= 2


def test_a_device_unplugged_in_the_middle_of_a_send(fake: FakeModem) -> None:
    fake.prompt_delay = 0.4
    modem = transport(fake)
    try:
        modem.probe()
        threading.Timer(0.1, fake.unplug).start()  # while AT+CMGS waits for its prompt
        with pytest.raises(TemporaryDeliveryError, match="failed while sending") as info:
            modem.send(text("alarm"))
        assert info.value.scope == "transport"
        fake.prompt_delay = 0.0
        fake.plug()
        modem.send(text("alarm"))
    finally:
        modem.close()
    assert [s.text for s in fake.sent] == ["alarm"]


def test_probe_says_sim_signal_and_registration(fake: FakeModem) -> None:
    modem = transport(fake)
    try:
        line = modem.probe()
        fake.creg, fake.csq = 2, (99, 99)
        searching = modem.probe()
        fake.sim = (30, 30)
        health = modem.health()
    finally:
        modem.close()
    assert (
        line == f"modem {fake.link}: SIM READY, signal 20/31 (-73 dBm), registered (home network); "
        "voice calls: not tried yet (AT+CLCC answered)"
    )
    assert "signal unknown, not registered, searching" in searching
    assert (health.signal, health.registered, health.sim_used, health.sim_total) == (
        None,
        False,
        30,
        30,
    )
    assert fake.sent == []


def test_a_missing_device_is_a_clear_error(tmp_path: Path) -> None:
    modem = ModemTransport(ModemConfig(device=str(tmp_path / "ttyUSB7")), **TIMEOUTS)
    with pytest.raises(TemporaryDeliveryError, match="ttyUSB7 not found") as info:
        modem.probe()
    assert "/dev/serial/by-id" in str(info.value)
    with pytest.raises(TemporaryDeliveryError, match="not found"):
        modem.send(text("hello"))


def test_a_port_held_by_another_program_is_a_clear_error(fake: FakeModem) -> None:
    first, second = transport(fake), transport(fake)
    try:
        first.probe()
        with pytest.raises(TemporaryDeliveryError, match="held by another program"):
            second.probe()
    finally:
        first.close()
        second.close()


def test_a_bad_number_is_permanent_and_touches_no_modem(fake: FakeModem) -> None:
    modem = transport(fake)
    with pytest.raises(PermanentDeliveryError, match=r"E\.164"):
        modem.send(OutgoingText(id="t1", address='+1555"\rATD112;', body="hi"))
    assert fake.commands == []


def test_stats_are_the_modems_health_for_the_stats_topic(fake: FakeModem) -> None:
    modem = transport(fake)
    try:
        fake.sim = (12, 30)
        stats = modem.stats()
    finally:
        modem.close()
    assert stats == {
        "modem_signal": 20,
        "modem_registered": True,
        "modem_sim_used": 12,
        "modem_sim_total": 30,
    }
    assert fake.sent == []
