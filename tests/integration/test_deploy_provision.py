"""gateway provision (identity, broker, 0600 credentials, P-256 key and CSR with CN = gateway id,
signed certificate check) and scripts/firstboot.sh (provision from the boot partition, then shred it)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.config import load_credentials
from gateway.config.schema import Credentials
from gateway.errors import ConfigError
from gateway.provision import ProvisionPaths, ProvisionRequest, install_certificate, provision

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(60)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class Pki:
    """A throwaway CA, as the platform would run: signs our CSRs."""

    def __init__(self, folder: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        self.cert = (
            x509.CertificateBuilder().subject_name(_name("platform-ca")).issuer_name(_name("platform-ca"))
            .public_key(self.key.public_key()).serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(self.key, hashes.SHA256())
        )
        self.ca_file = folder / "ca.pem"
        self.ca_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def sign(self, csr_pem: bytes, out: Path, cn: str | None = None) -> Path:
        csr = x509.load_pem_x509_csr(csr_pem)
        now = dt.datetime.now(dt.timezone.utc)
        cert = (
            x509.CertificateBuilder().subject_name(_name(cn) if cn else csr.subject).issuer_name(self.cert.subject)
            .public_key(csr.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)).sign(self.key, hashes.SHA256())
        )
        out.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return out


@pytest.fixture
def site(tmp_path):
    """A staging root with the example config installed the way install.sh does, and the service user."""
    etc = tmp_path / "root/etc"
    (etc / "courtyard-gateway").mkdir(parents=True)
    shutil.copy(REPO / "config/gateway.example.toml", etc / "courtyard-gateway/gateway.toml")
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\ncourtyard:x:998:998::/var/lib/courtyard-gateway:/usr/sbin/nologin\n")
    (etc / "group").write_text("dialout:x:20:courtyard\ncourtyard:x:998:\n")
    return ProvisionPaths.under(tmp_path / "root"), Pki(tmp_path)


def request(pki: Pki, **kw) -> ProvisionRequest:
    base = dict(gateway_id="gw-test-07", broker_url="mqtts://127.0.0.1:8883", courtyard="7号院", ca_file=str(pki.ca_file),
                credentials=Credentials(mqtt_username="gw-test-07", mqtt_password="s3cret-pw"))
    return ProvisionRequest(**{**base, **kw})


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_provision_writes_identity_and_broker_and_keeps_every_other_line(site):
    paths, pki = site
    original = paths.config.read_text().splitlines()
    before = tomllib.loads(paths.config.read_text())
    provision(paths, request(pki))
    doc = tomllib.loads(paths.config.read_text())
    assert doc["identity"] == {"gateway_id": "gw-test-07", "community": "新鸿社区", "courtyard": "7号院"}
    assert doc["uplink"]["broker_url"] == "mqtts://127.0.0.1:8883"
    assert doc["uplink"]["ca_file"] == "/etc/courtyard-gateway/tls/ca.pem"  # as the gateway sees it
    assert doc["uplink"]["credentials_file"] == "/etc/courtyard-gateway/credentials.toml"
    assert doc["uplink"]["keepalive_s"] == 30
    assert doc["devices"] == before["devices"] and doc["contacts"] == before["contacts"] and doc["rules"] == before["rules"]
    changed = [a for a, b in zip(original, paths.config.read_text().splitlines()) if a != b]
    assert len(paths.config.read_text().splitlines()) == len(original) and len(changed) == 5  # comments survive


def test_provision_secrets_and_key_are_0600_owned_by_the_service_user(site):
    paths, pki = site
    provision(paths, request(pki))
    for secret in (paths.credentials, paths.tls_dir / "client.key"):
        assert mode(secret) == 0o600, secret
        if os.geteuid() == 0:
            assert (secret.stat().st_uid, secret.stat().st_gid) == (998, 998)
    creds = load_credentials(paths.credentials)  # the daemon's loader: refuses anything but owner-only
    assert (creds.mqtt_username, creds.mqtt_password) == ("gw-test-07", "s3cret-pw")
    assert "s3cret-pw" not in paths.config.read_text()


def test_provision_makes_a_p256_csr_whose_cn_is_the_gateway_id(site):
    paths, pki = site
    report = provision(paths, request(pki))
    csr = x509.load_pem_x509_csr(report.csr_pem)
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gw-test-07"
    key = serialization.load_pem_private_key((paths.tls_dir / "client.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert csr.public_key() == key.public_key()
    assert "s3cret-pw" not in " ".join(report.next_steps + report.notes)


def test_provisioning_again_keeps_the_key_and_rewrites_nothing(site):
    paths, pki = site
    provision(paths, request(pki))
    files = [paths.config, paths.credentials, paths.tls_dir / "client.key", paths.tls_dir / "client.csr"]
    before = {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files}
    report = provision(paths, request(pki))
    assert report.written == [] and {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files} == before


def test_reprovision_keeps_lora_keys_it_was_not_given(site):
    paths, pki = site
    provision(paths, request(pki, credentials=Credentials(lora_keys={"smoke-1": "00" * 16})))
    provision(paths, request(pki, credentials=Credentials(mqtt_password="rotated")))
    creds = load_credentials(paths.credentials)
    assert creds.lora_keys == {"smoke-1": "00" * 16} and creds.mqtt_password == "rotated"


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [("gateway_id", "GW 7", "gateway_id"), ("broker_url", "http://x:1", "broker_url"), ("broker_url", "mqtts://u:p@h:8883", "user or password")],
)
def test_bad_request_is_refused_before_anything_is_written(site, field, value, needle):
    paths, pki = site
    before = paths.config.read_bytes()
    with pytest.raises(ConfigError) as exc:
        provision(paths, request(pki, **{field: value}))
    assert needle in str(exc.value)
    assert paths.config.read_bytes() == before and not paths.credentials.exists() and not paths.tls_dir.exists()


def test_a_truncated_ca_is_refused(site, tmp_path):
    paths, pki = site
    bad = tmp_path / "half.pem"
    bad.write_bytes(pki.ca_file.read_bytes()[:200])
    with pytest.raises(ConfigError, match="not a PEM certificate"):
        provision(paths, request(pki, ca_file=str(bad)))


def test_signed_certificate_is_installed_only_if_it_matches_our_key_and_id(site, tmp_path):
    paths, pki = site
    report = provision(paths, request(pki))
    other = ec.generate_private_key(ec.SECP256R1())
    foreign_csr = x509.CertificateSigningRequestBuilder().subject_name(_name("gw-test-07")).sign(other, hashes.SHA256())
    with pytest.raises(ConfigError, match="another key"):
        install_certificate(paths, pki.sign(foreign_csr.public_bytes(serialization.Encoding.PEM), tmp_path / "foreign.pem"))
    with pytest.raises(ConfigError, match="CN is 'gw-other'"):
        install_certificate(paths, pki.sign(report.csr_pem, tmp_path / "wrongcn.pem", cn="gw-other"))
    install_certificate(paths, pki.sign(report.csr_pem, tmp_path / "client.pem"))
    up = tomllib.loads(paths.config.read_text())["uplink"]
    assert (up["cert_file"], up["key_file"]) == ("/etc/courtyard-gateway/tls/client.pem", "/etc/courtyard-gateway/tls/client.key")
    assert (paths.tls_dir / "client.pem").read_bytes() == (tmp_path / "client.pem").read_bytes()


def write_provision_toml(boot: Path, pki: Pki, gateway_id: str = "gw-boot-01") -> Path:
    boot.mkdir(parents=True, exist_ok=True)
    shutil.copy(pki.ca_file, boot / "ca.pem")
    f = boot / "provision.toml"
    f.write_text(
        f'gateway_id = "{gateway_id}"\nbroker_url = "mqtts://127.0.0.1:8883"\ncourtyard = "2号院"\nca_file = "ca.pem"\n'
        '[credentials]\nmqtt_username = "gw-boot-01"\nmqtt_password = "boot-secret-9"\n'
    )
    return f


def gateway_shim(tmp_path: Path) -> Path:
    """Stands in for the installed `gateway` command: `gateway provision ARGS` -> python -m gateway.provision ARGS."""
    shim = tmp_path / "gateway"
    shim.write_text(f'#!/bin/sh\n[ "$1" = provision ] || exit 64\nshift\ncd {REPO} && exec {sys.executable} -m gateway.provision "$@"\n')
    shim.chmod(0o755)
    return shim


def firstboot(root: Path, boot: Path, shim: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "scripts/firstboot.sh"), "--root", str(root), "--boot", str(boot)],
        capture_output=True, text=True, env={**os.environ, "GATEWAY": str(shim)}, timeout=60,
    )


def test_firstboot_provisions_from_the_boot_partition_then_removes_the_secrets(site, tmp_path):
    paths, pki = site
    boot = tmp_path / "boot"
    write_provision_toml(boot, pki)
    r = firstboot(paths.root, boot, gateway_shim(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (boot / "provision.toml").exists()
    done = (boot / "provision.done").read_text()
    assert done.startswith("courtyard-gateway first boot: OK") and "removed" in done and "client.csr" in done
    assert "boot-secret-9" not in done + r.stdout + r.stderr
    assert tomllib.loads(paths.config.read_text())["identity"]["gateway_id"] == "gw-boot-01"
    assert load_credentials(paths.credentials).mqtt_password == "boot-secret-9"


def test_firstboot_with_a_bad_provision_file_keeps_it_and_says_failed(site, tmp_path):
    paths, pki = site
    boot = tmp_path / "boot"
    write_provision_toml(boot, pki, gateway_id="Not Valid")
    r = firstboot(paths.root, boot, gateway_shim(tmp_path))
    assert r.returncode == 1
    assert (boot / "provision.toml").exists()
    done = (boot / "provision.done").read_text()
    assert done.startswith("courtyard-gateway first boot: FAILED") and "gateway_id" in done
    assert tomllib.loads(paths.config.read_text())["identity"]["gateway_id"] == "gw-xinhong-03"


def test_provision_command_prints_csr_and_next_steps(site):
    paths, pki = site
    r = subprocess.run(
        [sys.executable, "-m", "gateway.provision", "--root", str(paths.root), "--gateway-id", "gw-cli-01",
         "--broker", "mqtts://127.0.0.1:8883", "--ca", str(pki.ca_file), "--username", "u", "--password-file", "-"],
        input="cli-secret\n", capture_output=True, text=True, cwd=REPO, timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert "-----BEGIN CERTIFICATE REQUEST-----" in r.stdout and "gateway provision --cert" in r.stdout
    assert "cli-secret" not in r.stdout + r.stderr
    assert load_credentials(paths.credentials).mqtt_password == "cli-secret"
