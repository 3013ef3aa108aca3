"""`gateway fleet` against a broker that refuses its credentials says so at once and exits 1 (nothing was
sent to any gateway), instead of publishing on a refused session and reporting every gateway of the wave
as unanswered; a broker that is not there exits 3 (docs/CLI.md exit codes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.fleet.tool import BrokerRefused, MqttTransport
from tests.support.broker import Broker, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def guarded_broker(tmp_path: Path):
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw), "platform", "right"], check=True, capture_output=True)
    broker = Broker(tmp_path / "mosq", extra_conf=f"password_file {pw}\n").start()
    yield broker
    broker.stop()


def _fleet(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    key = tmp_path / "cmd.key"
    key.write_text("11" * 32)
    return subprocess.run([sys.executable, "-m", "gateway", "fleet", "status", *args, "--key-id", "k1", "--key-file", str(key),
                           "--gateway", "gw-001"], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_the_transport_raises_the_brokers_refusal(guarded_broker: Broker) -> None:
    with pytest.raises(BrokerRefused, match=r"refused the connection: Not authorized \(0x87\)"):
        MqttTransport(guarded_broker.url, "k1", "11" * 32, username="platform", password="wrong")
    MqttTransport(guarded_broker.url, "k1", "11" * 32, username="platform", password="right").close()


def test_fleet_cli_exits_1_on_refused_credentials_and_3_without_a_broker(guarded_broker: Broker, tmp_path: Path) -> None:
    pw = tmp_path / "pw.txt"
    pw.write_text("wrong\n")
    refused = _fleet("--broker", guarded_broker.url, "--username", "platform", "--password-file", str(pw), tmp_path=tmp_path)
    assert refused.returncode == 1 and "refused the connection" in refused.stderr, refused.stderr
    absent = _fleet("--broker", f"mqtt://127.0.0.1:{free_port()}", tmp_path=tmp_path)
    assert absent.returncode == 3 and "unreachable" in absent.stderr, absent.stderr
