"""scripts/list-serial.py against a sysfs/dev tree laid out as on a Pi: by-id for adapters with a
unique serial, by-path and a KERNELS udev rule for CH340s (no serial), nothing pasted from hostile strings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
USB = "devices/platform/scb/fd500000.pcie/pci0000:00/0000:00:00.0/0000:01:00.0/usb1/1-1"


def usb_adapter(sys_root: Path, dev: Path, tty: str, port: str, vidpid: str, serial: str | None, by_id: str, by_path: str) -> None:
    """/sys/class/tty/<tty>/device -> .../<port>:1.0/<tty>, attributes on the USB device dir, /dev/serial links."""
    device = sys_root / USB / port
    iface = device / f"{port}:1.0" / tty
    iface.mkdir(parents=True)
    vid, pid = vidpid.split(":")
    for name, value in (("idVendor", vid), ("idProduct", pid), ("manufacturer", "Maker"), ("product", "Bridge"), ("serial", serial)):
        if value is not None:
            (device / name).write_text(value + "\n")
    cls = sys_root / "class/tty" / tty
    cls.mkdir(parents=True)
    (cls / "device").symlink_to(iface)
    (dev / tty).touch()
    for kind, name in (("by-id", by_id), ("by-path", by_path)):
        if name:
            (dev / "serial" / kind).mkdir(parents=True, exist_ok=True)
            (dev / "serial" / kind / name).symlink_to(f"../../{tty}")


def run(sys_root: Path, dev: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts/list-serial.py"), "--sys", str(sys_root), "--dev", str(dev)],
                          capture_output=True, text=True, timeout=30)


def blocks(out: str) -> dict[str, str]:
    return {b.split()[0]: b for b in out.split("\n\n") if b.startswith("/dev/")}


def test_list_serial_picks_by_id_for_ftdi_and_port_position_for_ch340(tmp_path):
    sys_root, dev = tmp_path / "sys", tmp_path / "dev"
    dev.mkdir()
    usb_adapter(sys_root, dev, "ttyUSB0", "1-1.2", "1a86:7523", None, "usb-1a86_USB_Serial-if00-port0", "platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.2:1.0-port0")
    usb_adapter(sys_root, dev, "ttyUSB1", "1-1.3", "0403:6001", "FT4XYZ12", "usb-FTDI_USB-RS485_Cable_FT4XYZ12-if00-port0", "platform-x-usb-0:1.3:1.0-port0")
    (sys_root / "class/tty/tty0").mkdir(parents=True)  # a virtual console: no device, not listed
    r = run(sys_root, dev)
    assert r.returncode == 0, r.stderr
    out = blocks(r.stdout)
    assert set(out) == {"/dev/ttyUSB0", "/dev/ttyUSB1"}
    assert 'path = "/dev/serial/by-id/usb-FTDI_USB-RS485_Cable_FT4XYZ12-if00-port0"' in out["/dev/ttyUSB1"]
    assert 'ATTRS{serial}=="FT4XYZ12"' in out["/dev/ttyUSB1"]
    ch340 = out["/dev/ttyUSB0"]
    assert "CH340 has no serial number" in ch340
    assert 'path = "/dev/serial/by-path/platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.2:1.0-port0"' in ch340
    assert 'KERNELS=="1-1.2:1.0", ATTRS{idVendor}=="1a86", ATTRS{idProduct}=="7523"' in ch340


def test_duplicate_or_hostile_serials_fall_back_to_the_port(tmp_path):
    sys_root, dev = tmp_path / "sys", tmp_path / "dev"
    dev.mkdir()
    usb_adapter(sys_root, dev, "ttyUSB0", "1-1.2", "10c4:ea60", "0001", "usb-Silicon_0001-if00-port0", "p-1.2")
    usb_adapter(sys_root, dev, "ttyUSB1", "1-1.3", "10c4:ea60", "0001", "", "p-1.3")
    usb_adapter(sys_root, dev, "ttyUSB2", "1-1.4", "0403:6001", 'A", RUN+="/bin/sh', "", "p-1.4")
    out = run(sys_root, dev).stdout
    assert "ATTRS{serial}" not in out and 'RUN+="/bin/sh", SYMLINK' not in out
    for tty, port in (("ttyUSB0", "1-1.2"), ("ttyUSB1", "1-1.3"), ("ttyUSB2", "1-1.4")):
        assert f'KERNELS=="{port}:1.0"' in blocks(out)[f"/dev/{tty}"]


def test_no_adapters_exits_1_with_a_hint(tmp_path):
    (tmp_path / "sys/class/tty").mkdir(parents=True)
    (tmp_path / "dev").mkdir()
    r = run(tmp_path / "sys", tmp_path / "dev")
    assert r.returncode == 1 and "no serial adapters" in r.stdout
