"""Staging a downloaded release bundle as scripts/install.sh does (issue 20): unpack, a new
`venvs/<version>-<hash>` built by pip with `--no-index` from the bundle's own `wheels/`, `.complete`
written last. Nothing here touches the `venv` link: a failure leaves the running release as it was.

Run as root by the root updater (gateway/fleet/updater.py), on its own hash-checked copy of the
bundle, never by the daemon (which cannot write /opt); minutes on a Pi, in a separate unit, so the
daemon and the alarm path never wait for it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from gateway.errors import GatewayError
from gateway.fleet.atomic import write_atomic

VENV_TIMEOUT_S = 300.0
PIP_TIMEOUT_S = 1200.0  # cryptography, aiohttp, ... from local wheels on a Pi 3 SD card


class InstallError(GatewayError):
    """The bundle could not be staged (bad archive, pip failed); the running release is untouched."""


def release_name(version: str, sha256: str) -> str:
    """`<version>-<first 12 hex of the bundle's SHA-256>`: same bundle -> same venv -> nothing to redo."""
    return f"{version}-{sha256.lower()[:12]}"


def _unpack(tarball: Path, work: Path) -> Path:
    """Extract with tarfile's "data" filter (no absolute paths, no `..`, no links out, no devices);
    returns the directory holding wheels/. The archive is signed, but a bug in the release script
    must not write outside `work` either."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        with tarfile.open(tarball, "r:*") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(work, filter="data")
            else:  # Python < 3.11.4 without the backport: refuse anything but plain files and dirs
                for m in tar.getmembers():
                    if not (m.isfile() or m.isdir()) or m.name.startswith("/") or ".." in Path(m.name).parts:
                        raise InstallError(f"unsafe member in the bundle: {m.name[:80]}")
                tar.extractall(work)
    except (tarfile.TarError, OSError) as exc:
        raise InstallError(f"cannot unpack {tarball.name}: {exc}"[:200]) from None
    found = sorted(p.parent for p in work.glob("*/wheels") if p.is_dir()) + ([work] if (work / "wheels").is_dir() else [])
    if not found:
        raise InstallError("the bundle has no wheels/ directory")
    return found[0]


def _run(argv: list[str], timeout_s: float, what: str) -> None:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallError(f"{what}: {exc}"[:300]) from None
    if r.returncode != 0:
        raise InstallError(f"{what} failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-240:]}")


def install_release(tarball: Path, opt: Path, version: str, sha256: str, keep: tuple[str, ...] = ()) -> str:
    """Stage the bundle as opt/venvs/<name>; returns the link target `venvs/<name>`. Venvs other than
    `keep` (the running and the previous release) and the new one are removed first: an SD card has
    room for about three."""
    name = release_name(version, sha256)
    venv = opt / "venvs" / name
    if (venv / ".complete").exists():
        return f"venvs/{name}"
    for old in sorted((opt / "venvs").glob("*")):
        if f"venvs/{old.name}" not in keep and old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    work = tarball.with_name(f"unpack-{name}")
    try:
        src = _unpack(tarball, work)
        shutil.rmtree(venv, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        # The interpreter the running release was built on (Debian's python3 on a Pi), as install.sh's
        # `python3 -m venv`: the new venv gets its own pip for the update after this one.
        base = getattr(sys, "_base_executable", sys.executable)
        _run([base, "-m", "venv", str(venv)], VENV_TIMEOUT_S, "python -m venv")
        pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
               "--no-index", "--find-links", str(src / "wheels")]
        if (src / "constraints.txt").is_file():  # the versions the release was tested with
            pip += ["-c", str(src / "constraints.txt")]
        _run([*pip, f"courtyard-gateway=={version}"], PIP_TIMEOUT_S, "pip install --no-index")
        if not os.access(venv / "bin/gateway", os.X_OK):
            raise InstallError(f"no gateway entry point in venvs/{name}")
        write_atomic(venv / ".complete", f"{name}\n".encode())  # last: only a complete venv can be switched to
    except BaseException:
        shutil.rmtree(venv, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return f"venvs/{name}"
