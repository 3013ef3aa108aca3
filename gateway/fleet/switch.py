"""Release switch (issue 20 "Software update with rollback"): the `venv` link of /opt/courtyard-gateway
switched to a staged, complete venv by one rename, `release.pending` written first, resolved at the next
start. The code lives in gateway/fleet/launch.py, standard library only, because root's resolver outside
the venv (the unit's ExecStartPre=+) runs it before any code of the new release; this module is its name
inside the package. Only root switches (the root updater, gateway/fleet/updater.py; install.sh)."""

from gateway.fleet.launch import MAX_STARTS, ReleasePending, ReleaseSwitch, SwitchError

__all__ = ["MAX_STARTS", "ReleasePending", "ReleaseSwitch", "SwitchError"]
