"""F2 for the serial drivers (reliability.md §7): 100,000 random and mutated frames into the live Modbus RTU
driver while it polls a simulated slave, and 100,000 random / mutated lines into the live NB-IoT driver.

What must hold: no crash (the driver task stays alive, its port open), garbage shows in health() counters,
no value is ever taken from a corrupt frame, and real traffic (polls, a real datagram) works afterwards.
F2_FRAMES sets the count (scripts/soak.sh `serialflood` runs more).
"""

from __future__ import annotations

import asyncio
import os
import random
import time

import pytest

from drivers.modbus.framing import rtu_adu
from gateway.model import EventKind, Reading
from tests.integration.cellular_support import nbiot_rig
from tests.integration.test_modbus_rtu import rig as modbus_rig
from tests.support.wait import async_wait_for

FRAMES = int(os.environ.get("F2_FRAMES", "100000"))
BATCH = 2000
MODBUS_BURST = 50  # bursts of noise between and into the polls
RELAY = 10  # a guard relay box: every input and output is 0 in the simulator, so any 1 seen came from noise

pytestmark = pytest.mark.timeout(180)


async def inject(fd_of, data: bytes) -> None:
    """Write from the device side with back-pressure: a pty holds only a few kB."""
    view = memoryview(data)
    deadline = time.monotonic() + 30  # a driver that stopped reading must fail the test, not hang it
    while view:
        try:
            view = view[os.write(fd_of(), view):]
        except BlockingIOError:
            assert time.monotonic() < deadline, "the driver stopped reading its port"
            await asyncio.sleep(0.002)


def flip(rng: random.Random, raw: bytes) -> bytes:
    """1-3 DISTINCT bits flipped: flipping one bit twice would restore the valid frame (a real reply)."""
    b = bytearray(raw)
    for bit in rng.sample(range(len(b) * 8), rng.randint(1, 3)):
        b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def modbus_flood(rng: random.Random, n: int) -> list[bytes]:
    """Half random bytes; half relay-box replies claiming every bit set, each damaged by 1-3 bit flips
    (CRC-16 catches every 1-3 bit error in a frame this short, so none may be accepted)."""
    valid = [rtu_adu(RELAY, bytes([fc, 1, 0xFF])) for fc in (1, 2)] + [rtu_adu(RELAY, bytes([3, 2, 0x7F, 0xFF]))]
    return [rng.randbytes(rng.randint(1, 40)) if i % 2 else flip(rng, rng.choice(valid)) for i in range(n)]


REJECTS = ("crc_errors", "garbage", "truncated", "unexpected_replies", "late_discarded")


@pytest.mark.slow  # over 5 s (issue 16)
async def test_modbus_rtu_100k_corrupt_frames_while_polling_no_value_accepted_and_polls_recover(tmp_path):
    frames = modbus_flood(random.Random(1129), FRAMES)
    # Polled every 50 ms (the relay box profile's own 1 s too) and a short backoff cap: the test sees the
    # slave polled and retried often, during the flood and in the recovery after it.
    async with modbus_rig(str(tmp_path / "ttyMB"), None, {RELAY: "guard_relay_box"}, poll_period_s=0.05,
                          profile_poll_s=0.05, backoff_cap_s=0.5) as r:
        await async_wait_for(lambda: r.driver.health().counters["ok"] >= 3, 15, what="first polls")
        before = r.driver.health().counters
        for at in range(0, len(frames), MODBUS_BURST):
            await inject(lambda: r.sim._fd, b"".join(frames[at : at + MODBUS_BURST]))
            await asyncio.sleep(0.005)  # a continuous stream keeps the bus busy (no 3.5-char gap): no poll could start
        assert not r.task.done(), "the driver task ended during the flood"
        h = r.driver.health()
        rejected = sum(h.counters[k] - before[k] for k in REJECTS)
        assert h.detail["port_open"] and h.counters["port_opens"] == 1  # never dropped the port for noise
        # One count per rejected run of bytes (a read chunk of noise is one run), so fewer than frames.
        assert rejected >= FRAMES // MODBUS_BURST, h.counters  # the flood shows in health, not just in logs
        assert h.counters["polls"] - before["polls"] >= 5, (h.counters, r.slave(f"d{RELAY}"))  # it kept polling
        ok_after = h.counters["ok"]
        await async_wait_for(lambda: r.driver.health().counters["ok"] >= ok_after + 10, 15, what="polls after the flood")
        assert r.slave(f"d{RELAY}")["state"] == "ok"
        readings = [i for i in r.items if isinstance(i, Reading)]
        assert readings
        bad = [i for i in readings if any(v not in (0, False) for v in i.values.values())]
        assert not bad, f"values accepted from corrupt frames: {bad[:5]}"
        print(f"\nF2 modbus_rtu: frames_injected={FRAMES} bytes={sum(map(len, frames))} rejected={rejected} "
              f"polls={h.counters['polls'] - before['polls']} ok_during={h.counters['ok'] - before['ok']} "
              + " ".join(f"{k}={h.counters[k] - before[k]}" for k in REJECTS))


