"""`gateway panel run`: load the config, resolve the LAN address, start the poller and the web app.
Nothing here touches the daemon except through the control socket (gateway/panel/link.py)."""

from __future__ import annotations

import asyncio
import fcntl
import socket
import ssl
import struct

from aiohttp import web

from gateway import log as logsetup
from gateway.config import load_config, load_credentials
from gateway.config.schema import Config
from gateway.errors import ConfigError
from gateway.panel.app import Gates, build_app
from gateway.panel.config import PanelSection
from gateway.panel.link import ControlLink
from gateway.panel.security import Attempts
from gateway.panel.state import Poller, Snapshot

SIOCGIFADDR = 0x8915  # linux/sockios.h


def interface_address(name: str) -> str:
    """The IPv4 address of a network interface (netdevice(7) SIOCGIFADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError as exc:
            raise ConfigError([f"panel.interface: {name!r} has no IPv4 address ({exc.strerror})"]) from None
    return socket.inet_ntoa(packed[20:24])


def listen_address(section: PanelSection) -> str:
    if section.address:
        return section.address
    if section.interface:
        return interface_address(section.interface)
    raise ConfigError(["panel: set interface (the LAN's, e.g. \"eth0\" or \"wlan0\") or address: the panel never "
                       "picks one itself, so it cannot end up on the uplink interface"])


def gates_for(cfg: Config, section: PanelSection) -> Gates:
    pin_hash = code_key = ""
    if cfg.uplink.credentials_file:
        creds = load_credentials(cfg.uplink.credentials_file)
        pin_hash, code_key = creds.panel_pin_hash, creds.panel_code_key
    return Gates(pin_hash, code_key, Attempts(section.max_attempts, section.lockout_s))


async def serve(config_path: str) -> None:
    cfg = load_config(config_path)
    section: PanelSection = cfg.extra.get("panel") or PanelSection()
    host = listen_address(section)
    gates = gates_for(cfg, section)
    log = logsetup.get(stage="panel")
    if not gates.pin_hash:
        log.warning("panel_no_pin", hint="gateway panel hash-pin, then panel_pin_hash in the credentials file")
    tls = None
    if section.tls_cert_file and section.tls_key_file:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(section.tls_cert_file, section.tls_key_file)
    snapshot, link = Snapshot(), ControlLink(cfg.control.socket)
    poller = Poller(link, cfg, snapshot, section.poll_period_s)
    runner = web.AppRunner(build_app(snapshot, link, gates), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, section.port, ssl_context=tls)
    await site.start()
    log.info("panel_listening", address=host, port=section.port, tls=tls is not None)
    poll_task = asyncio.create_task(poller.run(), name="panel-poller")
    try:
        await poll_task
    finally:
        poll_task.cancel()
        await runner.cleanup()
        await link.close()
