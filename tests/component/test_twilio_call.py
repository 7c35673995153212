"""TwilioTransport.call over real HTTP on 127.0.0.1 against tests.fakes.twilio.FakeTwilio.

The transport's clock and sleep are a test clock (a sleep moves it on at once), so a call
that rings for two minutes takes milliseconds; every request still goes over HTTP.
"""

from __future__ import annotations

import base64
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator

import pytest

from mqtt2sms.config.model import TwilioConfig
from mqtt2sms.errors import PermanentDeliveryError, TemporaryDeliveryError
from mqtt2sms.transports.base import Calling
from mqtt2sms.transports.twilio import CALL_GRACE, TwilioTransport
from tests.fakes.twilio import FakeTwilio, Recorded

ALEX = "+15551230001"
SAY = "Smoke in the kitchen. Reply ACK 417."


class Clock:
    """A monotonic clock that a sleep moves on; records each sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as tw:
        yield tw


@pytest.fixture
def clock() -> Clock:
    return Clock()


def config(tw: FakeTwilio, **kw: object) -> TwilioConfig:
    values: dict[str, object] = {
        "account_sid": tw.account_sid,
        "auth_token": tw.auth_token,
        "from_number": tw.number,
        "api_base": tw.url,
    }
    values.update(kw)
    return TwilioConfig(**values)  # type: ignore[arg-type]


def transport(tw: FakeTwilio, clock: Clock, **kw: object) -> TwilioTransport:
    return TwilioTransport(config(tw, **kw), timeout=5, clock=clock.monotonic, sleep=clock.sleep)


def never() -> bool:
    return False


def looks(tw: FakeTwilio) -> list[Recorded]:
    """The GETs of a call's status."""
    return [r for r in tw.requests if r.method == "GET" and "/Calls/" in r.path]


def updates(tw: FakeTwilio) -> list[Recorded]:
    """The POSTs to a call (hang-ups)."""
    return [r for r in tw.requests if r.method == "POST" and "/Calls/" in r.path]


def after_looks(tw: FakeTwilio, n: int) -> Callable[[], bool]:
    """``cancelled`` that turns true once the call's status was read ``n`` times."""
    return lambda: len(looks(tw)) >= n


def secrets_of(tw: FakeTwilio) -> list[str]:
    basic = base64.b64encode(f"{tw.account_sid}:{tw.auth_token}".encode()).decode()
    return [tw.auth_token, basic]


# -- placing the call ---------------------------------------------------------------------


def test_an_answered_call_posts_to_from_timeout_and_twiml_then_polls(
    fake: FakeTwilio, clock: Clock
) -> None:
    t = transport(fake, clock)
    assert isinstance(t, Calling) and t.can_call
    result = t.call(ALEX, 30.0, SAY, never)
    assert result.outcome == "answered"
    assert result.detail == "completed, 1 s"
    create = fake.requests[0]
    assert create.method == "POST"
    assert create.path == f"/2010-04-01/Accounts/{fake.account_sid}/Calls.json"
    assert create.authorized
    assert set(create.form) == {"To", "From", "Timeout", "Twiml"}
    assert (create.form["To"], create.form["From"]) == (ALEX, fake.number)
    [call] = fake.placed()
    assert call["status"] == "completed" and call["form"] == create.form
    # one look per step of the script (ringing, in-progress, completed), about 2 s apart
    assert [r.path for r in looks(fake)] == [
        f"/2010-04-01/Accounts/{fake.account_sid}/Calls/{call['sid']}.json"
    ] * 3
    assert clock.sleeps == [2.0] * 3
    assert updates(fake) == []  # it ended by itself: nothing to hang up