AT_LINES = ("OK", "ERROR", "+CSCON:1", "+CEREG:1", "+NSONMI:1,24", "+CME ERROR: 4", "RDY", "+NPSMR:0")


def at_flood(rng: random.Random, n: int) -> list[bytes]:
    """Half random byte lines, half real modem lines with 1-3 bit flips; every one CRLF-terminated."""
    out = []
    for i in range(n):
        body = rng.randbytes(rng.randint(1, 60)) if i % 2 else flip(rng, rng.choice(AT_LINES).encode())
        out.append(b"\r\n" + body.replace(b"\r", b"").replace(b"\n", b"") + b"\r\n")
    return out


@pytest.mark.slow  # over 5 s (issue 16)
async def test_nbiot_100k_corrupt_at_lines_counted_and_a_real_datagram_still_decoded(tmp_path):
    lines = at_flood(random.Random(2911), FRAMES)
    # A mutated line can be a well-formed final ("+CME ERROR: 0" to AT+CPIN?): AT has no CRC, so the driver
    # may rightly close the port and re-initialise; a short reopen cap keeps the flood flowing meanwhile
    # (1 s made the flood wait out ~85 reopens of 0.5-1 s: 50 s of the test's 55; at 0.1 s it takes ~8 s).
    async with nbiot_rig(tmp_path, reopen_cap_s=0.1) as rig:
        base = rig.driver.health().counters
        for at in range(0, len(lines), BATCH):
            await inject(lambda: rig.sim._fd, b"".join(lines[at : at + BATCH]))
        assert not rig.task.done(), "the driver task ended during the flood"
        h = rig.driver.health().counters
        garbage = h.get("at_garbage_lines", 0) - base.get("at_garbage_lines", 0)
        odd = sum(h.get(k, 0) - base.get(k, 0) for k in ("at_unexpected_lines", "at_unknown_urcs", "at_stray_finals"))
        assert garbage > FRAMES // 4, h
        assert not rig.events(EventKind.ALARM)  # nothing invented from the noise
        s = list(rig.sim.sensors.values())[0]
        await async_wait_for(lambda: rig.driver.health().state == "ok", 30, what="driver ok after the flood")
        seq = s.trigger("alarm")
        await async_wait_for(lambda: seq in s.acked, 20, what="a real alarm acked after the flood")
        (alarm,) = await async_wait_for(lambda: rig.events(EventKind.ALARM), 10, what="alarm event")
        assert alarm.device_id == "smoke-1"
        print(f"\nF2 nbiot AT: lines_injected={FRAMES} bytes={sum(map(len, lines))} garbage_lines={garbage} "
              f"other_rejected={odd} reinits={h.get('reinits', 0)}")
