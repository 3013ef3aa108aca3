#!/usr/bin/env bash
# Soak-length runs of the proof suite (issue 12; reliability.md §7). Not part of CI: about 37 minutes.
# Same tests as tests/reliability and tests/fuzz, scaled up by environment variables; loopback only,
# each step bounded by its own timeout. Figures are printed by the tests (pytest -s) and collected in
# one log for docs/RELIABILITY.md.
#
#   scripts/soak.sh                 # everything
#   scripts/soak.sh r1 r6           # only some steps: r1 r6 powercut fuzz flood serialflood gwmpflood store fleet fleet700
set -u -o pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
LOG=${SOAK_LOG:-soak-$(date -u +%Y%m%dT%H%M%SZ).log}
steps=${*:-"r1 r6 powercut fuzz flood serialflood gwmpflood store fleet fleet700"}

pytest_run() {  # name, timeout s, env..., -- test files
  local name=$1 limit=$2; shift 2
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  echo "## $name: ${envs[*]} $*" | tee -a "$LOG"
  local start=$(date +%s)
  if env "${envs[@]}" timeout "$limit" "$PY" -m pytest "$@" -q -s -p no:cacheprovider -o timeout="$limit" 2>&1 | tee -a "$LOG"; then
    echo "## $name: ok in $(( $(date +%s) - start )) s" | tee -a "$LOG"
  else
    echo "## $name: FAILED after $(( $(date +%s) - start )) s" | tee -a "$LOG"
    failed=$((failed + 1))
  fi
}

failed=0
echo "# scripts/soak.sh $(date -u +%FT%TZ) on $(uname -srm), $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null)" | tee "$LOG"
for step in $steps; do
  case $step in
    # R1: 50 broker cuts of 1-30 s while readings flow and hydrant alarms are raised (~16 min).
    r1) pytest_run "R1 broker outages x50" 1800 R1_OUTAGES=50 R1_MIN_S=1 R1_MAX_S=30 -- tests/reliability/test_broker_outages.py ;;
    # R6: 50 SIGKILLs of the daemon at random moments during ingest and drain (~2 min).
    r6) pytest_run "R6 daemon SIGKILL x50" 900 R6_KILLS=50 -- tests/reliability/test_daemon_kill.py ;;
    # Issue 17: 20 SIGKILLs of a write-behind outbox, broker up and broker down: readings lost only
    # within commit_interval_s, alarms never, seq never reused (~2.5 min).
    powercut) pytest_run "power-cut window x20" 900 POWERCUT_KILLS=20 -- tests/reliability/test_store_powercut.py ;;
    # F1: 20,000 examples per property instead of 400 (~10 min).
    fuzz) pytest_run "F1 fuzz x20000" 1800 FUZZ_EXAMPLES=20000 -- tests/fuzz ;;
    # F2: 1,000,000 malformed frames through the live LoRa driver (~30 s).
    flood) pytest_run "F2 LoRa flood 1M" 600 F2_FRAMES=1000000 -- tests/reliability/test_flood_lora.py ;;
    # F2 serial: 1,000,000 malformed Modbus RTU frames and AT lines through the live drivers (~4 min).
    serialflood) pytest_run "F2 serial flood 1M" 900 F2_FRAMES=1000000 -- tests/reliability/test_flood_serial.py ;;
    # R16: 5,000 hostile GWMP datagrams/s for 60 s at the LoRaWAN driver, genuine alarms interleaved (~1.5 min).
    gwmpflood) pytest_run "R16 GWMP flood 60 s" 300 GWMP_FLOOD_S=60 -- tests/reliability/test_flood_gwmp.py ;;
    # Store-level crash / fsync / I/O error / disk-full tests, as in CI (they are already bounded).
    store) pytest_run "store R6-R9" 600 -- tests/reliability/test_store_crash.py tests/reliability/test_store_fsync.py \
             tests/reliability/test_store_ioerror.py tests/reliability/test_store_diskfull.py \
             tests/reliability/test_store_faults.py ;;
    # R19: 100 uplink clients in one process, broker SIGTERM + restart; reconnect histogram (~10 s).
    fleet) pytest_run "R19 fleet x100" 300 FLEET_N=100 -- tests/reliability/test_uplink_fleet.py ;;
    # Issue 21: 700 gateways (real Uplink + Outbox, 100 per process) through a broker restart (~3 min).
    fleet700) pytest_run "fleet sim x700" 1500 FLEET_SIM_N=700 -- tests/reliability/test_fleet_sim.py ;;
    *) echo "unknown step $step (r1 r6 powercut fuzz flood serialflood gwmpflood store fleet fleet700)"; exit 2 ;;
  esac
done
echo "log: $LOG; failed steps: $failed" | tee -a "$LOG"
exit $(( failed > 0 ))