def test_the_twiml_twilio_gets_says_the_text_twice_with_a_pause(
    fake: FakeTwilio, clock: Clock
) -> None:
    said = 'Smoke & heat > 60 °C in "Kid\'s room" <upstairs>. Reply ACK 417.'
    transport(fake, clock).call(ALEX, 30.0, said, never)
    root = ET.fromstring(fake.requests[0].form["Twiml"])  # well-formed, or this raises
    assert root.tag == "Response"
    assert [(el.tag, el.text, el.attrib) for el in root] == [
        ("Say", said, {}),
        ("Pause", None, {"length": "1"}),
        ("Say", said, {}),
    ]


@pytest.mark.parametrize(("ring_for", "timeout"), [(30.0, "30"), (25.0, "25"), (12.4, "12")])
def test_timeout_is_ring_for(fake: FakeTwilio, clock: Clock, ring_for: float, timeout: str) -> None:
    transport(fake, clock).call(ALEX, ring_for, SAY, never)
    assert fake.requests[0].form["Timeout"] == timeout


# -- outcomes -----------------------------------------------------------------------------


def test_no_answer(fake: FakeTwilio, clock: Clock) -> None:
    fake.call_script(ALEX, ["ringing", "ringing", "no-answer"])
    result = transport(fake, clock).call(ALEX, 30.0, SAY, never)
    assert (result.outcome, result.detail) == ("no-answer", "no-answer")
    assert len(looks(fake)) == 3


def test_completed_without_being_answered_is_no_answer(fake: FakeTwilio, clock: Clock) -> None:
    fake.call_script(ALEX, ["ringing", "completed"])
    result = transport(fake, clock).call(ALEX, 30.0, SAY, never)
    assert result.outcome == "no-answer"


def test_answered_between_two_looks_counts_by_its_duration(fake: FakeTwilio, clock: Clock) -> None:
    # in-progress twice, then completed: the transport sees it only after "ringing"
    fake.call_script(ALEX, ["ringing", "in-progress", "in-progress", "completed"])
    result = transport(fake, clock).call(ALEX, 30.0, SAY, never)
    assert result.outcome == "answered" and result.detail == "completed, 2 s"


def test_busy(fake: FakeTwilio, clock: Clock) -> None:
    fake.call_script(ALEX, ["busy"])
    result = transport(fake, clock).call(ALEX, 30.0, SAY, never)
    assert (result.outcome, result.detail) == ("busy", "busy")


def test_failed_carries_twilios_error_code(fake: FakeTwilio, clock: Clock) -> None:
    fake.call_script(ALEX, ["ringing", ("failed", 32009)])
    result = transport(fake, clock).call(ALEX, 30.0, SAY, never)
    assert result.outcome == "failed"
    assert "32009" in result.detail and "carrier could not complete" in result.detail


def test_canceled_by_someone_else(fake: FakeTwilio, clock: Clock) -> None:
    fake.call_script(ALEX, ["canceled"])
    result = transport(fake, clock).call(ALEX, 30.0, SAY, never)
    assert result.outcome == "canceled"
    assert updates(fake) == []


# -- cancelling (an acknowledgement) --------------------------------------------------------


def test_cancelled_while_ringing_sends_the_cancel_and_stops(fake: FakeTwilio, clock: Clock) -> None:
    fake.call_script(ALEX, ["ringing"] * 10 + ["no-answer"])
    result = transport(fake, clock).call(ALEX, 30.0, SAY, after_looks(fake, 2))
    assert result.outcome == "canceled"
    assert result.detail == "hung up while ringing"
    [cancel] = updates(fake)
    [call] = fake.placed()
    assert cancel.path.endswith(f"/Calls/{call['sid']}.json")
    assert cancel.form == {"Status": "canceled"} and cancel.authorized
    assert call["status"] == "canceled"
    assert len(looks(fake)) == 2  # no look after the hang-up


def test_cancelled_once_answered_completes_the_call(fake: FakeTwilio, clock: Clock) -> None:
    fake.call_script(ALEX, ["ringing", "in-progress", "in-progress", "in-progress", "completed"])
    result = transport(fake, clock).call(ALEX, 30.0, SAY, after_looks(fake, 2))
    assert result.outcome == "canceled"
    assert [u.form for u in updates(fake)] == [{"Status": "completed"}]
    assert fake.placed()[0]["status"] == "completed"


