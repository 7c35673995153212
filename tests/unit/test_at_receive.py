"""at.py: reading received texts (``AT+CMGL`` / ``AT+CMGR`` replies), pure."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqtt2sms.transports import at
from mqtt2sms.transports.at import Exchange, LineReader, Reply

SENDER = "+15551234567"
STAMP = "24/03/09,14:05:00-20"  # -20 quarter hours: UTC-5


def hexed(text: str) -> str:
    return text.encode("utf-16-be").hex().upper()


def reply_to(command: str, raw: str) -> Reply:
    """What an Exchange makes of ``raw`` (as the modem writes it) after ``command``."""
    reader = LineReader()
    reader.feed(raw.encode("latin-1"))
    exchange = Exchange(command)
    while (item := reader.pop()) is not None:
        reply = exchange.take(item)
        if reply is not None:
            return reply
    raise AssertionError("no final result")


def cmgl_entry(index: int, body: str, length: int | None, sender: str = SENDER) -> str:
    tail = "" if length is None else f",145,{length}"
    return f'\r\n+CMGL: {index},"REC UNREAD","{sender}","","{STAMP}"{tail}\r\n{body}\r\n'


# -- decoding ---------------------------------------------------------------------------------


@given(st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1))
def test_ucs2_hex_of_any_text_round_trips_with_the_length_in_octets(text: str) -> None:
    data = hexed(text)
    assert at.decode_received(data, len(data) // 2) == text


@given(st.text(alphabet="0123456789ABCDEFabcdef", min_size=1, max_size=40))
def test_a_gsm_text_of_hex_digits_is_never_decoded_when_its_length_is_given(data: str) -> None:
    assert at.decode_received(data, len(data)) == data


@given(st.text(alphabet="0123456789", min_size=1, max_size=7))
def test_a_short_digit_reply_is_never_decoded_even_without_a_length(data: str) -> None:
    assert at.decode_received(data, None) == data


@pytest.mark.parametrize("data", ["4170", "ACDC", "1234", "0041", "D83DDE00"])
def test_the_classic_ambiguous_replies_stay_as_typed(data: str) -> None:
    assert at.decode_received(data, len(data)) == data
    assert at.decode_received(data, None) == data


def test_an_iphone_reply_with_a_curly_quote_and_an_emoji_is_decoded() -> None:
    text = "It\u2019s ok \U0001f44d ACK 417"
    data = hexed(text)
    assert at.decode_received(data, len(data) // 2) == text
    assert at.decode_received(data, len(data) // 4) == text  # a modem counting UTF-16 units
    assert at.decode_received(data, None) == text  # mostly ASCII, a non-GSM character
    assert at.decode_received(data, 5, dcs=8) == text  # the coding scheme decides


def test_without_a_length_hex_that_is_not_mostly_ascii_is_left_alone() -> None:
    data = hexed("Протечка")
    assert at.decode_received(data, None) == data
    assert at.decode_received(data, len(data) // 2) == "Протечка"


def test_a_gsm_coding_scheme_is_never_decoded_as_hex() -> None:
    data = hexed("It\u2019s")
    assert at.decode_received(data, len(data) // 2, dcs=0) == data


def test_a_lone_surrogate_is_not_taken_for_ucs2() -> None:
    assert at.decode_received("D83D0041", 4) == "D83D0041"


def test_gsm_code_points_become_unicode() -> None:
    assert at.from_gsm("\x00home \x025 a\x11b \x1be5 \x1b<x\x1b>") == "@home $5 a_b €5 [x]"


# -- timestamps -------------------------------------------------------------------------------


def test_the_service_centre_stamp_is_an_aware_datetime() -> None:
    got = at.parse_scts(STAMP)
    assert got == dt.datetime(2024, 3, 9, 14, 5, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert at.parse_scts("24/03/09,14:05:00+22") == dt.datetime(
        2024, 3, 9, 14, 5, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))
    )


@pytest.mark.parametrize("stamp", ["", "24/13/09,14:05:00+00", "24/02/30,14:05:00+00", "soon"])
def test_an_unparseable_stamp_is_none(stamp: str) -> None:
    assert at.parse_scts(stamp) is None


# -- headers and listings ---------------------------------------------------------------------


def test_headers_with_and_without_csdh() -> None:
    h = at.parse_text_header(f'+CMGL: 3,"REC READ","+15551234567","","{STAMP}",145,12')
    assert h == at.TextHeader(3, "REC READ", SENDER, STAMP, 12, None)
    h = at.parse_text_header(f'+CMGL: 0,"REC UNREAD","5551234567",,"{STAMP}"')
    assert h == at.TextHeader(0, "REC UNREAD", "5551234567", STAMP, None, None)
    h = at.parse_text_header(
        f'+CMGR: "REC READ","+15551234567","","{STAMP}",145,4,0,8,"+15550000000",145,6'
    )
    assert h == at.TextHeader(None, "REC READ", SENDER, STAMP, 6, 8)
    assert at.parse_text_header('+CMGL: 4,"STO SENT","+15551234567","",145,5') is None


def test_a_listing_with_multi_line_bodies_and_bodies_that_look_like_results() -> None:
    emoji = "Thanks \U0001f600"
    raw = (
        cmgl_entry(1, "OK", 2)
        + cmgl_entry(2, "Line one\nRING\r\nline three", 25)
        + cmgl_entry(4, hexed(emoji), len(hexed(emoji)) // 2)
        + '\r\n+CMGL: 5,"STO UNSENT","+15550000000","",145,5\r\nhello\r\n'
        + cmgl_entry(7, "ERROR", 5, sender="5551234567")
        + "\r\nOK\r\n"
    )
    reply = reply_to(at.cmgl(), raw)
    assert reply.ok
    texts = at.parse_texts(reply)
    assert [(t.index, t.sender, t.text) for t in texts] == [
        (1, SENDER, "OK"),
        (2, SENDER, "Line one\nRING\nline three"),
        (4, SENDER, emoji),
        (7, "5551234567", "ERROR"),
    ]
    assert all(t.at == at.parse_scts(STAMP) for t in texts)


def test_a_listing_without_lengths_ends_each_body_at_the_next_header_or_ok() -> None:
    raw = cmgl_entry(1, "first\r\nsecond", None) + cmgl_entry(2, "417", None) + "\r\nOK\r\n"
    texts = at.parse_texts(reply_to(at.cmgl(), raw))
    assert [(t.index, t.text) for t in texts] == [(1, "first\nsecond"), (2, "417")]


def test_an_unsolicited_line_after_a_complete_body_stays_unsolicited() -> None:
    exchange = Exchange(at.cmgl())
    reader = LineReader()
    reader.feed((cmgl_entry(1, "ACK 417", 7) + '\r\n+CMTI: "SM",2\r\n\r\nOK\r\n').encode())
    reply = None
    while reply is None and (item := reader.pop()) is not None:
        reply = exchange.take(item)
    assert reply is not None and reply.ok
    assert [t.text for t in at.parse_texts(reply)] == ["ACK 417"]
    assert exchange.unsolicited == ['+CMTI: "SM",2']


def test_cmgr_reads_one_text_by_the_index_asked() -> None:
    raw = (
        f'\r\n+CMGR: "REC READ","{SENDER}","","{STAMP}",145,4,0,0,"+15550000000",145,4\r\n'
        "4170\r\n\r\nOK\r\n"
    )
    [text] = at.parse_texts(reply_to(at.cmgr(9), raw), index=9)
    assert (text.index, text.text) == (9, "4170")
    assert at.parse_texts(reply_to(at.cmgr(9), "\r\nOK\r\n"), index=9) == []


def test_the_digest_tells_a_new_text_at_the_same_index_apart() -> None:
    a = at.StoredText(1, "REC READ", SENDER, STAMP, None, "ACK 417")
    b = at.StoredText(1, "REC UNREAD", SENDER, STAMP, None, "ACK 417")
    c = at.StoredText(1, "REC READ", SENDER, "24/03/09,14:06:00-20", None, "ACK 417")
    assert a.digest == b.digest != c.digest
    assert len(a.digest) == 12


def test_commands_delete_one_index_only() -> None:
    assert at.cmgd(3) == "AT+CMGD=3"
    assert at.cmgr(3) == "AT+CMGR=3"
    assert at.cpms_read("ME") == 'AT+CPMS="ME"'
