"""The acknowledgement grammar (mqtt2sms/replies.py): parse, matches, e164, contact_of, mask."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from mqtt2sms.config.model import Contact
from mqtt2sms.replies import (
    OPT_OUT,
    QUOTES,
    SLACK,
    Candidate,
    Reply,
    contact_of,
    e164,
    mask,
    matches,
    parse,
)

UTC = dt.UTC
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def code(c: str) -> Reply:
    return Reply("code", c)


ALL = Reply("all")
BARE = Reply("bare")

# --- strategies ----------------------------------------------------------------------------

codes = st.integers(min_value=100, max_value=9999).map(str)
names = st.sampled_from(["alex", "sam", "kim", "jo"])
replies = st.one_of(codes.map(code), st.just(ALL), st.just(BARE))
instants = st.integers(min_value=-3 * 3600, max_value=3 * 3600).map(at)
candidates = st.builds(
    Candidate,
    code=codes,
    texted=st.frozensets(names, max_size=4),
    opened_at=instants,
)
candidate_lists = st.lists(candidates, max_size=5)
REACTIONS = [
    *("Liked", "Loved", "Laughed at", "Emphasized", "Questioned", "Disliked", "Reacted 👍 to"),
    *("👍 to", "", "Fwd:", "lol", "see", "ok", "what is this"),
]
LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")  # str.splitlines()
ascii_words = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1)


def cased(word: str) -> st.SearchStrategy[str]:
    """``word`` with each letter in either case."""
    flips = st.lists(st.booleans(), min_size=len(word), max_size=len(word))
    return flips.map(
        lambda fs: "".join(c.lower() if f else c.upper() for c, f in zip(word, fs, strict=True))
    )


# --- parse: the table ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("ACK 417", code("417")),
        ("ack 417", code("417")),
        ("Ack417", code("417")),
        ("ACK: 417", code("417")),
        ("ACK #417", code("417")),
        ("ACK-417", code("417")),
        ("ack - 417", code("417")),
        ("OK 417", code("417")),
        ("ok 417 on my way", code("417")),
        ("OK#417", code("417")),
        ("  ACK 417!  ", code("417")),
        ("ACK 9999", code("9999")),
        ("ACK 100", code("100")),
        ("ACK 417, on it", code("417")),
        ("417", code("417")),
        ("417.", code("417")),
        (" 1030 !", code("1030")),
        ("ACK ALL", ALL),
        ("ack all", ALL),
        ("ACK ALL, heading over", ALL),
        ("OK ALL", ALL),
        ("ok all.", ALL),
        ("ACK", BARE),
        ("ack.", BARE),
        (" Ack! ", BARE),
        # never
        ("Home by 1030", None),
        ("home by 1030.", None),
        ("I will ACK 417", None),
        ("OK", None),
        ("ok!", None),
        ("OK all good", None),
        ("ACK ALLOW", None),
        ("ack 12", None),
        ("ack 12345", None),
        ("12345", None),
        ("41", None),
        ("0417", None),
        ("ACK 0417", None),
        ("Acknowledged", None),
        ("acknowledged 417", None),
        ("OK 1030am", None),
        ("OK 103.5", None),
        ("ok 1030/1100", None),
        ("okay 417", None),
        ("ACKS 417", None),
        ("OK, 417", None),
        ("1030 is when I'm home", None),
        ("", None),
        ("   ", None),
        ("👍", None),
    ],
)
def test_parse_table(text: str, want: Reply | None) -> None:
    assert parse(text) == want


@pytest.mark.parametrize(
    "text",
    [
        "Liked “Smoke in hall. Reply ACK 417”",
        "Loved “Smoke in hall. Reply ACK 417”",
        "Laughed at “Smoke in hall. Reply ACK 417”",
        "Emphasized “Smoke in hall. Reply ACK 417”",
        "Questioned “Smoke in hall. Reply ACK 417”",
        "Disliked “Smoke in hall. Reply ACK 417”",
        "Reacted 👍 to “Smoke in hall. Reply ACK 417”",
        "Removed a heart from “Smoke in hall. Reply ACK 417”",
        '👍 to "Smoke in hall. Reply ACK 417"',
        '❤️ to "Smoke in hall. Reply ACK 417"',
        "Liked „Rauch im Flur. Reply ACK 417“",
        "A aimé « Fumée dans le couloir. Reply ACK 417 »",
        "Liked “Smoke in hall. Reply ACK 417",  # cut short: unbalanced, to the end
        "Liked “Door “front” open. Reply ACK 417”",  # quote marks inside the alert
        'Liked “Door "front" open. "Reply ACK 417”',
        "“417”",
        '"ACK 417"',
        "> Smoke in hall. Reply ACK 417",
        "Fwd:\n> Smoke in hall. Reply ACK 417",
        "On Sat, Dec 5, 2026 at 6:00 AM mqtt2sms wrote:\nACK 417",
        "-----Original Message-----\nACK 417",
        "---------- Forwarded message ---------\nFrom: alerts\nReply ACK 417",
        "Begin forwarded message:\n\nACK 417",
        "Liked ＂Smoke in hall. Reply ACK 417＂",  # full-width quote marks
        "“Door” ACK 417 “open”",  # from the first quote mark to the last, not pair by pair
    ],
)
def test_quoted_text_never_acknowledges(text: str) -> None:
    assert parse(text) is None


@pytest.mark.parametrize(
    ("text", "want"),
    [
        # what a person types before the quoted alert still counts
        ("ACK 417\n> Smoke in hall. Reply ACK 417", code("417")),
        ("ACK 417\n\nOn Sat, Dec 5, 2026, mqtt2sms wrote:\n> Smoke. Reply ACK 417", code("417")),
        ('ok 417 "on my way"', code("417")),
        ("ACK 417\nSent from my iPhone", code("417")),
        ("417 “got it”", code("417")),
        # a reply typed below the quoted alert, or above a reply header
        ("> Smoke in hall. Reply ACK 417\nACK 417", code("417")),
        ("> Smoke in hall. Reply ACK 417\n>\n417", code("417")),
        ("ACK\n> Smoke in hall. Reply ACK 417", BARE),
        ("ACK\n\nOn Sat, Dec 5, 2026 at 6:00 AM mqtt2sms wrote:\nSmoke. Reply ACK 417", BARE),
        ("417\n-----Original Message-----\nHome by 1030", code("417")),
        ("ack all\nFrom: alerts@example.com\nSmoke. Reply ACK 417", ALL),
        # an apostrophe is not a quote mark
        ("ACK 417 I’m on it", code("417")),
    ],
)
def test_text_around_quotes(text: str, want: Reply) -> None:
    assert parse(text) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        # NFKC: full-width letters and digits, a no-break space
        ("ＡＣＫ　４１７", code("417")),
        ("ＡＣＫ ＡＬＬ", ALL),
        ("ack\u00a0417", code("417")),
        ("４１７", code("417")),
        # other scripts' decimal digits are the same number
        ("٤١٧", code("417")),
        ("ACK ۴۱۷", code("417")),
        ("ACK ४१७", code("417")),
        # invisible format characters are dropped
        ("\ufeffACK 417", code("417")),
        ("ACK\u200b417", code("417")),
        ("\u200eACK 417", code("417")),
        # still not 5 digits, whatever they look like
        ("ACK ４１７５６", None),
    ],
)
def test_unicode_forms(text: str, want: Reply | None) -> None:
    assert parse(text) == want


@pytest.mark.parametrize("word", [*sorted(OPT_OUT), "stop all", "Stop", "stop.", "ＳＴＯＰ"])
@pytest.mark.parametrize("rest", ["", " ACK 417", ", ack 417", " 417", "\nACK ALL", " ACK"])
def test_opt_out_table(word: str, rest: str) -> None:
    assert parse(word + rest) is None


@given(st.text())
def test_parse_never_raises(text: str) -> None:
    reply = parse(text)
    assert reply is None or isinstance(reply, Reply)


@given(st.data(), st.sampled_from(sorted(OPT_OUT)), st.text())
def test_opt_out_first_word_never_acknowledges(data: st.DataObject, word: str, rest: str) -> None:
    lead = data.draw(st.sampled_from(["", " ", "\n", "\t "]))
    sep = data.draw(st.sampled_from([" ", ", ", ". ", "! ", "\n", ": "]))
    assert parse(lead + data.draw(cased(word)) + sep + rest) is None


@given(st.data(), codes)
def test_ack_or_ok_then_code_acknowledges_it(data: st.DataObject, c: str) -> None:
    word = data.draw(st.sampled_from(["ACK", "OK"]).flatmap(cased))
    sep = data.draw(st.sampled_from(["", " ", ":", ": ", " #", "#", "-", " - ", "  "]))
    tail = data.draw(st.sampled_from(["", ".", "!", " on my way", ", thanks", "\nbe there soon"]))
    assert parse(word + sep + c + tail) == code(c)


@given(codes, st.sampled_from(["", ".", "!", " ", "?!"]))
def test_exactly_a_code_acknowledges_it(c: str, tail: str) -> None:
    assert parse(c + tail) == code(c)


@given(st.lists(ascii_words, min_size=1, max_size=4), codes, st.lists(ascii_words, max_size=3))
def test_code_inside_a_sentence_never_acknowledges(
    before: list[str], c: str, after: list[str]
) -> None:
    assume(before[0].upper() not in ("ACK", "OK"))
    assert parse(" ".join([*before, c, *after])) is None


@given(codes, st.lists(ascii_words, min_size=1, max_size=4))
def test_code_starting_a_sentence_never_acknowledges(c: str, after: list[str]) -> None:
    assert parse(" ".join([c, *after])) is None


@given(
    st.sampled_from(REACTIONS),
    st.sampled_from(sorted(QUOTES)),
    st.sampled_from([*sorted(QUOTES), ""]),
    st.text(alphabet=st.characters(exclude_characters=LINE_BREAKS)),
    st.text(alphabet=st.characters(exclude_characters=LINE_BREAKS)),
    codes,
)
def test_quoted_reply_ack_never_acknowledges(
    prefix: str, opening: str, closing: str, left: str, right: str, c: str
) -> None:
    text = f"{prefix} {opening}{left}Reply ACK {c}{right}{closing}"
    assert parse(prefix) is None
    assert parse(text) is None


@given(
    st.text(alphabet=st.characters(exclude_characters=QUOTES | LINE_BREAKS)),
    st.sampled_from(sorted(QUOTES)),
    st.text(alphabet=st.characters(exclude_characters=LINE_BREAKS)),
    st.sampled_from([*sorted(QUOTES), ""]),
)
def test_quoted_text_changes_nothing(prefix: str, opening: str, inside: str, closing: str) -> None:
    """Whatever follows the first quote mark of a text that ends in a quote (or never closes
    it) is as good as absent, including a well-formed acknowledgement."""
    assume(not any(q in inside for q in QUOTES) or closing)
    assert parse(prefix + opening + inside + closing) == parse(prefix)


# --- Reply and Candidate refuse nonsense ---------------------------------------------------


def test_reply_and_candidate_validate() -> None:
    with pytest.raises(ValueError, match="3 or 4 digits"):
        Reply("code", "12")
    with pytest.raises(ValueError, match="3 or 4 digits"):
        Reply("code")
    with pytest.raises(ValueError, match="no code"):
        Reply("all", "417")
    with pytest.raises(ValueError, match="timezone-aware"):
        Candidate("417", frozenset({"alex"}), dt.datetime(2026, 6, 1, 12, 0))


# --- matches: the table --------------------------------------------------------------------

A = Candidate("417", frozenset({"alex", "sam"}), T0)
B = Candidate("1030", frozenset({"alex"}), at(60))
C = Candidate("555", frozenset({"kim"}), at(-600))


@pytest.mark.parametrize(
    ("reply", "contact", "stamp", "seen", "cands", "open_count", "want"),
    [
        (code("417"), "alex", at(5), at(10), [A, B], 2, ["417"]),
        (code("417"), "sam", at(5), at(10), [A, B], 2, ["417"]),
        (code("1030"), "sam", at(70), at(80), [A, B], 2, []),  # B never texted sam
        (code("999"), "alex", at(5), at(10), [A, B], 2, []),  # no such incident
        (code("417"), None, at(5), at(10), [A, B], 2, []),  # a stranger
        (ALL, "alex", at(70), at(80), [A, B, C], 3, ["417", "1030"]),
        (ALL, "kim", at(70), at(80), [A, B, C], 3, ["555"]),
        (ALL, None, at(70), at(80), [A, B, C], 3, []),
        (BARE, "alex", at(5), at(10), [A], 1, ["417"]),
        (BARE, "alex", at(5), at(10), [A], 2, []),  # another incident is open
        (BARE, "alex", at(70), at(80), [A, B], 2, []),
        (BARE, "kim", at(5), at(10), [A], 1, []),  # not texted
        (BARE, "alex", at(5), at(10), [], 1, []),
        # the 2-minute slack for a phone clock that runs slow
        (code("417"), "alex", at(-120), at(10), [A], 1, ["417"]),
        (code("417"), "alex", at(-121), at(10), [A], 1, []),
        # a reply stamped before the second incident opened acknowledges only the first
        (ALL, "alex", at(-30), at(90), [A, B], 2, ["417", "1030"]),
        (ALL, "alex", at(-90), at(90), [A, B], 2, ["417"]),
        # no stamp: first seen at or after the opening
        (code("417"), "alex", None, at(0), [A], 1, ["417"]),
        (code("417"), "alex", None, at(-1), [A], 1, []),
        (ALL, "alex", None, at(30), [A, B], 2, ["417"]),
        # a naive stamp cannot be placed: as if there were none
        (code("417"), "alex", dt.datetime(2026, 6, 1, 12, 5), at(-1), [A], 1, []),
        (code("417"), "alex", dt.datetime(2026, 6, 1, 11, 0), at(1), [A], 1, ["417"]),
        # a stamp in another zone is the same instant
        (
            code("417"),
            "alex",
            dt.datetime(2026, 6, 1, 13, 59, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            at(10),
            [A],
            1,
            ["417"],
        ),
    ],
)
def test_matches_table(
    reply: Reply,
    contact: str | None,
    stamp: dt.datetime | None,
    seen: dt.datetime,
    cands: list[Candidate],
    open_count: int,
    want: list[str],
) -> None:
    assert matches(reply, contact, stamp, seen, cands, open_count) == want


@given(replies, st.none() | instants, instants, candidate_lists, st.integers(0, 6))
def test_a_stranger_never_acknowledges(
    reply: Reply,
    stamp: dt.datetime | None,
    seen: dt.datetime,
    cands: list[Candidate],
    open_count: int,
) -> None:
    assert matches(reply, None, stamp, seen, cands, open_count) == []


@given(replies, names, st.none() | instants, instants, candidate_lists, st.integers(0, 6))
def test_a_contact_not_yet_texted_never_acknowledges(
    reply: Reply,
    contact: str,
    stamp: dt.datetime | None,
    seen: dt.datetime,
    cands: list[Candidate],
    open_count: int,
) -> None:
    cands = [Candidate(c.code, c.texted - {contact}, c.opened_at) for c in cands]
    assert matches(reply, contact, stamp, seen, cands, open_count) == []


@given(replies, names, instants, instants, candidate_lists, st.integers(0, 6))
def test_every_code_acknowledged_passes_the_checks(
    reply: Reply,
    contact: str,
    stamp: dt.datetime,
    seen: dt.datetime,
    cands: list[Candidate],
    open_count: int,
) -> None:
    got = matches(reply, contact, stamp, seen, cands, open_count)
    assert len(got) == len(set(got))
    for c in got:
        assert any(
            k.code == c and contact in k.texted and stamp >= k.opened_at - SLACK for k in cands
        )
        if reply.kind == "code":
            assert c == reply.code


@given(
    replies,
    names,
    st.integers(min_value=121, max_value=10**6),
    instants,
    candidate_lists,
    st.integers(0, 6),
)
def test_a_reply_stamped_too_early_never_acknowledges(
    reply: Reply,
    contact: str,
    early: int,
    seen: dt.datetime,
    cands: list[Candidate],
    open_count: int,
) -> None:
    assume(cands)
    first = min(c.opened_at for c in cands)
    stamp = first - dt.timedelta(seconds=early)
    assert matches(reply, contact, stamp, seen, cands, open_count) == []


@given(names, st.none() | instants, instants, candidate_lists, st.integers(0, 6))
def test_bare_needs_exactly_one_open(
    contact: str,
    stamp: dt.datetime | None,
    seen: dt.datetime,
    cands: list[Candidate],
    open_count: int,
) -> None:
    got = matches(BARE, contact, stamp, seen, cands, open_count)
    if open_count != 1:
        assert got == []
    assert len(got) <= 1


@given(names, candidates)
def test_all_of_one_is_bare_of_one(contact: str, cand: Candidate) -> None:
    seen = cand.opened_at + dt.timedelta(seconds=1)
    want = [cand.code] if contact in cand.texted else []
    assert matches(BARE, contact, None, seen, [cand], 1) == want
    assert matches(ALL, contact, None, seen, [cand], 1) == want
    assert matches(code(cand.code), contact, None, seen, [cand], 1) == want


# --- who sent it ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "cc", "want"),
    [
        ("+15551234567", "1", "+15551234567"),
        (" +1 (555) 123-4567 ", "1", "+15551234567"),
        ("5551234567", "1", "+15551234567"),
        ("(555) 123-4567", "1", "+15551234567"),
        ("555.123.4567", "+1", "+15551234567"),
        ("15551234567", "1", "+15551234567"),
        ("5551234567@tmomail.net", "1", "+15551234567"),
        ("15551234567@vtext.com", "1", "+15551234567"),
        ("Alex <5551234567@vtext.com>", "1", "+15551234567"),
        ("＋１５５５１２３４５６７", "1", "+15551234567"),
        ("+447700900123", "1", "+447700900123"),
        ("07700 900123", "44", "+447700900123"),
        ("00447700900123", "44", "+447700900123"),
        ("TWILIO", "1", None),
        ("Verizon", "1", None),
        ("12345", "1", None),
        ("123456", "44", None),
        ("+12345", "1", None),
        ("alex@gmail.com", "1", None),
        ("alex.5551234567@example.com", "1", None),
        ("555123456", "1", None),  # 9 digits
        ("", "1", None),
        ("@", "1", None),
        ("5551234567", "bad", None),
    ],
)
def test_e164_table(sender: str, cc: str, want: str | None) -> None:
    assert e164(sender, cc) == want


@given(st.text(), st.text(max_size=4))
def test_e164_and_mask_never_raise(sender: str, cc: str) -> None:
    got = e164(sender, cc)
    assert got is None or (got.startswith("+") and got[1:].isdigit())
    assert isinstance(mask(sender), str)


CONTACTS = {
    "alex": Contact("alex", number="555-123-4567", e164="+15551234567"),
    "sam": Contact(
        "sam",
        number="555 765 4321",
        e164="+15557654321",
        carrier="tmobile",
        gateway_address="5557654321@tmomail.net",
    ),
    "kim": Contact("kim", email="5550001111@vtext.com", gateway_address="5550001111@vtext.com"),
    "jo": Contact("jo", email="jo@example.com", gateway_address="jo@example.com"),
    "lee": Contact("lee", number="555 222 3333", e164="+15552223333"),
}


@pytest.mark.parametrize(
    ("sender", "want"),
    [
        ("+15551234567", "alex"),
        ("5551234567", "alex"),
        ("(555) 123-4567", "alex"),
        ("15557654321", "sam"),
        ("5557654321@tmomail.net", "sam"),
        ("+15550001111", "kim"),  # the digits of kim's gateway address
        ("5550001111@vtext.com", "kim"),
        ("5550001111@vzwpix.com", "kim"),  # compared in E.164, not by address
        ("jo@example.com", None),  # an address with no number in it
        ("+15559999999", None),
        ("TWILIO", None),
        ("12345", None),
        ("", None),
    ],
)
def test_contact_of_table(sender: str, want: str | None) -> None:
    assert contact_of(sender, CONTACTS, "1") == want


def test_contact_of_no_contacts_and_shared_numbers() -> None:
    assert contact_of("+15551234567", {}, "1") is None
    twins = {
        "a": Contact("a", e164="+15551234567"),
        "b": Contact("b", e164="+15551234567"),
    }
    assert contact_of("5551234567", twins, "1") == "a"


@pytest.mark.parametrize(
    ("sender", "want"),
    [
        ("+15551234567", "+1555•••••67"),
        ("5551234567", "555•••••67"),
        ("+447700900123", "+4477••••••23"),
        ("5551234567@tmomail.net", "555•••••67@tmomail.net"),
        ("TWILIO", "••••IO"),
        ("12345", "•••••"),
        ("", ""),
        ("+1555\n1234567", "+1555••••••67"),
    ],
)
def test_mask_table(sender: str, want: str) -> None:
    assert mask(sender) == want


@given(st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True))
def test_mask_hides_the_middle_of_a_number(number: str) -> None:
    masked = mask(number)
    assert masked.endswith(number[-2:])
    assert "•" in masked
    assert sum(ch.isdigit() for ch in masked) <= 6  # 4 of the head, 2 of the tail
    assert "\n" not in mask(number + "\nX")
