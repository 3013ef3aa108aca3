"""LoRaWAN simulator (product code): a packet forwarder speaking GWMP v2 over UDP to the gateway, with
simulated end devices behind it (ABP and OTAA, see simdevices.py), and faults: wrong_mic, replay,
rollover (counter past 65,535), duplicate (one frame on two chains), reused_devnonce, silent (forwarder).
`gateway simulate lorawan --server 127.0.0.1:1700 --device smoke:abp:26011BDA:<NwkSKey>:<AppSKey>`
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import click

from drivers.lorawan import gwmp
from drivers.lorawan.simdevices import SimDevice

FAULTS = ("wrong_mic", "replay", "rollover", "duplicate", "reused_devnonce", "silent")
# The sx1302_hal CN470 reference config: radios at 486.6/487.4 MHz, eight 125 kHz channels 486.3..487.7.
CHANNELS_MHZ = {"CN470": (486.3, 486.5, 486.7, 486.9, 487.1, 487.3, 487.5, 487.7), "EU868": (868.1, 868.3, 868.5)}


@dataclass
class Downlink:
    txpk: dict[str, Any]
    phy: bytes
    device_id: str  # the simulated device that took it ("" none)


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, sim: "LorawanSimulator") -> None:
        self.sim = sim

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sim._received(data)


class LorawanSimulator:
    """start()/stop(); add(device); send(device, phy); report(device_id, reason); join(device_id); set_fault."""

    def __init__(self, server: tuple[str, int], eui: bytes = bytes.fromhex("0016c001ff10a235"), region: str = "CN470",
                 keepalive_s: float = 10.0, stat_s: float = 30.0, datr: str = "SF7BW125", seed: int | None = None,
                 tx_error: str = "") -> None:
        self.server, self.eui, self.region = server, eui, region
        self.keepalive_s, self.stat_s, self.datr = keepalive_s, stat_s, datr
        self.tx_error = tx_error  # TX_ACK error to answer PULL_RESP with ("" = sent)
        self.rng = random.Random(seed)
        self.devices: dict[str, SimDevice] = {}
        self.downlinks: list[Downlink] = []
        self.acks_received = {"push": 0, "pull": 0}
        self.silent = False
        self._faults: dict[str, str | None] = {}
        self._token = self.rng.getrandbits(16)
        self._t0 = 0.0
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._downlink_event = asyncio.Event()
        self.last_sent_tmst, self.last_sent_freq = 0, 0.0  # of the latest rxpk, for timing checks

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._t0 = loop.time()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: _Proto(self), remote_addr=self.server)
        self._spawn(self._keepalive())

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    # -- control ------------------------------------------------------------------------------------

    def add(self, device: SimDevice) -> SimDevice:
        self.devices[device.device_id] = device
        return device

    def set_fault(self, name: str, device_id: str | None = None) -> None:
        """One-shot faults hit the next frame (of `device_id` if given); `silent` stays until clear_fault."""
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r} (known: {', '.join(FAULTS)})")
        if name == "silent":
            self.silent = True
        elif name == "rollover":
            for dev in self.devices.values() if device_id is None else [self.devices[device_id]]:
                dev.fcnt_up = max(dev.fcnt_up, 0xFFFF - 1)  # two more frames and its counter passes 65,535
        elif name == "replay":
            # An earlier frame of the device, recorded and sent again: the one before its last (the last
            # again is what a device sends itself when it missed an ACK: a retransmission, not a replay).
            dev = self.devices[device_id] if device_id else next(iter(self.devices.values()))
            if len(dev.history) >= 2:
                self.send(dev.history[-2])
        else:
            self._faults[name] = device_id

    def clear_fault(self, name: str) -> None:
        self._faults.pop(name, None)
        if name == "silent":
            self.silent = False

    def report(self, device_id: str, reason: str = "heartbeat", confirmed: bool = False) -> bytes:
        dev = self.devices[device_id]
        phy = dev.report(reason, confirmed)
        if self._take("wrong_mic", device_id):
            phy = phy[:-1] + bytes([phy[-1] ^ 0x5A])
        self.send(phy, rssi_dbm=dev.rssi_dbm, lsnr_db=dev.snr_db, chains=2 if self._take("duplicate", device_id) else 1)
        return phy

    def join(self, device_id: str) -> bytes:
        dev = self.devices[device_id]
        phy = dev.join_request(reuse_nonce=self._take("reused_devnonce", device_id))
        self.send(phy, rssi_dbm=dev.rssi_dbm, lsnr_db=dev.snr_db)
        return phy

    def send(self, phy: bytes, rssi_dbm: int = -95, lsnr_db: float = 6.5, chains: int = 1, datr: str | None = None) -> None:
        """One PUSH_DATA carrying the frame as received on `chains` IF chains (a duplicate when 2)."""
        tmst = self.tmst()
        freq = self.rng.choice(CHANNELS_MHZ[self.region])
        self.last_sent_tmst, self.last_sent_freq = tmst, freq
        rx = [gwmp.rxpk_json(phy, tmst, freq, datr or self.datr, chan=i, rfch=i % 2, rssi_dbm=rssi_dbm - 3 * i, lsnr_db=lsnr_db)
              for i in range(chains)]
        self._datagram(gwmp.push_data(self._next_token(), self.eui, rx))

    def send_stat(self) -> None:
        stat = {"time": "2026-12-01 08:00:00 GMT", "rxnb": 0, "rxok": 0, "rxfw": 0, "ackr": 100.0, "dwnb": len(self.downlinks), "txnb": 0}
        self._datagram(gwmp.push_data(self._next_token(), self.eui, stat=stat))

    def send_raw(self, data: bytes) -> None:
        self._datagram(data)

    def tmst(self) -> int:
        """The concentrator's µs counter (32 bits, wraps every ~71.6 min)."""
        return int((asyncio.get_running_loop().time() - self._t0) * 1e6) & 0xFFFFFFFF

    async def wait_downlink(self, count: int, timeout_s: float = 5.0) -> list[Downlink]:
        async def until() -> None:
            while len(self.downlinks) < count:
                self._downlink_event.clear()
                await self._downlink_event.wait()
        async with asyncio.timeout(timeout_s):
            await until()
        return self.downlinks

    # -- internals ----------------------------------------------------------------------------------

    def _take(self, fault: str, device_id: str) -> bool:
        if fault in self._faults and self._faults[fault] in (None, device_id):
            del self._faults[fault]
            return True
        return False

    def _next_token(self) -> int:
        self._token = (self._token + 1) & 0xFFFF
        return self._token

    def _datagram(self, data: bytes) -> None:
        if self._transport is not None and not self.silent:
            self._transport.sendto(data)

    def _received(self, data: bytes) -> None:
        try:
            pkt = gwmp.parse(data)
        except Exception:  # noqa: BLE001 - the simulator only counts what it cannot read
            return
        if pkt.ident is gwmp.Ident.PUSH_ACK:
            self.acks_received["push"] += 1
        elif pkt.ident is gwmp.Ident.PULL_ACK:
            self.acks_received["pull"] += 1
        elif pkt.ident is gwmp.Ident.PULL_RESP and pkt.txpk is not None:
            phy = gwmp.b64decode(pkt.txpk.get("data", ""))
            taker = next((d.device_id for d in self.devices.values() if d.on_downlink(phy)), "")
            self.downlinks.append(Downlink(pkt.txpk, phy, taker))
            self._downlink_event.set()
            self._datagram(gwmp.tx_ack(pkt.token, self.eui, self.tx_error))

    async def _keepalive(self) -> None:
        # PROTOCOL.md: PULL_DATA every keepalive_interval keeps the downlink route; stat every stat_interval.
        next_stat = 0.0
        loop = asyncio.get_running_loop()
        while True:
            self._datagram(gwmp.pull_data(self._next_token(), self.eui))
            if loop.time() >= next_stat:
                self.send_stat()
                next_stat = loop.time() + self.stat_s
            await asyncio.sleep(self.keepalive_s)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


