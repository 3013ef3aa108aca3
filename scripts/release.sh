#!/usr/bin/env bash
# Build and sign a software release bundle for `gateway fleet update` (issue 20, docs/fleet.md
# "Software update with rollback").
#
#   scripts/release.sh keygen DIR        # DIR/release.key (private, 0600: keep it offline) + DIR/release.pub
#   scripts/release.sh build --key DIR/release.key --url-base https://platform.example/releases \
#       [--out dist] [--version 0.2.0] [--platform manylinux2014_aarch64] [--no-deps]
#
# The bundle is courtyard-gateway-<version>.tar.gz holding courtyard-gateway-<version>/: the source tree
# install.sh takes (--from-release) and wheels/, our own wheel plus one wheel per runtime pin of
# constraints.txt, so a gateway installs it with pip --no-index (no network, no compiler on site). Beside it,
# <bundle>.manifest.json is the `update` command's args: version, sha256, size, url, sig (Ed25519 by
# the release key over "cg-release-v1\n<version>\n<sha256>\n<size>", gateway.fleet.release).
#
# For the Pi (64-bit Raspberry Pi OS 12, CPython 3.11) build on any machine with network:
#   scripts/release.sh build ... --platform manylinux2014_aarch64
# which runs `pip download --only-binary=:all: --platform manylinux2014_aarch64 --python-version 3.11
# --implementation cp --abi cp311 --abi abi3 --abi none` for the pins (scripts/check_wheels.sh proves
# they exist). Without --platform the deps are the build host's wheels (`pip wheel`), which suit only
# a gateway of the same architecture; --no-deps ships our wheel alone (tests: deps already present).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
die() { printf 'release: error: %s\n' "$*" >&2; exit 1; }

cmd=${1:-}; shift || true
if [ "$cmd" = keygen ]; then
    dir=${1:?keygen needs a directory}
    mkdir -p "$dir"
    [ -e "$dir/release.key" ] && die "$dir/release.key exists; not overwriting a release key"
    "$PY" - "$dir" <<'PY'
import os, sys
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
k = Ed25519PrivateKey.generate()
d = sys.argv[1]
fd = os.open(os.path.join(d, "release.key"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
os.write(fd, k.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))
os.close(fd)
open(os.path.join(d, "release.pub"), "wb").write(k.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))
PY
    echo "release: wrote $dir/release.key (keep offline) and $dir/release.pub (install.sh --release-pub)"
    exit 0
fi
[ "$cmd" = build ] || { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

KEY=""; URL_BASE=""; OUT=dist; VERSION=""; PLATFORM=""; DEPS=1
while [ $# -gt 0 ]; do
    case "$1" in
        --key) KEY=$2; shift 2 ;;
        --url-base) URL_BASE=${2%/}; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --version) VERSION=$2; shift 2 ;;
        --platform) PLATFORM=$2; shift 2 ;;
        --no-deps) DEPS=0; shift ;;
        *) die "unknown option $1" ;;
    esac
done
[ -f "$KEY" ] || die "--key FILE (the release key's private half) is required"
[ -n "$URL_BASE" ] || die "--url-base URL (where the platform serves the bundle) is required"
VERSION=${VERSION:-$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' gateway/__init__.py)}
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
TOP=$TMP/courtyard-gateway-$VERSION
mkdir -p "$TOP/wheels" "$OUT"
# The same tree scripts/install.sh --from-release takes on site (sources, units, scripts, docs) plus
# wheels/: one bundle for a first install by hand and for `gateway fleet update`.
tar --exclude=__pycache__ --exclude='*.egg-info' -cf - pyproject.toml README.md constraints.txt gateway drivers \
    config systemd scripts docs | tar -C "$TOP" -xf -
sed -i "s/^__version__ = \".*\"$/__version__ = \"$VERSION\"/" "$TOP/gateway/__init__.py"
# Our own wheel (PEP 427, py3-none-any): the code is pure Python, so it is zipped here with its
# metadata from pyproject.toml rather than through a build backend that would need the network.
"$PY" - "$TOP" "$TOP/wheels" "$VERSION" <<'PY'
import base64, hashlib, sys, tomllib, zipfile
from pathlib import Path
src, out, version = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
proj = tomllib.loads((src / "pyproject.toml").read_text())["project"]
dist = f"courtyard_gateway-{version}.dist-info"
files = {}
for pkg in ("gateway", "drivers"):
    for f in sorted((src / pkg).rglob("*")):
        if f.is_file() and f.suffix in (".py", ".sql", ".json", ".html", ".js", ".css", ".toml"):
            files[str(f.relative_to(src))] = f.read_bytes()
meta = [f"Metadata-Version: 2.1", "Name: courtyard-gateway", f"Version: {version}",
        f"Requires-Python: {proj.get('requires-python', '>=3.11')}"] + [f"Requires-Dist: {d}" for d in proj["dependencies"]]
files[f"{dist}/METADATA"] = ("\n".join(meta) + "\n").encode()
files[f"{dist}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: scripts/release.sh\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
files[f"{dist}/entry_points.txt"] = ("[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in proj["scripts"].items())).encode()
record = [f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}" for n, d in files.items()]
files[f"{dist}/RECORD"] = ("\n".join(record + [f"{dist}/RECORD,,"]) + "\n").encode()
with zipfile.ZipFile(out / f"courtyard_gateway-{version}-py3-none-any.whl", "w", zipfile.ZIP_DEFLATED) as z:
    for name, data in files.items():
        z.writestr(name, data)
PY
sed -n '/^# runtime/,/^# \[/p' constraints.txt | grep -v '^#' > "$TMP/pins.txt"
if [ -n "$PLATFORM" ]; then
    "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --platform "$PLATFORM" \
        --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none -d "$TOP/wheels" -r "$TMP/pins.txt"
elif [ "$DEPS" = 1 ]; then
    "$PY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$TOP/wheels" -r "$TMP/pins.txt"
fi
BUNDLE=$OUT/courtyard-gateway-$VERSION.tar.gz
tar -C "$TMP" -czf "$BUNDLE" "courtyard-gateway-$VERSION"
"$PY" - "$KEY" "$BUNDLE" "$VERSION" "$URL_BASE" <<'PY'
import hashlib, json, os, sys
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from gateway.fleet.release import sign_release
key_file, bundle, version, url_base = sys.argv[1:]
key = load_pem_private_key(open(key_file, "rb").read(), None)
sha = hashlib.sha256(open(bundle, "rb").read()).hexdigest()
size = os.path.getsize(bundle)
m = {"version": version, "sha256": sha, "size": size, "url": f"{url_base}/{os.path.basename(bundle)}",
     "sig": sign_release(key, version, sha, size)}
open(bundle + ".manifest.json", "w").write(json.dumps(m, indent=1) + "\n")
print(f"release: {bundle} ({size} bytes, sha256 {sha[:16]}...), manifest {bundle}.manifest.json")
PY
