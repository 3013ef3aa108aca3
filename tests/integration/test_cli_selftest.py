"""`gateway selftest`: all PASS on a commissioned gateway (running daemon, TLS broker, private
credentials), and the right FAIL with reason and fix when each item is broken for real."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.cli.checks import check_clock
from gateway.cli.common import locate
from gateway.cli.main import cli
from gateway.cli.selftest import gather
from tests.support.broker import Broker
from tests.support.daemon import DaemonProc, SimThread, write_config
from tests.support.wait import wait_for


def _cert(subject: str, key, issuer_name, issuer_key, ca: bool, ip: str | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .issuer_name(issuer_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def make_pki(directory) -> tuple[str, str, str]:
    """A CA and a server certificate for 127.0.0.1: (ca.pem, server.pem, server.key)."""
    ca_key, srv_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    ca = _cert("test-ca", ca_key, ca_name, ca_key, ca=True)
    srv = _cert("127.0.0.1", srv_key, ca_name, ca_key, ca=False, ip="127.0.0.1")
    paths = [directory / "ca.pem", directory / "server.pem", directory / "server.key"]
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(srv.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(srv_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return tuple(str(p) for p in paths)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A commissioned courtyard: TLS broker, private credentials, daemon polling three slaves."""
    tmp = tmp_path_factory.mktemp("selftest")
    ca, cert, key = make_pki(tmp)
    broker = Broker(tmp / "mosquitto", extra_conf=f"certfile {cert}\nkeyfile {key}\n").start()
    creds = tmp / "credentials.toml"
    creds.write_text('mqtt_username = "gw-test-01"\nmqtt_password = "canary-pw-4711"\n')
    os.chmod(creds, 0o600)
    uplink = f'broker_url = "mqtts://127.0.0.1:{broker.port}"\nca_file = "{ca}"\ncredentials_file = "{creds}"'
    config = write_config(tmp, str(tmp / "bus"), uplink=uplink)
    with SimThread(str(tmp / "bus")) as sim:
        daemon = DaemonProc(config, tmp / "run" / "control.sock").start()
        try:
            yield {"tmp": tmp, "config": config, "sim": sim, "broker": broker, "creds": creds, "uplink": uplink}
        finally:
            daemon.stop()
            broker.stop()


def selftest(config) -> tuple[int, dict]:
    res = CliRunner().invoke(cli, ["selftest", "--json", "--config", str(config)])
    return res.exit_code, json.loads(res.stdout)


