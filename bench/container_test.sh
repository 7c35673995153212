#!/usr/bin/env bash
# Builds the image (Containerfile) and the add-on's image, runs each against Mosquitto on the
# host network, publishes an alert, finds the text in the mounted /data maildir, stops the
# container (exit code 0, `offline` on mqtt2sms/status) and starts it again on the same /data.
# The add-on gets a fake Supervisor (HTTP on 127.0.0.1 answering /services/mqtt) and an
# options.json. Needs root, podman, runc, debootstrap, mosquitto and mosquitto-clients.
# No registry is reachable here: the base is made with debootstrap (BASE_IMAGE to reuse one).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
BASE_IMAGE=${BASE_IMAGE:-localhost/bookworm-base}
WORK=$(mktemp -d)
CA=/etc/ssl/certs/ca-certificates.crt
PIDS=()
cleanup() {
    [ -n "${KEEP:-}" ] && return
    podman rm -f m2s-test >/dev/null 2>&1 || true
    podman rm -f m2s-addon-test >/dev/null 2>&1 || true
    podman rm -f m2s-embedded-test >/dev/null 2>&1 || true
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
podman rm -f m2s-test >/dev/null 2>&1 || true
podman rm -f m2s-addon-test >/dev/null 2>&1 || true
podman rm -f m2s-embedded-test >/dev/null 2>&1 || true
say() { echo "container_test: $*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# podman as this machine allows: runc (crun refuses a hybrid cgroup setup), and nofile and
# nproc within the hard limits (podman asks for more, and runc fails with EPERM)
if ! grep -qs nproc /etc/containers/containers.conf; then
    mkdir -p /etc/containers
    printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=4096:4096"]\n' \
        "$(ulimit -Hn)" "$(ulimit -Hn)" >/etc/containers/containers.conf
    printf '[engine]\nruntime = "runc"\n' >>/etc/containers/containers.conf
fi
if ! podman image exists "$BASE_IMAGE"; then
    t=$SECONDS
    mirror=$(sed -n 's/^URIs: *//p; s/^deb \(\[[^]]*\] \)\?\(http[^ ]*\) .*/\2/p' \
        /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | head -1 || true)
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$WORK/rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log"; exit 1; }
    tar -C "$WORK/rootfs" -c . | podman import - "$BASE_IMAGE" >/dev/null
    rm -rf "$WORK/rootfs"
    say "base image $BASE_IMAGE made in $((SECONDS - t)) s"
fi
BUILD=(podman build --format docker --network host -v "$CA:$CA:ro")

t=$SECONDS
"${BUILD[@]}" --build-arg BASE="$BASE_IMAGE" -t localhost/mqtt2sms:test -f Containerfile . \
    >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; exit 1; }
# the HEALTHCHECK is in the image (podman runs it by systemd timers, absent here: the test
# runs `mqtt2sms health` itself with podman exec)
podman image inspect -f '{{.Config.Healthcheck.Test}}' localhost/mqtt2sms:test | grep -q health
say "image built in $((SECONDS - t)) s, $(podman image inspect -f '{{.Size}}' localhost/mqtt2sms:test) bytes"

t=$SECONDS
mkdir -p "$WORK/wheels"
python3 -m pip wheel -q --no-deps -w "$WORK/wheels" "$REPO" >"$WORK/wheel.log" 2>&1 \
    || { tail -20 "$WORK/wheel.log"; exit 1; }
WHEEL=$(basename "$WORK"/wheels/mqtt2sms-*.whl)
"${BUILD[@]}" -v "$WORK/wheels:/wheels:ro" --build-arg BUILD_FROM="$BASE_IMAGE" \
    --build-arg MQTT2SMS_SOURCE="/wheels/$WHEEL" -t localhost/mqtt2sms-addon:test \
    homeassistant-addon/mqtt2sms >"$WORK/build-addon.log" 2>&1 \
    || { tail -30 "$WORK/build-addon.log"; exit 1; }
say "add-on image built in $((SECONDS - t)) s, $(podman image inspect -f '{{.Size}}' localhost/mqtt2sms-addon:test) bytes"

# Mosquitto with a password file and persistence, on a free port of 127.0.0.1
PORT=$(free_port)
mkdir -p "$WORK/mosq"
touch "$WORK/mosq/passwd" && chmod 0600 "$WORK/mosq/passwd"
mosquitto_passwd -b "$WORK/mosq/passwd" mqtt2sms test-only-password
cat >"$WORK/mosq/mosquitto.conf" <<CONF
user root
listener $PORT 127.0.0.1
allow_anonymous false
password_file $WORK/mosq/passwd
persistence true
persistence_location $WORK/mosq/
CONF
mosquitto -c "$WORK/mosq/mosquitto.conf" >"$WORK/mosq/log" 2>&1 &
PIDS+=($!)
sleep 1
PUB=(mosquitto_pub -h 127.0.0.1 -p "$PORT" -u mqtt2sms -P test-only-password -q 1)
SUB=(mosquitto_sub -h 127.0.0.1 -p "$PORT" -u mqtt2sms -P test-only-password)

wait_for_text() { # DIR TEXT: a mail in DIR/maildir holding TEXT, within 30 s
    for _ in $(seq 60); do
        if grep -rqs -- "$2" "$1/maildir"; then return 0; fi
        sleep 0.5
    done
    say "no text '$2' in $1/maildir"; return 1
}
status() { "${SUB[@]}" -t mqtt2sms/status -C 1 -W 5 2>/dev/null || echo none; }
wait_online() { # the daemon has subscribed (before that, a new session misses what is sent)
    for _ in $(seq 30); do [ "$(status)" = online ] && return 0; sleep 1; done
    say "never online"; podman logs "$1" | tail -20; return 1
}
stop_and_check() { # NAME
    podman stop -t 30 "$1" >/dev/null
    code=$(podman inspect -f '{{.State.ExitCode}}' "$1")
    [ "$code" = 0 ] || { podman logs "$1" | tail -20; say "$1 exited $code"; exit 1; }
    [ "$(status)" = offline ] || { say "$1: status is not offline after a stop"; exit 1; }
    say "$1 stopped: exit code 0, status offline"
}
healthy() { # NAME: `mqtt2sms health` in the container, once the first report is written
    for _ in $(seq 20); do
        if podman exec "$1" mqtt2sms health >/dev/null 2>&1 \
            || podman exec "$1" mqtt2sms health -c /tmp/mqtt2sms/config.yaml >/dev/null 2>&1; then
            return 0
        fi
        sleep 1
    done
    say "$1 never healthy"; podman logs "$1" | tail -20; return 1
}

# 1. the image: config and secret mounted as a user would, the state in /data
DATA=$WORK/data
mkdir -p "$DATA" "$WORK/secrets"
printf 'test-only-password\n' >"$WORK/secrets/mqtt_password"
cat >"$DATA/config.yaml" <<CONF
mqtt: {host: 127.0.0.1, port: $PORT, username: mqtt2sms, password_file: /run/secrets/mqtt_password}
contacts:
  alex: {email: "5551234567@vtext.com"}
defaults: {to: [alex]}
CONF
chown -R 10001:10001 "$DATA"
RUN=(podman run -d --no-healthcheck --network host --name m2s-test -v "$DATA:/data"
    -v "$WORK/secrets/mqtt_password:/run/secrets/mqtt_password:ro" localhost/mqtt2sms:test)
t=$SECONDS
"${RUN[@]}" >/dev/null
wait_online m2s-test
"${PUB[@]}" -t home/alerts/sms -m 'Garage door open'
wait_for_text "$DATA" 'Garage door open'
say "image: the text is in /data/maildir after $((SECONDS - t)) s"
healthy m2s-test
[ "$(status)" = online ] || { say "status is not online"; exit 1; }
if podman logs m2s-test 2>&1 | grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2} '; then
    say "log lines carry a timestamp of their own"; exit 1
