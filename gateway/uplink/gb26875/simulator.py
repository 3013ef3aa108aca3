"""A district fire remote-monitoring centre on 127.0.0.1, for tests and the demo.

Confirms, denies or ignores what the gateway sends (`mode`, switchable live), records every frame it
received (retransmissions included), and sends time sync (type 90) and operator checks (type 91).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
import time
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

import click

from gateway.errors import FrameError
from gateway.uplink.gb26875.frame import Command, Deframer, Frame, SerialCounter, encode, local_time
from gateway.uplink.gb26875.objects import Object, OperatorCheck, TimeSync, TypeFlag, decode_adu, encode_adu

MODES = ("confirm", "deny", "silent")


@dataclass
class Received:
    frame: Frame
    flag: TypeFlag | None
    objects: list[Object]
    at_mono_s: float = field(default_factory=time.monotonic)


class Centre:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, mode: str = "confirm", address: int = 0x010203040506,
                 timezone: str = "Asia/Shanghai") -> None:
        self.host, self.port = host, port
        self.mode = mode
        self.address = address
        self.tz = zoneinfo.ZoneInfo(timezone)
        self.received: list[Received] = []
        self.answers: dict[int, Command] = {}  # our request serial -> the gateway's confirm/deny
        self.rejected: list[FrameError] = []
        self.connections = 0
        self._serials = SerialCounter(0x8000)  # far from the gateway's, so logs are easy to read
        self._writers: set[asyncio.StreamWriter] = set()
        self._clients: set[asyncio.Task[Any]] = set()  # the server's client tasks, as current_task() gives them
        self._server: asyncio.Server | None = None

    async def start(self) -> "Centre":
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and drop every connection (the centre goes down)."""
        if self._server is not None:
            self._server.close()
            self.drop_connections()
            # Let each connection handler see its EOF and return: a handler still pending when the loop
            # ends is cancelled, and Python 3.11's stream callback then prints a CancelledError traceback
            # at every demo stop (issue 18).
            if self._clients:
                await asyncio.wait(set(self._clients), timeout=1.0)
            await self._server.wait_closed()
            self._server = None

    def drop_connections(self) -> None:
        for w in list(self._writers):
            w.close()

    @property
    def connected(self) -> int:
        return len(self._writers)

    def data_frames(self, flag: TypeFlag | None = None) -> list[Received]:
        return [r for r in self.received if r.frame.command == Command.SEND_DATA and (flag is None or r.flag == flag)]

    async def send_time_sync(self, when: dt.datetime | None = None) -> int:
        return await self._request(TypeFlag.TIME_SYNC, [TimeSync(when or local_time(time.time(), self.tz))])

    async def send_operator_check(self, window_min: int = 0) -> int:
        return await self._request(TypeFlag.OPERATOR_CHECK, [OperatorCheck(window_min)])

    async def _request(self, _flag: TypeFlag, objects: list[Object]) -> int:
        serial = self._serials.next()
        raw = encode(Frame(serial, Command.CONTROL, self.address, 0, local_time(time.time(), self.tz), encode_adu(objects)))
        for w in list(self._writers):
            w.write(raw)
            await w.drain()
        return serial

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
            task.add_done_callback(self._clients.discard)
        self._writers.add(writer)
        self.connections += 1
        deframer = Deframer()
        try:
            while data := await reader.read(4096):
                for item in deframer.feed(data):
                    if isinstance(item, FrameError):
                        self.rejected.append(item)
                    else:
                        self._on_frame(item, writer)
        except OSError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def _on_frame(self, frame: Frame, writer: asyncio.StreamWriter) -> None:
        if frame.command in (Command.CONFIRM, Command.DENY):
            self.answers[frame.serial] = frame.command
            self.received.append(Received(frame, None, []))
            return
        try:
            flag, objects = decode_adu(frame.data)
        except FrameError as exc:
            self.rejected.append(exc)
            flag, objects = None, []
        self.received.append(Received(frame, flag, objects))
        if self.mode == "silent":
            return
        command = Command.CONFIRM if self.mode == "confirm" and flag is not None else Command.DENY
        writer.write(encode(Frame(frame.serial, command, self.address, frame.source, local_time(time.time(), self.tz))))


def _describe(r: Received) -> dict[str, Any]:
    objs = [{k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in vars(o).items()} for o in r.objects]
    return {"serial": r.frame.serial, "command": r.frame.command.name, "type": r.flag.name if r.flag else None, "objects": objs}


@click.command("gb26875-centre")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="0 = any free port (printed)")
@click.option("--mode", type=click.Choice(MODES), default="confirm", show_default=True)
@click.option("--time-sync-every", type=float, default=0.0, help="send a time sync (type 90) every S seconds")
@click.option("--operator-check-every", type=float, default=0.0, help="send a 查岗 (type 91) every S seconds")
@click.option("--window-min", type=click.IntRange(0, 255), default=10, show_default=True, help="查岗 answer window")
def cli(host: str, port: int, mode: str, time_sync_every: float, operator_check_every: float, window_min: int) -> None:
    """A simulated GB/T 26875.3 monitoring centre. Prints what it receives as JSON lines.

    Type on stdin to steer it live: confirm | deny | silent | sync | check | drop.
    """

    async def main() -> None:
        centre = await Centre(host, port, mode).start()
        click.echo(f"gb26875 centre on {host}:{centre.port} mode={mode}", err=True)
        tasks = [asyncio.create_task(_print_received(centre))]
        if time_sync_every > 0:
            tasks.append(asyncio.create_task(_every(time_sync_every, centre.send_time_sync)))
        if operator_check_every > 0:
            tasks.append(asyncio.create_task(_every(operator_check_every, lambda: centre.send_operator_check(window_min))))
        try:
            await _steer(centre, window_min)
            await asyncio.Event().wait()  # stdin closed: keep serving until interrupted
        finally:
            for t in tasks:
                t.cancel()
            await centre.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass


async def _every(period_s: float, fn: Any) -> None:
    while True:
        await asyncio.sleep(period_s)
        await fn()


async def _print_received(centre: Centre) -> None:
    shown = 0
    while True:
        while shown < len(centre.received):
            click.echo(json.dumps(_describe(centre.received[shown]), ensure_ascii=False))
            shown += 1
        await asyncio.sleep(0.05)


async def _steer(centre: Centre, window_min: int) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except (ValueError, OSError):
        return  # stdin is not a pipe or terminal (e.g. /dev/null under some runners)
    while raw := await reader.readline():
        line = raw.decode(errors="replace").strip().lower()
        if line in MODES:
            centre.mode = line
        elif line == "sync":
            await centre.send_time_sync()
        elif line == "check":
            await centre.send_operator_check(window_min)
        elif line == "drop":
            centre.drop_connections()
        click.echo(f"centre: {line} (mode={centre.mode})", err=True)