# -- command line: `gateway simulate lorawan` --------------------------------------------------------



REASONS = ("heartbeat", "alarm", "clear", "battery_low", "test")


def device_arg(text: str) -> SimDevice:
    """KIND:abp:DEVADDR:NWKSKEY:APPSKEY or KIND:otaa:DEVEUI:APPKEY (hex)."""
    parts = text.split(":")
    try:
        if len(parts) == 5 and parts[1] == "abp":
            return SimDevice.abp(parts[0], int(parts[2], 16), bytes.fromhex(parts[3]), bytes.fromhex(parts[4]))
        if len(parts) == 4 and parts[1] == "otaa" and len(parts[2]) == 16:
            return SimDevice.otaa(parts[0], parts[2], bytes.fromhex(parts[3]))
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: {exc}", param_hint="--device") from None
    raise click.BadParameter(f"{text!r}: use KIND:abp:DEVADDR:NWKSKEY:APPSKEY or KIND:otaa:DEVEUI:APPKEY", param_hint="--device")


async def _device_loop(sim: LorawanSimulator, dev: SimDevice, heartbeat_s: float) -> None:
    # OTAA devices join first, retrying like a device whose JoinAccept was lost; then report periodically.
    while not dev.joined:
        sim.join(dev.device_id)
        await asyncio.sleep(min(10.0, heartbeat_s))
    await asyncio.sleep(sim.rng.uniform(0.05, 1.0) * heartbeat_s)
    while True:
        sim.report(dev.device_id, "heartbeat")
        await asyncio.sleep(heartbeat_s)


