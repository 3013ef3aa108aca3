#!/usr/bin/env bash
# Install or upgrade courtyard-gateway on Raspberry Pi OS Lite / Debian 12. Idempotent: run it again to
# upgrade in place; a second run with the same release changes nothing. Never overwrites a config.
#
#   sudo scripts/install.sh                              # from this checkout / unpacked release
#   sudo scripts/install.sh --from-release courtyard-gateway-0.2.0.tar.gz
#   scripts/install.sh --root /tmp/stage                 # stage into DIR, touch nothing on this machine
#   sudo scripts/install.sh --release-pub release.pub    # also trust this release key (remote updates)
#
# Layout: /opt/courtyard-gateway/{venvs/<version>-<hash>, venv -> venvs/..., launch, scripts, docs}
#         /etc/courtyard-gateway/{gateway.toml, credentials.toml (0600), profiles/, tls/}
#         /var/lib/courtyard-gateway (outbox.db, never touched here), user `courtyard` in `dialout`.
# A new release gets a new venv; the `venv` link is switched only once it is complete, so a failed
# pip install (no network on site) leaves the running version untouched. The previous venv is kept.
# Offline installs: a release with a wheels/ directory is installed with pip --no-index from it.
set -euo pipefail

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

ROOT=""
RELEASE=""
RELEASE_PUB=""
START=1
PYTHON=${PYTHON:-python3}
while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT=$(realpath -m "${2:?--root needs a directory}"); shift 2 ;;
        --from-release) RELEASE=$(realpath "${2:?--from-release needs a .tar.gz}"); shift 2 ;;
        --no-start) START=0; shift ;;
        --release-pub) RELEASE_PUB=$(realpath "${2:?--release-pub needs a file}"); shift 2 ;;
        -h|--help) usage ;;
        *) echo "install: unknown option $1" >&2; usage ;;
    esac
done
[ "$ROOT" = "/" ] && ROOT=""
STAGED=0; [ -n "$ROOT" ] && STAGED=1

log() { printf 'install: %s\n' "$*"; }
die() { printf 'install: error: %s\n' "$*" >&2; exit 1; }

[ "$STAGED" = 1 ] || [ "$(id -u)" = 0 ] || die "run as root (sudo), or stage with --root DIR"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

if [ -n "$RELEASE" ]; then
    tar -xzf "$RELEASE" -C "$TMP" || die "cannot unpack $RELEASE"
    SRC=$(dirname "$(find "$TMP" -maxdepth 2 -name pyproject.toml | head -n1)")
    [ -f "$SRC/gateway/__init__.py" ] || die "$RELEASE is not a courtyard-gateway release"
else
    SRC=$(cd "$(dirname "$0")/.." && pwd)
fi
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$SRC/gateway/__init__.py")
[ -n "$VERSION" ] || die "no __version__ in $SRC/gateway/__init__.py"

USER_NAME=courtyard
OPT=/opt/courtyard-gateway
ETC=/etc/courtyard-gateway
STATE=/var/lib/courtyard-gateway
CHANGED_UNITS=0; CHANGED_UDEV=0; CHANGED_JOURNALD=0; CHANGED_CODE=0

# ---- 1. Debian packages (python3-venv carries ensurepip; the rest is in Raspberry Pi OS Lite) -------
DEPS=(python3 python3-venv ca-certificates)
if [ "$STAGED" = 1 ]; then
    log "staged: not installing Debian packages (${DEPS[*]})"
else
    missing=()
    for p in "${DEPS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing Debian packages: ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
fi

# ---- 2. System user (systemd-sysusers: idempotent, and writes into a staging root's /etc too) -------
# dialout is gid 20 on Debian; the line only matters in an empty staging root.
mkdir -p "$ROOT/etc"
systemd-sysusers --root "${ROOT:-/}" --inline \
    'g dialout 20' \
    "u $USER_NAME - \"courtyard-gateway daemon\" $STATE /usr/sbin/nologin" \
    "m $USER_NAME dialout" >/dev/null
field() { awk -F: -v n="$2" '$1 == n { print $3; exit }' "$ROOT/etc/$1"; }
UID_N=$(field passwd "$USER_NAME"); GID_N=$(field group "$USER_NAME")
[ -n "$UID_N" ] && [ -n "$GID_N" ] || die "user $USER_NAME was not created"

