"""Installer probes for the radios: `gateway lora listen` (frames with RSSI as they arrive) and
`gateway modem at|info`. Thin wrappers: the protocol work lives in drivers/lora and drivers/cellular
(`probe` modules); a build without them says so instead of failing obscurely."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from gateway.cli import render
from gateway.cli.common import EXIT_FAIL, Target, json_option, quiet_logs, target_options
from gateway.cli.probes import ensure_port_free

if TYPE_CHECKING:
    from drivers.codecs import Decode


def probe_function(module: str, name: str, what: str) -> Callable[..., Any]:
    """The driver package's installer probe, or a clear 'not available in this build'."""
    try:
        fn: Callable[..., Any] = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise click.ClickException(f"{what} is not available in this build ({module}.{name} is missing)") from None
    return fn


def _builtins(obj: Any) -> Any:
    import msgspec

    return obj if isinstance(obj, dict) else msgspec.to_builtins(obj)


@click.group()
def lora() -> None:
    """LoRa (Ebyte E22) installer probes (daemon stopped; `lora listen` without PORT asks the daemon)."""


class ListenContext:
    """What the config knows about the frames `lora listen` hears: names, keys (when the credentials
    file is readable) and codecs, so a frame prints as `smoke-2-1-301 alarm:smoke`, not as hex."""

    def __init__(self, target: Target, port: str) -> None:
        self.names: dict[int, str] = {}
        self.keys: dict[int, bytes | None] = {}
        self.codecs: dict[int, Decode | None] = {}
        self.note = ""
        try:
            self._load(target, port)
        except Exception as exc:  # noqa: BLE001 - the probe still works without the config, just undecoded
            self.note = f"frames not decoded ({type(exc).__name__}: {exc})"

    def _load(self, target: Target, port: str) -> None:
        import os

        from drivers.codecs.registry import CODECS
        from drivers.lora import crypto
        from drivers.lora.frame import KEYLESS
        from gateway.config import load_config, load_credentials

        cfg = load_config(target.config_path)
        ports = {name for name, (drv, p) in cfg.ports.items()
                 if drv == "lora_e22" and os.path.realpath(getattr(p, "path", "") or "") == os.path.realpath(port)}
        secrets: dict[str, str] = {}
        if cfg.uplink.credentials_file:
            try:
                secrets = dict(load_credentials(cfg.uplink.credentials_file).lora_keys)
            except Exception as exc:  # noqa: BLE001 - not root: names and keyless sensors still decode
                self.note = f"no keys ({exc}): keyed frames are shown unverified"
        for dev in cfg.devices:
            if ports and dev.port not in ports or not isinstance(dev.address, int):
                continue
            spec = cfg.profile_specs.get(dev.profile)
            if spec is None or not hasattr(spec, "keyed"):
                continue
            self.names[dev.address] = dev.id
            self.codecs[dev.address] = CODECS.get(spec.codec)
            if not spec.keyed:
                self.keys[dev.address] = KEYLESS
            elif dev.id in secrets:
                self.keys[dev.address] = crypto.parse_key(dev.id, secrets[dev.id])

    def describe(self, frame: dict[str, Any]) -> dict[str, Any]:
        from drivers.codecs import CodecMeta
        from gateway.clock import Clock

        addr = frame.get("address")
        out = dict(frame)
        out["name"] = self.names.get(addr, "") if isinstance(addr, int) else ""
        decode = self.codecs.get(addr) if isinstance(addr, int) else None
        if decode is None or not frame.get("payload") or frame.get("type") != "report":
            return out
        try:
            items = decode(bytes.fromhex(frame["payload"]), CodecMeta(out["name"], Clock("assume_synced").now(), "lora", frame.get("rssi_dbm")))
        except Exception as exc:  # noqa: BLE001 - CodecError or a garbled payload: shown, never a crash
            out["decode_error"] = str(exc)
            return out
        import msgspec

        out["decoded"] = [{k: v for k, v in msgspec.to_builtins(i).items() if k not in ("stamp", "device_id")} for i in items]
        return out


def _decoded_text(f: dict[str, Any]) -> str:
    parts = []
    for item in f.get("decoded") or []:
        if item.get("type") == "event":
            parts.append(f"{item['kind']}" + (f":{item['code']}" if item.get("code") else ""))
        else:
            parts.append(render.values({k: v for k, v in (item.get("values") or {}).items() if v is not None and k != "rssi_dbm"}, 6))
    if f.get("decode_error"):
        parts.append(f"(undecodable: {f['decode_error']})")
    return "  ".join(parts) or f"{f.get('type')} {f.get('payload', '')[:24]}"


def listen_daemon(target: Target, seconds: float, as_json: bool) -> None:
    """`gateway lora listen --seconds N` without PORT: the running daemon's lora_listen (gateway/fleet/listen.py),
    through its drivers' receive path, so the daemon keeps its ports. Every LoRa radio (E22 and LoRaWAN)."""
    from gateway.cli.common import ask
    from gateway.fleet.listen import SECONDS_RANGE

    if seconds > SECONDS_RANGE[1]:
        raise click.UsageError(f"with the daemon running, --seconds is at most {SECONDS_RANGE[1]:g} (give PORT with the daemon stopped)")
    if not as_json:
        click.echo(f"asking the daemon to listen for {seconds:g} s...", err=True)
    report = ask(target, "lora_listen", {"seconds": seconds}, timeout_s=seconds + 15)
    if as_json:
        render.emit_json(report)
        return
    for f in report["frames"]:
        rssi = "-" if f.get("rssi_dbm") is None else f"{f['rssi_dbm']:g}"
        snr = "" if f.get("snr_db") is None else f" snr {f['snr_db']:g}"
        click.echo(render.clip(f"+{f['t_s']:6.1f}s  {f['port']:<8} {f['source'] or '?':<16} {f['device_id'] or '(not in config)':<16} "
                               f"{f['verdict']:<15} rssi {rssi}{snr}  {f['length']} B  fcnt {f.get('fcnt')}", 110))
    cut = f" ({report['not_listed']} more not listed: cap reached)" if report["truncated"] else ""
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report["counts"].items()))
    click.echo(f"{report['heard']} frames heard on {', '.join(report['ports'])}{cut}" + (f": {counts}" if counts else ""), err=True)


