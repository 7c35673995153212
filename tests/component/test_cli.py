"""cli.main([...], env=...): what a user sees on the terminal, and the exit codes."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mqtt2sms import __version__, cli, throttle
from mqtt2sms.config import CONFIG_SEARCH
from mqtt2sms.config import load as config_load
from mqtt2sms.model import Text
from mqtt2sms.outbox import Outbox

FreePort = Callable[[], int]

CONFIG = """\
mqtt:
  port: {port}
contacts:
  alex: {{number: "+1 (555) 123-4567", carrier: tmobile}}
  sam: {{email: "5557654321@vtext.com"}}
groups:
  family: [alex, sam]
defaults:
  to: [family]
limits:
  per_recipient: 5/h
  daily_cap: 50
rules:
  - name: leak
    topic: zigbee2mqtt/+/leak
    when: value_json.water_leak
    message: "Water leak: {{{{ topic_parts[1] }}}}"
    to: [alex]
    cooldown: 15m
"""

WET, DRY = '{"water_leak": true}', '{"water_leak": false}'

BROKEN = """\
contacts:
  alex: {number: "+1 (555) 123-4567", carrier: tmobile}
rules:
  - name: leak
    topic: zigbee2mqtt/+/leak
    to: [alx]
  - name: door
    topic: home/door
    cooldwn: 5m
"""


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """main() points the root logger at the stderr of the moment; put it back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def env(state_dir: Path) -> dict[str, str]:
    return {"STATE_DIRECTORY": str(state_dir), "TZ": "UTC"}


@pytest.fixture
def closed_port(free_port: FreePort) -> int:
    return free_port()


@pytest.fixture
def config_path(tmp_path: Path, closed_port: int) -> str:
    """A good config whose broker port nothing listens on (no test reaches a real broker)."""
    p = tmp_path / "config.yaml"
    p.write_text(CONFIG.format(port=closed_port), encoding="utf-8")
    return str(p)


def run(*argv: str, env: dict[str, str]) -> int:
    return cli.main(list(argv), env=env)


def outbox(state_dir: Path) -> Outbox:
    return Outbox(str(state_dir / "outbox.sqlite3"))


def text(n: int, recipient: str = "alex") -> Text:
    return Text(
        id=f"abc123-{n}",
        alert_id="abc123",
        rule="sms",
        key="home/alerts/sms",
        recipient=recipient,
        via=("smtp",),
        addresses={"smtp": "5551234567@tmomail.net"},
        body=f"text {n}",
        created_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5),
    )


# --------------------------------------------------------------------------- no config needed


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"], env={})
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"mqtt2sms {__version__}"


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([], env={}) == 2
    assert "carriers" in capsys.readouterr().out


def test_carriers_lists_the_table_with_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["carriers"], env={}) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "tmomail.net" in lines["tmobile"] and "active" in lines["tmobile"]
    assert "txt.att.net" in lines["att"] and "shut down" in lines["att"]


# --------------------------------------------------------------------------- check


def test_check_prints_rules_addresses_and_limits(
    config_path: str, env: dict[str, str], state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("check", "-c", config_path, env=env) == 0
    out = capsys.readouterr().out
    assert f"config {config_path}: OK" in out
    assert f"state: {state_dir}" in out
    assert (
        "limits: per recipient 5/h, daily cap 50, quiet hours none, max age 1d, retry 5s..10m, "
        "keep 7d"
    ) in out
    assert "  leak: zigbee2mqtt/+/leak (cooldown 15m; when value_json.water_leak)" in out
    assert "  sms: home/alerts/sms (built-in" in out
    assert "  notify: mqtt2sms/notify (built-in" in out
    assert "    alex: smtp (dry run) 5551234567@tmomail.net" in out
    assert "    sam: smtp (dry run) 5557654321@vtext.com" in out
    assert not state_dir.exists()  # check writes nothing


def test_check_refuses_a_broken_config_with_every_error(
    tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN, encoding="utf-8")
    assert run("check", "-c", str(path), env=env) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{path}:6: rules[0].to: unknown contact 'alx' (did you mean 'alex'?)",
        f"{path}:9: rules[1].cooldwn: unknown key 'cooldwn' (did you mean 'cooldown'?)",
        "config refused: 2 errors",
    ]