# ---- helpers: change a file only when its content differs, so a rerun keeps every mtime -------------
# put SRC DEST MODE UID GID
put() {
    local src=$1 dest=$2 mode=$3 uid=${4:-0} gid=${5:-0}
    mkdir -p "$(dirname "$dest")"
    if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
        [ "$(stat -c '%a %u %g' "$dest")" = "$(printf '%o %s %s' "0$mode" "$uid" "$gid")" ] || {
            chmod "$mode" "$dest"; chown "$uid:$gid" "$dest"; log "fixed mode/owner of ${dest#"$ROOT"}"; }
        return 1
    fi
    install -m "$mode" -o "$uid" -g "$gid" "$src" "$dest" || die "cannot install $dest"
    log "installed ${dest#"$ROOT"}"
}
# keep SRC DEST MODE UID GID: a file the admin owns. Created if absent, never overwritten; a newer
# shipped version is put beside it as DEST.dist to diff against.
keep() {
    local src=$1 dest=$2
    if [ ! -e "$dest" ]; then put "$@" || true; return; fi
    cmp -s "$src" "$dest" || put "$src" "$dest.dist" "${@:3}" || true
}
dir() {  # dir PATH MODE UID GID
    if [ ! -d "$1" ]; then install -d -m "$2" -o "$3" -g "$4" "$1"; log "created ${1#"$ROOT"}"; fi
}

# ---- 3. Directories ----------------------------------------------------------------------------------
# The code root runs and the daemon runs: root's, not writable by the service. Software updates are
# staged and switched by the root updater (courtyard-gateway-update.service; docs/fleet.md "Trust
# boundaries"); an install from before it had $OPT group-writable (1775) and the service's venvs: taken back.
dir "$ROOT$OPT" 0755 0 0
[ "$(stat -c '%a %u %g' "$ROOT$OPT")" = "755 0 0" ] || { chown 0:0 "$ROOT$OPT"; chmod 0755 "$ROOT$OPT"; log "fixed mode/owner of $OPT"; }
dir "$ROOT$OPT/venvs" 0755 0 0
if [ -n "$(find "$ROOT$OPT" -xdev \( ! -uid 0 -o -perm /022 \) ! -type l -print -quit)" ] || [ -n "$(find "$ROOT$OPT" -xdev -type l ! -uid 0 -print -quit)" ]; then
    chown -hR 0:0 "$ROOT$OPT" && chmod -R go-w "$ROOT$OPT" && log "took $OPT back from the service user"
fi
dir "$ROOT$ETC" 0750 0 "$GID_N"          # root writes, the daemon reads
dir "$ROOT$ETC/profiles" 0750 0 "$GID_N"
dir "$ROOT$STATE" 0750 "$UID_N" "$GID_N"
dir "$ROOT$STATE/release" 0750 "$UID_N" "$GID_N"   # the daemon's downloads and update requests

