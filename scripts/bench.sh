#!/usr/bin/env bash
# Every performance figure of docs/BENCHMARKS.md on this machine, in one command (issue 12).
# Runs each scripts/bench_*.py with the arguments its BENCHMARKS.md section names, one after another
# (never in parallel: they measure CPU and latency), and collects their output in one report file.
#
#   scripts/bench.sh                 # full figures (~19 min)
#   BENCH_QUICK=1 scripts/bench.sh   # short runs, to check the scripts work (~2.5 min)
#   BENCH_OUT=/tmp/b.txt scripts/bench.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${BENCH_OUT:-bench-$(date -u +%Y%m%dT%H%M%SZ).txt}
quick=${BENCH_QUICK:-0}

if [ "$quick" = 1 ]; then
  runs=(
    "scripts/bench_outbox.py ingest --readings 100000"
    "scripts/bench_uplink.py drain --readings 50000"
    "scripts/bench_alarm_latency.py --seconds 5"
    "scripts/bench_modbus.py --seconds 5"
    "scripts/bench_lora_frames.py"
    "scripts/bench_gb26875.py --alarms 50 --backlog 200"
    "scripts/bench_sdwear.py --period-ms 100 --steady-s 10 --outage-s 10"
    "scripts/bench_demo_sdwear.py --warmup-s 20 --seconds 20"
  )
else
  runs=(
    "scripts/bench_outbox.py ingest --readings 1000000"
    "scripts/bench_outbox.py ingest --rate 2000 --seconds 30"
    "scripts/bench_uplink.py drain --readings 1000000"
    "scripts/bench_alarm_latency.py --seconds 30"
    "scripts/bench_modbus.py --seconds 15"
    "scripts/bench_lora_frames.py"
    "scripts/bench_gb26875.py"
    "scripts/bench_sdwear.py --period-ms 100 --steady-s 60 --outage-s 60"
    "scripts/bench_sdwear.py --period-ms 1000 --steady-s 60 --outage-s 60"
    "scripts/bench_demo_sdwear.py --warmup-s 420 --seconds 300"
  )
fi

# A script added later is run with its defaults, so nothing is silently left out.
for f in scripts/bench_*.py; do
  case " ${runs[*]} " in *" $f "*) ;; *) runs+=("$f") ;; esac
done

{
  echo "# scripts/bench.sh $(date -u +%FT%TZ)"
  echo "machine: $(uname -srm); $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs);" \
       "$(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo); load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "python: $($PY -c 'import sys, sqlite3; print(sys.version.split()[0], "sqlite", sqlite3.sqlite_version)');" \
       "commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+dirty')"
} | tee "$OUT"

failed=0
for run in "${runs[@]}"; do
  echo | tee -a "$OUT"
  echo "## $PY $run" | tee -a "$OUT"
  start=$(date +%s)
  # shellcheck disable=SC2086  # word splitting of the argument list is intended
  if ! $PY $run 2>&1 | tee -a "$OUT"; then
    echo "!! FAILED: $run" | tee -a "$OUT"
    failed=$((failed + 1))
  fi
  echo "(took $(( $(date +%s) - start )) s)" | tee -a "$OUT"
done
echo | tee -a "$OUT"
echo "report: $OUT; failed runs: $failed" | tee -a "$OUT"
exit $(( failed > 0 ))
