"""sms.py: GSM-7 transliteration, septet counting, truncate and split."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqtt2sms.sms import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    choose_charset,
    compose,
    format_sms,
    septets,
    to_gsm7,
)

GSM7 = GSM7_BASIC | GSM7_EXTENSION
SUFFIXES = ["", " (+19 more)", " ACK 417", " (+1 more) €", "\n-- TEST"]


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def part_limit(max_length: int, charset: str, n_parts: int) -> int:
    if charset == "gsm7":
        return max_length if n_parts == 1 else min(max_length, 153)
    return min(max_length, 70) if n_parts == 1 else min(max_length, 67)


def measure(text: str, charset: str) -> int:
    return septets(text) if charset == "gsm7" else utf16_units(text)


def clean(text: str, charset: str) -> str:
    """What format_sms does to a text before fitting it (checked through a one-part result)."""
    return format_sms(text, max_length=10**6, charset=charset)[0]


# --------------------------------------------------------------------------- to_gsm7


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("“Hello” ‘world’", "\"Hello\" 'world'"),
        ("a – b — c", "a - b - c"),
        ("wait…", "wait..."),
        ("a\u00a0b\u2009c\u3000d", "a b c d"),
        ("Café", "Café"),
        ("naïve", "naive"),
        ("á í ó ú ç", "a i o u c"),
        (
            "é è ù ì ò Ç Ø ø Å å Ä Ö Ñ Ü ä ö ñ ü à ß Æ æ É",
            "é è ù ì ò Ç Ø ø Å å Ä Ö Ñ Ü ä ö ñ ü à ß Æ æ É",
        ),
        ("Fire 🔥 in the hall", "Fire in the hall"),
        ("🔥🔥 smoke", " smoke"),
        ("a\tb", "a b"),
        ("a\r\nb\rc", "a\nb\nc"),
        ("a\x07b", "a b"),
        ("zero\u200bwidth", "zerowidth"),
        ("21.5°C", "21.5C"),
        ("PM2.5 12 µg/m³", "PM2.5 12 ug/m3"),
        ("Łódź", "Lodz"),
        ("x²", "x2"),
        ("€ [ ] { } ^ ~ | \\", "€ [ ] { } ^ ~ | \\"),
        ("a\fb", "a b"),
        ("line   one  \n   line two", "line one\nline two"),
        ("a\n\n\n\nb", "a\n\nb"),
        ("Привет", ""),
    ],
)
def test_to_gsm7(text: str, expected: str) -> None:
    assert to_gsm7(text) == expected


@given(st.text())
def test_to_gsm7_only_gsm7(text: str) -> None:
    out = to_gsm7(text)
    assert set(out) <= GSM7
    assert "\r" not in out
    assert "\f" not in out
    assert "  " not in out


@given(st.text(alphabet=sorted(GSM7 - {"\r", "\f", " ", "\n"})))
def test_to_gsm7_keeps_gsm7(text: str) -> None:
    assert to_gsm7(text) == text


# --------------------------------------------------------------------------- septets


@pytest.mark.parametrize(
    ("text", "count"),
    [("", 0), ("abc", 3), ("€", 2), ("[x]", 5), ("é", 1), ("\n", 1), ("{}^~|\\", 12)],
)
def test_septets(text: str, count: int) -> None:
    assert septets(text) == count


# --------------------------------------------------------------------------- format_sms examples


def test_160_plain_chars_fit_exactly() -> None:
    assert format_sms("a" * 160) == ("a" * 160,)


def test_161_chars_are_truncated() -> None:
    (part,) = format_sms("a" * 161)
    assert part.endswith("...")
    assert len(part) == 160


def test_euro_counts_two() -> None:
    assert format_sms("€" * 80) == ("€" * 80,)
    (part,) = format_sms("€" * 81)
    assert part.endswith("...")
    assert septets(part) <= 160
    # the cut never leaves half of an extension character
    assert part == "€" * 78 + "..."


def test_truncate_at_word_boundary() -> None:
    text = "word " * 40
    (part,) = format_sms(text, max_length=50)
    assert part == "word " * 8 + "word..."
    assert len(part) <= 50


def test_truncate_hard_cut_without_nearby_boundary() -> None:
    text = "short " + "x" * 100
    (part,) = format_sms(text, max_length=40)
    assert part == "short " + "x" * 31 + "..."


def test_truncate_drops_trailing_punctuation_before_ellipsis() -> None:
    (part,) = format_sms("Hello, " + "x" * 100, max_length=20)
    assert part == "Hello, " + "x" * 10 + "..."
    (part,) = format_sms("a" * 80 + ". " + "b" * 30, max_length=90)
    assert part == "a" * 80 + "..."


def test_suffix_is_kept_and_text_cut() -> None:
    (part,) = format_sms("a" * 200, suffix=" (+19 more)")
    assert part.endswith("... (+19 more)")
    assert septets(part) == 160


def test_suffix_on_short_text() -> None:
    assert format_sms("Door open", suffix=" (+2 more)") == ("Door open (+2 more)",)


def test_suffix_longer_than_limit_is_cut_as_last_resort() -> None:
    (part,) = format_sms("hello", max_length=20, suffix=" " + "s" * 30)
    assert septets(part) <= 20
    assert part.startswith("hello ")
    assert part.endswith("...")


def test_empty_text() -> None:
    assert format_sms("") == ("",)
    assert format_sms("   \n ") == ("",)
    assert format_sms("🔥") == ("",)
    assert format_sms("🔥", suffix=" ACK 417") == ("ACK 417",)


def test_strip() -> None:
    assert format_sms("  hello \n") == ("hello",)


def test_split_prefixes() -> None:
    text = " ".join(f"w{i:03d}" for i in range(50))  # 249 characters
    parts = format_sms(text, long="split")
    assert len(parts) == 2
    assert parts[0].startswith("(1/2) ")
    assert parts[1].startswith("(2/2) ")
    assert all(septets(p) <= 153 for p in parts)
    rejoined = " ".join(p[len("(1/2) ") :] for p in parts)
    assert rejoined == text


def test_split_fits_in_one_part_has_no_prefix() -> None:
    assert format_sms("a" * 160, long="split") == ("a" * 160,)


def test_split_too_long_truncates_last_part() -> None:
    parts = format_sms("word " * 200, long="split", max_parts=3, suffix=" (+3 more)")
    assert len(parts) == 3
    assert [p[:6] for p in parts] == ["(1/3) ", "(2/3) ", "(3/3) "]
    assert parts[-1].endswith("... (+3 more)")
    assert all(septets(p) <= 153 for p in parts)


def test_split_max_parts_one_is_truncate() -> None:
    assert format_sms("a" * 300, long="split", max_parts=1) == format_sms("a" * 300)


def test_split_with_ten_or_more_parts() -> None:
    parts = format_sms("x " * 1000, long="split", max_parts=12, max_length=40)
    assert len(parts) == 12
    assert parts[0].startswith("(1/12) ")
    assert parts[-1].startswith("(12/12) ")
    assert all(septets(p) <= 40 for p in parts)


def test_unicode_keeps_characters() -> None:
    text = "Fire 🔥 in the “hall” – naïve"
    assert format_sms(text, charset="unicode") == (text,)


def test_unicode_limit_is_70_and_emoji_count_two() -> None:
    assert format_sms("a" * 70, charset="unicode") == ("a" * 70,)
    (part,) = format_sms("a" * 71, charset="unicode")
    assert part == "a" * 67 + "..."
    assert format_sms("🔥" * 35, charset="unicode") == ("🔥" * 35,)
    (part,) = format_sms("🔥" * 36, charset="unicode")
    assert part == "🔥" * 33 + "..."


def test_unicode_even_when_text_is_gsm7() -> None:
    (part,) = format_sms("a" * 100, charset="unicode", max_length=160)
    assert len(part) == 70


def test_unicode_split_parts_of_67() -> None:
    parts = format_sms("a" * 100, charset="unicode", long="split")
    assert parts == ("(1/2) " + "a" * 61, "(2/2) " + "a" * 39)


def test_unicode_strips_control_characters() -> None:
    assert format_sms("a\x00b\tc\r\nd", charset="unicode") == ("a b c\nd",)


def test_max_length_above_160_is_one_long_part() -> None:
    assert format_sms("a" * 300, max_length=400) == ("a" * 300,)


@pytest.mark.parametrize(
    ("kwargs"),
    [{"long": "wrap"}, {"charset": "ucs2"}, {"max_length": 0}, {"max_parts": 0}],
)
def test_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        format_sms("x", **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- properties

texts = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"]),
) | st.text(alphabet="ab €{}\n\t\r.,é🔥“", max_size=800)


@settings(max_examples=400, deadline=None)
@given(
    text=texts,
    max_length=st.integers(20, 500),
    long=st.sampled_from(["truncate", "split"]),
    max_parts=st.integers(1, 5),
    asked=st.sampled_from(["auto", "gsm7", "unicode"]),
    suffix=st.sampled_from(SUFFIXES),
)
def test_format_sms_properties(
    text: str, max_length: int, long: str, max_parts: int, asked: str, suffix: str
) -> None:
    parts = format_sms(
        text, max_length=max_length, long=long, max_parts=max_parts, charset=asked, suffix=suffix
    )
    charset = choose_charset("\n" + text + "\n" + suffix, asked)[0]
    latin = asked == "gsm7"
    assert 1 <= len(parts) <= max_parts
    if long == "truncate":
        assert len(parts) == 1
    limit = part_limit(max_length, charset, len(parts))
    for part in parts:
        assert measure(part, charset) <= limit
        if charset == "gsm7":
            assert set(part) <= GSM7
        assert "\r" not in part
        assert all(c == "\n" or c >= " " for c in part)

    body = clean(text, asked)
    tail = to_gsm7(suffix, latin=latin) if charset == "gsm7" else suffix
    if body:
        # a last part that holds only the suffix drops the suffix's leading whitespace
        n = len(parts)
        assert parts[-1].endswith(tail) or parts[-1] == f"({n}/{n}) " + tail.lstrip()
    else:
        assert parts == (tail.strip(),)

    if body and measure(body + tail, charset) <= part_limit(max_length, charset, 1):
        assert parts == (body + tail,)
    if len(parts) > 1:
        n = len(parts)
        assert [p.split(" ", 1)[0] for p in parts] == [f"({i}/{n})" for i in range(1, n + 1)]


@given(text=st.text(alphabet="abc €[", min_size=1, max_size=400))
def test_gsm7_text_that_fits_is_unchanged(text: str) -> None:
    cleaned = to_gsm7(text).strip()
    if septets(cleaned) <= 160:
        assert format_sms(text) == (cleaned,)


# --------------------------------------------------------------------------- charset auto


@pytest.mark.parametrize(
    ("text", "charset", "reason"),
    [
        ("Water leak", "gsm7", "GSM-7: every character is GSM-7"),
        ("Fire 🔥 in the “hall”", "gsm7", "GSM-7: transliterated, no letter lost"),
        ("Łódź: 21.5°C ≥ 20", "gsm7", "GSM-7: transliterated, no letter lost"),
        ("Привет мир: протечка", "unicode", "UCS-2: GSM-7 would delete the Cyrillic letters"),
        ("sms: Διαρροή", "unicode", "UCS-2: GSM-7 would delete the Greek letters"),
        ("漏水 kitchen", "unicode", "UCS-2: GSM-7 would delete the CJK letters"),
        ("Ω ΔΣ", "gsm7", "GSM-7: every character is GSM-7"),  # GSM-7 has these capitals
    ],
)
def test_choose_charset_auto(text: str, charset: str, reason: str) -> None:
    assert choose_charset(text, "auto") == (charset, reason)
    assert choose_charset(text) == (charset, reason)  # auto is the default


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("Привет мир: протечка", ("Привет мир: протечка",)),
        ("sms: Διαρροή νερού", ("sms: Διαρροή νερού",)),
        ("Fire 🔥 in the “hall”", ('Fire in the "hall"',)),
    ],
)
def test_auto_never_deletes_a_script(text: str, parts: tuple[str, ...]) -> None:
    assert format_sms(text, charset="auto") == parts


def test_auto_ucs2_limits() -> None:
    f = compose("Протечка " * 20, charset="auto", long="split", max_parts=3)
    assert f.charset == "unicode" and len(f.parts) == 3
    assert all(utf16_units(p) <= 67 for p in f.parts)


def test_gsm7_set_writes_cyrillic_and_greek_in_latin() -> None:
    f = compose("Привет мир: Протечка, Щука, Жук", charset="gsm7")
    assert f.parts == ("Privet mir: Protechka, Shchuka, Zhuk",)
    assert (f.charset, f.reason) == (
        "gsm7",
        "GSM-7 (charset gsm7 is set): Cyrillic letters written in Latin",
    )
    assert format_sms("Διαρροή νερού", charset="gsm7") == ("Diarroi neroy",)


def test_gsm7_set_falls_back_to_ucs2_for_a_script_it_cannot_write() -> None:
    f = compose("漏水 in the kitchen", charset="gsm7")
    assert f.parts == ("漏水 in the kitchen",)
    assert (f.charset, f.reason) == (
        "unicode",
        "UCS-2: charset gsm7 is set, but GSM-7 cannot write CJK",
    )


def test_unicode_set() -> None:
    assert choose_charset("Water leak", "unicode") == ("unicode", "UCS-2: charset unicode is set")


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"])))
def test_auto_keeps_every_letter(text: str) -> None:
    import unicodedata

    f = compose(text, charset="auto", max_length=10**6)
    if f.charset == "gsm7":
        out = f.parts[0]
        kept = {unicodedata.category(c)[0] for c in out}
        letters = [
            c
            for c in text
            if unicodedata.category(c)[0] in "LN" and unicodedata.category(c) != "Lm"
        ]
        assert not letters or kept & {"L", "N"}


def test_subject_is_transliterated_and_counted_in_gsm7() -> None:
    f = compose("a" * 160, charset="auto", subject="“Leak” 🔥")
    assert f.subject == '"Leak"'
    [part] = f.parts
    assert septets(part) + septets(f.subject) + 1 <= 160
    assert part.endswith("...")


def test_subject_counts_in_every_split_part() -> None:
    f = compose("word " * 100, charset="gsm7", long="split", max_parts=5, subject="Leak")
    assert all(septets(p) <= 153 - len("Leak") - 1 for p in f.parts)


def test_subject_is_cut_to_half_the_limit() -> None:
    f = compose("Door open", charset="auto", subject="S" * 300)
    assert f.subject is not None and septets(f.subject) <= 79
    assert f.parts == ("Door open",)


def test_a_subject_in_another_script_makes_it_ucs2() -> None:
    f = compose("Door open", charset="auto", subject="Тревога")
    assert (f.charset, f.subject, f.parts) == ("unicode", "Тревога", ("Door open",))


def test_no_subject() -> None:
    assert compose("x", subject=None).subject is None
    assert compose("x", subject="🔥").subject is None  # nothing a phone can show is left
