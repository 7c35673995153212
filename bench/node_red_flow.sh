#!/usr/bin/env bash
# Optional check, not part of the test suite: import examples/node-red/flows.json into a real
# Node-RED 4, point its broker node at a Mosquitto on a free 127.0.0.1 port, press both inject
# nodes through Node-RED's admin API, and check that both messages arrive on home/alerts/sms.
#
# Needs: node and npm (Node.js 18+), mosquitto, mosquitto_sub, curl, python3.
# Node-RED: $NODE_RED (a node-red executable) if set, else `npm install node-red@4` into a
# temporary directory (about a minute, from the npm registry).
#
#   bench/node_red_flow.sh        # exit 0 when both messages arrived
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
mqtt_port=$(free_port)
ui_port=$(free_port)

# ---------------------------------------------------------------- Mosquitto
mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
cat >"$work/mosquitto.conf" <<EOF
listener $mqtt_port 127.0.0.1
allow_anonymous true
persistence false
EOF
"$mosquitto_bin" -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
pids+=($!)

# ---------------------------------------------------------------- Node-RED
node_red=${NODE_RED:-}
if [[ -z "$node_red" ]]; then
    echo "installing node-red@4 into $work/npm ..." >&2
    npm install --prefix "$work/npm" --no-audit --no-fund --silent node-red@4 >&2
    node_red="$work/npm/node_modules/.bin/node-red"
fi

mkdir -p "$work/userdir"
python3 - "$repo/examples/node-red/flows.json" "$work/userdir/flows.json" "$mqtt_port" <<'EOF'
import json, sys
src, dst, port = sys.argv[1], sys.argv[2], sys.argv[3]
nodes = json.load(open(src, encoding="utf-8"))
for node in nodes:
    if node["type"] == "mqtt-broker":
        node["port"] = port
json.dump(nodes, open(dst, "w", encoding="utf-8"))
EOF
cat >"$work/userdir/settings.js" <<EOF
module.exports = {
    uiHost: "127.0.0.1",
    uiPort: $ui_port,
    flowFile: "flows.json",
    credentialSecret: false,
    telemetry: {enabled: false, updateNotification: false},
    diagnostics: {enabled: false, ui: false},
    logging: {console: {level: "info"}},
};
EOF
"$node_red" --userDir "$work/userdir" --settings "$work/userdir/settings.js" \
    >"$work/node-red.log" 2>&1 &
pids+=($!)

# ---------------------------------------------------------------- the check
mosquitto_sub -h 127.0.0.1 -p "$mqtt_port" -q 1 -v -t home/alerts/sms >"$work/received" &
pids+=($!)

inject_ids=$(python3 -c '
import json, sys
print(" ".join(n["id"] for n in json.load(open(sys.argv[1])) if n["type"] == "inject"))
' "$work/userdir/flows.json")

ok=0
for _ in $(seq 60); do
    sleep 1
    # The admin API answers once the flows are started; the broker node may connect later,
    # so keep pressing until both messages are seen.
    for id in $inject_ids; do
        curl -fsS -X POST "http://127.0.0.1:$ui_port/inject/$id" >/dev/null 2>&1 || true
    done
    if grep -qF 'home/alerts/sms Garage door open' "$work/received" &&
        grep -qF '"to":"family"' "$work/received"; then
        ok=1
        break
    fi
done

echo "--- received on home/alerts/sms:"
sort -u "$work/received"
if [[ $ok != 1 ]]; then
    echo "FAIL: the flow's messages did not arrive; Node-RED's log:" >&2
    tail -n 40 "$work/node-red.log" >&2
    exit 1
fi
version=$(grep -o 'Node-RED version: v[0-9.]*' "$work/node-red.log" | head -n 1 || true)
echo "OK: both inject nodes reached home/alerts/sms (${version:-Node-RED})"
