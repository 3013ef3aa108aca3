"""What every CLI command shares: where the config and the daemon's socket are, asking the daemon,
and how failures become exit codes (0 ok, 1 check failed / refused, 2 usage, 3 unreachable)."""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import click

from gateway.config.schema import Control, Store
from gateway.errors import GatewayError

DEFAULT_CONFIG = "/etc/courtyard-gateway/gateway.toml"

EXIT_OK = 0
EXIT_FAIL = 1  # a check failed, the config is invalid, the daemon or a device refused
EXIT_USAGE = 2  # click's own usage errors
EXIT_UNAVAILABLE = 3  # daemon or device not reachable

# A click command callback: click calls it with keyword arguments named after its options.
F = TypeVar("F", bound=Callable[..., Any])


class DaemonRefused(GatewayError):
    """The daemon answered but refused the command (unknown alarm, not permitted, bad arguments)."""

    def __init__(self, cmd: str, error: str, detail: str = "") -> None:
        self.cmd = cmd
        self.error = error
        self.detail = detail
        super().__init__(f"{cmd}: {error}" + (f": {detail}" if detail else ""))


class Unreachable(GatewayError):
    """A port, device or service the command needs cannot be reached (exit 3)."""


@dataclass(frozen=True)
class Target:
    """Where this gateway keeps things, read from its config without full validation: `status`
    must still work at 3 a.m. when someone has just broken the config."""

    config_path: str
    socket: str
    store_path: str
    config_note: str = ""  # why defaults were used, shown to the user


def locate(config_path: str, socket_override: str | None = None) -> Target:
    note = ""
    raw: dict[str, Any] = {}
    try:
        with open(config_path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        note = f"{config_path} not found: using default paths"
    except PermissionError:
        note = f"{config_path}: permission denied: using default paths"
    except tomllib.TOMLDecodeError as exc:
        note = f"{config_path} is not valid TOML ({exc}): using default paths"
    control, store = raw.get("control"), raw.get("store")
    control = control if isinstance(control, dict) else {}
    store = store if isinstance(store, dict) else {}
    sock = socket_override or str(control.get("socket") or Control().socket)
    store_path = str(store.get("path") or Store().path)
    return Target(config_path, sock, store_path, note)


def target_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add --config and --socket to a command; it receives `target: Target` instead (so the
    wrapper's keyword arguments differ from `f`'s: no narrower type than Callable[..., Any] holds)."""

    @click.option(
        "--config", "config_path", envvar="COURTYARD_CONFIG", default=DEFAULT_CONFIG, show_default=True,
        type=click.Path(dir_okay=False), help="gateway TOML file (env COURTYARD_CONFIG)",
    )
    @click.option(
        "--socket", "socket_path", envvar="COURTYARD_SOCKET", default=None, metavar="PATH",
        help="control socket (default: control.socket from the config)",
    )
    @functools.wraps(f)
    def wrapper(*args: Any, config_path: str, socket_path: str | None, **kwargs: Any) -> Any:
        return f(*args, target=locate(config_path, socket_path), **kwargs)

    return wrapper


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="machine-readable output")(f)


def ask(target: Target, cmd: str, args: dict[str, Any] | None = None, timeout_s: float = 10.0) -> Any:
    """One request to the daemon; its result, or DaemonRefused / DaemonUnavailable."""
    from gateway.control.client import call

    resp = call(target.socket, cmd, args or {}, timeout_s=timeout_s)
    if not resp.ok:
        raise DaemonRefused(cmd, resp.error, resp.detail)
    return resp.result


def fail(message: str, code: int = EXIT_FAIL) -> NoReturn:
    click.echo(message, err=True)
    raise SystemExit(code)


def quiet_logs() -> None:
    """Probes call driver code that logs: to stderr, warnings only, so stdout stays the answer
    (`--json` output must parse; issue 18 found `at_tx` debug lines in `modem info --json`)."""
    import sys

    from gateway import log as logsetup

    logsetup.setup("warning", "console", stream=sys.stderr)


def port_drivers(target: Target) -> dict[str, str]:
    """Serial path -> driver name of every [ports.*] in the config (read without full validation)."""
    try:
        with open(target.config_path, "rb") as f:
            raw = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    ports = raw.get("ports")
    if not isinstance(ports, dict):
        return {}
    return {str(p["path"]): str(p.get("driver", "")) for p in ports.values() if isinstance(p, dict) and p.get("path")}
