"""Issue 17: twilio and modem offered as ways out (registry, config, `check`, `check --probe`),
and the config no longer importing the transports."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqtt2sms import cli, ways
from mqtt2sms.config import Loaded, parse_config
from mqtt2sms.errors import ConfigError
from mqtt2sms.transports import registry
from mqtt2sms.transports.android import AndroidTransport
from mqtt2sms.transports.modem import ModemTransport
from mqtt2sms.transports.twilio import TwilioTransport
from tests.fakes.android import FakeAndroid
from tests.fakes.modem import FakeModem
from tests.fakes.twilio import FakeTwilio

ENV = {"HOME": "/home/pi", "TZ": "UTC"}

SMTP = "smtp: {host: smtp.example.com, from: me@example.com}\n"


def load(text: str) -> Loaded:
    return parse_config(textwrap.dedent(text), "config.yaml", ENV, check_file=lambda path: None)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text)
    return list(info.value.problems)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


# --------------------------------------------------------------------------- the registry


def test_the_registry_builds_twilio_and_modem_from_their_sections() -> None:
    config = load(
        SMTP + "twilio: {account_sid: AC1, auth_token: t, from: '+15550001111', poll: 3s, "
        "receive: true}\n"
        "modem: {device: /dev/serial/by-id/usb-x, poll: 7s}\n"
        "android: {url: 'http://127.0.0.1:8080'}\n"
    ).config
    built = registry.build(config)
    assert list(built) == ["smtp", "twilio", "modem", "android"]  # android since issue 18
    twilio, modem = built["twilio"], built["modem"]
    assert isinstance(twilio, TwilioTransport) and isinstance(modem, ModemTransport)
    assert (twilio.poll_every, twilio.receives) == (3.0, True)
    assert (modem.poll_every, modem.receives) == (7.0, True)  # a modem always reads its SIM
    android = built["android"]
    assert isinstance(android, AndroidTransport)
    assert (android.poll_every, android.receives) == (15.0, False)
    assert {"smtp", "twilio", "modem", "android"} == registry.BUILT
    assert registry.NOT_BUILT == ()


def test_twilio_reads_no_received_texts_unless_told() -> None:
    config = load(SMTP + "twilio: {account_sid: AC1, auth_token: t, from: '+15550001111'}\n")
    twilio = registry.build(config.config)["twilio"]
    assert isinstance(twilio, TwilioTransport)
    assert (twilio.poll_every, twilio.receives) == (15.0, False)


def test_no_way_out_is_called_not_built_any_more() -> None:
    text = (
        SMTP + "twilio: {account_sid: AC1, auth_token: t, from: '+15550001111', receive: true}\n"
        "modem: {device: /dev/ttyUSB0}\n"
        "android: {url: 'http://127.0.0.1:8080'}\n"
    )
    warnings = load(text).warnings
    not_yet = [w for w in warnings if "cannot send through it yet" in w]
    assert not_yet == []  # android is built since issue 18
    assert not any("twilio" in w or "modem" in w or "android" in w for w in warnings), warnings


def test_received_is_acted_on_when_twilio_reads_replies() -> None:
    base = SMTP + "twilio: {account_sid: AC1, auth_token: t, from: '+15550001111'"

    def about_received(text: str) -> list[str]:
        return [w for w in load(text).warnings if ": received" in w]

    assert about_received(base + ", receive: true}\nreceived: all\n") == []
    # with `from`, received texts are read while an incident is open (issue 19)
    assert about_received(base + "}\nreceived: all\n") == []
    service = SMTP + "twilio: {account_sid: AC1, auth_token: t, messaging_service_sid: MG1"
    (warning,) = about_received(service + "}\nreceived: all\n")
    assert warning.startswith("config.yaml:3: received: ignored: no way out reads")


def test_the_config_does_not_import_the_transports() -> None:
    code = (
        "import sys, mqtt2sms.config, mqtt2sms.ways\n"
        "print([m for m in sys.modules if m.startswith('mqtt2sms.transports')])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"
    # and the one list of names is the one both read
    from mqtt2sms.config import TRANSPORTS

    assert TRANSPORTS == ways.NAMES == registry.NAMES


# --------------------------------------------------------------------------- config errors


def test_a_phone_way_out_needs_a_number() -> None:
    text = SMTP + (
        "modem: {device: /dev/ttyUSB0}\n"
        "contacts:\n"
        "  sam: {email: '5557654321@vtext.com', via: [smtp, modem]}\n"
    )
    assert problems(text) == ["config.yaml:4: contacts.sam.via: modem needs a number"]


def test_a_rule_via_twilio_to_a_contact_without_a_number_names_the_rule() -> None:
    text = SMTP + (
        "twilio: {account_sid: AC1, auth_token: t, from: '+15550001111'}\n"
        "contacts:\n"
        "  sam: {email: '5557654321@vtext.com'}\n"
        "rules:\n"
        "  - {name: smoke, topic: home/smoke, to: [sam], via: [twilio]}\n"
    )
    assert problems(text) == [
        "config.yaml:6: rules[0].via: twilio cannot reach contact 'sam': it needs a number"
    ]


def test_a_phone_way_out_needs_its_section() -> None:
    text = SMTP + "contacts:\n  alex: {number: '5551234567', via: [modem]}\n"
    assert problems(text) == [
        "config.yaml:3: contacts.alex.via: 'modem' is not configured: there is no `modem:` section"
    ]


def test_a_number_made_from_country_code_serves_twilio() -> None:
    text = SMTP + (
        "twilio: {account_sid: AC1, auth_token: t, from: '020 7946 0000'}\n"
        "defaults: {country_code: '44', via: [twilio]}\n"
        "contacts:\n"
        "  kim: {number: '07700 900123'}\n"
    )
    config = load(text).config
    assert config.contacts["kim"].e164 == "+447700900123"
    assert config.twilio is not None and config.twilio.from_number == "+442079460000"


def test_twilio_needs_a_sender_and_a_from_to_read_replies_and_a_good_api_base() -> None:
    assert problems("twilio: {account_sid: AC1, auth_token: t}\n") == [
        "config.yaml:1: twilio.from: required (or messaging_service_sid)"
    ]
    text = "twilio: {account_sid: AC1, auth_token: t, messaging_service_sid: MG1, receive: true}\n"
    assert problems(text) == ["config.yaml:1: twilio.receive: reading replies needs twilio.from"]
    text = "twilio: {account_sid: AC1, auth_token: t, from: '+15550001111', api_base: 'ftp://x'}\n"
    assert problems(text) == [
        "config.yaml:1: twilio.api_base: 'ftp://x' is not an http:// or https:// URL"
    ]


# --------------------------------------------------------------------------- check


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"STATE_DIRECTORY": str(tmp_path / "state"), "TZ": "UTC"}


def test_check_prints_each_contacts_ways_out_in_order(
    tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(
        tmp_path,
        SMTP
        + textwrap.dedent(
            """\
        twilio: {account_sid: AC1, auth_token: sekrit-token, from: '+15550001111'}
        modem: {device: /dev/null}
        contacts:
          alex: {number: "+1 (555) 123-4567", carrier: tmobile, via: [smtp, twilio]}
          kim: {number: "5551112222", via: [modem, twilio]}
          sam: {number: "5557654321", carrier: verizon}
        defaults: {to: [alex, kim, sam], via: [smtp, modem]}
        rules:
          - {name: smoke, topic: home/smoke, via: [twilio, smtp]}
        """
        ),
    )
    assert cli.main(["check", "-c", path], env=env) == 0
    out, err = capsys.readouterr()
    assert "sekrit-token" not in out + err
    assert "twilio: account AC1, from +15550001111, https://api.twilio.com" in out
    assert "modem: /dev/null at 115200 baud (a /dev/serial/by-id/... path" in out
    # the contact's own via, else defaults.via
    assert "  alex: smtp 5551234567@tmomail.net, then twilio +15551234567 (own via)" in out
    assert "  kim: modem +15551112222, then twilio +15551112222 (own via)" in out
    assert "  sam: smtp 5557654321@vtext.com, then modem +15557654321 (defaults.via)" in out
    # in a rule: the contact's via wins over the rule's, which wins over defaults.via
    smoke = out.split("  smoke: home/smoke")[1].split("\n  sms:")[0]
    assert "    alex: smtp 5551234567@tmomail.net, then twilio +15551234567" in smoke
    assert "    sam: twilio +15557654321, then smtp 5557654321@vtext.com" in smoke
    assert "warning: contact" not in err  # nobody has a closing gateway as their only way


def test_check_warns_about_a_contact_whose_only_way_out_is_a_doubtful_gateway(
    tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(
        tmp_path,
        SMTP
        + textwrap.dedent(
            """\
        twilio: {account_sid: AC1, auth_token: t, from: '+15550001111'}
        contacts:
          alex: {number: "5551234567", carrier: tmobile}
          sam: {email: "5557654321@vtext.com"}
          pat: {number: "5559990000", carrier: att, via: [smtp, twilio]}
          lee: {email: "5553334444@txt.att.net"}
          kim: {number: "5551112222", carrier: verizon, via: [twilio, smtp]}
        defaults: {to: [alex, sam, pat, lee, kim]}
        """
        ),
    )
    assert cli.main(["check", "-c", path], env=env) == 0
    warnings = [
        line for line in capsys.readouterr().err.splitlines() if "warning: contact " in line
    ]
    assert warnings == [
        "warning: contact sam: its only way out (by default, rule sms, rule notify) is "
        "Verizon's email gateway vtext.com, which is unverified and never says whether a text "
        "arrived: add twilio, modem or android to its `via` (twilio configured here)",
        "warning: contact lee: its only way out (by default, rule sms, rule notify) is AT&T's "
        "email gateway txt.att.net, which has shut down and never says whether a text arrived: "
        "add twilio, modem or android to its `via` (twilio configured here)",
    ]


def test_check_probe_tries_twilio_and_the_modem_sending_nothing(
    tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("serial")
    with FakeTwilio() as tw, FakeModem(tmp_path) as modem, FakeAndroid() as phone:
        path = _write(
            tmp_path,
            f"""\
            twilio:
              account_sid: {tw.account_sid}
              auth_token: {tw.auth_token}
              from: "{tw.number}"
              api_base: {tw.url}
            modem: {{device: {modem.link}}}
            android: {{url: "{phone.url}", username: sms, password: '{phone.password}'}}
            contacts:
              alex: {{number: "5551234567", via: [twilio, modem]}}
            defaults: {{to: [alex]}}
            """,
        )
        assert cli.main(["check", "--probe", "-c", path], env=env) == 0
        out, err = capsys.readouterr()
        assert tw.sent() == [] and modem.sent == []
        assert tw.auth_token not in out + err
        probes = [line for line in out.splitlines() if line.startswith("probe ")]
        assert [p.split(":")[0] for p in probes] == [
            "probe smtp",
            "probe twilio",
            "probe modem",
            "probe android",
        ]
        assert probes[1] == (
            f"probe twilio: OK, account 'Home alarms' (Full, active), from {tw.number}"
        )
        assert probes[2].startswith("probe modem: OK, ")
        # android is built since issue 18: its probe is the authenticated GET /
        assert probes[3] == "probe android: OK, phone 'Pixel 4a', app version not told"
        assert phone.password not in out + err and phone.messages == {}
        assert [r.path for r in tw.requests] == [f"/2010-04-01/Accounts/{tw.account_sid}.json"]
        assert not any(c.startswith("AT+CMGS") for c in modem.commands)


def test_check_probe_fails_for_a_refused_token_and_a_locked_sim(
    tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("serial")
    with FakeTwilio() as tw, FakeModem(tmp_path, pin="1234") as modem:
        wrong = "0" * 32
        path = _write(
            tmp_path,
            f"""\
            twilio:
              account_sid: {tw.account_sid}
              auth_token: {wrong}
              from: "{tw.number}"
              api_base: {tw.url}
            modem: {{device: {modem.link}}}
            contacts:
              alex: {{number: "5551234567", via: [twilio, modem]}}
            defaults: {{to: [alex]}}
            """,
        )
        assert cli.main(["check", "--probe", "-c", path], env=env) == 1
        out, err = capsys.readouterr()
        assert wrong not in out + err and tw.auth_token not in out + err
        (twilio,) = [line for line in out.splitlines() if line.startswith("probe twilio")]
        (sim,) = [line for line in out.splitlines() if line.startswith("probe modem")]
        assert twilio.startswith("probe twilio: FAILED, ") and "20003" in twilio, twilio
        assert sim.startswith("probe modem: FAILED, ") and "PIN" in sim, sim
        assert not any(c.startswith("AT+CPIN=") for c in modem.commands)  # no PIN guessed


def test_carriers_says_which_gateways_are_closing_and_what_to_use(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["carriers"], env={}) == 0
    lines = capsys.readouterr().out.splitlines()
    table_end = max(i for i, line in enumerate(lines) if "rogers.com" in line)
    tail = " ".join(lines[table_end + 1 :])
    for fact in ("AT&T's shut down on 2025-06-17", "Sprint", "Rogers", "T-Mobile"):
        assert fact in tail
    assert "Verizon's is reported to retire on 2027-03-31" in tail
    assert "`twilio`" in tail and "`modem`" in tail and "error 30532" in tail
    assert "internet down" in tail and "Android" in tail