def test_cancelled_before_the_call_places_none(fake: FakeTwilio, clock: Clock) -> None:
    result = transport(fake, clock).call(ALEX, 30.0, SAY, lambda: True)
    assert result.outcome == "canceled"
    assert fake.placed() == [] and fake.requests == []


# -- the hard bound -------------------------------------------------------------------------


def test_a_call_that_never_ends_is_hung_up_after_ring_for_and_the_grace(
    fake: FakeTwilio, clock: Clock
) -> None:
    fake.call_script(ALEX, ["ringing"])  # and it stays ringing
    result = transport(fake, clock).call(ALEX, 30.0, SAY, never)
    assert result.outcome == "no-answer" and "still ringing" in result.detail
    assert sum(clock.sleeps) == pytest.approx(30.0 + CALL_GRACE)
    assert 30.0 + CALL_GRACE <= 120.0  # never more than ring_for + 90 s
    assert [u.form for u in updates(fake)] == [{"Status": "canceled"}]


def test_an_answered_call_that_never_ends_is_completed_at_the_bound(
    fake: FakeTwilio, clock: Clock
) -> None:
    fake.call_script(ALEX, ["in-progress"])
    result = transport(fake, clock).call(ALEX, 10.0, SAY, never)
    assert result.outcome == "answered" and "still in progress" in result.detail
    assert sum(clock.sleeps) == pytest.approx(10.0 + CALL_GRACE)
    assert [u.form for u in updates(fake)] == [{"Status": "completed"}]


def test_a_look_that_fails_is_tried_again(fake: FakeTwilio, clock: Clock) -> None:
    fake.fail(500, method="GET")
    result = transport(fake, clock).call(ALEX, 30.0, SAY, never)
    assert result.outcome == "answered"
    assert len(looks(fake)) == 4  # the 500, then ringing, in-progress, completed


def test_a_status_never_read_is_a_failure_that_says_so(fake: FakeTwilio, clock: Clock) -> None:
    for _ in range(80):
        fake.fail(503, method="GET")
    result = transport(fake, clock).call(ALEX, 10.0, SAY, never)
    assert result.outcome == "failed" and "status unknown" in result.detail
    assert "503" in result.detail
    assert sum(clock.sleeps) == pytest.approx(10.0 + CALL_GRACE)


# -- refusals and errors ----------------------------------------------------------------------


def test_21216_says_the_account_needs_a_primary_customer_profile(
    fake: FakeTwilio, clock: Clock
) -> None:
    fake.primary_customer_profile = False
    with pytest.raises(PermanentDeliveryError) as err:
        transport(fake, clock).call(ALEX, 30.0, SAY, never)
    assert str(err.value) == (
        "Twilio refused the call (21216): this account may not call +1 numbers without a "
        "Primary Customer Profile; see Twilio's Trust Hub"
    )
    assert fake.placed() == [] and looks(fake) == []


def test_21215_says_the_geographic_permissions_refuse_it(fake: FakeTwilio, clock: Clock) -> None:
    fake.fail(400, code=21215, method="POST")
    with pytest.raises(PermanentDeliveryError, match=r"\(21215\): .*geographic permissions"):
        transport(fake, clock).call("+447700900123", 30.0, SAY, never)


def test_another_4xx_is_permanent_with_twilios_code(fake: FakeTwilio, clock: Clock) -> None:
    fake.fail(400, code=21210, method="POST")
    with pytest.raises(PermanentDeliveryError, match=r"21210.*voice-capable"):
        transport(fake, clock).call(ALEX, 30.0, SAY, never)


