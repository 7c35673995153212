#!/usr/bin/env bash
# Runs systemd/mqtt2sms.service on a real systemd: boots a Debian 12 (bookworm) container
# with systemd-nspawn, follows docs/raspberry-pi.md inside it (Mosquitto, a venv under /opt,
# /etc/mqtt2sms/config.yaml, the credential file, the unit) and checks what the guide
# promises: READY and the STATUS= line, a first text, reload (good and bad config), the
# watchdog, a clean stop, a missing broker, a refused login, a bad config at start, and
# `systemd-analyze security` with and without systemd/modem.conf.
#
# Usage, as root, from anywhere:   bash bench/systemd_boot.sh
# Environment (all optional):
#   ROOTFS=/var/tmp/m2s-nspawn      where the container's root file system is made
#   KEEP_ROOTFS=1                   keep it at the end (default: deleted, about 400 MB)
#   SRC=head|worktree               what is installed: `git archive HEAD` (default) or the
#                                   work tree as it is (uncommitted changes included)
#   MIRROR=http://...               Debian mirror (default: the first one apt uses here)
#   LIMIT=1200                      seconds for the whole run; then it stops and cleans up
#   SKIP_WATCHDOG_KILL=1            skip the 45 s test where the watchdog kills a frozen daemon
#   OUT=/tmp/m2s-systemd-boot       where the log and the outputs worth keeping go
#
# What it needs from outside: Debian's archive (debootstrap, and systemd-container on the
# host if missing) and PyPI (pip, run in the container before it boots, sharing the host's
# network). The booted container has a private network: loopback only, so its Mosquitto
# (1883) and SMTP sink (2525) never meet anything on the host.
# Exit code: 0 if every check passed, 1 if some failed, 2 if the run could not be set up.

set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOTFS=${ROOTFS:-/var/tmp/m2s-nspawn}
KEEP_ROOTFS=${KEEP_ROOTFS:-0}
SRC=${SRC:-head}
LIMIT=${LIMIT:-1200}
OUT=${OUT:-/tmp/m2s-systemd-boot}
MARKER=.m2s-systemd-boot
SECRET=app-pass-Q7vX2mK9   # the fake "Gmail app password": must never reach the journal

# Bound the whole run in time: re-run under timeout(1); the EXIT trap cleans up.
if [[ -z "${M2S_BOOT_INNER:-}" ]]; then
    export M2S_BOOT_INNER=1
    exec timeout --foreground --kill-after=60 "$LIMIT" bash "${BASH_SOURCE[0]}" "$@"
fi

mkdir -p "$OUT"
exec > >(tee "$OUT/log") 2>&1

NSPAWN_PID=
LEADER=
PASS=0
FAIL=0
FAILED=()

say() { printf '\n== %s\n' "$*"; }
ok() { PASS=$((PASS + 1)); printf 'ok   %s\n' "$*"; }
bad() { FAIL=$((FAIL + 1)); FAILED+=("$*"); printf 'FAIL %s\n' "$*"; }
check() { # check NAME COMMAND...: ok if the command succeeds
    local name=$1; shift
    if "$@"; then ok "$name"; else bad "$name"; fi
}
die() { printf 'cannot go on: %s\n' "$*"; exit 2; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "$NSPAWN_PID" ]] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        say "power off the container"
        [[ -n "$LEADER" ]] && kill -RTMIN+4 "$LEADER" 2>/dev/null   # systemd: poweroff
        for _ in $(seq 1 30); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 1; done
        if kill -0 "$NSPAWN_PID" 2>/dev/null; then
            kill -TERM "$NSPAWN_PID" 2>/dev/null; sleep 3; kill -KILL "$NSPAWN_PID" 2>/dev/null
        fi
        wait "$NSPAWN_PID" 2>/dev/null
    fi
    if [[ "$KEEP_ROOTFS" != 1 && -f "$ROOTFS/$MARKER" ]]; then
        rm -rf --one-file-system "$ROOTFS"
        echo "removed $ROOTFS"
    elif [[ -d "$ROOTFS" ]]; then
        echo "kept $ROOTFS"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 124' INT TERM