def test_check_warns_about_a_shut_down_gateway(
    tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text('contacts:\n  pat: {number: "5551112222", carrier: att}\n', encoding="utf-8")
    assert run("check", "-c", str(path), env=env) == 0
    err = capsys.readouterr().err
    assert f"warning: {path}:2: contacts.pat" in err
    assert "shut down" in err


def _named_config(tmp_path: Path, name: str) -> Path:
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("mqtt:\n  client_id: from-" + p.stem + "\n", encoding="utf-8")
    return p


def test_config_search_order(
    tmp_path: Path,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    _named_config(tmp_path, "config.yaml")
    from_env = _named_config(tmp_path, "env/fromenv.yaml")
    from_cli = _named_config(tmp_path, "cli/fromcli.yaml")

    def client_id(*argv: str, **extra: str) -> str:
        assert run("check", *argv, env={**env, **extra}) == 0
        out = capsys.readouterr().out
        return out.split("client id ")[1].split(",")[0]

    assert client_id() == "from-config"
    assert client_id(MQTT2SMS_CONFIG=str(from_env)) == "from-fromenv"
    assert client_id("-c", str(from_cli), MQTT2SMS_CONFIG=str(from_env)) == "from-fromcli"


def test_a_missing_config_named_by_the_environment_is_an_error(
    tmp_path: Path,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    _named_config(tmp_path, "config.yaml")  # not a fallback for a path that was asked for
    missing = tmp_path / "nope.yaml"
    assert run("check", env={**env, "MQTT2SMS_CONFIG": str(missing)}) == 2
    assert f"{missing}: config file not found" in capsys.readouterr().err
    assert run("check", "-c", str(missing), env=env) == 2
    assert f"{missing}: config file not found" in capsys.readouterr().err


def test_no_config_anywhere_is_a_clear_error(
    tmp_path: Path,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the system-wide place is looked up in tmp_path: a config installed on this machine
    # (/etc/mqtt2sms/config.yaml) must not change the answer
    system = tmp_path / "etc" / "mqtt2sms" / "config.yaml"
    monkeypatch.setattr(config_load, "CONFIG_SEARCH", (CONFIG_SEARCH[0], str(system)))
    monkeypatch.chdir(tmp_path)
    assert run("check", env=env) == 2
    err = capsys.readouterr().err
    assert "config file not found" in err
    assert "-c PATH" in err and "MQTT2SMS_CONFIG" in err


def test_check_probe_without_smtp_probes_the_dry_run_maildir(
    config_path: str, env: dict[str, str], state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("check", "--probe", "-c", config_path, env=env) == 0
    out = capsys.readouterr().out
    assert f"probe smtp: OK, dry run: maildir {state_dir / 'maildir'}" in out


def test_check_probe_of_an_smtp_server_that_is_down_fails(
    tmp_path: Path, env: dict[str, str], closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"smtp:\n  host: 127.0.0.1\n  port: {closed_port}\n  security: none\n"
        "  from: home@example.com\n  timeout: 5s\n",
        encoding="utf-8",
    )
    assert run("check", "--probe", "-c", str(path), env=env) == 1
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if x.startswith("probe smtp")]
    assert line.startswith("probe smtp: FAILED, ")
    assert str(closed_port) in line or "refused" in line.lower()


# --------------------------------------------------------------------------- test


def test_test_shows_matched_rules_text_and_address(
    config_path: str, env: dict[str, str], state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("test", "-c", config_path, "zigbee2mqtt/basement/leak", WET, env=env) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "matched: leak",
        "  [leak] to alex via smtp 5551234567@tmomail.net:",
        "    Water leak: basement",
        "  [leak] charset GSM-7: every character is GSM-7",  # charset auto, the default
        "nothing was sent (dry run)",
    ]
    assert not state_dir.exists()  # a dry run writes no outbox


def test_test_json(
    config_path: str, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    payload = '{"message": "Smoke in the hall", "to": ["family", "bob"], "priority": "high"}'
    assert run("test", "--json", "-c", config_path, "home/alerts/sms", payload, env=env) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["matched"] == ["sms"]
    assert [(t["to"], t["body"], t["priority"], t["addresses"]) for t in doc["texts"]] == [
        ("alex", "Smoke in the hall", "high", {"smtp": "5551234567@tmomail.net"}),
        ("sam", "Smoke in the hall", "high", {"smtp": "5557654321@vtext.com"}),
    ]
    (event,) = doc["events"]
    assert event["state"] == "rejected" and "'bob'" in event["error"]


def test_test_on_a_topic_no_rule_matches(
    config_path: str, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("test", "-c", config_path, "garden/sprinkler", "on", env=env) == 0
    assert capsys.readouterr().out.strip() == "no rule matches garden/sprinkler"


def test_test_when_false_matches_no_rule(
    config_path: str, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("test", "-c", config_path, "zigbee2mqtt/x/leak", DRY, env=env) == 0
    assert "[leak] matches the topic, but its `when` is false" in capsys.readouterr().out


def test_test_shows_a_cooldown_from_the_saved_throttle_state(
    config_path: str, env: dict[str, str], state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = dt.datetime.now(dt.UTC)
    state = throttle.note_sent(throttle.EMPTY, "leak", "zigbee2mqtt/basement/leak", now)
    state = throttle.note_suppressed(state, "leak", "zigbee2mqtt/basement/leak")
    box = outbox(state_dir)
    box.set_kv({"throttle": throttle.to_json(state)})
    box.close()

    assert run("test", "-c", config_path, "zigbee2mqtt/basement/leak", WET, env=env) == 0
    out = capsys.readouterr().out
    assert "  [leak] to alex" not in out
    (line,) = [x for x in out.splitlines() if "suppressed" in x]
    assert line.startswith(
        "  [leak] suppressed alex: cooldown of leak for zigbee2mqtt/basement/leak"
    )
    # another key is not in cooldown, and the saved state is not changed by a dry run
    assert run("test", "-c", config_path, "zigbee2mqtt/attic/leak", WET, env=env) == 0
    assert "    Water leak: attic" in capsys.readouterr().out
    box = outbox(state_dir)
    try:
        assert throttle.from_json(box.get_kv("throttle")) == state
    finally:
        box.close()


def test_test_reads_the_throttle_state_from_a_state_dir_with_a_hash_in_its_name(
    config_path: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_dir = tmp_path / "state#1"
    env = {"STATE_DIRECTORY": str(state_dir), "TZ": "UTC"}
    now = dt.datetime.now(dt.UTC)
    box = outbox(state_dir)
    state = throttle.note_sent(throttle.EMPTY, "leak", "zigbee2mqtt/basement/leak", now)
    box.set_kv({"throttle": throttle.to_json(state)})
    box.close()
    assert run("test", "-c", config_path, "zigbee2mqtt/basement/leak", WET, env=env) == 0
    assert "suppressed alex: cooldown of leak" in capsys.readouterr().out


# --------------------------------------------------------------------------- queue


def test_queue_list_without_an_outbox(
    config_path: str, env: dict[str, str], state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("queue", "-c", config_path, env=env) == 0
    assert "the outbox is empty" in capsys.readouterr().out
    assert run("queue", "list", "-c", config_path, env=env) == 0
    assert "the outbox is empty" in capsys.readouterr().out
    assert not state_dir.exists()


def test_queue_list_shows_waiting_texts(
    config_path: str, env: dict[str, str], state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    box = outbox(state_dir)
    box.enqueue([(text(1), {}), (text(2, recipient="sam"), {})])
    box.record([(text(3), {"state": "sent", "finished_at": 0.0})])
    box.close()

    assert run("queue", "list", "-c", config_path, env=env) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["id", "age", "to", "via", "state"]
    rows = [line.split() for line in lines[1:]]
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        ("abc123-1", "5m", "alex", "smtp", "queued"),
        ("abc123-2", "5m", "sam", "smtp", "queued"),
    ]

    assert run("queue", "list", "--all", "-c", config_path, env=env) == 0
    out = capsys.readouterr().out
    assert "abc123-3" in out and "sent" in out


def test_queue_list_of_an_outbox_with_nothing_open(
    config_path: str, env: dict[str, str], state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outbox(state_dir).close()
    assert run("queue", "-c", config_path, env=env) == 0
    assert capsys.readouterr().out.strip() == "nothing is waiting"


@pytest.mark.parametrize("action", ["retry", "drop"])
def test_queue_action_on_a_missing_id(
    config_path: str,
    env: dict[str, str],
    state_dir: Path,
    action: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run("queue", action, "nope-1", "-c", config_path, env=env) == 1  # no outbox at all
    assert "no outbox" in capsys.readouterr().err
    outbox(state_dir).close()
    assert run("queue", action, "nope-1", "-c", config_path, env=env) == 1
    assert "no text nope-1" in capsys.readouterr().err
    assert run("queue", action, "-c", config_path, env=env) == 1
    assert "needs a text id" in capsys.readouterr().err


def test_queue_retry_and_drop(
    config_path: str, env: dict[str, str], state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    box = outbox(state_dir)
    box.enqueue([(text(1), {"next_at": later.timestamp(), "reason": "transport"}), (text(2), {})])
    box.record([(text(3), {"state": "sent", "finished_at": 0.0})])
    box.close()

    assert run("queue", "retry", "abc123-1", "-c", config_path, env=env) == 0
    assert "abc123-1 will be tried now" in capsys.readouterr().out
    # the broker is down: the drop still happens, with a warning that no event went out
    assert run("queue", "drop", "abc123-2", "-c", config_path, env=env) == 0
    out, err = capsys.readouterr()
    assert "abc123-2 dropped" in out
    assert "warning: the failed event was not published" in err
    assert run("queue", "retry", "abc123-3", "-c", config_path, env=env) == 1
    assert "sent already" in capsys.readouterr().err
    assert run("queue", "drop", "abc123-3", "-c", config_path, env=env) == 1
    assert "sent -> failed is not allowed" in capsys.readouterr().err

    box = outbox(state_dir)
    try:
        one, two = box.get("abc123-1"), box.get("abc123-2")
        assert one is not None and two is not None
        assert one.state == "queued" and one.next_at <= dt.datetime.now(dt.UTC).timestamp()
        assert (two.state, two.last_error) == ("failed", "dropped by the user")
    finally:
        box.close()


def test_the_sender_can_still_record_a_text_dropped_while_it_was_being_sent(
    config_path: str, env: dict[str, str], state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    box = outbox(state_dir)
    box.enqueue([(text(1), {})])
    box.update("abc123-1", "sending")  # the daemon is in the middle of an SMTP transaction
    box.close()

    assert run("queue", "drop", "abc123-1", "-c", config_path, env=env) == 1
    assert "being sent right now" in capsys.readouterr().err

    box = outbox(state_dir)
    try:
        box.update("abc123-1", "sent", finished_at=0.0)  # the server said 250
        row = box.get("abc123-1")
        assert row is not None and row.state == "sent"
    finally:
        box.close()


# --------------------------------------------------------------------------- send


def test_send_to_a_broker_that_is_down_fails_readably(
    config_path: str, env: dict[str, str], closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("send", "-c", config_path, "--to", "alex", "hello", env=env) == 1
    err = capsys.readouterr().err
    assert f"send failed: cannot reach broker 127.0.0.1:{closed_port}" in err
    assert "Traceback" not in err


def test_send_without_an_alert_topic(
    tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("alert_topic: null\n", encoding="utf-8")
    assert run("send", "-c", str(path), "hello", env=env) == 1
    assert "alert_topic is null" in capsys.readouterr().err


def test_check_refuses_a_base_topic_that_swallows_the_alert_topic(
    tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        'mqtt: {base_topic: home}\ncontacts:\n  pat: {email: "zoë@example.com"}\n',
        encoding="utf-8",
    )
    assert run("check", "-c", str(path), env=env) == 2
    err = capsys.readouterr().err
    assert f"{path}:1: alert_topic: 'home/alerts/sms' lies under mqtt.base_topic 'home'" in err
    assert f"{path}:3: contacts.pat.email: 'zoë@example.com': an address must be plain ASCII" in err