fi
stop_and_check m2s-test
podman start m2s-test >/dev/null
"${PUB[@]}" -t home/alerts/sms -m 'Second alert after a restart'
wait_for_text "$DATA" 'Second alert after a restart'
[ "$(grep -rls 'Garage door open' "$DATA/maildir" | wc -l)" = 1 ] || { say "a duplicate"; exit 1; }
stop_and_check m2s-test
say "image: state kept across a restart"
podman rm m2s-test >/dev/null

# 2. the add-on: a fake Supervisor and an options.json, no broker settings typed
SPORT=$(free_port)
cat >"$WORK/supervisor.py" <<PY
import json, http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/services/mqtt" and self.headers["Authorization"] == "Bearer test-token"
        body = {"result": "ok", "data": {"host": "127.0.0.1", "port": $PORT, "ssl": False,
                "protocol": "3.1.1", "username": "mqtt2sms", "password": "test-only-password",
                "addon": "core_mosquitto"}} if ok else {"result": "error"}
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())
http.server.HTTPServer(("127.0.0.1", $SPORT), H).serve_forever()
PY
python3 "$WORK/supervisor.py" 2>/dev/null &
PIDS+=($!)
ADATA=$WORK/addon-data
mkdir -p "$ADATA"
cat >"$ADATA/options.json" <<JSON
{"contacts": [{"name": "me", "number": "+1 555 123 4567", "carrier": "tmobile"}],
 "groups": [], "to": "me", "smtp": {"host": "", "port": 587, "security": "starttls",
 "username": "", "password": "", "from": ""}, "discovery": true, "rules": []}
