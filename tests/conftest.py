"""Shared fixtures: real mosquitto, pty pairs. All traffic stays on 127.0.0.1."""

from __future__ import annotations

import pytest

from tests.support.broker import Broker
from tests.support.pty import PtyLink


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "mosquitto").start()
    yield b
    b.stop()


@pytest.fixture
def pty_link(tmp_path):
    links: list[PtyLink] = []

    def make(name: str = "tty") -> PtyLink:
        link = PtyLink(tmp_path, name).plug()
        links.append(link)
        return link

    yield make
    for link in links:
        link.unplug()
