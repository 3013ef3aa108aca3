"""Shared fixtures: real mosquitto, pty pairs. All traffic stays on 127.0.0.1. Whatever a test starts
dies with the run (tests/support/reaper.py)."""

from __future__ import annotations

import os
import sys

import pytest

from tests.support.broker import Broker
from tests.support.procstate import current_umask
from tests.support.pty import PtyLink
from tests.support.reaper import Reaper

REAPER = pytest.StashKey[Reaper]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[REAPER] = Reaper()


def pytest_unconfigure(config: pytest.Config) -> None:
    reaper = config.stash.get(REAPER, None)
    if reaper is None:
        return
    left = reaper.finish()
    if left:  # a fixture that does not stop what it started: fix it there
        print(f"\nreaper: killed {len(left)} process(es) the tests left running:", *left, sep="\n  ", file=sys.stderr)


@pytest.fixture(autouse=True)
def _process_state_kept():
    """A test (or the code under it) must give the process back as it found it: a umask left behind by one
    test is every later test's umask, and every browser's and daemon's that test process starts (a leaked
    0117 made each later Chromium abort on its 0700 check of its own temp directory)."""
    umask, cwd = current_umask(), os.getcwd()
    yield
    assert (current_umask(), os.getcwd()) == (umask, cwd), "the test left the process's umask or working directory changed"


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