@lora.command()
@click.argument("port", required=False)
@click.option("--seconds", type=click.FloatRange(1, 3600), default=60, show_default=True, help="how long to listen")
@click.option("--baud", type=int, default=9600, show_default=True)
@target_options
@json_option
def listen(target: Target, port: str | None, seconds: float, baud: int, as_json: bool) -> None:
    """Print each frame as it arrives: the configured device's name, RSSI and the decoded report (PORT given,
    daemon stopped). Without PORT: the running daemon reports every frame its LoRa radios hear for
    --seconds (at most 120), accepted or rejected, with the verdict."""
    if port is None:
        return listen_daemon(target, seconds, as_json)
    listen_fn = probe_function("drivers.lora.probe", "listen", "gateway lora listen")
    quiet_logs()
    ensure_port_free(target, port)
    ctx = ListenContext(target, port)
    if ctx.note:
        click.echo(ctx.note, err=True)
    frames: list[dict[str, Any]] = []

    async def main() -> None:
        async def consume() -> None:
            async for frame in listen_fn(port, baud=baud, keys=ctx.keys):
                f = ctx.describe(_builtins(frame))
                frames.append(f)
                if as_json:
                    click.echo(json.dumps(f, ensure_ascii=False, sort_keys=True))  # one object per line
                else:
                    who = f["name"] or f"unknown {f.get('device_id', '?')}"
                    check = "" if f.get("verified", True) else " (unverified)"
                    click.echo(render.clip(f"{time.strftime('%H:%M:%S')}  {who:<16} rssi {f.get('rssi_dbm', '-')}{check}  "
                                           f"{_decoded_text(f)}", 100))

        try:
            async with asyncio.timeout(seconds):
                await consume()
        except TimeoutError:
            pass

    if not as_json:
        click.echo(f"listening on {port} for {seconds:g} s (Ctrl-C to stop)...", err=True)
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    unknown = sorted({f.get("device_id", "?") for f in frames if not f.get("name")})
    click.echo(f"{len(frames)} frames heard" + (f"; not in the config: {', '.join(unknown)}" if unknown else ""), err=True)


@click.group()
def modem() -> None:
    """Cellular modem installer probes (daemon stopped)."""


@modem.command("at")
@click.argument("port")
@click.argument("command")
@click.option("--baud", type=int, default=9600, show_default=True)
@click.option("--timeout", "timeout_s", type=click.FloatRange(0.1, 180), default=5.0, show_default=True)
@target_options
@json_option
def at_command(target: Target, port: str, command: str, baud: int, timeout_s: float, as_json: bool) -> None:
    """Send one AT COMMAND (e.g. "AT+CSQ") and print the answer lines; exit 1 when the modem answers ERROR."""
    at_fn = probe_function("drivers.cellular.probe", "at", "gateway modem at")
    if not command.upper().startswith("AT"):
        raise click.BadParameter(f"{command!r} does not start with AT", param_hint="COMMAND")
    quiet_logs()
    ensure_port_free(target, port)
    lines = list(asyncio.run(at_fn(port, command, baud=baud, timeout_s=timeout_s)))
    failed = bool(lines) and lines[-1].startswith("error")
    if as_json:
        render.emit_json({"command": command, "lines": lines, "ok": not failed})
    else:
        for line in lines:
            click.echo(line)
    if failed:
        raise SystemExit(EXIT_FAIL)


def modem_type(target: Target, port: str, given: str) -> str:
    """ec200 (the SMS modem) or bc95 (NB-IoT), from --type or the config's port driver."""
    if given != "auto":
        return given
    import os

    from gateway.cli.common import port_drivers

    drivers = {os.path.realpath(path): drv for path, drv in port_drivers(target).items()}
    drv = drivers.get(os.path.realpath(port), "")
    if not drv:
        raise click.UsageError(f"{port} is not a port of {target.config_path}: give --type ec200 or --type bc95")
    return "ec200" if drv.startswith("sms") else "bc95"


async def ec200_info(port: str, baud: int) -> dict[str, Any]:
    from drivers.cellular.probe import ec200_info as read

    return await read(port, baud)


@modem.command()
@click.argument("port")
@click.option("--baud", type=int, default=9600, show_default=True)
@click.option("--type", "kind", type=click.Choice(["auto", "ec200", "bc95"]), default="auto", show_default=True,
              help="modem type (auto: from the config's port driver)")
@target_options
@json_option
def info(target: Target, port: str, baud: int, kind: str, as_json: bool) -> None:
    """Registration, signal, ICCID, IMEI of the modem on PORT, asked in its own dialect."""
    info_fn = probe_function("drivers.cellular.probe", "info", "gateway modem info")
    kind = modem_type(target, port, kind)
    quiet_logs()
    ensure_port_free(target, port)
    facts = _builtins(asyncio.run(ec200_info(port, baud) if kind == "ec200" else info_fn(port, baud=baud)))
    facts = {"modem_type": kind, **facts}
    if as_json:
        render.emit_json(facts)
    else:
        width = max((len(k) for k in facts), default=0)
        for key, value in facts.items():
            click.echo(f"{key.ljust(width)}  {value}")
    if any(k.startswith("error_") for k in facts):
        raise SystemExit(EXIT_FAIL)
