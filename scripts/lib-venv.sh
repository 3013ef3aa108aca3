# Sourced by scripts/test.sh and scripts/demo.sh: make .venv with the package installed.
# Usage: ensure_venv [extra]     (extra: "dev" for the test dependencies)
ensure_venv() {
    local extra="${1:-}"
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        if [ "$(id -u)" -ne 0 ]; then
            echo "python3-venv is missing (sudo apt-get install python3-venv)" >&2
            return 1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    fi
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv
    fi
    local stamp=".venv/.installed-${extra:-run}"
    # [dev] includes [sim]: a test venv already has what the demos need (no second pip run).
    if [ "$extra" = sim ] && [ -f .venv/.installed-dev ] && [ ! pyproject.toml -nt .venv/.installed-dev ]; then
        stamp=.venv/.installed-dev
    fi
    # Reinstall only when the project's dependencies changed: a demo should start in seconds.
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
        if [ -n "$extra" ]; then
            .venv/bin/python -m pip install -q -e ".[$extra]"
        else
            .venv/bin/python -m pip install -q -e .
        fi
        touch "$stamp"
    fi
}
