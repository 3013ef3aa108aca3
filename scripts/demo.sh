#!/usr/bin/env bash
# The gateway's main job, on any machine: a simulated courtyard (Modbus RS-485 bus and TCP pump station,
# LoRa module, NB-IoT modem, SMS modem on ptys), the real daemon against it, a local mosquitto when one is
# installed, and a live view of the platform side, told as one line per thing a person would notice, in the
# courtyard's local time. The scenario: normal traffic, a smoke alarm in 2栋1单元301 at ~20 s, water flowing
# on building 2's riser at ~28 s (火警确认: fire confirmed), an uplink outage with a gas alarm during it, the
# backlog delivered alarms first. Ctrl-C stops everything and leaves nothing running.
#
#   scripts/demo.sh                       # runs until Ctrl-C
#   DEMO_SECONDS=90 scripts/demo.sh       # stops by itself (used by the test suite)
#   gateway simulate trigger smoke        # from another shell: more scenarios (see --help)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-venv.sh
ensure_venv sim  # the simulators' pymodbus is the [sim] extra

RUN=$(mktemp -d /tmp/courtyard-demo.XXXXXX)
export COURTYARD_SIM_SOCKET="$RUN/sim.sock"
pids=()
cleanup() {
    trap - EXIT INT TERM
    # One at a time, the daemon first: it stops cleanly while its ports (the simulator's ptys) still exist.
    for ((i=${#pids[@]}-1; i>=0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; wait "${pids[i]}" 2>/dev/null || true; done
    rm -rf "$RUN"
    echo "demo stopped; nothing left running."
}
trap cleanup EXIT INT TERM

PORT=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MOSQ=$(command -v mosquitto || { [ -x /usr/sbin/mosquitto ] && echo /usr/sbin/mosquitto; } || true)
if [ -n "$MOSQ" ]; then
    mkdir -p "$RUN/broker"
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\n%s\n' \
        "$PORT" "$RUN/broker" "$([ "$(id -u)" -eq 0 ] && echo 'user root')" > "$RUN/broker/mosquitto.conf"
    "$MOSQ" -c "$RUN/broker/mosquitto.conf" >"$RUN/broker/log" 2>&1 &
    pids+=($!)
    echo "platform broker: mosquitto on 127.0.0.1:$PORT"
else
    echo "no mosquitto installed: the uplink will queue in the outbox (apt-get install mosquitto to see delivery)"
fi

.venv/bin/gateway simulate --courtyard config/demo/courtyard.toml --gateway-config "$RUN/gateway.toml" \
    --broker "mqtt://127.0.0.1:$PORT" --trigger-socket "$COURTYARD_SIM_SOCKET" 2> >(sed 's/^/[courtyard] /' >&2) \
    > >(.venv/bin/python -m gateway.simulate.logview --config "$RUN/gateway.toml") &
pids+=($!)
for _ in $(seq 100); do [ -S "$COURTYARD_SIM_SOCKET" ] && break; sleep 0.1; done
[ -S "$COURTYARD_SIM_SOCKET" ] || { echo "the simulated courtyard did not start" >&2; exit 1; }

if [ -n "$MOSQ" ]; then
    .venv/bin/python -m gateway.simulate.platform --broker "mqtt://127.0.0.1:$PORT" --config "$RUN/gateway.toml" &
    pids+=($!)
fi
.venv/bin/gateway run --config "$RUN/gateway.toml" 2> >(sed 's/^/[gateway] /' >&2) > >(.venv/bin/python -m gateway.simulate.logview --config "$RUN/gateway.toml") &
pids+=($!)

if [ -n "${DEMO_SECONDS:-}" ]; then
    sleep "$DEMO_SECONDS"
else
    wait "${pids[-1]}"
fi
