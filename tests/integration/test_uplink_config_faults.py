"""Issue 15 item 3: an uplink configuration fault never raises out of the Uplink nor stops it; the stage is
down with a reason word, retried, and a certificate that appears later is picked up without a restart.
Real mosquitto with TLS and client certificates (certificates made in tests/integration/test_uplink_tls.py)."""

import asyncio
import datetime as dt
import shutil

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.clock import Clock
from gateway.model import RecordClass
from tests.integration.test_uplink_tls import _name, _pki, _tls_broker, _write
from tests.integration.uplink_support import GW, make_uplink, open_outbox
from tests.support.wait import async_wait_for


async def _run_until(tmp_path, url, until, timeout_s=15.0, then=None, **tls):
    clock = Clock("assume_synced")
    outbox = await open_outbox(tmp_path, clock)
    await outbox.put(RecordClass.ALARM, "alarm.raised", "smoke-1", clock.now(), {"title": "fire"})
    up = make_uplink(url, outbox, clock, probe_interval_s=0.5, **tls)  # constructing never raises
    task = asyncio.create_task(up.run())
    seen = []
    try:
        await async_wait_for(lambda: until(up), timeout_s=timeout_s, what="uplink outcome")
        seen.append(up.health())
        if then is not None:
            then()
            await async_wait_for(lambda: up.health()["up"] and outbox.stats().depth.get("alarm", 0) == 0, timeout_s=timeout_s, what="recovered")
            seen.append(up.health())
        assert not task.done(), "the uplink task must keep running through a configuration fault"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()
    return seen


def test_missing_client_certificate_is_a_down_reason_and_is_picked_up_when_it_appears(tmp_path):
    pki = _pki(tmp_path / "pki", "courtyard-test-ca")
    broker = _tls_broker(tmp_path, pki)
    cert, key = tmp_path / "later.pem", tmp_path / "later.key"  # not signed yet (issue 15)

    def signed():
        shutil.copy(pki["cli_key"], key)
        shutil.copy(pki["cli"], cert)

    try:
        down, up = asyncio.run(_run_until(tmp_path, f"mqtts://127.0.0.1:{broker.port}",
                                          lambda u: u.health()["reason"] == "cert_missing", then=signed,
                                          ca_file=pki["ca"], cert_file=str(cert), key_file=str(key)))
    finally:
        broker.stop()
    assert down["state"] == "config_error" and down["up"] is False and down["config_fault"] is True
    assert "later.pem" in down["detail"] and down["since_wall_s"] > 0 and down["down_since_wall_s"] is not None
    assert up["state"] == "connected" and up["reason"] == "" and up["down_for_s"] == 0.0
    assert up["last_down"]["reason"] == "cert_missing" and up["last_down"]["for_s"] > 0  # goes into the retained status


def test_expired_client_certificate_is_named_before_any_connect(tmp_path):
    pki = _pki(tmp_path / "pki", "courtyard-test-ca")
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    expired = (x509.CertificateBuilder().subject_name(_name(GW)).issuer_name(_name("old-ca")).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=400))
               .not_valid_after(now - dt.timedelta(days=35)).sign(ca_key, hashes.SHA256()))
    cert_path, key_path = _write(tmp_path / "exp.pem", expired), _write(tmp_path / "exp.key", key=key)
    (down,) = asyncio.run(_run_until(tmp_path, "mqtts://127.0.0.1:1", lambda u: u.health()["reason"] == "cert_expired",
                                     ca_file=pki["ca"], cert_file=cert_path, key_file=key_path))
    assert down["state"] == "config_error" and "expired" in down["detail"] and down["connects"] == 0


def test_unreadable_certificate_is_cert_invalid(tmp_path):
    pki = _pki(tmp_path / "pki", "courtyard-test-ca")
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    (down,) = asyncio.run(_run_until(tmp_path, "mqtts://127.0.0.1:1", lambda u: u.health()["reason"] == "cert_invalid",
                                     ca_file=pki["ca"], cert_file=str(tmp_path / "junk.pem"), key_file=pki["cli_key"]))
    assert down["state"] == "config_error" and down["up"] is False


def test_wrong_ca_says_the_broker_is_untrusted(tmp_path):
    pki = _pki(tmp_path / "pki", "courtyard-test-ca")
    other = _pki(tmp_path / "other", "someone-else-ca")
    broker = _tls_broker(tmp_path, pki)
    try:
        (down,) = asyncio.run(_run_until(tmp_path, f"mqtts://127.0.0.1:{broker.port}",
                                         lambda u: u.health()["reason"] == "tls_server_untrusted",
                                         ca_file=other["ca"], cert_file=pki["cli"], key_file=pki["cli_key"]))
    finally:
        broker.stop()
    assert down["state"] == "not_authorized" and down["config_fault"] is True and down["connect_failures"] >= 1


def test_client_certificate_the_broker_does_not_trust_is_named(tmp_path):
    pki = _pki(tmp_path / "pki", "courtyard-test-ca")
    other = _pki(tmp_path / "other", "someone-else-ca")
    broker = _tls_broker(tmp_path, pki)
    try:
        (down,) = asyncio.run(_run_until(tmp_path, f"mqtts://127.0.0.1:{broker.port}",
                                         lambda u: u.health()["connect_failures"] >= 1 and not u.health()["up"],
                                         ca_file=pki["ca"], cert_file=other["cli"], key_file=other["cli_key"]))
    finally:
        broker.stop()
    # TLS 1.2: the broker's alert fails the handshake (tls_client_refused); with 1.3 it may come after it.
    assert down["reason"] in ("tls_client_refused", "connection_lost", "connect_failed") and down["connects"] <= 1


def test_unresolvable_host_is_a_down_reason_not_a_crash(tmp_path):
    # A 64-character label is refused by the IDNA codec before any lookup: no traffic leaves 127.0.0.1.
    (down,) = asyncio.run(_run_until(tmp_path, f"mqtt://{'a' * 64}.invalid:1883", lambda u: u.health()["reason"] == "host_unresolvable"))
    assert down["up"] is False and down["config_fault"] is True and down["state"] == "probing"


def test_credentials_file_that_cannot_be_loaded_is_a_down_reason_until_it_is_fixed(broker, tmp_path):
    """The daemon passes empty Credentials and a loader when the file is missing (snippet in the report)."""
    import msgspec

    from gateway import log as logsetup
    from gateway.config.load import load_credentials
    from gateway.config.schema import Credentials, Identity
    from gateway.config.schema import Uplink as UplinkCfg
    from gateway.uplink.client import Uplink

    path = tmp_path / "credentials.toml"

    async def main():
        clock = Clock("assume_synced")
        outbox = await open_outbox(tmp_path, clock)
        conf = msgspec.structs.replace(UplinkCfg(broker_url=broker.url), probe_interval_s=0.5)
        up = Uplink(conf, Credentials(), Identity(gateway_id=GW), outbox, clock, logsetup.get(), reload_credentials=lambda: load_credentials(path))
        task = asyncio.create_task(up.run())
        try:
            await async_wait_for(lambda: up.health()["reason"] == "credentials_invalid", what="down for credentials")
            down = up.health()
            path.write_text('command_keys = { ops-1 = "' + "ab" * 32 + '" }\n')
            path.chmod(0o600)
            await async_wait_for(lambda: up.health()["up"], what="connected once the file is fixed")
            return down, up.dispatcher.verifier._keys
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await outbox.close()

    down, keys = asyncio.run(main())
    assert down["state"] == "config_error" and "not found" in down["detail"] and down["config_fault"] is True
    assert list(keys) == ["ops-1"]  # the command keys came with the reloaded file
