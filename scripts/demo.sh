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

. scripts/lib-run.sh
run_dir courtyard-demo "demo stopped; nothing left running."

PORT=$(free_port)
MOSQ=$(find_mosquitto)
if [ -n "$MOSQ" ]; then
    start_mosquitto "$PORT"
    echo "platform broker: mosquitto on 127.0.0.1:$PORT"
else
    echo "no mosquitto installed: the uplink will queue in the outbox (apt-get install mosquitto to see delivery)"
fi

.venv/bin/gateway simulate --courtyard config/demo/courtyard.toml --gateway-config "$RUN/gateway.toml" \
    --broker "mqtt://127.0.0.1:$PORT" --trigger-socket "$COURTYARD_SIM_SOCKET" 2> >(sed 's/^/[courtyard] /' >&2) \
    > >(.venv/bin/python -m gateway.simulate.logview --config "$RUN/gateway.toml") &
pids+=($!)
wait_socket "$COURTYARD_SIM_SOCKET" "the simulated courtyard"

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
