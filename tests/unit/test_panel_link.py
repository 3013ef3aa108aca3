"""The panel's listen address and its one control connection (gateway/panel/serve.py, link.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.control.protocol import decode_request, encode
from gateway.errors import ConfigError
from gateway.panel.config import PanelSection
from gateway.panel.link import ControlLink, LinkDown
from gateway.panel.serve import interface_address, listen_address


def test_no_listen_address_is_chosen_by_default() -> None:
    with pytest.raises(ConfigError, match="never picks one itself"):
        listen_address(PanelSection())
    assert listen_address(PanelSection(address="192.168.10.1")) == "192.168.10.1"
    assert listen_address(PanelSection(interface="lo")) == "127.0.0.1"
    with pytest.raises(ConfigError, match="no IPv4 address"):
        interface_address("nosuch0")


async def test_one_connection_reused_and_reopened_after_the_daemon_closes_it(tmp_path: Path) -> None:
    sock = tmp_path / "c.sock"
    conns: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(1)
        while line := await reader.readline():
            req = decode_request(line)
            if req.cmd == "hangup":  # the daemon's idle close, or a restart
                break
            writer.write(encode({"id": req.id, "ok": True, "result": {"n": len(conns)}}))
            await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(serve, str(sock))
    link = ControlLink(str(sock), timeout_s=2)
    try:
        for _ in range(5):
            assert (await link.call("status")).result == {"n": 1}
        with pytest.raises(LinkDown):
            await link.call("hangup")
        assert (await link.call("status")).result == {"n": 2}
        server.close()
        await server.wait_closed()
        sock.unlink()
        await link.close()
        with pytest.raises(LinkDown):
            await link.call("status")
    finally:
        await link.close()
        server.close()