JSON
t=$SECONDS
podman run -d --no-healthcheck --network host --name m2s-addon-test -v "$ADATA:/data" \
    -e SUPERVISOR_TOKEN=test-token -e MQTT2SMS_SUPERVISOR_URL="http://127.0.0.1:$SPORT" \
    localhost/mqtt2sms-addon:test >/dev/null
wait_online m2s-addon-test
# what notify.send_message publishes through the discovered notify entity
"${PUB[@]}" -t mqtt2sms/notify -m 'Hello from notify.send_message'
wait_for_text "$ADATA" 'Hello from notify.send_message'
say "add-on: the text is in /data/maildir after $((SECONDS - t)) s"
grep -rqs '5551234567@tmomail.net' "$ADATA/maildir" || { say "add-on: wrong address"; exit 1; }
healthy m2s-addon-test
stop_and_check m2s-addon-test
podman start m2s-addon-test >/dev/null
"${PUB[@]}" -t home/alerts/sms -m 'Add-on after a restart'
wait_for_text "$ADATA" 'Add-on after a restart'
stop_and_check m2s-addon-test
say "add-on: state kept across a restart"
podman rm m2s-addon-test >/dev/null

# 3. the README's one-box start: the repository's own config.yaml (mqtt.embedded: true, no
# smtp) mounted read-only; the image carries the built-in broker. Its port is made a free one
# (the container shares the host's network here, where 1883 may be taken).
EPORT=$(free_port)
EDATA=$WORK/embedded-data
mkdir -p "$EDATA" && chown 10001:10001 "$EDATA"
sed "s/^  port: 1883/  port: $EPORT/" "$REPO/config.yaml" >"$WORK/embedded.yaml"
grep -q "port: $EPORT" "$WORK/embedded.yaml" || { say "config.yaml: no port to change"; exit 1; }
chmod 0644 "$WORK/embedded.yaml"
podman run --rm --no-healthcheck --network host -v "$WORK/embedded.yaml:/etc/mqtt2sms/config.yaml:ro" \
    --entrypoint mqtt2sms localhost/mqtt2sms:test check >/dev/null \
    || { say "embedded: check refused the repository's config.yaml"; exit 1; }
t=$SECONDS
podman run -d --no-healthcheck --network host --name m2s-embedded-test -v "$EDATA:/data" \
    -v "$WORK/embedded.yaml:/etc/mqtt2sms/config.yaml:ro" localhost/mqtt2sms:test >/dev/null
ESUB=(mosquitto_sub -h 127.0.0.1 -p "$EPORT")
for _ in $(seq 30); do
    [ "$("${ESUB[@]}" -t mqtt2sms/status -C 1 -W 2 2>/dev/null)" = online ] && break
    sleep 1
done
[ "$("${ESUB[@]}" -t mqtt2sms/status -C 1 -W 2 2>/dev/null)" = online ] \
    || { podman logs m2s-embedded-test | tail -20; say "embedded: never online"; exit 1; }
podman exec m2s-embedded-test mqtt2sms send --to alex 'One box in a container' >/dev/null
wait_for_text "$EDATA" 'One box in a container'
say "embedded: the README's docker run texts (dry run) after $((SECONDS - t)) s"
podman stop -t 30 m2s-embedded-test >/dev/null
[ "$(podman inspect -f '{{.State.ExitCode}}' m2s-embedded-test)" = 0 ] \
    || { podman logs m2s-embedded-test | tail -20; say "embedded: bad exit code"; exit 1; }
podman rm m2s-embedded-test >/dev/null
echo "container_test: 3 passed, 0 failed"
