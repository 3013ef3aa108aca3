"""The one-call wiring the daemon uses builds every issue-23 stage from the example config."""

from __future__ import annotations

from pathlib import Path

import msgspec
import structlog

from gateway.clock import ManualClock
from gateway.config import load_config
from gateway.selfcheck.stages import build

EXAMPLE = Path(__file__).resolve().parents[2] / "config/gateway.example.toml"


class NullOutbox:
    async def flush(self) -> None:
        return None

    def fetch(self, consumer, limit, exclude=(), classes=None):
        return []


def test_builds_from_the_example_config(tmp_path):
    cfg = load_config(EXAMPLE)
    cfg = msgspec.structs.replace(cfg, store=msgspec.structs.replace(cfg.store, path=str(tmp_path / "outbox.db")))
    stages = build(cfg, ManualClock(), NullOutbox(), lambda item: None, {}, lambda: {}, None, ["mqtt", "gb26875"],
                   lambda **kw: structlog.get_logger().bind(**kw))
    assert stages.status()["power"]["state"] == "off"  # the example has no UPS
    assert set(stages.trouble_checks()) == {"power", "selfcheck", "report_deadline"}
    assert all(fn() == "" for fn in stages.trouble_checks().values())
    assert set(stages.control_handlers()) == {"test_fire", "test_power", "test_power_status", "selfcheck_run"}
    assert stages.selfcheck.journal.path == tmp_path / "tests.jsonl"
