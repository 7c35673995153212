"""model.RetainedSeen: one retained message (topic and payload) is acted on once until it
changes (issue 16, 5 d), whatever the broker replays."""

from __future__ import annotations

import datetime as dt
import itertools

from mqtt2sms.model import Message, RetainedSeen

NOW = dt.datetime(2026, 6, 1, 16, 0, tzinfo=dt.UTC)
_mids = itertools.count(1)


def msg(payload: str, *, retained: bool, topic: str = "home/basement/leak") -> Message:
    return Message(topic, payload.encode(), NOW, retained=retained, mid=next(_mids))


def route(seen: dict[str, RetainedSeen], m: Message) -> bool:
    """What an owner does per message: skip a repeat, else route it and remember it."""
    known = seen.get(m.topic, RetainedSeen())
    if known.repeats(m):
        return False
    after = known.after(m)
    if after is None:
        seen.pop(m.topic, None)
    else:
        seen[m.topic] = after
    return True


def test_a_retained_message_under_two_overlapping_filters_is_routed_once() -> None:
    seen: dict[str, RetainedSeen] = {}
    copies = [msg("wet", retained=True), msg("wet", retained=True)]  # one per filter
    assert [route(seen, m) for m in copies] == [True, False]


def test_the_same_retained_message_on_every_reconnect_is_routed_once_until_it_changes() -> None:
    seen: dict[str, RetainedSeen] = {}
    assert route(seen, msg("wet", retained=True))
    assert not route(seen, msg("wet", retained=True))  # reconnect
    assert not route(seen, msg("wet", retained=True))  # and again
    assert route(seen, msg("dry", retained=True))  # it changed while we were away
    assert not route(seen, msg("dry", retained=True))
    assert route(seen, msg("wet", retained=True))  # and back: a change too


def test_a_live_message_is_always_routed_and_its_retained_replay_is_not() -> None:
    seen: dict[str, RetainedSeen] = {}
    assert route(seen, msg("wet", retained=False))
    assert route(seen, msg("wet", retained=False))  # a repeated live alert is an alert
    assert not route(seen, msg("wet", retained=True))  # it was published retained: replayed


def test_a_live_message_does_not_make_the_older_retained_one_new() -> None:
    seen: dict[str, RetainedSeen] = {}
    assert route(seen, msg("wet", retained=True))
    assert route(seen, msg("test", retained=False))  # published without retain
    assert not route(seen, msg("wet", retained=True))  # the broker still holds "wet"


def test_topics_are_apart_and_a_cleared_retained_message_is_forgotten() -> None:
    seen: dict[str, RetainedSeen] = {}
    assert route(seen, msg("wet", retained=True))
    assert route(seen, msg("wet", retained=True, topic="home/attic/leak"))
    assert route(seen, msg("", retained=False))  # the retained message was cleared
    assert "home/basement/leak" not in seen
    assert route(seen, msg("wet", retained=True))  # published again: a new one


def test_digest_is_topic_and_payload_not_the_packet_id_or_flags() -> None:
    a, b = msg("wet", retained=True), msg("wet", retained=False)
    assert a.mid != b.mid and a.digest == b.digest
    assert msg("wet", retained=True, topic="home/x").digest != a.digest


def test_a_payload_of_unicode_white_space_clears_the_topic_as_the_router_reads_it() -> None:
    seen = RetainedSeen(retained="x")
    nbsp = msg("\u00a0\u2003", retained=True)
    assert nbsp.blank
    assert seen.after(nbsp) is None  # the router sends no text for it either
