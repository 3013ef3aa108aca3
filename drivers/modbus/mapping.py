"""One configured device on a bus: its profile's read plan, and how a block reply becomes a
Reading plus the Events of flag bits that changed. Sans-IO; the stamp comes with the reply."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drivers.modbus.config import ModbusProfile, OutputSpec
from drivers.modbus.framing import Request
from drivers.modbus.registers import Block, decode_block, encode, plan
from gateway.errors import CommandRejected
from gateway.model import Event, Item, Reading, Stamp


@dataclass
class DeviceMap:
    device_id: str
    unit: int
    profile: ModbusProfile
    via: str
    blocks: list[Block] = field(init=False)
    flag_state: dict[tuple[str, int], bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.blocks = plan(self.profile)

    def requests(self) -> list[Request]:
        return [Request(self.unit, b.function, b.address, b.count) for b in self.blocks]

    def items(self, block: Block, values: list[int] | list[bool], stamp: Stamp) -> tuple[list[Item], list[str]]:
        """The Reading of one block reply and Events for flags that changed in it."""
        fields, problems = decode_block(block, values, self.profile)
        out: list[Item] = []
        if fields:
            out.append(Reading(self.device_id, stamp, fields, via=self.via))
        for flag in self.profile.flags:
            if flag.source not in fields:
                continue
            on = bool(int(fields[flag.source]) >> flag.bit & 1)
            key = (flag.source, flag.bit)
            was = self.flag_state.get(key)
            self.flag_state[key] = on
            # First sight: report a set flag (it may be why we are here), not a clear one.
            if on and not was:
                out.append(Event(self.device_id, flag.kind, stamp, code=flag.code, via=self.via))
            elif was and not on and flag.cleared is not None:
                out.append(Event(self.device_id, flag.cleared, stamp, code=flag.code, via=self.via))
        return out, problems

    def output(self, target: str) -> OutputSpec:
        spec = self.profile.outputs.get(target)
        if spec is None:
            known = ", ".join(sorted(self.profile.outputs)) or "none"
            raise CommandRejected("unknown_output", f"{self.device_id} has no output {target!r} (outputs: {known})")
        return spec

    def write_requests(self, target: str, value: Any) -> tuple[Request, Request | None, list[int] | list[bool]]:
        """The write request, the read-back request (or None) and the values expected back."""
        spec = self.output(target)
        if spec.function in (5, 15):
            bit = 1 if _truthy(value) else 0
            read = Request(self.unit, 1, spec.address, 1)
            return Request(self.unit, spec.function, spec.address, 1, (bit,)), read if spec.verify else None, [bool(bit)]
        try:
            regs = encode(spec.type, float(value), spec.scale, 0.0, self.profile.byte_order, self.profile.word_order)
        except (TypeError, ValueError) as exc:
            raise CommandRejected("bad_value", f"{target}: {exc}") from None
        read = Request(self.unit, 3, spec.address, len(regs))
        return Request(self.unit, spec.function, spec.address, len(regs), tuple(regs)), read if spec.verify else None, regs


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("on", "true", "1"):
            return True
        if v in ("off", "false", "0"):
            return False
        raise CommandRejected("bad_value", f"{value!r} is not on/off")
    return bool(value)
