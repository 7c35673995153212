"""No one is spammed: cooldowns, "+N more", rate, daily cap, quiet hours, across restarts."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from typing import Any

from .conftest import (
    Mosquitto,
    Sink,
    Watcher,
    base_config,
    running,
    wait_for,
)

LEAK = """
rules:
  - name: leak
    topic: sensors/+/leak
    message: "Leak in {{{{ topic_parts[1] }}}}"
    cooldown: {cooldown}
"""


def _run(
    mosquitto: Mosquitto,
    sink: Sink,
    daemon_factory: Any,
    extra: str,
    env: dict[str, str] | None = None,
) -> tuple[Any, Watcher]:
    d = daemon_factory(base_config(mosquitto.port, sink.port, extra), env)
    w = running(d, mosquitto.port)
    return d, w


def test_burst_gives_one_text_then_plus_n_more(
    mosquitto: Mosquitto, sink: Sink, daemon_factory: Any
) -> None:
    d, w = _run(mosquitto, sink, daemon_factory, LEAK.format(cooldown="3s"))
    for _ in range(20):
        w.publish("sensors/kitchen/leak", "wet")
    w.publish("sensors/basement/leak", "wet")
    wait_for(lambda: len(w.states("suppressed")) >= 19, 10, "19 suppressed events")
    # 19 suppressed + 2 sent: the daemon has handled all 21 messages
    wait_for(lambda: len(w.states("sent")) >= 2, 10, "2 sent events")
    assert sorted(m.body for m in sink.mails) == ["Leak in basement", "Leak in kitchen"]
    ev = w.states("suppressed")[0]
    assert ev["rule"] == "leak" and "cooldown" in ev["error"]
    time.sleep(3.2)
    w.publish("sensors/kitchen/leak", "wet")
    wait_for(lambda: len(sink.mails) >= 3, 10, "the text after the cooldown")
    assert sink.mails[-1].body == "Leak in kitchen (+19 more)"
    d.stop()
    w.close()


def test_restart_inside_the_cooldown_still_suppresses(
    mosquitto: Mosquitto, sink: Sink, daemon_factory: Any
) -> None:
    d, w = _run(mosquitto, sink, daemon_factory, LEAK.format(cooldown="15m"))
    w.publish("sensors/kitchen/leak", "wet")
    wait_for(lambda: sink.mails, 10, "the first text")
    assert d.stop() == 0
    d.start()
    wait_for(lambda: w.status() == "online", 10, "online again")
    w.publish("sensors/kitchen/leak", "wet")
    wait_for(lambda: w.states("suppressed"), 10, "a suppressed event after the restart")
    assert len(sink.mails) == 1
    d.stop()
    w.close()


def test_high_priority_passes_cooldown_and_rate_not_the_cap(
    mosquitto: Mosquitto, sink: Sink, daemon_factory: Any
) -> None:
    d, w = _run(
        mosquitto,
        sink,
        daemon_factory,
        """
    defaults: {to: [alex], cooldown: 15m}
    limits: {per_recipient: 1/h, daily_cap: 3}
    """,
    )

    def alert(text: str, priority: str = "normal") -> None:
        w.publish("home/alerts/sms", json.dumps({"message": text, "priority": priority}))

    alert("one")
    wait_for(lambda: len(sink.mails) == 1, 10, "the first text")
    alert("two")  # cooldown
    wait_for(lambda: w.states("suppressed"), 10, "suppressed by the cooldown")
    alert("three", "high")  # passes the cooldown and the 1/h rate
    alert("four", "high")
    wait_for(lambda: len(sink.mails) == 3, 10, "the high-priority texts")
    alert("five", "high")  # the daily cap (3) holds even for high priority
    wait_for(
        lambda: any("cap" in (e["error"] or "") for e in w.states("suppressed")),
        10,
        "suppressed by the daily cap",
    )
    # "five" was the last message: with its suppression and 3 sent events, all are handled
    wait_for(lambda: len(w.states("sent")) >= 3, 10, "3 sent events")
    # "two" was suppressed by the cooldown: the next text for that key says so
    assert [m.body for m in sink.mails] == ["one", "three (+1 more)", "four"]
    stats = wait_for(
        lambda: (
            "cap" in (json.loads(w.retained.get("mqtt2sms/stats", "{}")).get("last_error") or "")
            and json.loads(w.retained["mqtt2sms/stats"])
        ),
        5,
        "the cap in stats",
    )
    assert stats["suppressed_today"] >= 2
    d.stop()
    w.close()


def test_quiet_hours_defer_normal_and_let_high_through(
    mosquitto: Mosquitto, sink: Sink, daemon_factory: Any
) -> None:
    now = dt.datetime.now(dt.UTC)
    start = (now - dt.timedelta(hours=1)).strftime("%H:%M")
    end = (now + dt.timedelta(hours=1)).strftime("%H:%M")
    d, w = _run(
        mosquitto,
        sink,
        daemon_factory,
        f"""
    limits:
      per_recipient: 0
      daily_cap: 0
      quiet_hours: {{start: "{start}", end: "{end}"}}
    """,
        env={"TZ": "UTC"},
    )
    w.publish("home/alerts/sms", "the washing machine is done")
    deferred = wait_for(lambda: w.states("deferred"), 10, "a deferred event")
    assert deferred[0]["next_try"].startswith(
        (now + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    )
    w.publish("home/alerts/sms", json.dumps({"message": "smoke!", "priority": "high"}))
    wait_for(lambda: sink.mails, 10, "the high-priority text")
    # the normal text was deferred (an event above) and the high one sent: both are handled
    wait_for(lambda: w.states("sent"), 10, "the sent event of the high-priority text")
    assert [m.body for m in sink.mails] == ["smoke!"]
    d.stop()
    w.close()


def test_the_test_command_shows_a_running_daemons_live_cooldown_and_rate(
    mosquitto: Mosquitto, sink: Sink, daemon_factory: Any
) -> None:
    extra = (
        LEAK.format(cooldown="1h")
        + "limits: {per_recipient: 1/h, daily_cap: 0}\ndefaults: {to: [family]}\n"
    )
    d, w = _run(mosquitto, sink, daemon_factory, extra)
    w.publish("sensors/kitchen/leak", "wet")
    wait_for(lambda: len(sink.mails) >= 2, 10, "a text to each of the family")
    time.sleep(1.5)  # the daemon saves its throttle state at most once a second

    def test_cmd(topic: str, payload: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "mqtt2sms", "test", "-c", str(d.config), topic, payload],
            env=d.env,
            cwd=d.tmp,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    cooled = test_cmd("sensors/kitchen/leak", "wet")
    assert "suppressed family: cooldown of leak for sensors/kitchen/leak" in cooled
    # another key of the rule: no cooldown, but each had their one text of the hour
    rated = test_cmd("sensors/attic/leak", "wet")
    assert "cooldown" not in rated
    assert "suppressed alex: rate" in rated and "suppressed sam: rate" in rated
    d.stop()
    w.close()
