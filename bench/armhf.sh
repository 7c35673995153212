#!/usr/bin/env bash
# The README's first command on a 32-bit Raspberry Pi (ARMv7), checked under QEMU user
# emulation: a debootstrapped Debian 12 armhf, PyPI only (no piwheels), no compiler.
# Installs the package with [embedded], runs the shipped config.yaml on a free port, sends a
# text through its embedded broker and finds it in the maildir. About 8-10 minutes; not in CI.
# Measured (2026-12-01, 2 cores): root file system 375 s, install 237 s (amqtt 0.11.0, PyYAML
# built as pure Python, MarkupSafe from an armv7l wheel), a text sent, SIGTERM exit code 0.
# Needs root. ARMv6 (Pi Zero, Pi 1) cannot be checked this way: see docs/raspberry-pi.md.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
ROOT=${ROOT:-$(mktemp -d)/armhf}
export DEBIAN_FRONTEND=noninteractive
command -v qemu-arm-static >/dev/null && command -v debootstrap >/dev/null \
    || apt-get install -y qemu-user-static binfmt-support debootstrap
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
update-binfmts --enable qemu-arm >/dev/null 2>&1 || true
mirror=$(sed -n 's/^URIs: *//p; s/^deb \(\[[^]]*\] \)\?\(http[^ ]*\) .*/\2/p' \
    /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | head -1 || true)
t=$SECONDS
if [ ! -x "$ROOT/usr/bin/python3" ]; then
    debootstrap --arch=armhf --foreign --variant=minbase \
        --include=python3,python3-venv,ca-certificates bookworm "$ROOT" "$mirror"
    cp /usr/bin/qemu-arm-static "$ROOT/usr/bin/"
    chroot "$ROOT" /debootstrap/debootstrap --second-stage
fi
echo "armhf: root file system in $((SECONDS - t)) s"
mount --bind /proc "$ROOT/proc"
trap 'umount "$ROOT/proc"' EXIT
# the host's CA bundle (this machine reaches PyPI through it); the throwaway root only
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
rm -rf "$ROOT/src" && mkdir "$ROOT/src"
git -C "$REPO" archive HEAD | tar -x -C "$ROOT/src"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed "s/port: 1883/port: $PORT/" "$ROOT/src/config.yaml" >"$ROOT/src/armhf.yaml"
grep -q "port: $PORT" "$ROOT/src/armhf.yaml" || { echo "armhf: no port in config.yaml"; exit 1; }
t=$SECONDS
chroot "$ROOT" /bin/sh -ec '
    uname -m
    if command -v cc gcc >/dev/null; then echo "a compiler is installed"; exit 1; fi
    cd /src && python3 -m venv .venv
    .venv/bin/pip install --no-cache-dir ".[embedded]"
    .venv/bin/pip list
'
echo "armhf: the README's install in $((SECONDS - t)) s"
chroot "$ROOT" /bin/sh -ec "
    cd /src && export HOME=/root STATE_DIRECTORY=/tmp/armhf-state
    .venv/bin/mqtt2sms run -c armhf.yaml >/tmp/armhf.log 2>&1 &
    pid=\$!
    for i in \$(seq 60); do grep -q started /tmp/armhf.log && break; sleep 1; done
    sleep 3
    .venv/bin/mqtt2sms send -c armhf.yaml 'Hello from armhf'
    for i in \$(seq 60); do grep -rqs 'Hello from armhf' /tmp/armhf-state/maildir && break; sleep 1; done
    kill -TERM \$pid; wait \$pid; echo exit code \$?
    cat /tmp/armhf.log
    grep -rqs 'Hello from armhf' /tmp/armhf-state/maildir
"
echo "armhf: 1 passed, 0 failed"
