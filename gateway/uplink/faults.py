"""Why the uplink is down, as one snake_case reason word plus a detail, and the TLS files loaded per attempt.

Issue 15 item 3: a configuration fault (missing/expired/wrong certificate, bad CA, unresolvable host,
refused credentials) is a *down reason*, never a start refusal: the local alarm path runs without the
uplink, and the files are re-read on every attempt, so a certificate that arrives later is picked up.
"""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

from gateway.errors import UplinkError

# Reason words in health()["reason"] and the retained status (docs/uplink.md "Down reasons").
CERT_MISSING = "cert_missing"  # cert_file/key_file/ca_file named in the config but not on disk (yet)
CERT_INVALID = "cert_invalid"  # unreadable, not PEM, key does not match the certificate
CERT_EXPIRED = "cert_expired"  # our client certificate is past notAfter (or not yet valid)
CA_INVALID = "ca_invalid"  # ca_file unreadable / not a certificate
BROKER_URL_INVALID = "broker_url_invalid"
CREDENTIALS_INVALID = "credentials_invalid"  # the credentials file is missing, readable by others, or invalid
HOST_UNRESOLVABLE = "host_unresolvable"  # DNS: no such name (or no resolver)
BROKER_UNREACHABLE = "broker_unreachable"  # TCP refused or timed out
TLS_SERVER_UNTRUSTED = "tls_server_untrusted"  # the broker's certificate does not verify against ca_file
TLS_CLIENT_REFUSED = "tls_client_refused"  # the broker rejected our client certificate
NOT_AUTHORIZED = "not_authorized"  # CONNACK 0x84-0x8C family: credentials, client id, banned
SERVER_BUSY = "server_busy"  # CONNACK 0x89 / 0x97 / 0x9F: the broker protects itself, come back later
SERVER_MOVED = "server_moved"  # CONNACK 0x9C / 0x9D: use another server
CONNECT_FAILED = "connect_failed"  # anything else during connect (timeouts, protocol errors)
CONNECTION_LOST = "connection_lost"
PUBLISH_REFUSED = "publish_refused"  # PUBACK >= 0x80 (e.g. 0x87 from an ACL)
STARTING = "starting"  # no attempt finished yet
CONNECTING = "connecting"  # a fault cleared, the next attempt is under way
STOPPED = "stopped"

# Faults an operator must fix (files, PKI, credentials): they keep a local trouble indication on even
# while the state machine keeps retrying (docs/uplink.md).
CONFIG_REASONS = frozenset({CERT_MISSING, CERT_INVALID, CERT_EXPIRED, CA_INVALID, BROKER_URL_INVALID, CREDENTIALS_INVALID, HOST_UNRESOLVABLE,
                            TLS_SERVER_UNTRUSTED, TLS_CLIENT_REFUSED, NOT_AUTHORIZED, PUBLISH_REFUSED})


class TlsFilesError(UplinkError):
    """The TLS files cannot be used as configured; `reason` is one of the words above."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def tls_context(ca_file: str, cert_file: str, key_file: str, now_wall: float | None) -> ssl.SSLContext:
    """TLS >= 1.2, broker certificate and host name verified against ca_file; client cert if given.

    Raises TlsFilesError with a reason word; never a bare OSError/ValueError/SSLError. now_wall=None
    (clock not synced) skips the validity check: a Pi without RTC must not call a good certificate expired.
    """
    for key, path in (("ca_file", ca_file), ("cert_file", cert_file), ("key_file", key_file)):
        if path and not Path(path).is_file():
            raise TlsFilesError(CERT_MISSING, f"uplink.{key} {path!r} does not exist")
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file or None)
    except (OSError, ValueError, ssl.SSLError) as exc:
        raise TlsFilesError(CA_INVALID, f"uplink.ca_file {ca_file!r}: {exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file:
        try:
            ctx.load_cert_chain(cert_file, key_file or None)
        except (OSError, ValueError, ssl.SSLError) as exc:
            raise TlsFilesError(CERT_INVALID, f"uplink.cert_file/key_file {cert_file!r}: {exc}") from None
        if now_wall is not None:
            _check_validity(cert_file, now_wall)
    return ctx


def _check_validity(cert_file: str, now_wall: float) -> None:
    # OpenSSL loads an expired certificate without complaint and the broker's refusal reads only
    # "certificate expired" at best; say it locally, before the round trip (issue 15: "expired").
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    except (OSError, ValueError):
        return  # load_cert_chain accepted it; a format we cannot read here is the broker's to judge
    now = dt.datetime.fromtimestamp(now_wall, dt.timezone.utc)
    if now > cert.not_valid_after_utc:
        raise TlsFilesError(CERT_EXPIRED, f"client certificate expired {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    if now < cert.not_valid_before_utc:
        raise TlsFilesError(CERT_EXPIRED, f"client certificate not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")


def tls_reason(exc: ssl.SSLError) -> str:
    """Which side refused the handshake: our check of the broker, or the broker's check of us."""
    text = f"{exc.reason or ''} {exc}".upper()
    if "CERTIFICATE_VERIFY_FAILED" in text or "HOSTNAME" in text or "IP ADDRESS MISMATCH" in text:
        return TLS_SERVER_UNTRUSTED
    if "EXPIRED" in text:
        return CERT_EXPIRED
    return TLS_CLIENT_REFUSED  # alert unknown ca / bad certificate / certificate required, from the broker
