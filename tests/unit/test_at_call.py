"""at.py: voice calls (``ATD``, ``AT+CLCC``, the final result lines), pure."""

from __future__ import annotations

import pytest

from mqtt2sms.transports import at
from mqtt2sms.transports.at import CallLine, Exchange, LineReader, Reply

NUMBER = "+15551234567"


def reply_to(command: str, raw: str) -> tuple[Reply, list[str]]:
    """What an Exchange makes of ``raw`` after ``command``, and the unsolicited lines."""
    reader = LineReader()
    reader.feed(raw.encode("latin-1"))
    exchange = Exchange(command)
    while (item := reader.pop()) is not None:
        reply = exchange.take(item)
        if reply is not None:
            return reply, exchange.unsolicited
    raise AssertionError(f"no complete reply in {raw!r}")


def test_atd_is_a_voice_call_to_an_e164_number() -> None:
    assert at.atd(NUMBER) == "ATD+15551234567;"
    assert at.atd("+447700900123") == "ATD+447700900123;"


@pytest.mark.parametrize(
    "number",
    [
        "15551234567",  # no +
        "+1555123456789012",  # 16 digits
        "+0123456789",  # no country code starts with 0
        "+1555",  # too short
        "+1555123,4567",  # a pause
        "+15551234567;",  # a second command
        "+15551234567I",  # caller-id switch
        ">1",  # a phonebook entry
        "*#06#",
        "+1555 123 4567",
        "",
    ],
)
def test_atd_refuses_anything_but_e164(number: str) -> None:
    with pytest.raises(ValueError, match=r"E\.164"):
        at.atd(number)


@pytest.mark.parametrize(
    ("line", "call"),
    [
        ('+CLCC: 1,0,2,0,0,"+15551234567",145', CallLine(1, True, "dialing", True, NUMBER)),
        ('+CLCC: 1,0,3,0,0,"+15551234567",145', CallLine(1, True, "alerting", True, NUMBER)),
        ('+CLCC: 1,0,0,0,0,"+15551234567",145', CallLine(1, True, "active", True, NUMBER)),
        ("+CLCC: 2,1,4,0,0", CallLine(2, False, "incoming", True, "")),  # no number
        # SIM800 adds the phonebook name; commas inside quotes are kept
        (
            '+CLCC: 1,0,3,0,0,"5551234567",129,"Doe, J"',
            CallLine(1, True, "alerting", True, "5551234567"),
        ),
        ('+CLCC: 1,0,6,0,0,"+15551234567",145', CallLine(1, True, "disconnect", True, NUMBER)),
        ('+CLCC: 1,0,9,1,0,"",128', CallLine(1, True, "stat 9", False, "")),
    ],
)
def test_clcc_lines_are_read(line: str, call: CallLine) -> None:
    assert at.parse_clcc(line) == call


@pytest.mark.parametrize("line", ["+CLCC:", "+CLCC: 1,0", "+CLCC: a,b,c,d,e", "+CSQ: 20,0", "OK"])
def test_lines_that_are_no_call_are_none(line: str) -> None:
    assert at.parse_clcc(line) is None


def test_clcc_reply_gives_our_outgoing_voice_call() -> None:
    raw = (
        '\r\n+CLCC: 1,1,4,0,0,"+15550000000",145\r\n'  # an incoming call first
        '\r\n+CLCC: 2,0,3,0,0,"+15551234567",145\r\n\r\nOK\r\n'
    )
    reply, _ = reply_to("AT+CLCC", raw)
    assert at.outgoing_call(reply) == CallLine(2, True, "alerting", True, NUMBER)
    empty, _ = reply_to("AT+CLCC", "\r\nOK\r\n")
    assert at.outgoing_call(empty) is None
    data, _ = reply_to("AT+CLCC", '\r\n+CLCC: 1,0,0,1,0,"",128\r\n\r\nOK\r\n')  # a data call
    assert at.outgoing_call(data) is None


def test_a_final_line_during_clcc_is_unsolicited_not_the_reply() -> None:
    reply, unsolicited = reply_to(
        "AT+CLCC", '\r\nNO CARRIER\r\n\r\n+CLCC: 1,0,3,0,0,"+15551234567",145\r\n\r\nOK\r\n'
    )
    assert reply.ok and unsolicited == ["NO CARRIER"]
    assert at.outgoing_call(reply) is not None


