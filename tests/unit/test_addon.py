"""The add-on's options become a config the project's parser accepts, or errors naming them."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from mqtt2sms import addon, cli
from mqtt2sms import config as cfg

BROKER = addon.Broker("core-mosquitto", 1883, "addons", "pw")


def options(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "contacts": [
            {"name": "alex", "number": "+1 555 123 4567", "carrier": "tmobile"},
            {"name": "sam", "email": "5557654321@vtext.com"},
        ],
        "groups": [{"name": "family", "members": "alex, sam"}],
        "to": "family",
        "smtp": {
            "host": "smtp.gmail.com",
            "port": 587,
            "security": "starttls",
            "username": "you@gmail.com",
            "password": "app-password",
        },
        "discovery": True,
        "rules": [],
    }
    base.update(extra)
    return base


def test_options_become_a_config_the_parser_accepts() -> None:
    text, warnings = addon.translate(options(), BROKER, {})
    assert warnings == []
    c = cfg.parse_config(text, "x", {}).config
    assert (c.mqtt.host, c.mqtt.port, c.mqtt.username, c.mqtt.password) == (
        "core-mosquitto",
        1883,
        "addons",
        "pw",
    )
    assert c.state_dir == "/data"
    assert c.smtp is not None and c.smtp.from_addr == "you@gmail.com"
    assert c.contacts["alex"].gateway_address == "5551234567@tmomail.net"
    assert c.groups["family"] == ("alex", "sam")
    assert c.homeassistant.discovery


def test_a_rule_and_limits_come_through() -> None:
    rules = [
        {
            "name": "leak",
            "topic": "zigbee2mqtt/+",
            "when": "value_json.water_leak",
            "message": "Leak: {{ topic_parts[1] }}",
            "to": "alex",
            "cooldown": "15m",
        }
    ]
    text, _ = addon.translate(options(rules=rules, daily_cap=50), BROKER, {})
    c = cfg.parse_config(text, "x", {}).config
    leak = next(r for r in c.rules if r.name == "leak")
    assert leak.options.cooldown == 900 and leak.options.to == ("alex",)
    assert c.limits.daily_cap == 50


def test_no_smtp_host_is_a_dry_run() -> None:
    text, _ = addon.translate(options(smtp={"host": ""}), BROKER, {})
    assert cfg.parse_config(text, "x", {}).config.smtp is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {
                "contacts": [
                    {"name": "alex", "number": "5551234567", "carrier": "tmobile"},
                    {"name": "sam", "number": "5557654321", "carrier": "tmobil"},
                ],
                "to": "alex",
            },
            "contacts[1].carrier: unknown carrier 'tmobil' (did you mean 'tmobile'?)",
        ),
        ({"groups": [{"name": "family", "members": "alex, alx"}]}, "groups[0].members"),
        ({"rules": [{"name": "x", "topic": "a/#/b", "message": "hi"}]}, "rules[0].topic"),
        (
            {"contacts": [{"name": "alex", "email": "a@b.c"}, {"name": "alex", "email": "c@d.e"}]},
            "contacts[1].name: 'alex' is already the name of another contact",
        ),
    ],
)
def test_errors_name_the_option(change: dict[str, Any], expected: str) -> None:
    with pytest.raises(addon.OptionsError) as info:
        addon.translate(options(**change), BROKER, {})
    assert any(p.startswith(expected) for p in info.value.problems), info.value.problems


class _Supervisor(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.path == "/services/mqtt" and self.headers["Authorization"] == "Bearer t0k"
        body = {
            "result": "ok",
            "data": {
                "host": "127.0.0.1",
                "port": 1884,
                "username": "u",
                "password": "p",
                "ssl": False,
            },
        }
        self.send_response(200 if ok else 401)
        self.end_headers()
        self.wfile.write(json.dumps(body if ok else {"result": "error"}).encode())

    def log_message(self, *_a: object) -> None:
        pass


@pytest.fixture
def supervisor() -> Any:
    server = HTTPServer(("127.0.0.1", 0), _Supervisor)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_command_asks_the_supervisor_and_writes_the_config(
    tmp_path: Path, supervisor: str
) -> None:
    opts, out = tmp_path / "options.json", tmp_path / "c" / "config.yaml"
    opts.write_text(json.dumps(options()))
    argv = [
        "addon-config",
        "--options",
        str(opts),
        "--output",
        str(out),
        "--supervisor",
        supervisor,
    ]
    assert cli.main(argv, {"SUPERVISOR_TOKEN": "t0k"}) == 0
    assert out.stat().st_mode & 0o777 == 0o600
    c = cfg.parse_config(out.read_text(), str(out), {}).config
    assert (c.mqtt.host, c.mqtt.port, c.mqtt.username) == ("127.0.0.1", 1884, "u")


def test_a_wrong_token_is_refused(
    tmp_path: Path, supervisor: str, capsys: pytest.CaptureFixture[str]
) -> None:
    opts = tmp_path / "options.json"
    opts.write_text(json.dumps(options()))
    args = [
        "addon-config",
        "--options",
        str(opts),
        "--output",
        str(tmp_path / "c.yaml"),
        "--supervisor",
        supervisor,
    ]
    addon_attempts = addon.supervisor_broker.__defaults__
    addon.supervisor_broker.__defaults__ = (1,)
    try:
        assert cli.main(args, {"SUPERVISOR_TOKEN": "wrong"}) == 2
    finally:
        addon.supervisor_broker.__defaults__ = addon_attempts
    assert "the Supervisor answered 401" in capsys.readouterr().err


ROOT = Path(__file__).resolve().parents[2]


def test_the_manifest_defaults_with_a_number_make_a_config() -> None:
    import yaml

    manifest = yaml.safe_load((ROOT / "homeassistant-addon/mqtt2sms/config.yaml").read_text())
    assert manifest["services"] == ["mqtt:need"] and manifest["init"] is False
    opts = manifest["options"]
    assert set(opts) <= set(manifest["schema"])
    opts["contacts"][0].update(number="+1 555 123 4567", carrier="tmobile")
    opts["smtp"].update(username="you@gmail.com", password="app-password")
    text, _ = addon.translate(opts, BROKER, {})
    c = cfg.parse_config(text, "x", {}).config
    assert c.contacts["me"].gateway_address == "5551234567@tmomail.net"
    assert c.homeassistant.discovery and c.smtp is not None


def test_the_compose_example_parses() -> None:
    import yaml

    compose = yaml.safe_load((ROOT / "examples/compose.yaml").read_text())
    assert {s["restart"] for s in compose["services"].values()} == {"unless-stopped"}
    text = (ROOT / "examples/compose/mqtt2sms/config.yaml").read_text()
    c = cfg.parse_config(
        text, "compose", {"STATE_DIRECTORY": "/data"}, read_file=lambda path: "secret\n"
    ).config
    assert c.mqtt.host == "mosquitto" and c.mqtt.password == "secret"
