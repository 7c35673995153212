"""No alert is lost: SMTP outages, 4xx/5xx, SIGKILL mid-burst, broker restarts, a wrong password.

Each test counts what arrived, message by message.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import pytest

from .conftest import (
    Mosquitto,
    Sink,
    Watcher,
    base_config,
    running,
    wait_for,
)


def _seqs(sink: Sink, prefix: str = "alert ") -> Counter[int]:
    return Counter(int(b.split(prefix)[1].split()[0]) for b in sink.handler.bodies() if prefix in b)


def _cli(d: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mqtt2sms", *args, "-c", str(d.config)],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_smtp_outage_then_recovery_keeps_order(mosquitto: Mosquitto, daemon_factory: Any) -> None:
    sink = Sink()  # not started: SMTP is down
    d = daemon_factory(base_config(mosquitto.port, sink.port))
    w = running(d, mosquitto.port)
    for i in range(12):
        to = "alex" if i % 2 == 0 else "sam"
        w.publish("home/alerts/sms", json.dumps({"message": f"alert {i}", "to": to}))
    wait_for(lambda: len(w.states("deferred")) >= 1, 10, "a deferred event")
    listing = wait_for(
        lambda: (r := _cli(d, "queue", "list")).stdout.count("queued") >= 12 and r,
        10,
        "12 queued texts in `queue list`",
    )
    assert "alex" in listing.stdout and "sam" in listing.stdout
    wait_for(
        lambda: json.loads(w.retained.get("mqtt2sms/stats", "{}")).get("last_error"),
        5,
        "the error in stats",
    )
    assert w.status() == "online"
    sink.start()
    try:
        wait_for(lambda: len(sink.mails) >= 12, 20, "12 mails after the outage")
        # the daemon has handled all 12 when each has its sent event and nothing waits
        wait_for(lambda: len({e["id"] for e in w.states("sent")}) >= 12, 10, "12 sent events")
        wait_for(
            lambda: "nothing is waiting" in _cli(d, "queue", "list").stdout, 10, "an empty queue"
        )
        assert sorted(_seqs(sink).items()) == [(i, 1) for i in range(12)]
        for rcpt in ("5551234567@tmomail.net", "5557654321@vtext.com"):
            order = [int(m.body.split()[1]) for m in sink.mails if m.rcpts == [rcpt]]
            assert order == sorted(order), f"out of order for {rcpt}: {order}"
        assert len(w.states("sent")) >= 12
        assert "nothing is waiting" in _cli(d, "queue", "list").stdout
    finally:
        d.stop()
        sink.stop()
        w.close()


def test_451_is_retried_and_550_fails_one_recipient(
    mosquitto: Mosquitto, sink: Sink, daemon_factory: Any
) -> None:
    d = daemon_factory(base_config(mosquitto.port, sink.port))
    w = running(d, mosquitto.port)
    sink.handler.fail_next = [("RCPT", "451 4.3.0 try later")] * 3
    w.publish("home/alerts/sms", "alert 1")
    wait_for(lambda: sink.mails, 15, "the text after three 451s")
    ev = wait_for(lambda: w.states("sent"), 5, "sent")[0]
    assert ev["attempts"] == 4
    assert len(w.states("deferred")) == 3
    sink.handler.reject_rcpt.add("5557654321@vtext.com")
    w.publish("home/alerts/sms", json.dumps({"message": "alert 2", "to": "family"}))
    failed = wait_for(lambda: w.states("failed"), 10, "a failed event")
    assert failed[0]["to"] == "sam" and "550" in failed[0]["error"]
    wait_for(lambda: len(sink.mails) >= 2, 10, "alex's text")
    assert [(m.rcpts, m.body) for m in sink.mails] == [
        (["5551234567@tmomail.net"], "alert 1"),
        (["5551234567@tmomail.net"], "alert 2"),
    ]
    d.stop()
    w.close()


@pytest.mark.slow
@pytest.mark.parametrize("smtp_up", [True, False], ids=["smtp-up", "smtp-down"])
def test_sigkill_mid_burst_loses_nothing(
    mosquitto: Mosquitto, daemon_factory: Any, smtp_up: bool
) -> None:
    sink = Sink()
    if smtp_up:
        sink.start()
    d = daemon_factory(base_config(mosquitto.port, sink.port))
    w = running(d, mosquitto.port)
    n = 200
    for i in range(n):
        w.client.publish("home/alerts/sms", f"alert {i}", qos=1)
    if smtp_up:
        wait_for(lambda: len(sink.mails) >= 40, 20, "some mails before the kill")
    else:
        wait_for(lambda: len(w.states("deferred")) >= 1, 20, "texts being queued")
        time.sleep(0.3)
    d.kill()
    before = len(sink.mails)
    if not smtp_up:
        sink.start()
    d.start()
    try:
        wait_for(lambda: len(_seqs(sink)) >= n, 60, f"all {n} texts")
        # a marker published after the burst comes out after every redelivery of it: once it
        # is mailed and the queue is empty, no duplicate can still be on its way
        w.publish("home/alerts/sms", "end of burst")
        wait_for(lambda: "end of burst" in sink.handler.bodies(), 20, "the end-of-burst text")
        wait_for(
            lambda: "nothing is waiting" in _cli(d, "queue", "list").stdout, 10, "an empty queue"
        )
        seqs = _seqs(sink)
        assert set(seqs) == set(range(n)), f"lost: {sorted(set(range(n)) - set(seqs))}"
        dups = sum(c - 1 for c in seqs.values())
        print(f"kill with smtp {'up' if smtp_up else 'down'}: {before} before, {dups} duplicate(s)")
        assert dups <= 1
    finally:
        d.stop()
        sink.stop()
        w.close()


def test_broker_restart_loses_nothing(mosquitto: Mosquitto, daemon_factory: Any) -> None:
    sink = Sink()
    d = daemon_factory(base_config(mosquitto.port, sink.port))
    w = running(d, mosquitto.port)
    for i in range(5):
        w.publish("home/alerts/sms", f"alert {i}")
    wait_for(
        lambda: len({e["id"] for e in w.states("deferred")}) >= 5,
        10,
        "all 5 queued while SMTP is down",
    )
    w.close()
    mosquitto.restart()
    w = Watcher(mosquitto.port)
    for i in range(5, 10):
        w.publish("home/alerts/sms", f"alert {i}")
    sink.start()
    try:
        wait_for(lambda: len(_seqs(sink)) >= 10, 30, "10 texts after the broker restart")
        assert set(_seqs(sink)) == set(range(10))
        wait_for(lambda: w.status() == "online", 10, "online again")
    finally:
        d.stop()
        sink.stop()
        w.close()


# Plain AUTH on loopback keeps this test about the password, not TLS (test_smtp covers TLS).
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_wrong_password_then_reload(mosquitto: Mosquitto, daemon_factory: Any) -> None:
    sink = Sink(users={"alerts@example.org": "right-password-123"})
    sink.start()
    auth = """
    smtp:
      host: 127.0.0.1
      port: {port}
      security: none
      username: alerts@example.org
      password: {pw}
      from: alerts@example.org
      timeout: 5s
    """
    d = daemon_factory(
        base_config(mosquitto.port, None, auth.format(port=sink.port, pw="wrong-password-456"))
    )
    w = running(d, mosquitto.port)
    try:
        for i in range(3):
            w.publish("home/alerts/sms", f"alert {i}")
        wait_for(
            lambda: (
                "auth"
                in (
                    json.loads(w.retained.get("mqtt2sms/stats", "{}")).get("last_error") or ""
                ).lower()
                or "535"
                in (json.loads(w.retained.get("mqtt2sms/stats", "{}")).get("last_error") or "")
            ),
            10,
            "the auth error in stats",
        )
        assert not sink.mails
        assert w.status() == "online"
        d.write_config(
            base_config(mosquitto.port, None, auth.format(port=sink.port, pw="right-password-123"))
        )
        d.signal(signal.SIGHUP)
        wait_for(lambda: len(sink.mails) >= 3, 15, "3 texts after the reload")
        assert sorted(_seqs(sink).items()) == [(0, 1), (1, 1), (2, 1)]
        log = d.logtext()
        assert "wrong-password-456" not in log and "right-password-123" not in log
    finally:
        d.stop()
        sink.stop()
        w.close()


def test_queue_retry_and_drop(mosquitto: Mosquitto, daemon_factory: Any) -> None:
    sink = Sink()
    d = daemon_factory(
        base_config(
            mosquitto.port,
            sink.port,
            """
    defaults: {to: [alex]}
    limits: {per_recipient: 0, daily_cap: 0, retry: {first: 60s, max: 10m}}
    """,
        )
    )
    w = running(d, mosquitto.port)
    try:
        w.publish("home/alerts/sms", "alert 1")
        w.publish("home/alerts/sms", "alert 2")
        listing = wait_for(
            lambda: (r := _cli(d, "queue", "list")).stdout.count("queued") >= 2 and r,
            10,
            "two queued",
        )
        ids = [line.split()[0] for line in listing.stdout.splitlines()[1:]]
        assert len(ids) == 2
        r = _cli(d, "queue", "drop", ids[0])
        assert r.returncode == 0, r.stderr
        dropped = wait_for(
            lambda: [e for e in w.states("failed") if e["id"] == ids[0]],
            10,
            "a failed event for the dropped text",
        )
        assert "dropped" in dropped[0]["error"]
        # the daemon noticed the drop and tried the other text once more, in vain
        wait_for(
            lambda: [e for e in w.states("deferred") if e["id"] == ids[1] and e["attempts"] >= 1],
            10,
            "a new try of the other text",
        )
        sink.start()
        r = _cli(d, "queue", "retry", ids[1])
        assert r.returncode == 0, r.stdout + r.stderr
        wait_for(lambda: sink.mails, 10, "the retried text within a second or two")
        assert [m.body for m in sink.mails] == ["alert 2"]
        assert _cli(d, "queue", "drop", "no-such-id").returncode == 1
    finally:
        d.stop()
        sink.stop()
        w.close()


def test_a_text_older_than_max_age_expires_with_an_event(
    mosquitto: Mosquitto, daemon_factory: Any
) -> None:
    sink = Sink()  # never started: the text cannot leave
    d = daemon_factory(
        base_config(
            mosquitto.port,
            sink.port,
            "limits: {per_recipient: 0, daily_cap: 0, max_age: 2s,"
            " retry: {first: 0.2s, max: 1s}}\n",
        )
    )
    w = running(d, mosquitto.port)
    try:
        w.publish("home/alerts/sms", "alert 1")
        expired = wait_for(lambda: w.states("expired"), 15, "an expired event")
        assert expired[0]["to"] == "alex" and "not delivered within 2s" in expired[0]["error"]
        assert "nothing is waiting" in _cli(d, "queue", "list").stdout
        stats = wait_for(
            lambda: json.loads(w.retained.get("mqtt2sms/stats", "{}")).get("failed_today"),
            5,
            "failed_today in stats",
        )
        assert stats == 1
    finally:
        d.stop()
        w.close()
