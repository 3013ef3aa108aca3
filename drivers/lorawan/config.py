"""Typed config of the LoRaWAN driver: the [ports.X] section (driver = "lorawan_gwmp"), a profile's
[lorawan] table, and the device address check (DevEUI for OTAA, DevAddr for ABP)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

_HEX = re.compile(r"^[0-9a-fA-F]+$")


class LorawanPort(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """[ports.X] driver = "lorawan_gwmp": the UDP server lora_pkt_fwd (sx1302_hal) talks to, and the
    embedded LoRaWAN 1.0.x class A network server behind it."""

    bind_host: str = "127.0.0.1"  # the forwarder runs on the Pi: loopback (its server_address = "localhost")
    bind_port: Annotated[int, Meta(ge=1, le=65535)] = 1700  # its serv_port_up and serv_port_down
    region: Literal["CN470", "EU868"] = "CN470"
    net_id: Annotated[int, Meta(ge=0, le=0xFFFFFF)] = 0  # NetID 0/1 are for private networks (LoRa Alliance)
    # No PULL_DATA (every keepalive_interval, 10 s by default) nor PUSH_DATA for this long: the forwarder is
    # silent and the driver is down. Keep it well under 100 s: the fault must be signalled within 100 s.
    forwarder_timeout_s: Annotated[float, Meta(ge=5, le=80)] = 30.0
    gateway_euis: list[Annotated[str, Meta(pattern=r"^[0-9a-fA-F]{16}$")]] = []  # empty: any forwarder
    dedup_window_s: Annotated[float, Meta(gt=0, le=10)] = 1.0  # one frame heard on several chains/paths
    rx1_dr_offset: Annotated[int, Meta(ge=0, le=5)] = 0  # JoinAccept DLSettings
    rx1_delay_s: Annotated[int, Meta(ge=1, le=15)] = 1  # JoinAccept RxDelay (RECEIVE_DELAY1)
    # How many 65,536-frame epochs ahead a counter may be (a device that sent frames we never heard).
    fcnt_epochs_ahead: Annotated[int, Meta(ge=1, le=64)] = 4
    # A device reset (ABP battery change): this many strictly increasing frames below the last accepted
    # counter, spanning at least resync_min_s, start a new epoch (drivers/sequence.py; never deafens).
    resync_frames: Annotated[int, Meta(ge=2, le=100)] = 3
    resync_min_s: Annotated[float, Meta(ge=0, le=7 * 86400)] = 60.0
    state_flush_s: Annotated[float, Meta(ge=0.1, le=3600)] = 30.0  # counters' write-behind period (joins at once)
    dev_status_interval_s: Annotated[float, Meta(ge=60)] = 86400.0  # ask DevStatusReq with a downlink this rarely
    # ADR is not implemented: devices keep the data rate they chose. Only false is accepted, said here.
    adr: Literal[False] = False
    # "host:port" of a district network server (ChirpStack's gateway bridge) that gets a verbatim copy of the
    # forwarder's traffic and may send its own downlinks through us ("" off). Never on the local alarm path.
    upstream: Annotated[str, Meta(pattern=r"^$|^[A-Za-z0-9.\-]+:[0-9]{1,5}$")] = ""


class LorawanProfile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A profile's [lorawan] table."""

    codec: Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{0,47}$")]  # name in drivers/codecs/registry.py
    device_class: Literal["A"] = "A"


def activation(address: str) -> str:
    """"otaa" for a 16-hex-digit DevEUI, "abp" for an 8-hex-digit DevAddr."""
    return "otaa" if len(address) == 16 else "abp"


def check_address(address: Any) -> str | None:
    if not isinstance(address, str) or not _HEX.match(address) or len(address) not in (8, 16):
        return (f"{address!r} is not a LoRaWAN address: give the DevEUI (16 hex digits, OTAA) or the DevAddr "
                "(8 hex digits, ABP) as a string")
    return None
