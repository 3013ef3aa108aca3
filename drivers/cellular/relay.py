"""The platform-relay path: NB-IoT reports the operator platform received, relayed by the street platform
on `cg/v1/<gateway_id>/relay` (protocols.md §1.1 option 2). The MQTT uplink authenticates the message
like a downlink command and calls `submit(body)`; the report then takes the modem path's codec and de-dup.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from structlog.typing import FilteringBoundLogger

from drivers.cellular.info import MAX_DATAGRAM
from drivers.cellular.ingest import Ingest
from gateway.clock import Clock
from gateway.errors import CodecError, CommandRejected, FrameError
from gateway.model import Item, Stamp

VIA = "platform-relay"
_HEX = re.compile(r"^(?:[0-9A-Fa-f]{2})+$")
# Platform time further than this from ours is not believed (a wrong platform clock must not
# back-date an alarm by days); the arrival stamp is used instead and the disagreement counted.
MAX_SKEW_S = 24 * 3600.0


class RelayIngest:
    """`submit({"imei" | "device_id": ..., "payload_hex": "a501...", "platform_time": 1790000000.5})`.

    Returns {"device_id", "duplicate", "items", "replay_suspect"}; raises CommandRejected("bad_body" | "unknown_device" |
    "bad_payload", detail) so the uplink can answer the platform with the reason.
    """

    def __init__(self, ingest: Ingest, emit: Callable[[Item], None], clock: Clock, log: FilteringBoundLogger) -> None:
        self.ingest, self.emit, self.clock, self.log = ingest, emit, clock, log

    def submit(self, body: Any) -> dict[str, Any]:
        counters = self.ingest.counters
        counters["relay_submitted"] += 1
        try:
            payload, device_id, imei, stamp = self._check(body)
            accepted = self.ingest.accept(payload, VIA, device_id=device_id, imei=imei, stamp=stamp)
        except CommandRejected as exc:
            counters["relay_rejected"] += 1
            self.log.warning("relay_rejected", reason=exc.reason, detail=exc.detail)
            raise
        except (FrameError, CodecError) as exc:
            counters["relay_rejected"] += 1
            reason = "unknown_device" if "unknown IMEI" in str(exc) else "bad_payload"
            self.log.warning("relay_rejected", reason=reason, detail=str(exc))
            raise CommandRejected(reason, str(exc)) from None
        if accepted.replay_suspect:
            self.log.warning("replay_suspect", device_id=accepted.device.id, via=VIA, items=len(accepted.items))
        for item in accepted.items:
            self.emit(item)
        return {"device_id": accepted.device.id, "duplicate": accepted.duplicate, "items": len(accepted.items),
                "replay_suspect": accepted.replay_suspect}

    def _check(self, body: Any) -> tuple[bytes, str, str, Stamp]:
        if not isinstance(body, dict):
            raise CommandRejected("bad_body", "relay body must be a JSON object")
        unknown = set(body) - {"device_id", "imei", "payload_hex", "platform_time"}
        if unknown:
            raise CommandRejected("bad_body", f"unknown keys {sorted(unknown)}")
        device_id, imei = body.get("device_id", ""), body.get("imei", "")
        if not isinstance(device_id, str) or not isinstance(imei, str) or not (device_id or imei):
            raise CommandRejected("bad_body", "give device_id or imei as a string")
        if device_id and device_id not in self.ingest.by_id:
            raise CommandRejected("unknown_device", f"{device_id!r} is not an NB-IoT device of this gateway")
        if imei and imei not in self.ingest.by_imei:
            raise CommandRejected("unknown_device", f"IMEI {imei!r} is not configured on this gateway")
        hexdata = body.get("payload_hex")
        if not isinstance(hexdata, str) or not _HEX.match(hexdata) or len(hexdata) > 2 * MAX_DATAGRAM:
            raise CommandRejected("bad_body", f"payload_hex must be 1..{MAX_DATAGRAM} bytes of hex")
        return bytes.fromhex(hexdata), device_id, imei, self._stamp(body.get("platform_time"))

    def _stamp(self, platform_time: Any) -> Stamp:
        now = self.clock.now()
        if platform_time is None:
            return now
        if isinstance(platform_time, bool) or not isinstance(platform_time, (int, float)):
            raise CommandRejected("bad_body", "platform_time must be UNIX seconds (a number)")
        if now.clock_synced and abs(platform_time - now.wall_s) > MAX_SKEW_S:
            self.ingest.counters["relay_time_skewed"] += 1
            return now
        # The platform's clock is NTP-disciplined: its time of receipt is when the sensor reported.
        return Stamp(float(platform_time), now.boot_id, now.mono_ns, True)
