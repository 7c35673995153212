"""render.py: sandboxed Jinja2 with Home Assistant's variable names."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqtt2sms.errors import TemplateError
from mqtt2sms.render import (
    MAX_OUTPUT,
    NOT_JSON,
    Templates,
    Variables,
    variables,
)

NOW = datetime(2024, 5, 17, 21, 5, 9)


def make(payload: str, topic: str = "zigbee2mqtt/bath/leak", rule: str = "leak") -> Variables:
    """Variables as the router builds them (text, and the parsed JSON or NOT_JSON)."""
    try:
        parsed: object = json.loads(payload)
    except ValueError:
        parsed = NOT_JSON
    return variables(payload, parsed, topic, False, rule, NOW)


JSON = make('{"water_leak": true, "battery": 87, "message": "Leak!", "n": 0, "s": "off"}')
PLAIN = make("hello world", topic="home/alerts/sms", rule="sms")


@pytest.fixture
def t() -> Templates:
    return Templates()


# --------------------------------------------------------------------------- variables


def test_variables() -> None:
    v = make('{"a": 1}', topic="a/b/c")
    assert v.value == '{"a": 1}'
    assert v.value_json == {"a": 1}
    assert v.topic_parts == ("a", "b", "c")
    assert v.rule == "leak"
    assert v.now == NOW
    assert not v.retained


def test_context_hides_value_json_when_not_json() -> None:
    assert "value_json" not in PLAIN.context()
    assert JSON.context()["value_json"]["battery"] == 87


# --------------------------------------------------------------------------- render


@pytest.mark.parametrize(
    ("src", "v", "expected"),
    [
        ("Water leak: {{ topic_parts[1] }}", JSON, "Water leak: bath"),
        ("{{ value }}", PLAIN, "hello world"),
        ("{{ value_json.battery }}%", JSON, "87%"),
        ("{{ value_json['battery'] | int + 1 }}", JSON, "88"),
        ("{{ rule }} on {{ topic }}", JSON, "leak on zigbee2mqtt/bath/leak"),
        ("{{ now.strftime('%H:%M') }}", JSON, "21:05"),
        ("{{ retained }}", JSON, "False"),
        ("{{ value_json.missing | default('n/a') }}", JSON, "n/a"),
        ("{{ value_json is defined }}", PLAIN, "False"),
        ("{{ '%.1f' % 21.456 }}", JSON, "21.5"),
        ("{{ value | upper }}", PLAIN, "HELLO WORLD"),
        ("{{ 2.567 | round(1) }}", PLAIN, "2.6"),
        ("{{ {'a': 1} | tojson }}", PLAIN, '{"a": 1}'),
        ("line\n", PLAIN, "line"),
        ("{{ '<b>' }}", PLAIN, "<b>"),
        ("{{ 'ab' * 3 }}", PLAIN, "ababab"),
        ("{{ 2 ** 10 }}", PLAIN, "1024"),
    ],
)
def test_render(t: Templates, src: str, v: Variables, expected: str) -> None:
    assert t.render(src, v) == expected


@pytest.mark.parametrize(
    ("src", "v", "reason"),
    [
        ("{{ value_json.message }}", PLAIN, "'value_json' is undefined"),
        ("{{ value_json.nope }}", JSON, "has no attribute 'nope'"),
        ("{{ nosuch }}", JSON, "'nosuch' is undefined"),
        ("{{ ''.__class__.__mro__ }}", JSON, "unsafe"),
        ("{{ value.__class__ }}", JSON, "unsafe"),
        ("{{ now.__init__ }}", JSON, "unsafe"),
        ("{{ value_json.pop('n') }}", JSON, "unsafe"),
        ("{{ 1 / 0 }}", JSON, "ZeroDivisionError"),
        ("{{ value_json.battery + 'x' }}", JSON, "TypeError"),
        ("{{ x", JSON, "syntax error"),
        ("{% for %}", JSON, "syntax error"),
        ("{{ 'x' * 100000 }}", JSON, "longer than"),
        ("{{ 'x' * 70000 }}", JSON, "longer than"),
        ("{{ 2 ** 100000000 }}", JSON, "too large"),
        ("{{ '%999999999s' % 1 }}", JSON, "width"),
        ("{{ '%*s' % (999999999, 1) }}", JSON, "'*'"),
        ("{% for i in range(100000) %}xx{% endfor %}", JSON, "output longer"),
        ("{% for i in range(10000000) %}{% endfor %}", JSON, "range"),
        ("{{ range(10)|list|attr('append')(1) }}", JSON, "unsafe"),
    ],
)
def test_render_errors(t: Templates, src: str, v: Variables, reason: str) -> None:
    with pytest.raises(TemplateError) as info:
        t.render(src, v)
    assert reason in str(info.value)


def test_render_output_exactly_at_cap(t: Templates) -> None:
    assert len(t.render(f"{{{{ 'x' * {MAX_OUTPUT} }}}}", PLAIN)) == MAX_OUTPUT


def test_templates_are_compiled_once(t: Templates) -> None:
    t.render("{{ value }}", PLAIN)
    first = t._templates["{{ value }}"]
    t.render("{{ value }}", JSON)
    assert t._templates["{{ value }}"] is first


def test_environments_are_not_shared() -> None:
    assert Templates()._env is not Templates()._env


@given(st.text(max_size=200))
def test_render_never_raises_anything_else(src: str) -> None:
    try:
        out = Templates().render(src, JSON)
    except TemplateError:
        return
    assert isinstance(out, str)


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=200))
def test_payload_text_is_data_not_template(payload: str) -> None:
    assert Templates().render("{{ value }}", make(payload)) == payload


# --------------------------------------------------------------------------- when


@pytest.mark.parametrize(
    ("src", "v", "expected"),
    [
        ("value_json.water_leak", JSON, True),
        ("{{ value_json.water_leak }}", JSON, True),
        ("{{- value_json.water_leak -}}", JSON, True),
        ("  {{ value_json.water_leak }}  ", JSON, True),
        ("value_json.water_leak", PLAIN, False),
        ("value_json.missing", JSON, False),
        ("value_json.missing > 3", JSON, False),
        ("value_json.missing.deeper", JSON, False),
        ("{{ value_json.missing == 1 }}", JSON, False),
        ("not value_json.missing", JSON, False),
        ("value_json.battery < 90", JSON, True),
        ("value_json.battery < 50", JSON, False),
        ("value_json.n", JSON, False),
        ("{{ value_json.n }}", JSON, False),
        ("value_json.s", JSON, False),
        ("value == 'hello world'", PLAIN, True),
        ("'ON'", PLAIN, True),
        ("'Off '", PLAIN, False),
        ("'no'", PLAIN, False),
        ("'False'", PLAIN, False),
        ("'0'", PLAIN, False),
        ("''", PLAIN, False),
        ("none", PLAIN, False),
        ("[]", PLAIN, False),
        ("{% if value_json.water_leak %}on{% else %}off{% endif %}", JSON, True),
        ("{% if value_json.n %}on{% else %}off{% endif %}", JSON, False),
        ("{% if value_json.water_leak %}yes{% endif %}", PLAIN, False),
        ("{{ value_json.water_leak }} and {{ value_json.n }}", JSON, True),
        ("value_json is defined", PLAIN, False),
        ("value_json is defined", JSON, True),
        ("topic_parts[1] == 'bath'", JSON, True),
        ("now.hour >= 21", JSON, True),
        ("value_json.s > 3", JSON, False),  # "off" > 3: a non-numeric value, false
    ],
)
def test_when(t: Templates, src: str, v: Variables, expected: bool) -> None:
    assert t.when(src, v) is expected


@pytest.mark.parametrize(
    "src",
    [
        "1 / 0",
        "''.__class__",
        "value ==",
        "{{ }}",
        "",
    ],
)
def test_when_errors(t: Templates, src: str) -> None:
    with pytest.raises(TemplateError):
        t.when(src, JSON)


# --------------------------------------------------------------------------- check


def test_check_template(t: Templates) -> None:
    assert t.check_template("Leak: {{ topic }}") is None
    error = t.check_template("Leak: {{ topic ")
    assert error is not None
    assert "syntax error (line 1)" in error


@pytest.mark.parametrize(
    ("src", "ok"),
    [
        ("value_json.water_leak", True),
        ("{{ value_json.water_leak }}", True),
        ("{% if x %}1{% endif %}", True),
        ("value ==", False),
        ("{{ value == }}", False),
        ("{% if %}", False),
        ("", False),
    ],
)
def test_check_expression(t: Templates, src: str, ok: bool) -> None:
    assert (t.check_expression(src) is None) is ok


# --------------------------------------------------------------------------- default message


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ('{"message": "Smoke in the hall", "to": "family"}', "Smoke in the hall"),
        ('{"message": 42}', '{"message": 42}'),
        ('{"text": "x"}', '{"text": "x"}'),
        ('["message"]', '["message"]'),
        ("Door open", "Door open"),
        ('"just a string"', '"just a string"'),
    ],
)
def test_default_message(payload: str, expected: str) -> None:
    assert Templates.default_message(make(payload)) == expected


# ------------------------------------------------------------------ when: dropped-out sensors


SENSOR_GONE = [
    make('{"temperature": null}'),  # Zigbee2MQTT, a sensor that dropped out
    make('{"temperature": "unavailable"}'),
    make("unavailable"),  # Home Assistant's state topic
    make('{"temperature": [1]}'),
    make('{"temperature": {"v": 40}}'),
]


@pytest.mark.parametrize("v", SENSOR_GONE)
@pytest.mark.parametrize(
    "src",
    [
        "value_json.temperature > 30",
        "{{ value_json.temperature >= 30 }}",
        "30 < value_json.temperature",
        "20 < value_json.temperature < 30",
        "value_json.temperature - 5 > 25",
        "value_json.temperature * 2 > 60",
        "{% if value_json.temperature > 30 %}hot{% endif %}",
        "value > 30",
        "'x' in value_json.temperature",
    ],
)
def test_when_with_a_null_or_non_numeric_value_is_false_not_an_error(
    t: Templates, src: str, v: Variables
) -> None:
    assert t.when(src, v) is False


def test_when_notes_say_what_was_false(t: Templates) -> None:
    notes: list[str] = []
    assert t.when("value_json.temperature > 30", make('{"temperature": null}'), notes) is False
    assert notes == ["null > 30 is false"]
    notes = []
    assert t.when("value > 30", make("unavailable"), notes) is False
    assert notes == ["'unavailable' > 30 is false"]
    notes = []
    assert t.when("value_json.missing > 30", JSON, notes) is False
    assert notes == []  # undefined is false silently, as before


@pytest.mark.parametrize(
    ("src", "payload", "expected"),
    [
        ("value_json.temperature > 30", '{"temperature": 31.5}', True),
        ("value_json.temperature > 30", '{"temperature": "31.5"}', True),  # a number as text
        ("value > 30", "31", True),
        ("value > 30", "29", False),
        ("value_json.t > 30 or value_json.smoke", '{"t": null, "smoke": true}', True),
        ("value_json.t - 5 > 30 or value_json.smoke", '{"t": null, "smoke": true}', True),
        ("value_json.t == none", '{"t": null}', True),
        ("value_json.t != 3", '{"t": null}', True),
        ("value_json.missing != 3", '{"t": null}', False),
        ("1 < value_json.t < 5", '{"t": 3}', True),
        ("1 < value_json.t < 5", '{"t": 7}', False),
        ("value_json.state in ['ON', 'on']", '{"state": "ON"}', True),
        ("'b' < value_json.s", '{"s": "c"}', True),
    ],
)
def test_when_comparisons(t: Templates, src: str, payload: str, expected: bool) -> None:
    assert t.when(src, make(payload)) is expected


def test_messages_still_fail_on_a_null_comparison(t: Templates) -> None:
    # outside `when` a broken template falls back (the router's job): unchanged
    with pytest.raises(TemplateError):
        t.render("{% if value_json.t > 3 %}hot{% endif %}", make('{"t": null}'))


def test_when_is_still_sandboxed(t: Templates) -> None:
    for src in ("''.__class__", "value.__class__.__mro__ > 1", "9 ** 999999 > 1", "'a' * 10**9"):
        with pytest.raises(TemplateError):
            t.when(src, PLAIN)


def test_first_time() -> None:
    t = Templates()
    assert t.first_time("temp", "when") is True
    assert t.first_time("temp", "when") is False
    assert t.first_time("other", "when") is True
    assert Templates().first_time("temp", "when") is True  # a reload starts afresh
