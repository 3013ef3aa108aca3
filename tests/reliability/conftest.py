"""Fixtures of the reliability tier."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.matrix_rig import Rig


@pytest.fixture
async def rig(request: pytest.FixtureRequest, tmp_path: Path, broker: Any) -> AsyncIterator[Rig]:
    """The matrix's rig; every daemon it started must have stopped with exit 0 on SIGTERM."""
    r = Rig(tmp_path, broker)
    yield r
    print(f"MATRIX {request.node.name}: {r.figures}")
    codes = await r.stop()
    assert all(c == 0 for c in codes), f"daemon exit codes {codes}: {r.log.read_text()[-3000:]}"
