"""The systemd unit and the modem drop-in: required directives, `systemd-analyze verify`
and the `systemd-analyze security --offline=yes` score (2.0 or lower;
docs/raspberry-pi.md quotes it).

The checks that need `systemd-analyze` skip where it is missing. Each analysis runs on a copy
in a temporary directory laid out as systemd reads it (`mqtt2sms.service` next to
`mqtt2sms.service.d/modem.conf`), so the drop-in is merged by systemd itself.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "mqtt2sms.service"
DROPIN = REPO / "systemd" / "modem.conf"

PROGRAM = "/opt/mqtt2sms/venv/bin/mqtt2sms"
MAX_EXPOSURE = 2.0

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


# --------------------------------------------------------------------------- helpers


def directives(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Section -> [(key, value)] in file order; repeated keys are kept."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"{path.name}:{number}: no line continuations, please"
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path.name}:{number}: not a directive: {raw!r}"
        current.append((key.strip(), value.strip()))
    return sections


def values(path: Path, section: str, key: str) -> list[str]:
    return [v for k, v in directives(path).get(section, []) if k == key]


def one(path: Path, section: str, key: str) -> str:
    found = values(path, section, key)
    assert len(found) == 1, f"[{section}] {key}= should be set once, found {found}"
    return found[0]


def words(path: Path, section: str, key: str) -> list[str]:
    return [w for v in values(path, section, key) for w in v.split()]


def lay_out(tmp_path: Path, *, dropin: bool, program: str | None = None) -> Path:
    """Copy the unit (and the drop-in) where systemd looks for them; returns the unit's path.

    ``program`` replaces the ExecStart program, and nothing else."""
    text = UNIT.read_text()
    if program is not None:
        text, n = re.subn(
            rf"^ExecStart={re.escape(PROGRAM)} ", f"ExecStart={program} ", text, flags=re.M
        )
        assert n == 1
    unit = tmp_path / "mqtt2sms.service"
    unit.write_text(text)
    if dropin:
        (tmp_path / "mqtt2sms.service.d").mkdir()
        shutil.copy(DROPIN, tmp_path / "mqtt2sms.service.d" / "modem.conf")
    return unit


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, "--no-pager", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def exposure(unit: Path) -> tuple[float, str]:
    done = analyze("security", "--offline=yes", str(unit))
    out = done.stdout + done.stderr
    m = re.search(r"Overall exposure level for mqtt2sms\.service: (\d+(?:\.\d+)?)", out)
    assert m, f"no score in the output of systemd-analyze security:\n{out}"
    return float(m.group(1)), out


# A line about some other unit on this machine (verify also loads the targets we name).
_OTHER_UNIT = re.compile(
    r"^(?P<name>\S+?\.(?:service|socket|target|mount|automount|swap|timer|path|slice|scope|device))"
    r"(?:\.d/\S+\.conf)?(?::\d+)?: "
)


def verify_problems(unit: Path) -> list[str]:
    """What `systemd-analyze verify` says about our unit and its drop-ins."""
    done = analyze("verify", str(unit))
    lines = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
    ours = []
    for line in lines:
        m = _OTHER_UNIT.match(line)
        if m and Path(m.group("name")).name != "mqtt2sms.service":
            continue
        ours.append(line)
    return ours


MISSING_PROGRAM = (
    f"mqtt2sms.service: Command {PROGRAM} is not executable: No such file or directory"
)


def tolerated(problems: list[str]) -> list[str]:
    """Drop the one complaint this machine cannot avoid: the documented install is absent."""
    if Path(PROGRAM).exists():
        return problems
    return [p for p in problems if p != MISSING_PROGRAM]


# --------------------------------------------------------------------------- the unit's text


def test_unit_is_a_notify_service_with_a_watchdog() -> None:
    assert one(UNIT, "Service", "Type") == "notify"
    assert one(UNIT, "Service", "NotifyAccess") == "main"
    assert int(one(UNIT, "Service", "WatchdogSec")) > 0
    assert one(UNIT, "Service", "Restart") == "on-failure"
    assert one(UNIT, "Service", "RestartSec")
    assert one(UNIT, "Service", "TimeoutStopSec") == "20"
    assert "PYTHONUNBUFFERED=1" in words(UNIT, "Service", "Environment")


def test_unit_runs_the_documented_command_and_reloads_with_sighup() -> None:
    assert one(UNIT, "Service", "ExecStart") == f"{PROGRAM} run -c /etc/mqtt2sms/config.yaml"
    reload = one(UNIT, "Service", "ExecReload").split()
    assert reload[0] in ("/bin/kill", "/usr/bin/kill")
    assert "-HUP" in reload
    assert "$MAINPID" in reload


def test_unit_waits_for_the_network_and_the_broker() -> None:
    assert "network-online.target" in words(UNIT, "Unit", "Wants")
    after = words(UNIT, "Unit", "After")
    assert "network-online.target" in after
    assert "mosquitto.service" in after
    # The daemon waits for a broker that is down; it must not fail without one.
    assert "mosquitto.service" not in words(UNIT, "Unit", "Requires")
    assert "mosquitto.service" not in words(UNIT, "Unit", "BindsTo")
    assert one(UNIT, "Install", "WantedBy") == "multi-user.target"


def test_unit_runs_as_a_dynamic_user_with_its_own_state_directory() -> None:
    assert one(UNIT, "Service", "DynamicUser") == "yes"
    assert one(UNIT, "Service", "StateDirectory") == "mqtt2sms"
    assert one(UNIT, "Service", "StateDirectoryMode") == "0700"
    assert one(UNIT, "Service", "ConfigurationDirectory") == "mqtt2sms"
    assert one(UNIT, "Service", "UMask") == "0077"
    assert not values(UNIT, "Service", "User")


def test_every_credential_is_optional() -> None:
    """A LoadCredential= whose file is missing fails the start (243/CREDENTIALS) unless a
    SetCredential= of the same name is its fallback (systemd.exec(5), systemd 252)."""
    loaded = dict(v.split(":", 1) for v in values(UNIT, "Service", "LoadCredential"))
    assert loaded == {
        "smtp_password": "/etc/mqtt2sms/smtp_password",
        "twilio_auth_token": "/etc/mqtt2sms/twilio_auth_token",
    }
    fallbacks = dict(v.split(":", 1) for v in values(UNIT, "Service", "SetCredential"))
    assert set(fallbacks) == set(loaded)
    # An empty line: the config reader strips the newline, leaving an empty secret.
    assert set(fallbacks.values()) == {"\\n"}


def test_unit_keeps_the_network_it_needs() -> None:
    assert set(words(UNIT, "Service", "RestrictAddressFamilies")) == {
        "AF_INET",
        "AF_INET6",
        "AF_UNIX",
    }
    for key in ("PrivateNetwork", "IPAddressDeny"):
        assert not values(UNIT, "Service", key), f"{key}= would cut off the broker or SMTP"


def test_modem_dropin_opens_one_serial_device() -> None:
    assert set(directives(DROPIN)) == {"Service"}
    assert one(DROPIN, "Service", "PrivateDevices") == "no"
    assert one(DROPIN, "Service", "DevicePolicy") == "closed"
    assert one(DROPIN, "Service", "DeviceAllow") == "/dev/ttyUSB0 rw"
    assert one(DROPIN, "Service", "SupplementaryGroups") == "dialout"


# --------------------------------------------------------------------------- systemd-analyze


@needs_analyze
def test_security_score_of_the_unit(tmp_path: Path) -> None:
    score, out = exposure(lay_out(tmp_path, dropin=False))
    assert score <= MAX_EXPOSURE, out


@needs_analyze
def test_security_score_with_the_modem_dropin(tmp_path: Path) -> None:
    score, out = exposure(lay_out(tmp_path, dropin=True))
    # Proof that systemd merged the drop-in: the device it allows is in the report.
    assert "/dev/ttyUSB0" in out
    assert score <= MAX_EXPOSURE, out


@needs_analyze
@pytest.mark.parametrize("dropin", [False, True], ids=["unit", "unit+modem"])
def test_verify_has_nothing_to_say_but_the_missing_program(tmp_path: Path, dropin: bool) -> None:
    assert tolerated(verify_problems(lay_out(tmp_path, dropin=dropin))) == []


@needs_analyze
@pytest.mark.parametrize("dropin", [False, True], ids=["unit", "unit+modem"])
def test_verify_is_clean_when_the_program_exists(tmp_path: Path, dropin: bool) -> None:
    """The same unit with the ExecStart program pointed at one that exists here."""
    assert verify_problems(lay_out(tmp_path, dropin=dropin, program=sys.executable)) == []


@needs_analyze
def test_verify_reports_a_bad_dropin(tmp_path: Path) -> None:
    """The filter above does not hide problems in our own files."""
    unit = lay_out(tmp_path, dropin=True, program=sys.executable)
    bad = tmp_path / "mqtt2sms.service.d" / "modem.conf"
    bad.write_text(bad.read_text() + "DeviceAlow=/dev/ttyUSB1 rw\n")
    problems = verify_problems(unit)
    assert any("DeviceAlow" in p for p in problems), problems
