"""The gateway's TLS identity: an EC P-256 key that never leaves the card, its CSR, and checks on
the CA and the signed certificate the installer brings back (CN = gateway id, reliability.md §5:
the broker uses `use_identity_as_username`, so the CN is the MQTT user and the ACL subject)."""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.errors import ConfigError

PrivateKey = ec.EllipticCurvePrivateKey


def new_key_pem() -> bytes:
    """A fresh P-256 private key, PKCS#8 PEM, unencrypted (the daemon starts unattended; the file is 0600)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def load_key(pem: bytes, source: str) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError([f"{source}: not a readable unencrypted PEM private key ({exc}); remove it or use --new-key"]) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError([f"{source}: not an EC key; remove it or use --new-key"])
    return key


def csr_pem(key: PrivateKey, gateway_id: str, organization: str = "") -> bytes:
    """A PKCS#10 request with CN = gateway id, signed with SHA-256."""
    names = [x509.NameAttribute(NameOID.COMMON_NAME, gateway_id)]
    if organization:
        names.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, organization[:64]))
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names)).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def public_key_sha256(key: PrivateKey) -> str:
    """Fingerprint of the public key, for the platform operator to compare by phone."""
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def check_ca(pem: bytes, source: str) -> list[x509.Certificate]:
    """The CA bundle must be one or more PEM certificates; a truncated copy is caught here, not at 3 a.m."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise ConfigError([f"{source}: not a PEM certificate bundle ({exc})"]) from None
    return certs


def common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def check_client_cert(pem: bytes, source: str, key: PrivateKey, gateway_id: str) -> x509.Certificate:
    """The signed certificate must belong to our key and name our gateway."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise ConfigError([f"{source}: not a PEM certificate ({exc})"]) from None
    problems = []
    if cert.public_key() != key.public_key():
        problems.append(f"{source}: certificate is for another key (not the one this gateway generated)")
    cn = common_name(cert)
    if cn != gateway_id:
        problems.append(f"{source}: certificate CN is {cn!r}, expected the gateway id {gateway_id!r}")
    if problems:
        raise ConfigError(problems)
    return cert


def csr_matches(pem: bytes, key: PrivateKey, gateway_id: str) -> bool:
    """True when `pem` is a CSR for this key and CN (ECDSA signatures are randomised, so a re-provision
    keeps the old CSR instead of making a byte-different one the platform may already hold)."""
    if not pem:
        return False
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError:
        return False
    cn = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return csr.public_key() == key.public_key() and bool(cn) and cn[0].value == gateway_id
