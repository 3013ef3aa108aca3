#!/usr/bin/env bash
# Commissioning the demo courtyard (3 buildings, 28 flats, 40 devices) the way an installer does it, with
# the simulated courtyard standing in for the site: import the device sheet, check the config, provision
# (staged: the demo broker is plain MQTT on localhost), start the daemon, selftest, and the walk test
# with every device's test button pressed by the simulator. Each step is timed; the summary at the end
# is what docs/BENCHMARKS.md reports. Ctrl-C stops everything and leaves nothing running.
#
#   scripts/commission-demo.sh
#   PRESS_GAP_S=0.2 scripts/commission-demo.sh     # seconds between two presses (default 0.1)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-venv.sh
ensure_venv sim  # it runs the simulated courtyard: the [sim] extra (pymodbus)
GW=.venv/bin/gateway
PY=.venv/bin/python

. scripts/lib-run.sh
run_dir courtyard-commission

declare -a STEP_NAMES=() STEP_SECONDS=()
now() { date +%s.%N; }
timed() {  # timed "name" command...: run it, record its wall time
    local name=$1; shift
    local t0; t0=$(now)
    echo; echo "== $name: $*"
    "$@"
    local rc=$?
    STEP_NAMES+=("$name"); STEP_SECONDS+=("$(echo "$(now) - $t0" | bc)")
    return $rc
}

# ---- the site (not installer time): broker, and the courtyard's buses, radios and modems ----------------
PORT=$(free_port)
[ -n "$(find_mosquitto)" ] || { echo "mosquitto is needed (apt-get install mosquitto)" >&2; exit 1; }
start_mosquitto "$PORT"
SPEC="$RUN/courtyard.toml"
# The courtyard without its timed demo scenario: nothing happens here but the installer's presses.
sed '/^# ---- The demo.s scenario/,$d' config/demo/courtyard.toml | sed "s#^profiles_dir = .*#profiles_dir = \"$PWD/config/profiles\"#" > "$SPEC"
$GW simulate --courtyard "$SPEC" --gateway-config "$RUN/gateway.toml" --broker "mqtt://127.0.0.1:$PORT" \
    --trigger-socket "$COURTYARD_SIM_SOCKET" >"$RUN/courtyard.log" 2>&1 &
pids+=($!)
wait_socket "$COURTYARD_SIM_SOCKET" "the simulated courtyard"

# The sheet the community and the sensor supplier hand over (devices, residents, relatives, keys), and the
# gateway as it leaves the workshop: its own sections only (ports from list-serial.py, rules, notify).
$GW commission export --config "$RUN/gateway.toml" --with-keys "$RUN/sheet.xlsx" >/dev/null
$PY - "$RUN/gateway.toml" "$RUN/gateway.credentials.toml" <<'EOF'
import re, sys
from gateway.commission.export import without_devices
cfg, creds = sys.argv[1], sys.argv[2]
text, secrets = without_devices(open(cfg).read()), re.sub(r"\[lora_keys\][^\[]*", "", open(creds).read())
open(cfg, "w").write(text)
open(creds, "w").write(secrets)
EOF
echo "site ready: $(grep -c '^\[\[devices' "$RUN/gateway.toml" || true) devices in the config before the import"

# ---- the installer's part ------------------------------------------------------------------------------
timed "import the sheet" $GW commission import "$RUN/sheet.xlsx" --config "$RUN/gateway.toml"
timed "config check" $GW config check "$RUN/gateway.toml"
mkdir -p "$RUN/root/etc/courtyard-gateway"
cp config/gateway.example.toml "$RUN/root/etc/courtyard-gateway/gateway.toml"  # what install.sh puts there
timed "provision (staged)" $GW provision --root "$RUN/root" --gateway-id gw-xinhong-03 \
    --broker mqtts://platform.example:8883 --community 新鸿社区 --courtyard 3号院 >/dev/null
SOCK="$RUN/gateway.run/control.sock"
$GW run --config "$RUN/gateway.toml" >"$RUN/daemon.log" 2>&1 &
pids+=($!)
wait_daemon() { for _ in $(seq 200); do $GW status --config "$RUN/gateway.toml" --json >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
timed "start the daemon" wait_daemon
timed "selftest" $GW selftest --config "$RUN/gateway.toml" || true   # radio sensors WARN until pressed

$GW commission walk --config "$RUN/gateway.toml" --duration 30m --json >"$RUN/walk.json" &
walker=$!
pids+=($walker)
press_all() {
    for dev in $($PY -c "import tomllib,sys; print(' '.join(d['id'] for d in tomllib.load(open(sys.argv[1],'rb'))['devices']))" "$RUN/gateway.toml"); do
        $GW simulate trigger test_button "$dev" >/dev/null
        sleep "${PRESS_GAP_S:-0.1}"
    done
    wait "$walker"
}
timed "walk test (simulator presses every device)" press_all
$PY - "$RUN/walk.json" <<'EOF'
import json, sys
from gateway.cli.commission import final_text
print(final_text(json.load(open(sys.argv[1]))))
EOF
timed "selftest after the walk" $GW selftest --config "$RUN/gateway.toml" || true

# ---- summary ------------------------------------------------------------------------------------------
echo; echo "== timings (machine time of each step; the installer's own time is estimated in docs/BENCHMARKS.md)"
total=0
for i in "${!STEP_NAMES[@]}"; do
    printf '%-45s %6.1f s\n' "${STEP_NAMES[i]}" "${STEP_SECONDS[i]}"
    total=$(echo "$total + ${STEP_SECONDS[i]}" | bc)
done
printf '%-45s %6.1f s\n' "total" "$total"
