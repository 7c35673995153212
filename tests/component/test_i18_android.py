"""AndroidTransport over real HTTP on 127.0.0.1 against tests.fakes.android.FakeAndroid."""

from __future__ import annotations

import base64
import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mqtt2sms import cli, ways
from mqtt2sms.config import parse_config
from mqtt2sms.config.model import AndroidConfig
from mqtt2sms.errors import (
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
)
from mqtt2sms.transports import android as android_mod
from mqtt2sms.transports import registry
from mqtt2sms.transports.android import AndroidTransport
from mqtt2sms.transports.base import OutgoingText, Receiving, Reporting
from tests.fakes.android import FakeAndroid

ALEX = "+15551230001"


@pytest.fixture
def phone() -> Iterator[FakeAndroid]:
    with FakeAndroid() as fake:
        yield fake


def transport(fake: FakeAndroid, password: str | None = None, **kw: object) -> AndroidTransport:
    cfg = AndroidConfig(
        url=fake.url,
        username=fake.username,
        password=fake.password if password is None else password,
        **kw,  # type: ignore[arg-type]
    )
    return AndroidTransport(cfg, timeout=3)


def text(tid: str = "t1", priority: str = "normal", to: str = ALEX) -> OutgoingText:
    return OutgoingText(id=tid, address=to, body="Smoke in the kitchen €", priority=priority)


# -- send ---------------------------------------------------------------------------------


def test_send_posts_our_id_and_the_number_and_gets_202(phone: FakeAndroid) -> None:
    receipt = transport(phone).send(text())
    assert (receipt.transport, receipt.remote_id) == ("android", "t1")
    assert receipt.detail.startswith("202")
    [req] = phone.requests
    assert (req.method, req.path, req.authorized) == ("POST", "/message", True)
    assert req.body == {
        "id": "t1",
        "textMessage": {"text": "Smoke in the kitchen €"},
        "phoneNumbers": [ALEX],
        "withDeliveryReport": True,
    }


def test_a_resend_of_the_same_id_is_a_409_and_a_success_sending_nothing_twice(
    phone: FakeAndroid,
) -> None:
    t = transport(phone)
    first = t.send(text())
    again = t.send(text())  # our crash between the POST and our record of it
    assert [r.path for r in phone.requests] == ["/message", "/message"]
    assert len(phone.messages) == 1 and list(phone.messages) == ["t1"]
    assert first.remote_id == again.remote_id == "t1"
    assert "409" in again.detail


def test_high_priority_asks_for_priority_100(phone: FakeAndroid) -> None:
    transport(phone).send(text("hi", priority="high"))
    transport(phone).send(text("lo"))
    assert phone.messages["hi"].posted["priority"] == 100
    assert "priority" not in phone.messages["lo"].posted


def test_a_number_that_is_not_e164_is_refused_without_a_request(phone: FakeAndroid) -> None:
    with pytest.raises(PermanentDeliveryError, match=r"E\.164"):
        transport(phone).send(text(to="5551230001"))
    assert phone.requests == []


# -- reports ------------------------------------------------------------------------------


def test_reports_go_pending_then_delivered(phone: FakeAndroid) -> None:
    t = transport(phone)
    assert isinstance(t, Reporting)
    t.send(text())
    [first] = t.reports(["t1"])
    assert (first.state, first.detail) == ("pending", "Sent")
    [second] = t.reports(["t1"])
    assert (second.remote_id, second.state, second.detail) == ("t1", "delivered", "Delivered")
    assert [r.path for r in phone.requests[1:]] == ["/message/t1", "/message/t1"]


def test_a_failed_text_is_undelivered_with_the_recipients_error(phone: FakeAndroid) -> None:
    phone.script(ALEX, ["Processed", ("Failed", "RESULT_ERROR_NO_SERVICE")])
    t = transport(phone)
    t.send(text())
    assert t.reports(["t1"])[0].state == "pending"
    [report] = t.reports(["t1"])
    assert report.state == "undelivered"
    assert report.detail == "Failed: RESULT_ERROR_NO_SERVICE"


def test_an_unknown_id_is_left_out_and_the_others_are_reported(phone: FakeAndroid) -> None:
    t = transport(phone)
    t.send(text())
    reports = t.reports(["gone", "t1"])
    assert [(r.remote_id, r.state) for r in reports] == [("t1", "pending")]


# -- failures -----------------------------------------------------------------------------


def test_a_wrong_password_is_an_auth_failure_kept_for_later(phone: FakeAndroid) -> None:
    with pytest.raises(TemporaryDeliveryError) as caught:
        transport(phone, password="not-it").send(text())
    assert caught.value.auth and caught.value.scope == "transport"
    assert "401" in str(caught.value)
    assert phone.messages == {}