# Run a command inside the booted container: all its namespaces, a clean environment
# (HOME=/root as sudo gives one).
c() {
    nsenter -t "$LEADER" -a -- /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        TERM=dumb SYSTEMD_COLORS=0 SYSTEMD_PAGER= LANG=C.UTF-8 COLUMNS=200 "$@"
}
# wait_for SECONDS COMMAND...: until the command succeeds (every 0.2 s)
wait_for() {
    local end=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || return 1
        sleep 0.2
    done
}
prop() { c systemctl show -p "$1" --value mqtt2sms; }
status_text() { prop StatusText; }
status_is() { [[ "$(status_text)" == "$1"* ]]; }
status_contains() { [[ "$(status_text)" == *"$1"* ]]; }
journal_has() { c journalctl -u mqtt2sms --no-pager -o cat --since "$1" | grep -qF -- "$2"; }
mail_count() { c sh -c 'ls /var/lib/smtp-sink/maildir/new 2>/dev/null | wc -l'; }
mail_has() { c sh -c "grep -rqF -- '$1' /var/lib/smtp-sink/maildir/new 2>/dev/null"; }
stamp() { c date '+%Y-%m-%d %H:%M:%S'; }

# --------------------------------------------------------------------------- the host

[[ $EUID -eq 0 ]] || die "run as root"
[[ -d /proc/1 ]] || die "no /proc"
say "host: $(uname -sr), PID 1 is $(ps -p 1 -o comm=)"
if ! command -v systemd-nspawn >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get update -q >/dev/null && apt-get install -y -q systemd-container debootstrap >/dev/null \
        || die "apt-get install systemd-container debootstrap"
fi
systemd-nspawn --version | head -1
if [[ -z "${MIRROR:-}" ]]; then
    MIRROR=$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
        2>/dev/null | grep -oE 'https?://[^ ]+' | head -1)
    [[ -n "$MIRROR" ]] || die "no Debian mirror found in apt's sources: set MIRROR=http://..."
fi
echo "mirror: $MIRROR"

if [[ -e "$ROOTFS" ]]; then
    [[ -f "$ROOTFS/$MARKER" ]] || die "$ROOTFS exists and is not ours: remove it or set ROOTFS"
    rm -rf --one-file-system "$ROOTFS"
fi
mkdir -p "$ROOTFS" && touch "$ROOTFS/$MARKER"

say "debootstrap bookworm into $ROOTFS"
# minbase + what a Raspberry Pi OS has anyway: procps (/bin/kill, which ExecReload uses)
# and netbase (/etc/services; /etc/hosts is written below).
timeout 600 debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,procps,netbase,python3,python3-venv,mosquitto,mosquitto-clients,ca-certificates \
    bookworm "$ROOTFS" "$MIRROR" >"$OUT/debootstrap.log" 2>&1 \
    || { tail -20 "$OUT/debootstrap.log"; die "debootstrap failed"; }
echo "debootstrap done: $(du -sh --exclude=proc "$ROOTFS" | cut -f1)"
touch "$ROOTFS/$MARKER"
echo m2s >"$ROOTFS/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tm2s\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' \
    >"$ROOTFS/etc/hosts"

say "the source ($SRC) into /root/mqtt2sms"
mkdir -p "$ROOTFS/root/mqtt2sms"
case "$SRC" in
    head) git -C "$REPO" archive HEAD | tar -x -C "$ROOTFS/root/mqtt2sms" || die "git archive" ;;
    worktree)
        tar -C "$REPO" --exclude=.git --exclude=.venv --exclude='*.egg-info' \
            --exclude=__pycache__ --exclude=.mypy_cache --exclude=.pytest_cache \
            --exclude=.ruff_cache -cf - . | tar -x -C "$ROOTFS/root/mqtt2sms" || die "tar" ;;
    *) die "SRC must be head or worktree" ;;
esac
git -C "$REPO" log -1 --format='HEAD %h %s' 2>/dev/null

say "guide step 2: the venv under /opt (pip in the container, host network, not booted)"
# The host may reach PyPI through a TLS-inspecting proxy: give pip the host's CA bundle.
cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/root/host-ca.crt"
cat >"$ROOTFS/root/install.sh" <<'EOF'
set -e
umask 022
python3 -m venv /opt/mqtt2sms/venv
/opt/mqtt2sms/venv/bin/pip install -q /root/mqtt2sms
/opt/mqtt2sms/venv/bin/mqtt2sms --version
python3 -m venv /opt/smtp-sink
/opt/smtp-sink/bin/pip install -q 'aiosmtpd>=1.4'
EOF
timeout 600 systemd-nspawn -q -D "$ROOTFS" --register=no --keep-unit --resolv-conf=copy-host \
    --setenv=PIP_DISABLE_PIP_VERSION_CHECK=1 --setenv=PIP_CERT=/root/host-ca.crt \
    /bin/sh /root/install.sh 2>&1 | grep -v 'propagate' || true