def test_clcc_and_voice_call_urcs_are_unsolicited_during_other_commands() -> None:
    raw = (
        '\r\n+CLCC: 1,0,0,0,0,"+15551234567",145\r\n\r\nVOICE CALL: BEGIN\r\n'
        "\r\nMO CONNECTED\r\n\r\n+CSQ: 20,0\r\n\r\nOK\r\n"
    )
    reply, unsolicited = reply_to("AT+CSQ", raw)
    assert reply.lines == ("+CSQ: 20,0",)
    assert unsolicited == [
        '+CLCC: 1,0,0,0,0,"+15551234567",145',
        "VOICE CALL: BEGIN",
        "MO CONNECTED",
    ]


@pytest.mark.parametrize(
    ("raw", "verdict"),
    [
        ("\r\nOK\r\n", "dialling"),
        ("\r\nBUSY\r\n", "busy"),
        ("\r\nNO ANSWER\r\n", "no-answer"),
        ("\r\nERROR\r\n", "refused"),
        ("\r\n+CME ERROR: 3\r\n", "refused"),  # operation not allowed
        ("\r\n+CME ERROR: 4\r\n", "refused"),  # operation not supported
        ("\r\n+CME ERROR: 100\r\n", "refused"),
        ("\r\nNO CARRIER\r\n", "refused"),  # at once: a data-only stick
        ("\r\nNO DIALTONE\r\n", "refused"),
        ("\r\nCOMMAND NOT SUPPORT\r\n", "refused"),  # Huawei
        ("\r\n+CME ERROR: 30\r\n", "down"),  # no network service: may call later
        ("\r\n+CME ERROR: 10\r\n", "down"),  # no SIM
        ("\r\n+CME ERROR: 11\r\n", "down"),  # the SIM wants its PIN
        ("\r\n+CME ERROR: 32\r\n", "down"),  # emergency calls only
    ],
)
def test_the_dial_result_says_what_to_do(raw: str, verdict: str) -> None:
    reply, _ = reply_to(at.atd(NUMBER), raw)
    assert at.dial_verdict(reply) == verdict


def test_the_dial_reply_ignores_echo_and_unsolicited_lines() -> None:
    command = at.atd(NUMBER)
    reply, unsolicited = reply_to(command, f'{command}\r\r\n+CMTI: "SM",3\r\n\r\nOK\r\n')
    assert reply.echoed and at.dial_verdict(reply) == "dialling"
    assert unsolicited == ['+CMTI: "SM",3']


@pytest.mark.parametrize(
    ("line", "event"),
    [
        ("BUSY", "busy"),
        ("NO ANSWER", "no-answer"),
        ("NO CARRIER", "ended"),
        ("VOICE CALL: END: 000012", "ended"),
        ("VOICE CALL: BEGIN", "active"),
        ("MO CONNECTED", "active"),
        ('+CLCC: 1,0,0,0,0,"+15551234567",145', "active"),
        ('+CLCC: 1,0,6,0,0,"+15551234567",145', "ended"),
        ('+CLCC: 1,0,3,0,0,"+15551234567",145', None),  # still ringing
        ('+CLCC: 1,1,0,0,0,"+15550000000",145', None),  # someone else's call
        ("MO RING", None),
        ("RING", None),
        ('+CMTI: "SM",1', None),
    ],
)
def test_unsolicited_lines_say_what_happened_to_the_call(line: str, event: str | None) -> None:
    assert at.call_progress(line) == event


@pytest.mark.parametrize(
    ("event", "answered", "outcome"),
    [
        ("busy", False, "busy"),
        ("no-answer", False, "no-answer"),
        ("ended", False, "no-answer"),  # rejected, or the network ended it
        ("ended", True, "answered"),  # the callee hung up after answering
        ("busy", True, "busy"),
    ],
)
def test_how_a_call_ended_is_its_outcome(event: at.CallEvent, answered: bool, outcome: str) -> None:
    assert at.call_outcome(event, answered) == outcome