def _scripted(sim: LorawanSimulator, device_id: str, action: str) -> None:
    if action.startswith("fault:"):
        sim.set_fault(action[6:], device_id or None)
    elif sim.devices[device_id].joined:
        sim.report(device_id, action, confirmed=action == "alarm")


@click.command("lorawan")
@click.option("--server", default="127.0.0.1:1700", show_default=True, help="the gateway's GWMP port (bind_host:bind_port)")
@click.option("--device", "devices", multiple=True, required=True, metavar="SPEC",
              help="KIND:abp:DEVADDR:NWKSKEY:APPSKEY or KIND:otaa:DEVEUI:APPKEY; KIND smoke|gas|leak|door (repeatable)")
@click.option("--region", type=click.Choice(sorted(CHANNELS_MHZ)), default="CN470", show_default=True)
@click.option("--heartbeat-s", type=click.FloatRange(min=1), default=3600.0, show_default=True, help="each device's report period")
@click.option("--time-scale", type=click.FloatRange(min=0.001), default=1.0, show_default=True, help="heartbeats run this many times faster")
@click.option("--keepalive-s", type=click.FloatRange(min=0.1), default=10.0, show_default=True, help="PULL_DATA period (keepalive_interval)")
@click.option("--script", "script", multiple=True, metavar="SECONDS:DEVICE:ACTION",
              help=f"e.g. 60:26011bda:alarm or 90:26011bda:fault:replay; actions {', '.join(REASONS)}, fault:{'|'.join(FAULTS)}")
def cli(server: str, devices: tuple[str, ...], region: str, heartbeat_s: float, time_scale: float, keepalive_s: float,
        script: tuple[str, ...]) -> None:
    """Simulate an SX1302 packet forwarder (GWMP v2) with LoRaWAN devices behind it until Ctrl-C."""
    from drivers.simport import serve_until_interrupted

    host, _, port = server.rpartition(":")
    sim = LorawanSimulator((host or "127.0.0.1", int(port)), region=region, keepalive_s=keepalive_s)
    for text in devices:
        sim.add(device_arg(text))

    async def start() -> None:
        await sim.start()
        click.echo(f"lorawan simulator: {len(sim.devices)} devices -> udp {server}, {region}, time x{time_scale:g}")
        for dev in sim.devices.values():
            sim._spawn(_device_loop(sim, dev, heartbeat_s / time_scale))
        for item in script:
            at, dev_id, action = item.split(":", 2)
            asyncio.get_running_loop().call_later(float(at) / time_scale, _scripted, sim, dev_id.lower(), action)

    serve_until_interrupted(start, sim.stop)