[[ -x "$ROOTFS/opt/mqtt2sms/venv/bin/mqtt2sms" ]] || die "pip install in the container failed"
[[ -x "$ROOTFS/opt/smtp-sink/bin/python" ]] || die "no aiosmtpd venv"
rm -f "$ROOTFS/root/host-ca.crt" "$ROOTFS/root/install.sh"

say "the SMTP sink (127.0.0.1:2525, AUTH without TLS, mails into a Maildir)"
mkdir -p "$ROOTFS/etc/smtp-sink" "$ROOTFS/var/lib/smtp-sink"
printf 'm2s@example.org:%s\n' "$SECRET" >"$ROOTFS/etc/smtp-sink/users"
chmod 600 "$ROOTFS/etc/smtp-sink/users"
cat >"$ROOTFS/opt/smtp-sink/sink.py" <<'EOF'
"""A tiny SMTP sink on 127.0.0.1:2525: AUTH without TLS, every mail into a Maildir."""
import mailbox
import time
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

warnings.simplefilter("ignore")
USER, PASSWORD = open("/etc/smtp-sink/users").read().rstrip("\n").split(":", 1)
box = mailbox.Maildir("/var/lib/smtp-sink/maildir", create=True)


def auth(server, session, envelope, mechanism, data):
    ok = (isinstance(data, LoginPassword) and data.login.decode() == USER
          and data.password.decode() == PASSWORD)
    print(f"sink: AUTH {mechanism}: {'ok' if ok else 'refused'}", flush=True)
    return AuthResult(success=ok, handled=False)


class Handler:
    async def handle_DATA(self, server, session, envelope):
        box.add(envelope.original_content or envelope.content)
        print(f"sink: mail from {envelope.mail_from} to {','.join(envelope.rcpt_tos)}", flush=True)
        return "250 2.0.0 queued"


c = Controller(Handler(), hostname="127.0.0.1", port=2525, authenticator=auth,
               auth_required=True, auth_require_tls=False)
c.start()
print("sink: listening on 127.0.0.1:2525", flush=True)
while True:
    time.sleep(3600)
