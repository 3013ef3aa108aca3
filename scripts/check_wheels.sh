#!/usr/bin/env bash
# Prove a Pi never compiles: every runtime dependency pinned in constraints.txt must exist as a wheel for
# CPython 3.11 (Raspberry Pi OS 12) on aarch64 (Pi 3/4/5, 64-bit OS) and armv7l (32-bit OS), or be pure
# Python. Downloads with --only-binary=:all: --no-deps for each pin and each platform; prints one line per
# (package, arch) and exits 1 if any is missing.
# Usage: scripts/check_wheels.sh [index-url]    (default PyPI; on a network that reaches it, pass
#        https://www.piwheels.org/simple as a second index: EXTRA_INDEX=https://www.piwheels.org/simple)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
INDEX=${1:-https://pypi.org/simple}
DL=$(mktemp -d)
trap 'rm -rf "$DL"' EXIT

platforms() {  # glibc 2.36 on Debian 12: every manylinux tag up to 2_36, and the plain tag piwheels uses
    local arch=$1 v
    for v in $(seq 17 36); do printf -- '--platform manylinux_2_%s_%s ' "$v" "$arch"; done
    printf -- '--platform manylinux2014_%s --platform linux_%s' "$arch" "$arch"
}

runtime=$(sed -n '/^# runtime/,/^# \[/p' constraints.txt | grep -v '^#')
fail=0
for arch in aarch64 armv7l; do
    for pin in $runtime; do
        extra=()
        [ -n "${EXTRA_INDEX:-}" ] && extra=(--extra-index-url "$EXTRA_INDEX")
        # shellcheck disable=SC2046
        if out=$("$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
                --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
                $(platforms "$arch") --index-url "$INDEX" "${extra[@]}" -d "$DL/$arch" "$pin" 2>&1); then
            whl=$(ls "$DL/$arch" | grep -i "^$(echo "${pin%%==*}" | tr '-' '_')-" | head -1)
            printf '%-8s %-30s %s\n' "$arch" "$pin" "$whl"
        else
            printf '%-8s %-30s MISSING (%s)\n' "$arch" "$pin" "$(echo "$out" | tail -1 | cut -c1-80)"
            fail=1
        fi
    done
done
exit $fail