# ---- 4. Python venv for this release (content hash in the name: same code -> same venv -> no-op) ----
HASH=$(cd "$SRC" && find pyproject.toml gateway drivers -type f \
        \( -name '*.py' -o -name '*.sql' -o -name '*.json' -o -name '*.toml' \) -not -path '*/__pycache__/*' \
        -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
RELNAME="$VERSION-$HASH"
VENV="$ROOT$OPT/venvs/$RELNAME"
# .complete is written last: a venv cut short by a power loss is rebuilt, never activated.
if [ ! -f "$VENV/.complete" ]; then
    log "building venv $OPT/venvs/$RELNAME"
    rm -rf "$VENV"
    mkdir -p "$ROOT$OPT/venvs"
    "$PYTHON" -m venv "$VENV"
    pip_args=(-q --disable-pip-version-check)
    # The versions the release was tested with (constraints.txt, scripts/constraints.py): reproducible.
    [ -f "$SRC/constraints.txt" ] && pip_args+=(-c "$SRC/constraints.txt")
    if [ -d "$SRC/wheels" ]; then
        # Release with a wheelhouse (built for the Pi's architecture): no network, no compiler on site.
        target=("courtyard-gateway==$VERSION")
        pip_args+=(--no-index --find-links "$SRC/wheels")
    else
        # Source checkout: build from a copy (pip writes build/ and *.egg-info next to the sources).
        mkdir "$TMP/build"
        tar -C "$SRC" --exclude=__pycache__ --exclude='*.egg-info' -cf - pyproject.toml README.md gateway drivers | tar -C "$TMP/build" -xf -
        target=("$TMP/build")
    fi
    if ! "$VENV/bin/python" -m pip install "${pip_args[@]}" "${target[@]}"; then
        rm -rf "$VENV"
        die "pip install failed; the installed version is unchanged"
    fi
    [ -x "$VENV/bin/gateway" ] || die "no gateway entry point in $VENV"
    printf '%s\n' "$RELNAME" > "$VENV/.complete"
fi
if [ "$(readlink "$ROOT$OPT/venv" 2>/dev/null)" != "venvs/$RELNAME" ]; then
    PREVIOUS=$(readlink "$ROOT$OPT/venv" 2>/dev/null || true)
    ln -sfn "venvs/$RELNAME" "$ROOT$OPT/venv.new" && mv -T "$ROOT$OPT/venv.new" "$ROOT$OPT/venv"  # atomic switch
    rm -f "$ROOT$OPT/release.pending"  # an update pending before this install is superseded by it
    log "active release: $RELNAME${PREVIOUS:+ (was ${PREVIOUS#venvs/})}"
    CHANGED_CODE=1
    # Keep the active and the previous release (rollback: ln -sfn venvs/OLD venv; restart); drop older ones.
    for old in "$ROOT$OPT"/venvs/*; do
        name=venvs/$(basename "$old")
        [ "$name" = "venvs/$RELNAME" ] || [ "$name" = "$PREVIOUS" ] || { rm -rf "$old"; log "removed old $name"; }
    done
fi
# Maintainers type `gateway status` over SSH: put the command on PATH.
if [ "$(readlink "$ROOT/usr/local/bin/gateway" 2>/dev/null)" != "$OPT/venv/bin/gateway" ]; then
    mkdir -p "$ROOT/usr/local/bin" && ln -sfn "$OPT/venv/bin/gateway" "$ROOT/usr/local/bin/gateway"
    log "linked /usr/local/bin/gateway"
fi
printf 'version=%s\nsource_sha256=%s\n' "$VERSION" "$HASH" > "$TMP/release"
put "$TMP/release" "$ROOT$OPT/release" 0644 || true

# ---- 5. Helper scripts and docs (first-boot, uninstall and list-serial run from here) ----------------
for s in install.sh uninstall.sh firstboot.sh list-serial.py; do
    put "$SRC/scripts/$s" "$ROOT$OPT/scripts/$s" 0755 || true
done
# The release resolver (the unit's ExecStartPre=+): standard library only, outside every venv, so it
# can switch back a release whose code is broken (docs/fleet.md "Software update with rollback").
put "$SRC/gateway/fleet/launch.py" "$ROOT$OPT/launch" 0755 && CHANGED_CODE=1
put "$SRC/docs/INSTALL.md" "$ROOT$OPT/docs/INSTALL.md" 0644 || true

# ---- 6. Configuration: created if absent, never overwritten -----------------------------------------
keep "$SRC/config/gateway.example.toml" "$ROOT$ETC/gateway.toml" 0640 0 "$GID_N"
put "$SRC/config/gateway.example.toml" "$ROOT$ETC/gateway.example.toml" 0640 0 "$GID_N" || true
for f in "$SRC"/config/profiles/*.toml; do
    keep "$f" "$ROOT$ETC/profiles/$(basename "$f")" 0640 0 "$GID_N"
done
if [ ! -e "$ROOT$ETC/credentials.toml" ]; then
    # Owned by the daemon's user and 0600: the daemon refuses a credentials file others can read.
    printf '%s\n' "# courtyard-gateway secrets (mode 0600). Filled in by: gateway provision" \
        'mqtt_username = ""' 'mqtt_password = ""' '' '[command_keys]' '' '[lora_keys]' > "$TMP/credentials.toml"
    put "$TMP/credentials.toml" "$ROOT$ETC/credentials.toml" 0600 "$UID_N" "$GID_N" || true
fi

# The release key's public half (root's): the root updater installs only bundles it signed (gateway fleet update).
if [ -n "$RELEASE_PUB" ]; then
    put "$RELEASE_PUB" "$ROOT$ETC/release.pub" 0644 0 0 || true
elif [ ! -e "$ROOT$ETC/release.pub" ]; then
    log "no release key (--release-pub FILE): remote software updates will be refused"
fi

# ---- 7. systemd units, udev rules, journald cap, hardware watchdog -----------------------------------
put "$SRC/systemd/courtyard-gateway.service" "$ROOT/etc/systemd/system/courtyard-gateway.service" 0644 && CHANGED_UNITS=1
put "$SRC/systemd/courtyard-gateway-update.service" "$ROOT/etc/systemd/system/courtyard-gateway-update.service" 0644 && CHANGED_UNITS=1
put "$SRC/systemd/courtyard-gateway-update.path" "$ROOT/etc/systemd/system/courtyard-gateway-update.path" 0644 && CHANGED_UNITS=1
put "$SRC/systemd/courtyard-gateway-firstboot.service" "$ROOT/etc/systemd/system/courtyard-gateway-firstboot.service" 0644 && CHANGED_UNITS=1
# The web panel: installed, never enabled here. It needs [panel] and a guard PIN first (docs/panel.md):
#   systemctl enable --now courtyard-panel
put "$SRC/systemd/courtyard-panel.service" "$ROOT/etc/systemd/system/courtyard-panel.service" 0644 && CHANGED_UNITS=1
# Low UPS battery: the service user may power the Pi off cleanly (gateway/power/shutdown.py), nothing else.
put "$SRC/systemd/50-courtyard-gateway-poweroff.rules" "$ROOT/etc/polkit-1/rules.d/50-courtyard-gateway-poweroff.rules" 0644 || true
# The rules file is edited on site (uncomment the adapter's line): keep it, ship updates as .dist.
[ -e "$ROOT/etc/udev/rules.d/99-courtyard-gateway.rules" ] || CHANGED_UDEV=1
keep "$SRC/systemd/99-courtyard-gateway.rules" "$ROOT/etc/udev/rules.d/99-courtyard-gateway.rules" 0644 0 0
put "$SRC/systemd/journald-courtyard.conf" "$ROOT/etc/systemd/journald.conf.d/courtyard.conf" 0644 && CHANGED_JOURNALD=1
# PID 1 feeds the Pi's bcm2835 watchdog; a hung kernel reboots. The Pi's maximum is about 15 s
# (protocols.md §6); Bookworm leaves RuntimeWatchdogSec off by default.
printf '%s\n' '# courtyard-gateway: reboot when the kernel or PID 1 hangs (bcm2835_wdt, max ~15 s).' \
    '[Manager]' 'RuntimeWatchdogSec=10s' 'RebootWatchdogSec=2min' > "$TMP/watchdog.conf"
put "$TMP/watchdog.conf" "$ROOT/etc/systemd/system.conf.d/courtyard-watchdog.conf" 0644 && CHANGED_UNITS=1

# ---- 8. Enable; on the running system also reload and (re)start --------------------------------------
if [ "$STAGED" = 1 ]; then
    systemctl --root="$ROOT" --quiet enable courtyard-gateway.service courtyard-gateway-firstboot.service courtyard-gateway-update.path
    log "staged into $ROOT: $RELNAME"
    exit 0
fi
[ "$CHANGED_UNITS" = 1 ] && systemctl daemon-reload
systemctl --quiet enable courtyard-gateway.service courtyard-gateway-firstboot.service courtyard-gateway-update.path
if [ "$CHANGED_UDEV" = 1 ]; then
    udevadm control --reload && udevadm trigger --subsystem-match=tty || log "udev reload failed (rules apply after reboot)"
fi
[ "$CHANGED_JOURNALD" = 1 ] && { systemctl restart systemd-journald || log "journald restart failed"; }
if [ "$START" = 0 ]; then
    log "installed $RELNAME; not starting (--no-start)"
elif ! runuser -u "$USER_NAME" -- "$ROOT$OPT/venv/bin/gateway" config check "$ETC/gateway.toml"; then
    # As the service user: a config check has no business running as root.
    log "installed $RELNAME; NOT started: the config does not check. Next: gateway provision (docs/INSTALL.md)"
elif ! systemctl --quiet is-active courtyard-gateway.service; then
    systemctl start courtyard-gateway.service && log "started courtyard-gateway"
elif [ "$CHANGED_CODE" = 1 ] || [ "$CHANGED_UNITS" = 1 ]; then
    # The daemon drains and commits the outbox on SIGTERM and migrates its schema on start.
    systemctl restart courtyard-gateway.service && log "restarted courtyard-gateway on $RELNAME"
else
    log "up to date: $RELNAME"
fi
