"""R16 (reliability.md §7): the LoRaWAN driver's UDP port under a flood of hostile GWMP datagrams, with the
real forwarder's smoke alarms interleaved.

A separate process sends GWMP_FLOOD_RATE datagrams/s for GWMP_FLOOD_S seconds to the driver on 127.0.0.1:
random bytes, bad protocol versions, PUSH_DATA with broken JSON or rxpk, PUSH_DATA and PULL_DATA from a
new random gateway EUI each (gateway_euis left empty, the default: any forwarder), and well-formed frames
in the real forwarder's name that fail the MIC or name an unknown DevAddr. Meanwhile the simulated
forwarder sends a genuine smoke alarm every 0.2 s. What must hold: every genuine alarm arrives, its delay
from send to the driver's emit is printed and bounded; the driver never raises (internal_errors 0),
stays up, keeps its forwarder table bounded (the flood's EUIs are refused as `forwarder_table_full`, the
real forwarder stays) and counts every kind of rejection under a bounded set of counter names.
Soak length: scripts/soak.sh gwmpflood.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from drivers.base import DriverState
from drivers.lorawan.forwarders import MAX_FORWARDERS
from gateway.model import Event, EventKind
from tests.integration.lorawan_rig import free_udp_port, rig
from tests.reliability.matrix_rig import ROOT
from tests.support.stats import pct
from tests.support.wait import async_wait_for

SECONDS = float(os.environ.get("GWMP_FLOOD_S", "5"))
RATE = int(os.environ.get("GWMP_FLOOD_RATE", "5000"))
ALARM_EVERY_S = 0.2

SENDER = r"""
import base64, json, random, socket, sys, time
from drivers.lorawan import gwmp, mac
port, rate, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
real_eui = bytes.fromhex(sys.argv[4])
rng = random.Random(16)

def rxpk(phy):
    return gwmp.rxpk_json(phy, rng.randrange(2**32), 470.3, "SF9BW125")

def datagram():
    k = rng.randrange(8)
    eui = rng.randbytes(8)
    if k == 0:
        return rng.randbytes(rng.randrange(1, 300))                                  # noise
    if k == 1:
        return bytes([rng.choice([0, 1, 3, 9])]) + rng.randbytes(3) + eui + b"{}"     # bad version
    if k == 2:
        return gwmp.push_data(rng.randrange(65536), real_eui, None)[:12] + rng.randbytes(40)  # broken JSON
    if k == 3:
        doc = {"rxpk": [{"data": "!!not base64!!", "size": 3, "freq": 470.3, "datr": "SF9BW125"}]}
        return gwmp.push_data(rng.randrange(65536), real_eui, None)[:12] + json.dumps(doc).encode()
    if k == 4:                                                                        # new EUI each time
        return gwmp.push_data(rng.randrange(65536), eui, [rxpk(rng.randbytes(20))])
    if k == 5:
        return gwmp.pull_data(rng.randrange(65536), eui)
    if k == 6:                                                                        # forged: wrong MIC
        phy = mac.build_data(mac.MType.UNCONFIRMED_UP, 0x26011BDA, rng.randrange(65536), rng.randbytes(16),
                             rng.randbytes(16), 0, b"", 85, rng.randbytes(8))
        return gwmp.push_data(rng.randrange(65536), real_eui, [rxpk(phy)])
    phy = mac.build_data(mac.MType.UNCONFIRMED_UP, rng.randrange(2**32), 1, rng.randbytes(16), rng.randbytes(16),
                         0, b"", 85, b"x")
    return gwmp.push_data(rng.randrange(65536), real_eui, [rxpk(phy)])                # unknown DevAddr

total = int(rate * seconds)
pool = [datagram() for _ in range(min(total, 20000))]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
t0 = time.monotonic()
for i in range(total):                       # bounded: stops by itself
    s.sendto(pool[i % len(pool)], ("127.0.0.1", port))
    if i % 50 == 49:                         # paced in bursts of 50
        ahead = t0 + (i + 1) / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
print(total, round(time.monotonic() - t0, 2), flush=True)
"""


class Timed(list):
    """The driver's emit target, stamping when each genuine smoke alarm came out."""

    def __init__(self) -> None:
        super().__init__()
        self.alarm_at: list[float] = []

    def append(self, item: object) -> None:
        if isinstance(item, Event) and item.kind == EventKind.ALARM and item.device_id == "smoke-2-401":
            self.alarm_at.append(time.monotonic())
        super().append(item)


@pytest.mark.slow  # over 5 s (issue 16)
async def test_a_gwmp_flood_is_counted_and_refused_while_every_genuine_alarm_arrives(tmp_path):
    port = free_udp_port()
    items = Timed()
    sender = None
    async with rig(tmp_path, port, keepalive_s=1.0, items=items) as r:
        driver, sim = r.driver, r.sim
        base = dict(driver.health().counters)
        try:
            sender = subprocess.Popen([sys.executable, "-c", SENDER, str(port), str(RATE), str(SECONDS), sim.eui.hex()],
                                      cwd=ROOT, stdout=subprocess.PIPE, text=True)
            sent_at: list[float] = []
            while sender.poll() is None:  # genuine alarms all through the flood
                sent_at.append(time.monotonic())
                sim.report("smoke-2-401", "alarm")
                await asyncio.sleep(ALARM_EVERY_S)
            flood_out = sender.communicate(timeout=30)[0].split()
            await async_wait_for(lambda: len(items.alarm_at) >= len(sent_at), timeout_s=15, what="every genuine alarm")
            health = driver.health()
        finally:
            if sender is not None and sender.poll() is None:
                sender.kill()
                sender.wait(5)
    counters = {k: v - base.get(k, 0) for k, v in health.counters.items()}
    delays_ms = [1000 * (e - s) for s, e in zip(sent_at, items.alarm_at)]
    rejected = {k: v for k, v in counters.items() if k.startswith("reject_")}
    print(f"\nR16 gwmp flood: sent={flood_out[0]} in {flood_out[1]} s, received={counters['datagrams']}, "
          f"alarms={len(sent_at)} delay_ms p50={pct(delays_ms, 50):.1f} p99={pct(delays_ms, 99):.1f} max={max(delays_ms):.1f}, "
          f"forwarders={len(driver.forwarders.by_eui)}, rejected={rejected}")
    assert len(items.alarm_at) == len(sent_at) >= SECONDS / ALARM_EVERY_S / 2
    assert counters.get("internal_errors", 0) == 0 and health.state is not DriverState.DOWN
    assert len(driver.forwarders.by_eui) <= MAX_FORWARDERS and sim.eui.hex() in driver.forwarders.by_eui
    for reason in ("forwarder_table_full", "mic", "unknown_devaddr"):
        assert rejected.get(f"reject_{reason}", 0) > 0, reason
    assert rejected.get("reject_bad_version", 0) > 0 and rejected.get("reject_bad_json", 0) > 0
    # Counter names come from a closed vocabulary: the flood's 25,000 datagrams once minted hundreds of them
    # (reject_bad_version_143, "reject_bad_json: ... (byte 12)") straight into health and the retained status.
    assert len(rejected) <= 16, sorted(rejected)
    # A loaded 2-core CI box shares its cores with the sender and another test worker: the bound is loose here,
    # the figure is printed (docs/RELIABILITY.md records it; R16 asks for p99 <= 50 ms on a quiet machine).
    assert pct(delays_ms, 99) < 1000


pytestmark = pytest.mark.timeout(120)