def failed(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"] if not c["ok"]}


def test_every_item_passes_on_a_commissioned_gateway(site):
    def all_pass():
        code, report = selftest(site["config"])
        return (code, report) if code == 0 else None

    code, report = wait_for(all_pass, timeout_s=30, what="selftest all PASS")
    names = [c["name"] for c in report["checks"]]
    assert {"config", "daemon", "credentials", "port rs485", "device hydrant-1", "device guard-relay", "broker",
            "clock", "disk"} <= set(names)
    assert report["ok"] is True
    human = CliRunner().invoke(cli, ["selftest", "--config", str(site["config"])])
    assert human.exit_code == 0 and "FAIL" not in human.output and " passed, 0 warnings, 0 failed" in human.output
    assert report["summary"]["fail"] == 0 and {c["status"] for c in report["checks"]} <= {"pass", "warn", "skip"}
    assert "canary-pw-4711" not in human.output


def test_readable_credentials_fail_with_the_chmod_fix(site):
    os.chmod(site["creds"], 0o644)
    try:
        code, report = selftest(site["config"])
    finally:
        os.chmod(site["creds"], 0o600)
    assert code == 1
    bad = failed(report)
    assert list(bad) == ["credentials"]
    assert "0644" in bad["credentials"]["reason"] and bad["credentials"]["fix"] == f"chmod 600 {site['creds']}"


def test_a_silent_device_fails_with_a_wiring_fix(site):
    site["sim"].sim.set_fault(2, silent=True)
    try:
        wait_for(lambda: "device hydrant-2" in failed(selftest(site["config"])[1]), timeout_s=30, what="hydrant-2 FAIL")
        code, report = selftest(site["config"])
    finally:
        site["sim"].sim.clear_faults()
    bad = failed(report)
    assert code == 1 and set(bad) == {"device hydrant-2"}
    # The daemon runs: the fix is one that works now (gateway poll), not a probe that needs it stopped.
    assert "offline" in bad["device hydrant-2"]["reason"] and "gateway poll hydrant-2" in bad["device hydrant-2"]["fix"]


def test_an_untrusted_broker_certificate_fails(site, tmp_path):
    other_ca, _, _ = make_pki(tmp_path)
    cfg = write_config(site["tmp"] / "alt", str(site["tmp"] / "bus"), uplink=site["uplink"].replace(
        str(site["tmp"] / "ca.pem"), other_ca))
    code, report = selftest(cfg)
    bad = failed(report)
    assert code == 1 and "certificate not trusted" in bad["broker"]["reason"]
    assert "ca_file" in bad["broker"]["fix"]


def test_an_unreachable_broker_fails(site, tmp_path):
    from tests.support.broker import free_port

    uplink = site["uplink"].replace(f":{site['broker'].port}", f":{free_port()}")
    cfg = write_config(site["tmp"] / "alt2", str(site["tmp"] / "bus"), uplink=uplink)
    code, report = selftest(cfg)
    assert code == 1 and "refused" in failed(report)["broker"]["reason"].lower()


def test_too_little_disk_for_the_outbox_cap_fails(site):
    cfg = write_config(site["tmp"] / "alt3", str(site["tmp"] / "bus"), uplink=site["uplink"])
    cfg.write_text(cfg.read_text().replace("[store]\n", "[store]\nmax_bytes = 1099511627776000\n"))
    code, report = selftest(cfg)
    bad = failed(report)
    assert code == 1 and "disk" in bad and "store.max_bytes" in bad["disk"]["fix"]


def test_daemon_down_missing_port_and_bad_config(tmp_path):
    cfg = write_config(tmp_path, str(tmp_path / "no-such-tty"))
    code, report = selftest(cfg)
    bad = failed(report)
    assert code == 1
    assert "not running" in bad["daemon"]["reason"] and "systemctl start" in bad["daemon"]["fix"]
    assert "no-such-tty" in bad["port rs485"]["reason"]
    assert "cannot tell which devices" in bad["devices"]["reason"]
    cfg.write_text(cfg.read_text().replace("address = 10", "address = 300"))
    code, report = selftest(cfg)
    assert code == 1 and [c["name"] for c in report["checks"]] == ["config", "daemon"]
    assert "300 is not a Modbus slave id" in report["checks"][0]["reason"]


def test_unsynchronised_kernel_clock_fails(tmp_path):
    cfg = write_config(tmp_path, str(tmp_path / "tty"), clock="kernel")
    env = gather(locate(str(cfg)))
    env.kernel_synced = lambda: False  # the adjtimex answer is the edge; the check's logic is under test
    [c] = check_clock(env)
    assert not c.ok and "not synchronised (kernel)" in c.reason and "timedatectl" in c.fix
    env.kernel_synced = lambda: True
    assert check_clock(env)[0].ok


def test_broker_check_fails_when_the_daemons_uplink_reports_a_configuration_fault(site):
    """Issue 15 item 3: the TLS handshake from the CLI works, yet the daemon's uplink is refused (its
    health says why): selftest must not pass the broker line."""
    from gateway.cli.checks import check_broker

    env = gather(locate(str(site["config"])))
    [ok] = check_broker(env)
    assert ok.ok, ok.reason
    env.status = {**(env.status or {}), "uplink": {"state": "not_authorized", "up": False, "config_fault": True,
                                                    "reason": "publish_refused", "detail": "PUBACK 0x87"}}
    [c] = check_broker(env)
    assert not c.ok and "publish_refused" in c.reason and "courtyard.acl" in c.fix