EOF
cat >"$ROOTFS/etc/systemd/system/smtp-sink.service" <<'EOF'
[Unit]
Description=test SMTP sink on 127.0.0.1:2525
[Service]
ExecStart=/opt/smtp-sink/bin/python -u /opt/smtp-sink/sink.py
[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/smtp-sink.service \
    "$ROOTFS/etc/systemd/system/multi-user.target.wants/smtp-sink.service"

say "guide steps 1, 3, 4: Mosquitto's queue limit, config.yaml, the credential file"
echo 'max_queued_messages 20000' >"$ROOTFS/etc/mosquitto/conf.d/mqtt2sms.conf"
mkdir -p "$ROOTFS/etc/mqtt2sms"
cat >"$ROOTFS/etc/mqtt2sms/config.yaml" <<'EOF'
mqtt:
  host: 127.0.0.1
  port: 1883

smtp:
  host: 127.0.0.1
  port: 2525
  security: none
  username: m2s@example.org
  password_file: ${CREDENTIALS_DIRECTORY}/smtp_password
  from: m2s@example.org

contacts:
  alex: {number: "+1 (555) 123-4567", carrier: tmobile}

defaults:
  to: [alex]
EOF
chmod 644 "$ROOTFS/etc/mqtt2sms/config.yaml"
cp "$ROOTFS/etc/mqtt2sms/config.yaml" "$OUT/config.base.yaml"
install -m 600 /dev/null "$ROOTFS/etc/mqtt2sms/smtp_password"
printf '%s\n' "$SECRET" >"$ROOTFS/etc/mqtt2sms/smtp_password"
ls -l "$ROOTFS/etc/mqtt2sms"

# --------------------------------------------------------------------------- boot

say "boot the container (systemd-nspawn -b, private network: loopback only)"
setsid systemd-nspawn -q -b -D "$ROOTFS" --machine=m2s --register=no --keep-unit \
    --private-network --console=passive </dev/null >"$OUT/console.log" 2>&1 &
NSPAWN_PID=$!
for _ in $(seq 1 100); do
    LEADER=$(ps -o pid= --ppid "$NSPAWN_PID" 2>/dev/null | head -1 | tr -d ' ')
    [[ -n "$LEADER" ]] && break
    kill -0 "$NSPAWN_PID" 2>/dev/null || break
    sleep 0.1
done
[[ -n "$LEADER" ]] || { cat "$OUT/console.log"; die "systemd-nspawn did not start a container"; }
echo "nspawn pid $NSPAWN_PID, container PID 1 = host pid $LEADER"
sleep 1
state=$(timeout 90 nsenter -t "$LEADER" -a -- systemctl is-system-running --wait 2>&1)
echo "system: $state"
[[ "$state" == running || "$state" == degraded ]] || die "container did not boot ($state)"
c systemctl --failed --no-pager --legend=no
c systemctl is-active mosquitto smtp-sink | paste -sd' ' | sed 's/^/mosquitto, smtp-sink: /'
c systemctl --version | head -1

# --------------------------------------------------------------------------- the guide

M="/opt/mqtt2sms/venv/bin/mqtt2sms"
CRED="CREDENTIALS_DIRECTORY=/etc/mqtt2sms"

say "guide step 5: check, check --probe, test (by hand, as root)"
c env "$CRED" $M check -c /etc/mqtt2sms/config.yaml >"$OUT/check.txt" 2>&1
check "check: exit 0" test $? -eq 0
c env "$CRED" $M check --probe -c /etc/mqtt2sms/config.yaml 2>&1 | grep '^probe'
check "check --probe: smtp OK (logged in with the credential file)" \
    c sh -c "env $CRED $M check --probe -c /etc/mqtt2sms/config.yaml | grep -q 'probe smtp: OK'"
c env "$CRED" $M test -c /etc/mqtt2sms/config.yaml home/alerts/sms 'Garage door open'

say "guide step 6: install the unit, daemon-reload, enable --now"
c cp /root/mqtt2sms/systemd/mqtt2sms.service /etc/systemd/system/
c systemctl daemon-reload
c systemctl enable --now mqtt2sms 2>&1
check "enable --now: active" wait_for 15 c systemctl is-active -q mqtt2sms
check "STATUS=connected to 127.0.0.1:1883, 0 queued" wait_for 15 status_is "connected to 127.0.0.1:1883, 0 queued"
c systemctl status --no-pager mqtt2sms | tee "$OUT/status.start.txt" | sed -n 1,6p
START_PID=$(prop MainPID)

say "guide step 7: the first text"
since=$(stamp)
c mosquitto_pub -t home/alerts/sms -m 'Garage door open'
check "a text arrives at the SMTP sink" wait_for 15 mail_has 'Garage door open'
check "the journal says sent" wait_for 5 journal_has "$since" 'mqtt2sms.event: sent'
c journalctl -u mqtt2sms -u smtp-sink --no-pager -o short-precise --since "$since"
check "STATUS=..., last sent HH:MM" wait_for 10 status_contains ', last sent '
status_text

say "guide step 8: reload after adding a rule"
cat >>"$ROOTFS/etc/mqtt2sms/config.yaml" <<'EOF'

rules:
  - name: door
    topic: home/door/+
    message: "Door {{ topic_parts[2] }}: {{ value }}"
EOF
since=$(stamp)
t0=$(date +%s.%N)
c systemctl reload mqtt2sms
check "systemctl reload: exit 0" test $? -eq 0
t1=$(date +%s.%N)
# What a user does next: publish to the new rule's topic at once.
c mosquitto_pub -q 1 -t home/door/garage -m 'open, right after the reload'
check "reload applied (journal: config reloaded)" wait_for 10 journal_has "$since" 'config reloaded'
t2=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { printf "systemctl reload returned after %.2f s; the config was applied %.2f s after that (+- 0.2 s)\n", b - a, c - b }'
c journalctl -u mqtt2sms --no-pager -o short-precise --since "$since"
sleep 2
if mail_has 'open, right after the reload'; then
    ok "a message published right after 'systemctl reload' returned reached the new rule"
else
    bad "a message published right after 'systemctl reload' returned was lost (reload is asynchronous)"
fi
c mosquitto_pub -q 1 -t home/door/garage -m 'open'
check "the new rule works once reloaded" wait_for 10 mail_has 'Door garage: open'
check "still active, no restart" test "$(prop NRestarts)" = 0 -a "$(prop MainPID)" = "$START_PID"

say "guide step 8: a broken config + reload keeps the running one"
cp "$ROOTFS/etc/mqtt2sms/config.yaml" "$OUT/config.good.yaml"
printf '  - name: typo\n    topic: home/typo\n    to: [alx]\n' >>"$ROOTFS/etc/mqtt2sms/config.yaml"
since=$(stamp)
c systemctl reload mqtt2sms
check "reload refused is logged" wait_for 10 journal_has "$since" 'reload refused: keeping the running config'
c journalctl -u mqtt2sms --no-pager -o short-precise --since "$since" | grep -v systemd
check "'reload refused' at priority err (journalctl -p err)" \
    c sh -c "journalctl -u mqtt2sms -p err --no-pager -o cat --since '$since' | grep -q 'reload refused'"
check "still active, same process" test "$(c systemctl is-active mqtt2sms)" = active -a "$(prop MainPID)" = "$START_PID"
c mosquitto_pub -q 1 -t home/door/back -m 'open'
check "the running config (door rule) still works" wait_for 10 mail_has 'Door back: open'
cp "$OUT/config.good.yaml" "$ROOTFS/etc/mqtt2sms/config.yaml"

say "watchdog (WatchdogSec=30): up for more than 60 s without a restart"
started=$(c date -d "$(prop ExecMainStartTimestamp)" +%s)
now=$(c date +%s)
((now - started < 65)) && sleep $((65 - (now - started)))
c systemctl show -p WatchdogUSec -p WatchdogTimestamp -p NRestarts -p MainPID -p ExecMainStartTimestamp mqtt2sms
wd=$(c date -d "$(prop WatchdogTimestamp)" +%s)
now=$(c date +%s)
check "up > 60 s, NRestarts=0, same PID" \
    test "$((now - started))" -gt 60 -a "$(prop NRestarts)" = 0 -a "$(prop MainPID)" = "$START_PID"
check "WatchdogTimestamp at most 10 s old (fed every 5 s)" test $((now - wd)) -le 10

say "the secret stays out of the journal"
n=$(c sh -c "journalctl -o export --no-pager | grep -ac -- '$SECRET'")
check "the SMTP password appears 0 times in the whole journal (found $n)" test "$n" = 0

say "systemctl stop: a clean exit"
c systemctl stop mqtt2sms
c systemctl status --no-pager mqtt2sms | sed -n 1,7p
check "stop: inactive, Result=success, exit status 0" \
    test "$(c systemctl is-active mqtt2sms)" = inactive -a "$(prop Result)" = success -a "$(prop ExecMainStatus)" = 0

say "no broker: stop mosquitto, start mqtt2sms"
c systemctl stop mosquitto
c systemctl start mqtt2sms
check "start without a broker: exit 0, active (READY=1)" test "$(c systemctl is-active mqtt2sms)" = active
check "STATUS=waiting for broker 127.0.0.1:1883" wait_for 5 status_is "waiting for broker 127.0.0.1:1883"
sleep 20
c systemctl status --no-pager mqtt2sms | sed -n 3,5p
check "20 s later: still active, NRestarts=0" \
    test "$(c systemctl is-active mqtt2sms)" = active -a "$(prop NRestarts)" = 0
c systemctl start mosquitto
check "mosquitto back: connected within 40 s" wait_for 40 status_is "connected to 127.0.0.1:1883"
status_text

say "troubleshooting: a refused login (credential file missing), then fixed + restart"
mv "$ROOTFS/etc/mqtt2sms/smtp_password" "$OUT/smtp_password.moved"
c systemctl restart mqtt2sms
check "starts without the credential file (SetCredential= fallback)" \
    test "$(c systemctl is-active mqtt2sms)" = active
wait_for 10 status_is "connected" || true
since=$(stamp)
c mosquitto_pub -q 1 -t home/alerts/sms -m 'Water leak, basement'
check "STATUS shows the refused login" wait_for 15 status_contains 'last error: smtp: '
status_text
c journalctl -u mqtt2sms --no-pager -o json --since "$since" |
    python3 -c 'import json,sys; [print("PRIORITY=%s %s" % (d["PRIORITY"], d["MESSAGE"])) for d in map(json.loads, sys.stdin) if d.get("SYSLOG_IDENTIFIER") == "mqtt2sms"]'
install -m 600 "$OUT/smtp_password.moved" "$ROOTFS/etc/mqtt2sms/smtp_password"
rm -f "$OUT/smtp_password.moved"
since=$(stamp)
c systemctl restart mqtt2sms
check "after the fix + restart the queued text goes out" wait_for 20 mail_has 'Water leak, basement'
wait_for 10 status_is "connected to 127.0.0.1:1883, 0 queued" || true
sleep 6 # one status tick
status_text
if [[ "$(status_text)" == *"last error"* ]]; then
    bad "STATUS still shows the old 'last error' after the fix, the restart and a successful send"
else
    ok "STATUS has no 'last error' once texts go out again"
fi

say "a bad config at start: exit 2, no restart loop"
printf '  - name: typo\n    topic: home/typo\n    to: [alx]\n' >>"$ROOTFS/etc/mqtt2sms/config.yaml"
since=$(stamp)
c systemctl restart mqtt2sms 2>/dev/null
sleep 12 # past RestartSec=10s
c systemctl status --no-pager mqtt2sms | sed -n 1,12p
check "failed with status 2, NRestarts=0" \
    test "$(prop ExecMainStatus)" = 2 -a "$(prop NRestarts)" = 0 -a "$(c systemctl is-active mqtt2sms)" = failed
if c sh -c "journalctl -u mqtt2sms -p warning --no-pager -o cat --since '$since' | grep -q 'unknown contact'"; then
    ok "'journalctl -u mqtt2sms -p warning' shows why the start failed"
else
    bad "'journalctl -u mqtt2sms -p warning' does not show why the start failed (the config error is logged at priority info)"
fi
cp "$OUT/config.good.yaml" "$ROOTFS/etc/mqtt2sms/config.yaml"
c systemctl reset-failed mqtt2sms
c systemctl start mqtt2sms
check "fixed: active again" wait_for 10 status_is "connected"

if [[ "${SKIP_WATCHDOG_KILL:-0}" != 1 ]]; then
    say "the watchdog kills a frozen daemon (SIGSTOP) and Restart= brings it back"
    pid=$(prop MainPID)
    restarts=$(prop NRestarts)
    since=$(stamp)
    c kill -STOP "$pid"
    check "journal: Watchdog timeout within 40 s" wait_for 40 journal_has "$since" 'Watchdog timeout'
    check "restarted (RestartSec=10s)" wait_for 20 journal_has "$since" 'Scheduled restart job'
    check "the new process is connected" wait_for 15 status_is "connected"
    c journalctl -u mqtt2sms --no-pager -o short-precise --since "$since" | head -12
    check "NRestarts went up by 1, a new PID" \
        test "$(prop NRestarts)" = $((restarts + 1)) -a "$(prop MainPID)" != "$pid"
fi

say "systemd-analyze security (in the booted container)"
c systemd-analyze security mqtt2sms --no-pager >"$OUT/security.txt" 2>&1
tail -1 "$OUT/security.txt"
grep '✗' "$OUT/security.txt"
c systemd-analyze security --offline=true /etc/systemd/system/mqtt2sms.service --no-pager 2>&1 | tail -1
score=$(grep -oE 'exposure level for mqtt2sms.service: [0-9.]+' "$OUT/security.txt" | grep -oE '[0-9.]+$')
check "exposure $score (the guide says 1.1)" test "$score" = 1.1

say "with systemd/modem.conf (guide step 10)"
c mkdir -p /etc/systemd/system/mqtt2sms.service.d
c cp /root/mqtt2sms/systemd/modem.conf /etc/systemd/system/mqtt2sms.service.d/
c systemctl daemon-reload
c systemctl restart mqtt2sms
check "active with the drop-in (no /dev/ttyUSB0 here)" wait_for 10 status_is "connected"
c systemd-analyze security mqtt2sms --no-pager >"$OUT/security.modem.txt" 2>&1
tail -1 "$OUT/security.modem.txt"
score=$(grep -oE 'exposure level for mqtt2sms.service: [0-9.]+' "$OUT/security.modem.txt" | grep -oE '[0-9.]+$')
check "exposure $score with modem.conf (the guide says 1.3)" test "$score" = 1.3
pid=$(prop MainPID)
c grep -E '^Groups' "/proc/$pid/status"
check "the service runs with the dialout group (gid 20)" \
    c sh -c "grep -E '^Groups:.*\\b20\\b' /proc/$pid/status >/dev/null"

# A sandbox probe: the unit (and its drop-ins) with ExecStart replaced, against two fake
# serial device nodes (there is no modem driver here, so open() of an allowed node fails
# with ENXIO; ENOENT = hidden, EPERM = refused by DevicePolicy=, EACCES = permissions).
c sh -c 'mknod /dev/ttyUSB0 c 188 0; mknod /dev/ttyUSB1 c 188 1; chgrp dialout /dev/ttyUSB0 /dev/ttyUSB1; chmod 660 /dev/ttyUSB0 /dev/ttyUSB1'
cat >"$ROOTFS/opt/devprobe.py" <<'EOF'
import os
print("probe: groups", os.getgroups(), "uid", os.getuid())
for d in ("/dev/ttyUSB0", "/dev/ttyUSB1"):
    try:
        os.close(os.open(d, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK))
        print("probe:", d, "opened")
    except OSError as e:
        print("probe:", d, os.strerror(e.errno), "(errno %d)" % e.errno)
EOF
sed -e 's|^ExecStart=.*|ExecStart=/opt/mqtt2sms/venv/bin/python3 /opt/devprobe.py|' \
    -e 's|^Type=notify|Type=oneshot\nStandardOutput=truncate:/run/devprobe.out|' \
    -e '/^\(WatchdogSec\|Restart\|RestartSec\|RestartPreventExitStatus\|ExecReload\|NotifyAccess\)=/d' \
    -e '/^\[Install\]/,$d' \
    "$ROOTFS/etc/systemd/system/mqtt2sms.service" >"$ROOTFS/etc/systemd/system/m2s-devprobe.service"
for variant in "without modem.conf" "with modem.conf"; do
    rm -rf "$ROOTFS/etc/systemd/system/m2s-devprobe.service.d"
    if [[ "$variant" == "with modem.conf" ]]; then
        mkdir -p "$ROOTFS/etc/systemd/system/m2s-devprobe.service.d"
        cp "$ROOTFS/root/mqtt2sms/systemd/modem.conf" "$ROOTFS/etc/systemd/system/m2s-devprobe.service.d/"
    fi
    c systemctl daemon-reload
    c systemctl start m2s-devprobe
    echo "device probe, $variant:"
    c cat /run/devprobe.out
done
if c awk '$2 == "/sys/fs/cgroup/devices" && $4 ~ /(^|,)ro(,|$)/ { f = 1 } END { exit !f }' /proc/mounts; then
    echo "note: the container sees the cgroup v1 devices controller read-only, so DevicePolicy=/DeviceAllow="
    echo "      cannot be enforced here (ttyUSB1 is not refused); on a Pi (cgroup v2) they are."
fi
c rm -f /dev/ttyUSB0 /dev/ttyUSB1 /opt/devprobe.py /run/devprobe.out /etc/systemd/system/m2s-devprobe.service
c rm -rf /etc/systemd/system/m2s-devprobe.service.d /etc/systemd/system/mqtt2sms.service.d
c systemctl daemon-reload

say "the whole mqtt2sms journal, with priorities"
c journalctl -u mqtt2sms --no-pager -o json |
    python3 -c 'import json,sys; [print(d["PRIORITY"], d.get("SYSLOG_IDENTIFIER", ""), d["MESSAGE"]) for d in map(json.loads, sys.stdin)]' \
    >"$OUT/journal.txt"
echo "$(wc -l <"$OUT/journal.txt") lines in $OUT/journal.txt"

say "summary: $PASS passed, $FAIL failed"
for f in "${FAILED[@]}"; do echo "FAIL $f"; done
echo "$PASS passed, $FAIL failed"
((FAIL == 0))
