# Sourced by scripts/demo.sh and scripts/commission-demo.sh: a private run directory, the processes
# started from the script stopped at exit (in reverse order, the daemon before the simulator's ptys),
# a free loopback port and a throwaway local mosquitto.
#   run_dir NAME [MESSAGE]   sets RUN, COURTYARD_SIM_SOCKET, pids; MESSAGE is printed once all stopped
#   free_port                prints a free TCP port on 127.0.0.1
#   find_mosquitto           prints mosquitto's path, or nothing
#   start_mosquitto PORT     starts it on 127.0.0.1:PORT with persistence in $RUN/broker; pid in pids
#   wait_socket PATH WHAT    waits up to 10 s for a unix socket to appear, else exits 1 saying WHAT
run_dir() {
    RUN=$(mktemp -d "/tmp/$1.XXXXXX")
    RUN_STOPPED_MESSAGE=${2:-}
    export COURTYARD_SIM_SOCKET="$RUN/sim.sock"
    pids=()
    trap _run_cleanup EXIT INT TERM
}
_run_cleanup() {
    trap - EXIT INT TERM
    # One at a time, the daemon first: it stops cleanly while its ports (the simulator's ptys) still exist.
    for ((i=${#pids[@]}-1; i>=0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; wait "${pids[i]}" 2>/dev/null || true; done
    rm -rf "$RUN"
    if [ -n "$RUN_STOPPED_MESSAGE" ]; then echo "$RUN_STOPPED_MESSAGE"; fi
}
free_port() {
    .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
find_mosquitto() {
    command -v mosquitto || { [ -x /usr/sbin/mosquitto ] && echo /usr/sbin/mosquitto; } || true
}
start_mosquitto() {
    local port=$1 mosq
    mosq=$(find_mosquitto)
    mkdir -p "$RUN/broker"
    # As root, mosquitto drops to user mosquitto and silently cannot save unless told `user root`.
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\n%s\n' \
        "$port" "$RUN/broker" "$([ "$(id -u)" -eq 0 ] && echo 'user root')" > "$RUN/broker/mosquitto.conf"
    "$mosq" -c "$RUN/broker/mosquitto.conf" >"$RUN/broker/log" 2>&1 &
    pids+=($!)
}
wait_socket() {
    for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.1; done
    echo "$2 did not start" >&2
    exit 1
}
