"""The control socket validates every request, refuses callers without access, and survives abuse."""

import asyncio
import json
import os
import shutil
import stat
import sys

from gateway import log as logsetup
from gateway.control.server import ControlServer
from gateway.errors import CommandRejected
from tests.support.procstate import current_umask
from tests.support.wait import async_wait_for


async def _start(tmp_path, **kw):
    logsetup.setup("critical")
    calls = []

    async def status(args):
        return {"uplink": "connected"}

    async def ack(args):
        calls.append(args["alarm_id"])
        if args["alarm_id"] == "nope":
            raise CommandRejected("unknown_alarm", "no active alarm nope")
        return {"acknowledged": args["alarm_id"]}

    path = tmp_path / "run" / "control.sock"
    srv = ControlServer(str(path), {"status": status, "alarm_ack": ack}, {"alarm_ack"}, logsetup.get(), **kw)
    task = asyncio.create_task(srv.run())
    await async_wait_for(path.exists, what="control socket")
    return srv, task, path, calls


async def _ask(path, payload: bytes) -> list[dict]:
    reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 20)
    writer.write(payload)
    await writer.drain()
    lines = []
    for _ in range(payload.count(b"\n") or 1):
        line = await asyncio.wait_for(reader.readline(), 5)
        if not line:
            break
        lines.append(json.loads(line))
    writer.close()
    return lines


async def test_socket_mode_is_0660_and_requests_are_answered(tmp_path):
    srv, task, path, calls = await _start(tmp_path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    [r] = await _ask(path, b'{"id": 3, "cmd": "status"}\n')
    assert r == {"id": 3, "ok": True, "result": {"uplink": "connected"}}
    [r] = await _ask(path, b'{"id": 4, "cmd": "alarm_ack", "args": {"alarm_id": "a1"}}\n')
    assert r["ok"] and calls == ["a1"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not path.exists()


async def test_servers_starting_together_leave_the_umask_and_others_files_alone(tmp_path):
    """The socket's mode never comes from the process-wide umask: twenty servers starting on one loop (the
    fleet stand-ins do) once left 0117 behind for good, and a directory another task made meanwhile lost its
    owner's x bit."""
    logsetup.setup("critical")
    before = current_umask()
    made: list[int] = []

    async def mkdirs() -> None:  # another task creating directories while the servers start
        for i in range(40):
            d = tmp_path / f"made{i}"
            d.mkdir()
            made.append(stat.S_IMODE(os.stat(d).st_mode))
            await asyncio.sleep(0)

    async def status(args):
        return {}

    paths = [tmp_path / f"run{i}" / "control.sock" for i in range(20)]
    tasks = [asyncio.create_task(ControlServer(str(p), {"status": status}, set(), logsetup.get()).run()) for p in paths]
    await mkdirs()
    await async_wait_for(lambda: all(p.exists() for p in paths), what="20 control sockets")
    try:
        assert current_umask() == before
        assert set(made) == {0o777 & ~before}
        assert {stat.S_IMODE(os.stat(p).st_mode) for p in paths} == {0o660}
        assert all(stat.S_ISSOCK(os.stat(p).st_mode) for p in paths)
        assert [x.name for x in paths[0].parent.iterdir()] == ["control.sock"]  # no staging directory left
        [r] = await _ask(paths[7], b'{"id": 1, "cmd": "status"}\n')
        assert r["ok"]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert not any(p.exists() for p in paths)


async def test_malformed_unknown_and_bad_args_get_error_replies_and_the_server_lives(tmp_path):
    srv, task, path, calls = await _start(tmp_path)
    replies = await _ask(
        path,
        b"not json\n"
        b'{"cmd": 5}\n'
        b'{"cmd": "status", "evil": 1}\n'
        b'{"cmd": "reboot"}\n'
        b'{"cmd": "alarm_ack", "args": {}}\n'
        b'{"cmd": "alarm_ack", "args": {"alarm_id": "nope"}}\n'
        b'{"cmd": "status"}\n',
    )
    assert [r["ok"] for r in replies] == [False, False, False, False, False, False, True]
    assert [r["error"] for r in replies[:6]] == ["malformed", "malformed", "malformed", "unknown_command", "bad_args", "unknown_alarm"]
    assert srv.counters["rejected"] == 6
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_oversized_request_is_refused_without_crash(tmp_path):
    srv, task, path, _ = await _start(tmp_path)
    try:
        replies = await _ask(path, b"x" * (1024 * 1024) + b"\n")
        assert replies[0]["error"] == "too_long"
    except ConnectionResetError:
        pass  # the server answered and hung up while we were still sending: also a refusal
    assert srv.counters["rejected"] == 1
    [r] = await _ask(path, b'{"cmd": "status"}\n')
    assert r["ok"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_process_without_the_group_is_refused(tmp_path):
    assert os.geteuid() == 0, "this test needs root to drop to another uid (CI runs as root)"
    assert shutil.which("setpriv"), "setpriv (util-linux) is required"
    srv, task, path, _ = await _start(tmp_path)
    # CAP_DAC_READ_SEARCH lets it through every directory (pytest's 0700 tree would refuse it on the way,
    # proving nothing about the socket) but grants no write: only the socket's own mode can refuse it.
    code = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_UNIX)\n"
        f"try:\n s.connect({str(path)!r})\nexcept PermissionError:\n sys.exit(13)\nsys.exit(0)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all,+dac_read_search",
        "--ambient-caps=+dac_read_search", "--bounding-set=-all,+dac_read_search", sys.executable, "-c", code
    )
    assert await proc.wait() == 13
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
