"""`gateway simulate gb26875-centre`: the simulator as a process, steered live on stdin."""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import subprocess
import sys

from gateway.uplink.gb26875.frame import Command, Deframer, Frame, encode
from gateway.uplink.gb26875.objects import DeviceState, encode_adu

SEND = Frame(7, Command.SEND_DATA, 0xA01, 0x010203040506, dt.datetime(2026, 1, 1, 3, 0), encode_adu([DeviceState(1, dt.datetime(2026, 1, 1, 3, 0))]))


def _answer(sock: socket.socket) -> Frame:
    d = Deframer()
    while True:
        got = [f for f in d.feed(sock.recv(4096)) if isinstance(f, Frame)]
        if got:
            return got[0]


def test_centre_process_confirms_prints_json_and_switches_to_deny_on_stdin():
    proc = subprocess.Popen([sys.executable, "-c", "from gateway.uplink.gb26875.simulator import cli; cli()", "--port", "0"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r":(\d+) ", proc.stderr.readline()).group(1))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(encode(SEND))
            assert _answer(sock).command == Command.CONFIRM
            line = json.loads(proc.stdout.readline())
            assert line["type"] == "DEVICE_STATE" and line["serial"] == 7
            proc.stdin.write("deny\n")
            proc.stdin.flush()
            assert "mode=deny" in proc.stderr.readline()
            sock.sendall(encode(SEND))
            assert _answer(sock).command == Command.DENY
    finally:
        proc.terminate()
        proc.wait(10)