def test_a_closed_port_is_temporary() -> None:
    fake = FakeAndroid(closed=True)
    t = transport(fake)
    with pytest.raises(TemporaryDeliveryError) as caught:
        t.send(text())
    assert not caught.value.auth and caught.value.scope == "transport"
    assert "connection refused" in str(caught.value)
    with pytest.raises(TemporaryDeliveryError):
        t.reports(["t1"])
    with pytest.raises(TemporaryDeliveryError):
        t.probe()


def test_a_bad_request_is_permanent_with_the_phones_words(phone: FakeAndroid) -> None:
    with pytest.raises(PermanentDeliveryError, match="the phone says: phoneNumbers"):
        body = transport(phone)
        body._http.post_json("/message", {"textMessage": {"text": "x"}})


def test_the_password_is_in_no_exception_and_no_log_record(
    phone: FakeAndroid, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "hunter2-wrong-pw"
    said: list[str] = []
    for password in (wrong, phone.password):
        t = transport(phone, password=password)
        said.append(repr(t))
        for call in (
            lambda t=t: t.send(text()),
            lambda t=t: t.reports(["t1", "nope"]),
            lambda t=t: t.cancel("nope"),
            t.probe,
            lambda t=t: t.receive(None),
        ):
            try:
                said.append(repr(call()))
            except DeliveryError as exc:
                said += [str(exc), repr(exc)]
    closed = FakeAndroid(closed=True)
    try:
        transport(closed).send(text())
    except DeliveryError as exc:
        said.append(str(exc))
    said += [r.getMessage() for r in caplog.records] + [str(r.args) for r in caplog.records]
    everything = "\n".join(said)
    assert "401" in everything  # the wrong password was tried and refused
    for password in (wrong, phone.password, closed.password):
        basic = base64.b64encode(f"sms:{password}".encode()).decode()
        assert password not in everything and basic not in everything


# -- probe, cancel, receive ---------------------------------------------------------------


def test_probe_asks_the_authenticated_root_and_says_the_model(phone: FakeAndroid) -> None:
    assert transport(phone).probe() == "phone 'Pixel 4a', app version not told"
    [req] = phone.requests
    assert (req.method, req.path, req.authorized) == ("GET", "/", True)
    assert phone.messages == {}


def test_probe_says_the_app_version_when_the_phone_tells_it() -> None:
    with FakeAndroid(version="1.68.0") as fake:
        assert transport(fake).probe() == "phone 'Pixel 4a', app 1.68.0"


def test_probe_with_a_wrong_password_fails_although_health_would_pass(
    phone: FakeAndroid,
) -> None:
    with pytest.raises(TemporaryDeliveryError) as caught:
        transport(phone, password="nope").probe()
    assert caught.value.auth


def test_cancel_a_pending_text(phone: FakeAndroid) -> None:
    t = transport(phone)
    t.send(text())
    assert t.cancel("t1") is True
    assert phone.requests[-1].method == "DELETE" and phone.requests[-1].path == "/message/t1"
    [report] = t.reports(["t1"])
    assert (report.state, report.detail) == ("undelivered", "Cancelled")


def test_cancel_of_a_text_the_phone_sent_already_is_too_late_not_an_error(
    phone: FakeAndroid,
) -> None:
    phone.script("+15551234567", ["Sent"])
    t = transport(phone)
    t.send(text())
    t.reports(["t1"])  # the phone has sent it
    assert t.cancel("t1") is False


def test_cancel_on_an_app_older_than_1_67_says_the_text_stays(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    with FakeAndroid(cancel=False) as fake:
        t = transport(fake)
        t.send(text())
        assert t.cancel("t1") is False
    assert any("the text stays" in r.getMessage() for r in caplog.records)


def test_receive_first_look_only_takes_the_mark_then_reads_what_is_new(
    phone: FakeAndroid,
) -> None:
    t = transport(phone, receive=True)
    assert isinstance(t, Receiving) and t.receives is True
    base = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
    phone.receive("+15557770000", "old news", at=base)
    texts, mark = t.receive(None)
    assert texts == [] and mark is not None
    phone.receive("+15551230001", "ACK", at=base + dt.timedelta(seconds=30))
    phone.receive("+15551230002", "me too", at=base + dt.timedelta(seconds=30))
    texts, mark2 = t.receive(mark)
    assert sorted((x.sender, x.text) for x in texts) == [
        ("+15551230001", "ACK"),
        ("+15551230002", "me too"),
    ]
    assert all(x.at == base + dt.timedelta(seconds=30) for x in texts)
    again, mark3 = t.receive(mark2)
    assert again == [] and mark3 == mark2
    inbox = [r for r in phone.requests if r.path == "/inbox"]
    assert "from" not in inbox[0].query and inbox[1].query["from"] == "2026-12-01T12:00:00Z"


def test_poll_every_and_receives_come_from_the_section(phone: FakeAndroid) -> None:
    t = transport(phone, poll=4.0)
    assert (t.poll_every, t.receives) == (4.0, False)
    assert t.commit_first is True  # its texts are committed with their id before the POST


def test_report_for_takes_a_failed_recipient_over_the_top_state() -> None:
    report = android_mod.report_for(
        {"state": "Sent", "recipients": [{"state": "Failed", "error": "no service"}]}, "x"
    )
    assert (report.state, report.detail) == ("undelivered", "Failed: no service")


# -- wiring: the registry, the config, check --probe ---------------------------------------


SMTP = "smtp: {host: smtp.example.com, from: me@example.com}\n"
ENV = {"STATE_DIRECTORY": "state", "TZ": "UTC"}


def _config_file(tmp_path: Path, android: str, contact: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"android: {android}\ncontacts:\n  alex: {contact}\ndefaults: {{to: [alex]}}\n",
        encoding="utf-8",
    )
    return str(path)


def test_the_registry_builds_android_from_its_section(phone: FakeAndroid) -> None:
    cfg = parse_config(
        SMTP + f"android: {{url: '{phone.url}', username: sms, password: pw, poll: 4s, "
        "receive: true}\n",
        "config.yaml",
        ENV,
        check_file=lambda path: None,
    ).config
    built = registry.build(cfg)
    assert list(built) == ["smtp", "android"]
    android = built["android"]
    assert isinstance(android, AndroidTransport)
    assert (android.poll_every, android.receives) == (4.0, True)
    assert list(registry.build(cfg, only={"android"})) == ["android"]
    assert "android" in ways.BUILT and ways.NOT_BUILT == ()


def test_a_contact_sent_via_android_needs_a_number() -> None:
    text = (
        SMTP + "android: {url: 'http://127.0.0.1:8080', username: sms, password: x}\n"
        "contacts:\n  alex: {email: alex@example.com, via: [android]}\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, "config.yaml", ENV, check_file=lambda path: None)
    assert list(info.value.problems) == ["config.yaml:4: contacts.alex.via: android needs a number"]


def test_check_probe_asks_the_phone_and_sends_nothing(
    tmp_path: Path, phone: FakeAndroid, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"STATE_DIRECTORY": str(tmp_path / "state"), "TZ": "UTC"}
    path = _config_file(
        tmp_path,
        f"{{url: '{phone.url}', username: sms, password: '{phone.password}', poll: 20s}}",
        "{number: '5551230001', via: [android, smtp], carrier: verizon}",
    )
    assert cli.main(["check", "-c", path], env=env) == 0
    out, err = capsys.readouterr()
    assert (
        f"android: {phone.url}, user sms, delivery reports every 20s, "
        "replies read while an incident waits for one"
    ) in out.splitlines(), out
    assert phone.requests == []  # check alone asks nothing
    code = cli.main(["check", "--probe", "-c", path], env=env)
    out, err = capsys.readouterr()
    lines = [line for line in out.splitlines() if line.startswith("probe android")]
    assert lines == ["probe android: OK, phone 'Pixel 4a', app version not told"], out
    assert code == 0  # the dry-run maildir and the phone both work
    assert phone.password not in out + err and phone.messages == {}
    assert [(r.method, r.path) for r in phone.requests] == [("GET", "/")]


def test_check_probe_fails_for_a_wrong_password(
    tmp_path: Path, phone: FakeAndroid, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"STATE_DIRECTORY": str(tmp_path / "state"), "TZ": "UTC"}
    wrong = "wrong-pw-1234"
    path = _config_file(
        tmp_path,
        f"{{url: '{phone.url}', username: sms, password: {wrong}}}",
        "{number: '5551230001', via: [android]}",
    )
    assert cli.main(["check", "--probe", "-c", path], env=env) == 1
    out, err = capsys.readouterr()
    [line] = [line for line in out.splitlines() if line.startswith("probe android")]
    assert line.startswith("probe android: FAILED, device: HTTP 401"), line
    assert wrong not in out + err


def test_what_is_left_of_max_age_is_the_phones_ttl(phone: FakeAndroid) -> None:
    t = transport(phone)
    t.send(replace(text("soon"), ttl=3599.4))
    t.send(replace(text("late"), ttl=5.0))  # nearly expired: still a minute to try
    t.send(text("none"))
    assert phone.messages["soon"].posted["ttl"] == 3599
    assert phone.messages["late"].posted["ttl"] == 60
    assert "ttl" not in phone.messages["none"].posted
