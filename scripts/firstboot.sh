#!/usr/bin/env bash
# First boot of a gateway card (run by courtyard-gateway-firstboot.service, as root):
#   1. install the newest courtyard-gateway-*.tar.gz found on the boot partition (if any),
#   2. gateway provision --from BOOT/provision.toml,
#   3. shred the provision file (the FAT boot partition is readable by anyone holding the card),
#   4. start the gateway if its config checks, and leave BOOT/provision.done saying what happened.
# Usage: firstboot.sh [--boot DIR] [--root DIR]      (--root: staging root, for image builds and tests)
# Env: GATEWAY = the gateway command (default: the installed venv's).
set -euo pipefail

ROOT=""
BOOT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT=$(realpath -m "${2:?}"); shift 2 ;;
        --boot) BOOT=$(realpath -m "${2:?}"); shift 2 ;;
        *) echo "firstboot: unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$ROOT" = "/" ] && ROOT=""
if [ -z "$BOOT" ]; then
    for d in /boot/firmware /boot; do [ -f "$d/provision.toml" ] && { BOOT=$d; break; }; done
fi
PROVISION="$BOOT/provision.toml"
[ -n "$BOOT" ] && [ -f "$PROVISION" ] || { echo "firstboot: no provision.toml on the boot partition; nothing to do"; exit 0; }
GATEWAY=${GATEWAY:-$ROOT/opt/courtyard-gateway/venv/bin/gateway}
DONE="$BOOT/provision.done"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# Every line goes to the journal (stdout) and to provision.done, which the installer can read on the
# card or over SSH. No secret is ever printed: provision reports paths and public data only.
: > "$TMP/log"
log() { printf 'firstboot: %s\n' "$*" | tee -a "$TMP/log"; }
finish() {  # finish STATUS
    { printf 'courtyard-gateway first boot: %s at %s\n\n' "$1" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"; cat "$TMP/log"; } > "$DONE.tmp"
    mv -f "$DONE.tmp" "$DONE"
    sync
}
fail() { log "FAILED: $*"; log "provision.toml is left in place: fix it and reboot, or see docs/INSTALL.md"; finish FAILED; exit 1; }

# ---- 1. Release from the card (newest by version sort) -------------------------------------------------
release=$(find "$BOOT" -maxdepth 1 -name 'courtyard-gateway-*.tar.gz' | sort -V | tail -n1)
if [ -n "$release" ]; then
    log "installing $(basename "$release")"
    mkdir "$TMP/release"
    tar -xzf "$release" -C "$TMP/release" || fail "cannot unpack $release"
    installer=$(find "$TMP/release" -maxdepth 3 -path '*/scripts/install.sh' | head -n1)
    [ -n "$installer" ] || fail "$release has no scripts/install.sh"
    # --no-start: a blocking start from here would wait for this unit (Before=courtyard-gateway.service).
    bash "$installer" --no-start ${ROOT:+--root "$ROOT"} 2>&1 | tee -a "$TMP/log" || fail "install.sh failed"
fi
[ -x "$GATEWAY" ] || command -v "$GATEWAY" >/dev/null || fail "no gateway installed ($GATEWAY) and no release on $BOOT"

# ---- 2. Provision --------------------------------------------------------------------------------------
log "provisioning from $PROVISION"
set +e
"$GATEWAY" provision --from "$PROVISION" ${ROOT:+--root "$ROOT"} > "$TMP/provision.out" 2>&1
rc=$?
set -e
tee -a "$TMP/log" < "$TMP/provision.out"
[ "$rc" = 0 ] || fail "gateway provision exited $rc"

# ---- 3. Remove the secrets from the boot partition -----------------------------------------------------
# shred overwrites the file's blocks before unlinking. On an SD card the flash translation layer may
# still hold old copies, so the broker password should be rotated when a card is lost (INSTALL.md).
if shred -u -z -n 1 "$PROVISION" 2>/dev/null || rm -f "$PROVISION"; then
    sync
    log "removed $PROVISION (shredded)"
fi
[ -e "$PROVISION" ] && fail "could not remove $PROVISION"

# ---- 4. Start --------------------------------------------------------------------------------------------
if [ -n "$ROOT" ]; then
    log "staged root $ROOT: not starting anything"
elif "$GATEWAY" config check /etc/courtyard-gateway/gateway.toml >> "$TMP/log" 2>&1; then
    systemctl --no-block restart courtyard-gateway.service
    log "config OK; courtyard-gateway starting"
else
    log "config does not check yet (see above); the gateway is not started"
fi
finish OK
