"""The Modbus driver: one owner task per bus (serial port or TCP endpoint) that serialises every
transaction: actuator writes first, then on-demand polls, then the poll schedule."""

from __future__ import annotations

import asyncio
import contextlib
import collections
from dataclasses import dataclass, field
from typing import Any

from drivers.base import Command, DriverContext, DriverHealth, DriverState, Emit
from drivers.modbus.config import RtuPort, TcpPort
from drivers.modbus.framing import Request
from drivers.modbus.link import PortLost, Reply, RtuLink, TcpLink
from drivers.modbus.mapping import DeviceMap
from drivers.modbus.poller import COUNTERS, Schedule, SlaveState
from drivers.reopen import Reopen
from gateway.errors import CommandRejected, DeviceTimeout, FrameError, ModbusDeviceError, TransientError
from gateway.model import Event, EventKind, Item, Stamp


@dataclass
class _Job:
    kind: str  # "write" | "poll"
    unit: int
    fut: asyncio.Future[list[Item]]  # a poll's items; [] for a write
    command: Command | None = None
    items: list[Item] = field(default_factory=list)


class ModbusDriver:
    """Driver + Actuator for one [ports.X] of driver modbus_rtu or modbus_tcp."""

    def __init__(self, ctx: DriverContext, tcp: bool) -> None:
        self.name = "modbus_tcp" if tcp else "modbus_rtu"
        self.ctx, self.clock, self.log = ctx, ctx.clock, ctx.log
        self.cfg: RtuPort | TcpPort = ctx.port
        self.maps: dict[int, DeviceMap] = {}
        self.by_id: dict[str, DeviceMap] = {}
        slaves: list[SlaveState] = []
        now = self.clock.monotonic()
        for dev in ctx.devices:
            m = DeviceMap(dev.id, int(dev.address), ctx.profiles[dev.profile], self.name)
            self.maps[m.unit], self.by_id[dev.id] = m, m
            slaves.append(SlaveState(m.unit, m.profile.poll_period_s or self.cfg.poll_period_s, now))
        self.schedule = Schedule(slaves, self.cfg.backoff_cap_s, self.cfg.offline_after, self.cfg.catch_up_periods)
        self.link: RtuLink | TcpLink = TcpLink(ctx.port, self.clock, self._count) if tcp else RtuLink(ctx.port, self.clock, self._count)
        self._writes: collections.deque[_Job] = collections.deque()
        self._polls: collections.deque[_Job] = collections.deque()
        self._wake = asyncio.Event()
        self._emit: Emit | None = None
        self._last_ok: Stamp | None = None
        self._port_error = ""
        # Bytes rejected with no request pending belong to no slave; still counted (F2: every reject shows).
        self._unattributed: dict[str, int] = dict.fromkeys(COUNTERS, 0)

    # -- public API ---------------------------------------------------------------------------

    async def write(self, command: Command) -> None:
        """Write a profile output (e.g. "sounder") ahead of any poll; verified by read-back.
        Raises CommandRejected, ModbusDeviceError, DeviceTimeout or PortLost."""
        m = self._device(command.device_id)
        m.output(command.target)  # reject unknown outputs before queueing
        await self._submit(self._writes, _Job("write", m.unit, self._future(), command))

    async def poll(self, device_id: str) -> list[Item]:
        """Poll one device now (after pending writes); returns and emits its Readings/Events."""
        m = self._device(device_id)
        return await self._submit(self._polls, _Job("poll", m.unit, self._future()))

    def health(self) -> DriverHealth:
        slaves = self.schedule.slaves.values()
        totals = {k: sum(s.counters[k] for s in slaves) + self._unattributed[k] for k in COUNTERS}
        totals["port_opens"] = self.link.opens
        offline = [s for s in slaves if s.online is False]
        if not self.link.is_open:
            state = DriverState.DOWN
        elif offline:
            state = DriverState.DEGRADED
        else:
            state = DriverState.OK if self._last_ok else DriverState.STARTING
        detail: dict[str, Any] = {"port_open": self.link.is_open, "port_error": self._port_error, "slaves": {
            self.maps[s.unit].device_id: {"unit": s.unit, "state": s.state, "failures": s.failures,
                                          "last_error": s.last_error, **s.counters} for s in slaves}}
        return DriverHealth(state, self._last_ok, totals, detail)

    async def run(self, emit: Emit) -> None:
        """Own the bus until cancelled; reopen a vanished port with jittered capped backoff (drivers.reopen)."""
        self._emit = emit
        reopen = Reopen(self.log, self.cfg.reopen_cap_s)
        try:
            while True:
                try:
                    await self.link.open()
                except PortLost as exc:
                    await self._sleep_down(self._port_down(reopen, exc))
                    continue
                reopen.opened()
                self._port_error = ""
                try:
                    await self._serve()
                except PortLost as exc:
                    await self._sleep_down(self._port_down(reopen, exc))
        finally:
            self.link.close()
            self._emit = None
            for job in (*self._writes, *self._polls):
                if not job.fut.done():
                    job.fut.set_exception(TransientError("driver stopped"))

    # -- the bus owner ------------------------------------------------------------------------

    async def _serve(self) -> None:
        while True:
            if self._writes:
                await self._run_job(self._writes.popleft())
                continue
            if self._polls:
                await self._run_job(self._polls.popleft())
                continue
            now = self.clock.monotonic()
            slave = self.schedule.due(now)
            if slave is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):  # asyncio.timeout: wait_for can lose a cancel on 3.11 (gh-86296)
                    async with asyncio.timeout(max(0.0, self.schedule.next_wake() - now)):
                        await self._wake.wait()
                continue
            await self._poll_slave(slave)

    async def _run_job(self, job: _Job) -> None:
        if job.fut.done():  # the caller gave up (cancelled)
            return
        try:
            if job.kind == "write":
                assert job.command is not None  # a write job always carries its command
                await self._do_write(job.command)
            else:
                await self._poll_slave(self.schedule.slaves[job.unit], job.items)
            job.fut.set_result(job.items)
        except PortLost as exc:
            job.fut.set_exception(exc)
            raise
        except (DeviceTimeout, ModbusDeviceError, FrameError, CommandRejected) as exc:
            job.fut.set_exception(exc)

    async def _poll_slave(self, s: SlaveState, collect: list[Item] | None = None) -> None:
        """One poll: every block of the slave's plan; writes may overtake between blocks."""
        m = self.maps[s.unit]
        s.busy = True
        s.counters["polls"] += 1
        error = ""
        try:
            for block, req in zip(m.blocks, m.requests()):
                try:
                    values, stamp = await self._transact(s, req)
                except ModbusDeviceError as exc:  # alive but refusing: not an offline condition
                    s.counters["exceptions"] += 1
                    self._first_warning(s, "slave_exception", str(exc))
                    continue
                except (DeviceTimeout, FrameError) as exc:
                    error = str(exc)
                    break
                items, problems = m.items(block, values, stamp)
                s.counters["invalid_values"] += len(problems)
                for item in items:
                    self._emit_item(item, collect)
                self._last_ok = stamp
                while self._writes:  # an alarm sounder never waits for the rest of a poll cycle
                    await self._run_job(self._writes.popleft())
        finally:
            s.busy = False
        self._settle(s, m, error, collect)

    def _settle(self, s: SlaveState, m: DeviceMap, error: str, collect: list[Item] | None) -> None:
        """Count an answered or unanswered exchange with the slave: offline/online events on the edges."""
        now = self.clock.monotonic()
        if error:
            self._first_warning(s, "slave_no_answer", error)
            if self.schedule.failed(s, now, error):
                self.log.warning("slave_offline", device_id=m.device_id, unit=s.unit, failures=s.failures, error=error)
                self._emit_item(Event(m.device_id, EventKind.OFFLINE, self.clock.now(), code="no_response",
                                      detail={"failures": s.failures, "error": error}, via=self.name), collect)
        else:
            s.counters["ok"] += 1
            if self.schedule.succeeded(s, now):
                self.log.info("slave_online", device_id=m.device_id, unit=s.unit)
                self._emit_item(Event(m.device_id, EventKind.ONLINE, self._last_ok or self.clock.now(),
                                      code="answered", via=self.name), collect)

    async def _transact(self, s: SlaveState, req: Request) -> Reply:
        """One request with the retry policy: re-send only after a corrupted/mismatched reply."""
        for attempt in range(self.cfg.retries + 1):
            try:
                return await self.link.transact(req, self.cfg.timeout_s)
            except DeviceTimeout:
                s.counters["timeouts"] += 1
                raise
            except FrameError as exc:
                if exc.reason != "bad_crc":
                    s.counters["garbage"] += 1
                if attempt == self.cfg.retries:
                    raise
        raise AssertionError("unreachable")

    async def _do_write(self, command: Command) -> None:
        m = self.by_id[command.device_id]
        s = self.schedule.slaves[m.unit]
        write, read, expect = m.write_requests(command.target, command.value)
        s.counters["writes"] += 1
        try:
            await self._transact(s, write)
            if read is not None:
                got, _ = await self._transact(s, read)
                if list(got[: len(expect)]) != list(expect):
                    raise CommandRejected("readback_mismatch", f"{m.device_id}.{command.target}: wrote {expect}, read back {got}")
        except (DeviceTimeout, ModbusDeviceError, FrameError, CommandRejected) as exc:
            s.counters["write_errors"] += 1
            self.log.warning("write_failed", device_id=m.device_id, target=command.target, error=str(exc))
            if isinstance(exc, DeviceTimeout):
                # A relay box that does not answer its sounder write is offline, even if writes retried
                # every second leave no bus time for its polls (issue 15 matrix: relay box silent).
                self._settle(s, m, str(exc), None)
            raise
        self.log.info("output_written", device_id=m.device_id, target=command.target, value=command.value, reason=command.reason)

    # -- helpers ------------------------------------------------------------------------------

    def _count(self, unit: int, name: str) -> None:
        s = self.schedule.slaves.get(unit)
        (s.counters if s is not None else self._unattributed)[name] += 1

    def _emit_item(self, item: Item, collect: list[Item] | None) -> None:
        if collect is not None:
            collect.append(item)
        if self._emit is not None:
            self._emit(item)

    def _first_warning(self, s: SlaveState, event: str, error: str) -> None:
        # First failure WARNING, repeats DEBUG (STYLE "Errors and logging").
        level = self.log.warning if s.failures == 0 and s.online is not False else self.log.debug
        level(event, device_id=self.maps[s.unit].device_id, unit=s.unit, error=error)

    def _port_down(self, reopen: Reopen, exc: Exception) -> float:
        """Report the lost port, fail what waits on it; return the seconds to wait before reopening."""
        delay_s = reopen.failed("port_lost", exc)
        self._port_error = str(exc)
        for job in (*self._writes, *self._polls):  # an actuator must learn now, not after the reopen
            if not job.fut.done():
                job.fut.set_exception(PortLost(str(exc)))
        self._writes.clear()
        self._polls.clear()
        return delay_s

    async def _sleep_down(self, delay_s: float) -> None:
        """While the port is down, due polls count as failures so devices go offline on time."""
        deadline = self.clock.monotonic() + delay_s
        while (now := self.clock.monotonic()) < deadline:
            while (s := self.schedule.due(now)) is not None:
                m = self.maps[s.unit]
                if self.schedule.failed(s, now, self._port_error):
                    self._emit_item(Event(m.device_id, EventKind.OFFLINE, self.clock.now(), code="port_lost",
                                          detail={"error": self._port_error}, via=self.name), None)
            await asyncio.sleep(min(deadline - now, max(0.01, self.schedule.next_wake() - now)))

    def _device(self, device_id: str) -> DeviceMap:
        m = self.by_id.get(device_id)
        if m is None:
            raise CommandRejected("unknown_device", f"{device_id!r} is not on port {self.ctx.port_name}")
        return m

    def _future(self) -> asyncio.Future[list[Item]]:
        if self._emit is None:
            raise TransientError(f"modbus port {self.ctx.port_name} is not running")
        return asyncio.get_running_loop().create_future()

    async def _submit(self, queue: collections.deque[_Job], job: _Job) -> list[Item]:
        if not self.link.is_open:
            raise PortLost(f"port {self.ctx.port_name} is down: {self._port_error}")
        queue.append(job)
        self._wake.set()
        return await job.fut
