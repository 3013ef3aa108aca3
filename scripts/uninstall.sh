#!/usr/bin/env bash
# Remove courtyard-gateway: service, units, udev rules, journald/watchdog drop-ins and /opt/courtyard-gateway.
# Keeps the data by default: /etc/courtyard-gateway (config, credentials, TLS key), /var/lib/courtyard-gateway
# (the outbox: alarms and telemetry not yet delivered) and the `courtyard` user, so a reinstall resumes.
#   sudo scripts/uninstall.sh            # keep config, data and user
#   sudo scripts/uninstall.sh --purge    # also delete them (the undelivered outbox is lost!)
#   scripts/uninstall.sh --root DIR      # act on a staging root
set -euo pipefail

ROOT=""
PURGE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT=$(realpath -m "${2:?}"); shift 2 ;;
        --purge) PURGE=1; shift ;;
        *) echo "uninstall: unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$ROOT" = "/" ] && ROOT=""
log() { printf 'uninstall: %s\n' "$*"; }
[ -n "$ROOT" ] || [ "$(id -u)" = 0 ] || { echo "uninstall: run as root" >&2; exit 1; }

UNITS=(courtyard-gateway-update.path courtyard-gateway-update.service courtyard-gateway.service courtyard-gateway-firstboot.service)
if [ -n "$ROOT" ]; then
    systemctl --root="$ROOT" --quiet disable "${UNITS[@]}" 2>/dev/null || true
else
    systemctl --quiet disable --now "${UNITS[@]}" 2>/dev/null || true
fi
for f in /etc/systemd/system/courtyard-gateway.service /etc/systemd/system/courtyard-gateway-firstboot.service \
         /etc/systemd/system/courtyard-gateway-update.service /etc/systemd/system/courtyard-gateway-update.path \
         /etc/udev/rules.d/99-courtyard-gateway.rules /etc/udev/rules.d/99-courtyard-gateway.rules.dist \
         /etc/systemd/journald.conf.d/courtyard.conf /etc/systemd/system.conf.d/courtyard-watchdog.conf \
         /usr/local/bin/gateway; do
    { [ -e "$ROOT$f" ] || [ -L "$ROOT$f" ]; } && { rm -f "$ROOT$f"; log "removed $f"; }
done
[ -d "$ROOT/opt/courtyard-gateway" ] && { rm -rf "$ROOT/opt/courtyard-gateway"; log "removed /opt/courtyard-gateway"; }

if [ "$PURGE" = 1 ]; then
    rm -rf "$ROOT/etc/courtyard-gateway" "$ROOT/var/lib/courtyard-gateway"
    log "purged /etc/courtyard-gateway and /var/lib/courtyard-gateway"
    if [ -n "$ROOT" ]; then
        for db in passwd shadow; do [ -f "$ROOT/etc/$db" ] && sed -i '/^courtyard:/d' "$ROOT/etc/$db"; done
        for db in group gshadow; do
            [ -f "$ROOT/etc/$db" ] && sed -i -e "/^courtyard:/d" -e "s/\([:,]\)courtyard\(,\|\$\)/\1/" -e "s/,\$//" "$ROOT/etc/$db"
        done
    else
        userdel courtyard 2>/dev/null || true
        groupdel courtyard 2>/dev/null || true
    fi
    log "removed user courtyard"
else
    log "kept /etc/courtyard-gateway, /var/lib/courtyard-gateway and user courtyard (--purge removes them)"
fi
if [ -z "$ROOT" ]; then
    systemctl daemon-reload
    udevadm control --reload 2>/dev/null || true
    systemctl restart systemd-journald 2>/dev/null || true
fi
