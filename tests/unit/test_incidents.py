"""The incident table (incidents.py): pure, with the elapsed axis passed in."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqtt2sms import incidents
from mqtt2sms.incidents import Incident, Policy, Step

FIRE = Policy(
    "fire",
    (Step(("alex",), 0.0), Step(("sam",), 300.0), Step(("alex", "sam", "kim"), 900.0)),
    repeat=600.0,
    give_up=7200.0,
    hold_after_ack=3600.0,
)
T0 = 1000.0


def opened(policy: Policy = FIRE) -> Incident:
    out = incidents.open_("417", "smoke", "hall", policy, "Smoke in hall", "high", T0, 1.7e9)
    return out.incident


def texts(out: incidents.Outcome) -> list[str]:
    return [s.to for s in out.sends]


def test_opening_texts_the_first_step_and_says_opened() -> None:
    out = incidents.open_("417", "smoke", "hall", FIRE, "Smoke in hall", "high", T0, 1.7e9)
    assert texts(out) == ["alex"]
    assert [n.state for n in out.notes] == ["opened"]
    assert out.incident.step == 1
    assert out.incident.texted == ("alex",)
    assert out.incident.next_due == T0 + 300


def test_the_next_step_comes_at_its_time_and_not_before() -> None:
    inc = opened()
    early = incidents.due(inc, T0 + 299.9)
    assert not early.changed and not early.sends
    out = incidents.due(inc, T0 + 300)
    assert texts(out) == ["sam"]
    assert [(n.state, n.step) for n in out.notes] == [("escalated", 2)]
    assert out.incident.texted == ("alex", "sam")
    assert out.incident.next_due == T0 + 900


def test_the_last_step_repeats_until_give_up_then_it_is_unacknowledged() -> None:
    inc = incidents.due(incidents.due(opened(), T0 + 300).incident, T0 + 900).incident
    assert inc.step == 3 and inc.next_due == T0 + 1500
    out = incidents.due(inc, T0 + 1500)
    assert texts(out) == ["alex", "sam", "kim"]
    assert out.incident.repeats == 1
    # a long stop: one repeat however many were missed, then the grid goes on
    late = incidents.due(out.incident, T0 + 3000)
    assert texts(late) == ["alex", "sam", "kim"]
    assert late.incident.next_due == T0 + 3300
    end = incidents.due(late.incident, T0 + 7200)
    assert end.incident.state == "unacknowledged"
    assert [n.state for n in end.notes] == ["unacknowledged"]
    assert end.incident.next_due is None


def test_a_restart_after_every_step_was_due_sends_them_in_order_once() -> None:
    out = incidents.due(opened(), T0 + 1000)
    assert texts(out) == ["sam", "alex", "sam", "kim"]  # steps 2 and 3, no repeat yet
    assert [n.step for n in out.notes] == [2, 3]
    assert out.incident.next_due == T0 + 1500


def test_join_sends_nothing() -> None:
    out = incidents.join(opened())
    assert not out.sends and not out.notes and out.incident.joined == 1


def test_ack_stops_the_steps_tells_the_others_and_holds() -> None:
    inc = incidents.due(opened(), T0 + 300).incident
    out = incidents.ack(inc, "sam", "sms via modem", T0 + 400, self_resolving=False)
    assert out.incident.state == "acked" and out.drop_waiting
    assert [(s.to, s.body, s.kind) for s in out.sends] == [("alex", "ACK 417 by sam", "ack")]
    assert out.incident.next_due == T0 + 400 + 3600
    assert incidents.due(out.incident, T0 + 900).sends == ()  # step 3 never comes
    end = incidents.due(out.incident, T0 + 4000)
    assert end.incident.state == "resolved" and end.sends == ()
    again = incidents.ack(out.incident, "alex", "mqtt", T0 + 500, self_resolving=False)
    assert not again.changed


def test_a_self_resolving_rule_holds_an_ack_until_give_up() -> None:
    out = incidents.ack(opened(), "alex", "mqtt", T0 + 10, self_resolving=True)
    assert out.incident.next_due == T0 + 10 + FIRE.give_up


def test_resolve_tells_everyone_texted() -> None:
    inc = incidents.due(opened(), T0 + 300).incident
    out = incidents.resolve(inc, "Smoke cleared", T0 + 301)
    assert out.incident.state == "resolved"
    assert [(s.to, s.body) for s in out.sends] == [
        ("alex", "Resolved: Smoke cleared"),
        ("sam", "Resolved: Smoke cleared"),
    ]
    quiet = Policy("q", FIRE.steps, notify_ack=False)
    assert incidents.resolve(opened(quiet), "x", T0).sends == ()


def test_no_move_out_of_an_ended_incident() -> None:
    ended = incidents.resolve(opened(), "x", T0 + 1).incident
    assert not incidents.resolve(ended, "x", T0 + 2).changed
    assert not incidents.ack(ended, "a", "mqtt", T0 + 2, self_resolving=False).changed
    assert not incidents.due(ended, T0 + 99999).changed
    with pytest.raises(ValueError):
        ended.moved("open")


def test_a_step_at_or_after_give_up_never_goes() -> None:
    p = Policy("p", (Step(("alex",), 0.0), Step(("sam",), 100.0)), give_up=100.0)
    out = incidents.due(opened(p), T0 + 100)
    assert out.sends == () and out.incident.state == "unacknowledged"


def test_json_round_trip() -> None:
    inc = incidents.due(opened(), T0 + 300).incident
    assert incidents.from_json(incidents.to_json(inc)) == inc


def test_codes_are_3_or_4_digits_and_never_reused() -> None:
    rand = random.Random(1)
    used: set[str] = set()
    for _ in range(2000):
        code = incidents.new_code(rand, used)
        assert code.isdigit() and 3 <= len(code) <= 4 and code[0] != "0"
        assert code not in used
        used.add(code)


def test_listing_shows_open_ones_only() -> None:
    a = opened()
    b = incidents.resolve(opened(), "x", T0).incident
    rows = incidents.listing([a, b])
    assert [r["id"] for r in rows] == ["417"]
    assert rows[0]["texted"] == ["alex"] and rows[0]["opened_at"] == "2023-11-14T22:13:20+00:00"


@given(st.lists(st.floats(min_value=0, max_value=20000), min_size=1, max_size=12))
def test_any_schedule_of_looks_texts_each_step_once_and_in_order(times: list[float]) -> None:
    """However often or rarely the engine looks (a busy loop, a long stop), every step is
    texted once, in order, none before its time, and nothing after give_up."""
    inc = opened()
    sent_steps: list[int] = [1]
    for t in sorted(times):
        out = incidents.due(inc, T0 + t)
        for n in out.notes:
            if n.state == "escalated" and n.step > sent_steps[-1]:
                sent_steps.append(n.step)
                assert FIRE.steps[n.step - 1].after <= t
        if out.sends:
            assert t < FIRE.give_up
        inc = out.incident
    assert sent_steps == list(range(1, len(sent_steps) + 1))


CALLING = Policy(
    "wake", (Step(("alex",), 0.0), Step(("sam",), 300.0, call=2)), call_gap=120.0, ring_for=20.0
)


def test_a_calling_step_rings_after_its_texts_then_again_call_gap_later() -> None:
    inc = opened(CALLING)
    assert inc.calls == ()  # step 1 does not call
    out = incidents.due(inc, T0 + 300)
    assert texts(out) == ["sam"]
    assert out.rings == (incidents.Ring("sam", T0 + 300, 1),)
    assert out.incident.calls == (incidents.Ring("sam", T0 + 420, 2),)
    assert out.incident.next_due == T0 + 420
    assert not incidents.due(out.incident, T0 + 419).changed
    second = incidents.due(out.incident, T0 + 420)
    assert second.sends == () and second.rings == (incidents.Ring("sam", T0 + 420, 2),)
    assert second.incident.calls == ()


def test_an_ack_between_the_calls_drops_the_second_and_hangs_up() -> None:
    inc = incidents.due(opened(CALLING), T0 + 300).incident
    out = incidents.ack(inc, "sam", "mqtt", T0 + 330, self_resolving=False)
    assert out.hang_up and out.incident.calls == ()
    assert incidents.due(out.incident, T0 + 420).rings == ()


def test_calls_to_come_survive_a_restart() -> None:
    inc = incidents.due(opened(CALLING), T0 + 300).incident
    back = incidents.from_json(incidents.to_json(inc))
    assert back == inc and back.policy.steps[1].call == 2
