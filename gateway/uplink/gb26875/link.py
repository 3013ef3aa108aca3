"""One TCP connection to the centre: the deframer on the read side, stop-and-wait with retransmission
on the send side (GB/T 26875.3 §6.5: a sent frame is confirmed (3) or denied (6) under its own serial;
unanswered, it is sent again, byte for byte, up to `retries` times)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

from gateway.errors import FrameError, UplinkError
from gateway.uplink.gb26875.frame import Command, Deframer, Frame, SerialCounter, encode

READ_CHUNK = 4096


class Denied(UplinkError):
    """The centre denied the frame on every attempt: a permanent answer for this frame."""


class Link:
    """Owns the stream pair while connected. `on_request(frame)` gets every frame that is not an answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cfg: Any, serials: SerialCounter,
                 now_local: Callable[[], dt.datetime], on_request: Callable[[Frame], None], counters: dict[str, int],
                 log: Any) -> None:
        self.reader, self.writer = reader, writer
        self.cfg = cfg
        self.serials = serials
        self.now_local = now_local
        self.on_request = on_request
        self.counters = counters
        self.log = log
        self._deframer = Deframer()
        self._waiting: dict[int, asyncio.Future[Command]] = {}
        self._rejects = 0

    def frame(self, serial: int, command: Command, data: bytes = b"") -> Frame:
        return Frame(serial, command, self.cfg.source_address, self.cfg.destination_address, self.now_local(), data)

    async def read_loop(self) -> None:
        """Until the peer closes (returns) or the socket fails (raises OSError)."""
        while True:
            data = await self.reader.read(READ_CHUNK)
            if not data:
                return
            for item in self._deframer.feed(data):
                if isinstance(item, FrameError):
                    self._reject(item)
                else:
                    self._dispatch(item)

    def _reject(self, err: FrameError) -> None:
        self.counters["frames_rejected"] += 1
        level = self.log.warning if self._rejects == 0 else self.log.debug
        self._rejects += 1
        level("frame_rejected", reason=err.reason, first_bytes=err.data.hex(" "))

    def _dispatch(self, frame: Frame) -> None:
        self.counters["frames_received"] += 1
        self.log.debug("frame_received", serial=frame.serial, command=frame.command.name)
        if frame.command in (Command.CONFIRM, Command.DENY):
            fut = self._waiting.get(frame.serial)
            if fut is None or fut.done():
                self.counters["answers_unmatched"] += 1  # late answer to a frame we already resent or gave up
                return
            fut.set_result(frame.command)
            return
        self.on_request(frame)

    def answer(self, request: Frame, command: Command) -> None:
        """Confirm or deny a centre request: same serial, no application data (§6.4)."""
        self.writer.write(encode(self.frame(request.serial, command)))

    async def exchange(self, data: bytes, what: str) -> None:
        """Send one SEND_DATA frame until confirmed. Raises Denied (every attempt denied) or UplinkError
        (no answer after all retries: the link is presumed dead)."""
        serial = self.serials.next()
        raw = encode(self.frame(serial, Command.SEND_DATA, data))  # retransmissions reuse these bytes
        denies = 0
        loop = asyncio.get_running_loop()
        try:
            for attempt in range(self.cfg.retries + 1):
                fut: asyncio.Future[Command] = loop.create_future()
                self._waiting[serial] = fut
                if attempt:
                    self.counters["retransmits"] += 1
                self.writer.write(raw)
                await self.writer.drain()
                self.counters["frames_sent"] += 1
                self.log.debug("frame_sent", serial=serial, what=what, attempt=attempt, hex=raw.hex())
                try:
                    async with asyncio.timeout(self.cfg.ack_timeout_s):
                        answer = await fut
                except TimeoutError:
                    continue
                if answer is Command.CONFIRM:
                    self.counters["confirms"] += 1
                    return
                self.counters["denies"] += 1
                denies += 1
                # A deny is an answer, not a loss: wait before asking again so a busy centre is not hammered.
                await asyncio.sleep(self.cfg.ack_timeout_s)
        finally:
            self._waiting.pop(serial, None)
        if denies == self.cfg.retries + 1:
            raise Denied(f"centre denied {what} {denies} times")
        raise UplinkError(f"no confirm for {what} after {self.cfg.retries + 1} sends")

    async def close(self) -> None:
        for fut in self._waiting.values():
            if not fut.done():
                fut.cancel()
        self.writer.close()
        try:
            async with asyncio.timeout(1.0):
                await self.writer.wait_closed()
        except (OSError, TimeoutError):
            pass
