#!/usr/bin/env python3
"""List the attached USB-serial adapters (and the Pi's own UARTs) with the config line and udev rule to paste.

Reads sysfs only (standard library, no root, works before the venv exists). Picks the stable name an
installer should use: /dev/serial/by-id/ when the adapter has a unique serial number, /dev/serial/by-path/
(the USB port) when it does not: CH340/CH341 report none, so two of them look identical (protocols.md §6).
    scripts/list-serial.py                 # on the gateway
    scripts/list-serial.py --sys DIR --dev DIR   # against a copied /sys and /dev (tests, support cases)
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# USB interface directory names look like "1-1.2:1.0" (bus-port.port:config.interface): udev's KERNELS.
_INTERFACE = re.compile(r"^\d+-[\d.]+:\d+\.\d+$")
# Adapters known to ship without a usable serial number (VID:PID): match them by USB port instead.
NO_SERIAL = {"1a86:7523": "CH340", "1a86:5523": "CH341", "1a86:7522": "CH340K"}


@dataclass
class Port:
    name: str  # ttyUSB0
    vidpid: str = ""  # "1a86:7523", "" for on-board UARTs
    maker: str = ""
    product: str = ""
    serial: str = ""
    interface: str = ""  # "1-1.2:1.0"
    by_id: str = ""
    by_path: str = ""


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def _links(dev: Path, kind: str) -> dict[str, str]:
    """tty name -> its /dev/serial/<kind>/ link (as the gateway sees it, under /dev)."""
    out: dict[str, str] = {}
    folder = dev / "serial" / kind
    if folder.is_dir():
        for link in sorted(folder.iterdir()):
            out.setdefault(Path(os.path.realpath(link)).name, f"/dev/serial/{kind}/{link.name}")
    return out


def scan(sys_root: Path, dev: Path) -> list[Port]:
    by_id, by_path = _links(dev, "by-id"), _links(dev, "by-path")
    ports = []
    for entry in sorted((sys_root / "class" / "tty").iterdir()):
        name = entry.name
        device = entry / "device"
        if not device.exists():
            continue  # virtual terminals, ptys
        port = Port(name, by_id=by_id.get(name, ""), by_path=by_path.get(name, ""))
        node = Path(os.path.realpath(device))
        while node != node.parent and not (node / "idVendor").exists():
            if _INTERFACE.match(node.name):
                port.interface = node.name
            node = node.parent
        if (node / "idVendor").exists():
            port.vidpid = f"{_read(node / 'idVendor')}:{_read(node / 'idProduct')}"
            port.maker, port.product, port.serial = (_read(node / f) for f in ("manufacturer", "product", "serial"))
        elif not name.startswith("ttyAMA"):
            continue  # legacy 8250 ttyS* placeholders: not adapters
        ports.append(port)
    return ports


def _usable_serial(port: Port, counts: Counter) -> bool:
    s = port.serial
    # Descriptor strings come from the device: only plain ones go into a udev rule (no quote injection).
    return bool(re.fullmatch(r"[A-Za-z0-9._-]{1,64}", s)) and port.vidpid not in NO_SERIAL and s.strip("0") != "" and counts[(port.vidpid, s)] == 1


def describe(port: Port, counts: Counter) -> list[str]:
    """The lines printed for one port: what it is, the path to use and why, the udev rule."""
    if not port.vidpid:
        return [f"/dev/{port.name}  on-board UART (name is stable)", f'  config:  path = "/dev/{port.name}"']
    chip = NO_SERIAL.get(port.vidpid, "")
    head = f"/dev/{port.name}  {port.vidpid}  {port.maker or '?'} / {port.product or '?'}  serial: {port.serial or '(none)'}  usb port: {port.interface or '?'}"
    vendor, product = port.vidpid.split(":", 1)
    ids = f'ATTRS{{idVendor}}=="{vendor}", ATTRS{{idProduct}}=="{product}"'
    tail = 'SYMLINK+="courtyard-NAME", GROUP="dialout", MODE="0660"'
    if _usable_serial(port, counts) and port.by_id:
        lines = [head, f'  config:  path = "{port.by_id}"', f'  udev:    SUBSYSTEMS=="usb", {ids}, ATTRS{{serial}}=="{port.serial}", {tail}']
    else:
        why = f"{chip} has no serial number" if chip else "no unique serial number"
        lines = [head, f"  {why}: use the USB port; label it, moving the adapter changes this name"]
        if port.by_path:
            lines.append(f'  config:  path = "{port.by_path}"')
        lines.append(f'  udev:    SUBSYSTEMS=="usb", KERNELS=="{port.interface}", {ids}, {tail}')
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sys", default="/sys", type=Path, help="sysfs root (default /sys)")
    ap.add_argument("--dev", default="/dev", type=Path, help="dev root (default /dev)")
    args = ap.parse_args(argv)
    ports = scan(args.sys, args.dev)
    if not ports:
        print("no serial adapters found (plugged in? `dmesg | tail` shows what the kernel saw)")
        return 1
    counts = Counter((p.vidpid, p.serial) for p in ports)
    for port in ports:
        print("\n".join(describe(port, counts)) + "\n")
    print("Paste the config line into [ports.<name>] of /etc/courtyard-gateway/gateway.toml, or the udev line")
    print("(NAME = rs485 | lora | modem) into /etc/udev/rules.d/99-courtyard-gateway.rules and use /dev/courtyard-NAME.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
