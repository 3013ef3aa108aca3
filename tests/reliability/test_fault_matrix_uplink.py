"""The fault matrix's uplink-configuration rows (issue 15, item 3): a freshly provisioned gateway whose
client certificate is not signed yet, and one given the wrong CA. The daemon starts, the alarm core works,
the trouble coil comes on with the reason in `gateway status`, and it goes off once the file is right:
no restart, no precondition. A real mosquitto with TLS and require_certificate."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from tests.integration.test_uplink_tls import _pki, _tls_broker
from tests.reliability.matrix_rig import TROUBLE, Rig
from tests.support.wait import async_wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def tls(tmp_path):
    pki = _pki(tmp_path / "pki", "courtyard-test-ca")
    (tmp_path / "tls").mkdir()
    b = _tls_broker(tmp_path / "tls", pki)
    yield pki, b
    b.stop()


def to_tls(port: int, **files: str):
    def bend(doc: dict[str, Any]) -> None:
        doc["uplink"].update(broker_url=f"mqtts://127.0.0.1:{port}", **files)
    return bend


async def _uplink_fault(rig: Rig) -> str:
    await rig.trouble_within(TROUBLE["check_period_s"] + TROUBLE["uplink_after_s"] + 10)
    return rig.faults().get("uplink", "")


async def test_missing_client_certificate(rig, tls, tmp_path):
    pki, broker = tls
    cert, key = tmp_path / "gw.pem", tmp_path / "gw.key"  # requested, not yet signed by the platform
    await rig.start(to_tls(broker.port, ca_file=pki["ca"], cert_file=str(cert), key_file=str(key)))
    rig.fault_starts()
    await rig.run_daemon()  # no refusal to start
    assert await rig.smoke() < 2.0
    reason = await _uplink_fault(rig)
    assert "cert" in reason, reason
    shutil.copy(pki["cli_key"], key)  # the signed certificate arrives
    shutil.copy(pki["cli"], cert)
    await rig.trouble_within(60, on=False)
    await async_wait_for(lambda: rig.status()["uplink"]["up"], 30, what="uplink connected")


async def test_wrong_ca(rig, tls, tmp_path):
    pki, broker = tls
    other = _pki(tmp_path / "other", "someone-elses-ca")
    ca = tmp_path / "ca.pem"
    shutil.copy(other["ca"], ca)
    await rig.start(to_tls(broker.port, ca_file=str(ca), cert_file=pki["cli"], key_file=pki["cli_key"]))
    rig.fault_starts()
    await rig.run_daemon()
    assert await rig.smoke() < 2.0
    reason = await _uplink_fault(rig)
    assert reason, "the uplink fault carries its reason"
    shutil.copy(pki["ca"], ca)  # the right CA installed
    await rig.trouble_within(90, on=False)
    await async_wait_for(lambda: rig.status()["uplink"]["up"], 30, what="uplink connected")
