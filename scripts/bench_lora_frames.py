"""Bench: LoRa deframer throughput (keyed MIC frames, encrypted, with RSSI bytes) and random-noise rate.
Run: .venv/bin/python scripts/bench_lora_frames.py"""

from __future__ import annotations

import random
import time

from drivers.codecs import smoke
from drivers.lora.frame import Deframer, FrameType, encode, sub_packets

KEY = bytes(range(16))


def main() -> None:
    keys = {i: KEY for i in range(1, 201)}
    payload = smoke.encode(smoke.SmokeReport("heartbeat", battery_pct=90))
    frames = [b"".join(p + b"\xb0" for p in sub_packets(encode(1 + i % 200, i & 0xFFFF, FrameType.REPORT, payload, KEY, True)))
              for i in range(20_000)]
    data = b"".join(frames)
    d = Deframer(keys)
    t = time.perf_counter()
    for i in range(0, len(data), 256):
        d.feed(data[i: i + 256])
    dt = time.perf_counter() - t
    print(f"valid frames: {d.frames} in {dt:.2f} s = {d.frames / dt:,.0f} frames/s ({len(data) / dt / 1024:,.0f} KiB/s)")
    noise = random.Random(1).randbytes(1_000_000)
    d = Deframer(keys)
    t = time.perf_counter()
    for i in range(0, len(noise), 256):
        d.feed(noise[i: i + 256])
    d.expire()
    dt = time.perf_counter() - t
    print(f"random noise: {len(noise) / dt / 1024:,.0f} KiB/s, rejects {sum(d.rejects.values())}, discarded {d.discarded_bytes}")


if __name__ == "__main__":
    main()
