"""rules.py: MQTT topic filters, checked against paho's topic_matches_sub."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub

from mqtt2sms.rules import (
    filter_covers_base,
    filter_error,
    matching,
    topic_error,
    topic_matches,
)


@dataclass(frozen=True)
class Rule:
    name: str
    topic: str


# --------------------------------------------------------------------------- topic_matches


@pytest.mark.parametrize(
    ("filter", "topic", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
        ("a/b", "a/b/c", False),
        ("a/b/c", "a/b", False),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/+", "a", False),
        ("a/+", "a/", True),  # + matches an empty level
        ("+/+", "/finance", True),
        ("/+", "/finance", True),
        ("+", "/finance", False),
        ("a/#", "a", True),  # # matches the parent too
        ("a/#", "a/b/c", True),
        ("a/#", "ab", False),
        ("#", "a/b/c", True),
        ("#", "/", True),
        ("zigbee2mqtt/+/leak", "zigbee2mqtt/bath/leak", True),
        ("zigbee2mqtt/+/leak", "zigbee2mqtt/bath/kitchen/leak", False),
        ("+/+/#", "a/b", True),
        ("+/+/#", "a", False),
        # $-topics are not matched by a leading wildcard
        ("#", "$SYS/broker/uptime", False),
        ("+/broker/uptime", "$SYS/broker/uptime", False),
        ("$SYS/#", "$SYS/broker/uptime", True),
        ("$SYS/+/uptime", "$SYS/broker/uptime", True),
        ("a/$x", "a/$x", True),
        ("a/+", "a/$x", True),
        # invalid filters and topics match nothing
        ("a/#/b", "a/x/b", False),
        ("a/b#", "a/b#", False),
        ("a+", "a+", False),
        ("", "", False),
        ("#", "", False),
        ("a/+", "a/+", False),
        ("a/#", "a/#", False),
        ("a/\x00", "a/\x00", False),
    ],
)
def test_topic_matches(filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(filter, topic) is expected


# Where paho's topic_matches_sub differs from the MQTT spec, which we follow: paho does not
# validate, so it matches an empty topic, a topic holding a wildcard ("a/+" matches itself),
# and an invalid filter taken literally ("a/b#" matches "a/b#").
PAHO_DIFFERS = [("#", ""), ("a/+", "a/+"), ("a/b#", "a/b#"), ("a+", "a+")]


@pytest.mark.parametrize(("filter", "topic"), PAHO_DIFFERS)
def test_where_paho_differs(filter: str, topic: str) -> None:
    assert topic_matches_sub(filter, topic)
    assert not topic_matches(filter, topic)


LEVELS = ["a", "b", "", "$SYS", "$x", "+", "#", "ab", "a+", "é"]
level_lists = st.lists(st.sampled_from(LEVELS), min_size=1, max_size=5)
filters = level_lists.map("/".join)
topics = st.lists(
    st.sampled_from([lv for lv in LEVELS if "+" not in lv and "#" not in lv]),
    min_size=1,
    max_size=5,
).map("/".join)


@settings(max_examples=1000)
@given(filter=filters, topic=topics)
def test_topic_matches_agrees_with_paho(filter: str, topic: str) -> None:
    ours = topic_matches(filter, topic)
    if filter_error(filter) is not None or topic_error(topic) is not None:
        assert not ours  # paho does not validate; rules.py says an invalid one matches nothing
    else:
        assert ours is topic_matches_sub(filter, topic), (filter, topic)


@given(topic=topics)
def test_a_topic_used_as_filter_matches_itself(topic: str) -> None:
    assert topic_matches(topic, topic) is (topic_error(topic) is None)


# --------------------------------------------------------------------------- validity


@pytest.mark.parametrize(
    ("filter", "valid"),
    [
        ("a", True),
        ("a/b/c", True),
        ("#", True),
        ("+", True),
        ("a/#", True),
        ("+/+/#", True),
        ("/", True),
        ("a//b", True),
        ("$SYS/#", True),
        ("", False),
        ("a/#/b", False),
        ("#/a", False),
        ("a#", False),
        ("a/b#", False),
        ("a+", False),
        ("a/+b", False),
        ("++", False),
        ("a\x00b", False),
        ("a" * 65536, False),
        ("é" * 32768, False),  # 65536 bytes in UTF-8
        ("a" * 65535, True),
    ],
)
def test_filter_error(filter: str, valid: bool) -> None:
    error = filter_error(filter)
    assert (error is None) is valid
    if error is not None:
        assert isinstance(error, str) and error


@pytest.mark.parametrize(
    ("topic", "valid"),
    [("a/b", True), ("/", True), ("$SYS/x", True), ("", False), ("a/+", False), ("#", False)],
)
def test_topic_error(topic: str, valid: bool) -> None:
    assert (topic_error(topic) is None) is valid


# --------------------------------------------------------------------------- matching

RULES = [
    Rule("everything", "#"),
    Rule("leak", "zigbee2mqtt/+/leak"),
    Rule("sms", "home/alerts/sms"),
    Rule("notify", "mqtt2sms/notify"),
    Rule("ours", "mqtt2sms/+"),
    Rule("leak2", "zigbee2mqtt/#"),
]


@pytest.mark.parametrize(
    ("topic", "names"),
    [
        ("zigbee2mqtt/bath/leak", ["everything", "leak", "leak2"]),
        ("home/alerts/sms", ["everything", "sms"]),
        ("other", ["everything"]),
        ("mqtt2sms/notify", ["everything", "notify", "ours"]),
        ("mqtt2sms/ack", []),
        ("mqtt2sms/event", []),
        ("mqtt2sms/status", []),
        ("mqtt2sms/notify/x", []),
        ("mqtt2sms", ["everything"]),  # the base itself is not under it
        ("mqtt2smsx/event", ["everything"]),
        ("$SYS/broker/load", []),
    ],
)
def test_matching(topic: str, names: list[str]) -> None:
    assert [r.name for r in matching(RULES, topic, "mqtt2sms")] == names


def test_matching_multi_level_base() -> None:
    rules = [Rule("all", "#"), Rule("n", "home/sms/notify")]
    assert [r.name for r in matching(rules, "home/sms/notify", "home/sms")] == ["all", "n"]
    assert matching(rules, "home/sms/event", "home/sms") == []
    assert [r.name for r in matching(rules, "home/other", "home/sms")] == ["all"]


def test_matching_keeps_type_and_order() -> None:
    rules = [Rule("b", "x/#"), Rule("a", "x/+")]
    result: list[Rule] = matching(rules, "x/y", "mqtt2sms")
    assert result == rules


# --------------------------------------------------------------------------- filter_covers_base


@pytest.mark.parametrize(
    ("filter", "base", "covers"),
    [
        ("#", "mqtt2sms", True),
        ("+/status", "mqtt2sms", True),
        ("+/+", "mqtt2sms", True),
        ("mqtt2sms/#", "mqtt2sms", True),
        ("mqtt2sms/+", "mqtt2sms", True),
        ("mqtt2sms/event", "mqtt2sms", True),
        ("mqtt2sms/ack", "mqtt2sms", True),  # never matches a rule: worth a warning
        ("mqtt2sms/notify", "mqtt2sms", False),  # the one topic under base rules may take
        ("mqtt2sms/notify/x", "mqtt2sms", True),
        ("mqtt2sms", "mqtt2sms", False),
        ("+", "mqtt2sms", False),
        ("home/#", "mqtt2sms", False),
        ("zigbee2mqtt/+/leak", "mqtt2sms", False),
        ("mqtt2smsx/#", "mqtt2sms", False),
        ("#", "home/sms", True),
        ("home/#", "home/sms", True),
        ("+/sms/+", "home/sms", True),
        ("+/+", "home/sms", False),
        ("+/+/notify", "home/sms", False),
        ("home/+/#", "home/sms", True),
        ("#", "$base", False),
        ("$base/#", "$base", True),
        ("a/#/b", "mqtt2sms", False),  # invalid: reported elsewhere
    ],
)
def test_filter_covers_base(filter: str, base: str, covers: bool) -> None:
    assert filter_covers_base(filter, base) is covers


BASE_LEVELS = ["m", "n", "$m"]


@given(
    filter=filters,
    base=st.lists(st.sampled_from(BASE_LEVELS), min_size=1, max_size=2).map("/".join),
)
def test_filter_covers_base_agrees_with_brute_force(filter: str, base: str) -> None:
    tails = ["x", "notify", "ack", "x/y", "notify/x", "", "a/b/c"]
    candidates = [f"{base}/{tail}" for tail in tails] + [f"{base}/{lv}" for lv in LEVELS]
    base_levels = base.split("/")
    for sub in ("x", "y"):  # the filter itself, its wildcards filled in with the base's levels
        levels = [
            (base_levels[i] if i < len(base_levels) else sub) if lv in ("+", "#") else lv
            for i, lv in enumerate(filter.split("/"))
        ]
        candidates.append("/".join(levels))
        if filter.endswith("#"):
            candidates.append("/".join(levels[:-1]))
    expected = any(
        topic_matches(filter, t)
        for t in candidates
        if t.startswith(f"{base}/") and t != f"{base}/notify"
    )
    assert filter_covers_base(filter, base) is expected