def test_a_messaging_service_alone_cannot_call(fake: FakeTwilio, clock: Clock) -> None:
    t = transport(fake, clock, from_number=None, messaging_service_sid="MG" + "0" * 32)
    assert not t.can_call
    with pytest.raises(PermanentDeliveryError, match=r"calls need `twilio\.from`"):
        t.call(ALEX, 30.0, SAY, never)
    assert fake.requests == []


def test_a_number_that_is_not_e164_is_refused_without_asking(
    fake: FakeTwilio, clock: Clock
) -> None:
    with pytest.raises(PermanentDeliveryError, match=r"E\.164"):
        transport(fake, clock).call("555-1234", 30.0, SAY, never)
    assert fake.requests == []


def test_refused_credentials_are_an_auth_failure(fake: FakeTwilio, clock: Clock) -> None:
    with pytest.raises(TemporaryDeliveryError) as err:
        transport(fake, clock, auth_token="wrong").call(ALEX, 30.0, SAY, never)
    assert err.value.auth and "20003" in str(err.value)
    assert fake.placed() == []


def test_credentials_refused_while_polling_are_raised(fake: FakeTwilio, clock: Clock) -> None:
    fake.fail(401, method="GET")
    with pytest.raises(TemporaryDeliveryError) as err:
        transport(fake, clock).call(ALEX, 30.0, SAY, never)
    assert err.value.auth


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_server_error_on_the_call_is_temporary(
    fake: FakeTwilio, clock: Clock, status: int
) -> None:
    fake.fail(status, method="POST")
    with pytest.raises(TemporaryDeliveryError) as err:
        transport(fake, clock).call(ALEX, 30.0, SAY, never)
    assert err.value.scope == "transport" and not err.value.auth


def test_a_way_out_that_is_down_is_temporary(
    fake: FakeTwilio, clock: Clock, free_port: Callable[[], int]
) -> None:
    t = transport(fake, clock, api_base=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TemporaryDeliveryError) as err:
        t.call(ALEX, 30.0, SAY, never)
    assert err.value.scope == "transport"


def test_the_token_is_never_in_a_call_error_or_log(
    fake: FakeTwilio, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    messages: list[str] = []
    t = transport(fake, clock)

    def fails(setup: Callable[[], None]) -> None:
        setup()
        with pytest.raises((TemporaryDeliveryError, PermanentDeliveryError)) as err:
            t.call(ALEX, 30.0, SAY, never)
        messages.extend([str(err.value), repr(err.value)])

    fails(lambda: fake.fail(401, method="POST"))
    fails(lambda: fake.fail(500, method="POST"))
    fails(lambda: fake.fail(400, code=21211, method="POST"))
    fails(lambda: fake.fail(401, method="GET"))
    fake.primary_customer_profile = False
    fails(lambda: None)
    fake.primary_customer_profile = True
    fake.fail(500, method="GET")
    fake.call_script(ALEX, ["ringing"] * 5)
    seen = len(looks(fake))

    def ack_and_break_the_hang_up() -> bool:
        if len(looks(fake)) < seen + 2:
            return False
        fake.fail(500, method="POST")  # the hang-up fails too
        return True

    messages.append(t.call(ALEX, 30.0, SAY, ack_and_break_the_hang_up).detail)
    messages += [r.getMessage() for r in caplog.records]
    assert any("hang-up failed" in m for m in messages)
    for secret in secrets_of(fake):
        for m in messages:
            assert secret not in m


# -- probe --------------------------------------------------------------------------------


def test_probe_says_whether_calls_are_possible_and_places_none(
    fake: FakeTwilio, clock: Clock
) -> None:
    line = transport(fake, clock).probe()
    assert line.endswith(f"from {fake.number}")  # a `from`: calls can be placed
    service = transport(fake, clock, from_number=None, messaging_service_sid="MG" + "0" * 32)
    assert "no calls (they need `from`)" in service.probe()
    assert fake.placed() == []
    assert all("/Calls" not in r.path for r in fake.requests)
