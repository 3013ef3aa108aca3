#!/usr/bin/env bash
# Set up and run the test suite: .venv with the package and its dev extra, Debian's mosquitto,
# socat (pty pairs), strace (fsync audit), systemd (systemd-analyze), chromium + chromium-driver (web panel),
# nut-server (upsd, dummy-ups) when missing; then pytest.
# Usage: scripts/test.sh [pytest args...]     Works as root on a fresh Debian 12 with only python3.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v socat >/dev/null 2>&1 || need+=(socat)
command -v strace >/dev/null 2>&1 || need+=(strace)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v fiu-run >/dev/null 2>&1 || need+=(fiu-utils)
# Disk-fault tests: an ext4 image that remounts itself read-only (mkfs.ext4, e2fsck) on a loop device.
command -v mkfs.ext4 >/dev/null 2>&1 || [ -x /usr/sbin/mkfs.ext4 ] || need+=(e2fsprogs)
command -v losetup >/dev/null 2>&1 || [ -x /usr/sbin/losetup ] || need+=(mount)
# The web panel's browser tests: Debian's chromium and its driver (never a browser download), and a CJK font.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
[ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need+=(fonts-wqy-microhei)
# NUT's upsd and dummy-ups driver (power supervision tests, issue 23); Debian puts them in /lib/nut.
[ -x /lib/nut/upsd ] && [ -x /lib/nut/dummy-ups ] || need+=(nut-server)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
        exit 1
    fi
    echo "installing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The Debian package enables a system broker on 1883; the tests start their own on free ports.

. scripts/lib-venv.sh
ensure_venv dev

# Two pytest-xdist workers by default (the tests mostly wait on brokers, ptys and daemons, so two
# workers on CI's 2 cores halve the wall time: 13-14 min in one process, 6.5 min with two, same 1,402
# tests green); PYTEST_WORKERS=0 runs one process, =N runs N. Whole files go to one worker (--dist
# loadfile): a module-scoped fixture (a staged install, a running daemon) is then set up once, not once
# per worker. Ports, pty links and processes are per worker and per run (tests/support/ports.py,
# drivers/simport.py, tests/support/reaper.py).
if [ "${PYTEST_WORKERS:-2}" != 0 ]; then
    set -- -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"
fi
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
