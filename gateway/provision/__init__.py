"""`gateway provision`: give a freshly installed gateway its identity, broker, secrets and TLS key.

Writes identity and broker into gateway.toml (every other line kept), the credentials file (0600),
an EC P-256 key (0600) and a CSR with CN = gateway id; later installs the signed certificate. Every
path is explicit (`ProvisionPaths.under(root)`) so a staging root or a test's tmp dir works the same.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from gateway.config.schema import Credentials, Identity
from gateway.errors import ConfigError
from gateway.provision import tls
from gateway.provision.files import Owner, ensure_dir, lookup_group, lookup_owner, write_atomic
from gateway.provision.toml_edit import check_values, set_keys, toml_value

SERVICE_USER = "courtyard"
ETC_DIR = "/etc/courtyard-gateway"
MAX_INPUT_BYTES = 1 << 20  # provision.toml, CA bundle, certificate: anything bigger is not ours


@dataclass(frozen=True)
class ProvisionPaths:
    """Where provisioning writes. `root` is "/" on a gateway, a staging dir in tests or image builds;
    paths written into the config are as the running gateway sees them (without `root`)."""

    root: Path
    config: Path
    credentials: Path
    tls_dir: Path

    @classmethod
    def under(cls, root: str | Path = "/", etc_dir: str = ETC_DIR) -> ProvisionPaths:
        base = Path(root) / etc_dir.lstrip("/")
        return cls(Path(root), base / "gateway.toml", base / "credentials.toml", base / "tls")

    def target(self, path: Path) -> str:
        """`path` as the gateway will see it once this root is its /."""
        return "/" + str(path.relative_to(self.root)).lstrip("/")


class ProvisionRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What an installer gives: the command-line options, or provision.toml (same keys)."""

    gateway_id: str
    broker_url: str
    community: str = ""
    courtyard: str = ""
    ca_file: str = ""  # in provision.toml: relative to that file's directory
    credentials: Credentials = Credentials()


@dataclass
class ProvisionReport:
    """What was done, for the installer's screen and the first-boot log. Never contains a secret."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    csr_pem: bytes = b""
    key_sha256: str = ""

    def record(self, path: Path, changed: bool) -> None:
        (self.written if changed else self.unchanged).append(str(path))


def _read_input(path: Path, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read {what} ({exc.strerror})"]) from None
    if len(data) > MAX_INPUT_BYTES:
        raise ConfigError([f"{path}: {what} is larger than {MAX_INPUT_BYTES} bytes"])
    return data


def validate(request: ProvisionRequest, source: str) -> None:
    """Raise ConfigError listing every problem with the request (the same rules as `config check`)."""
    problems: list[str] = []
    try:
        msgspec.convert({"gateway_id": request.gateway_id}, Identity)
    except msgspec.ValidationError:
        problems.append(f"{source}: gateway_id: {request.gateway_id!r} must be 3-48 of a-z, 0-9, '-' (it is the MQTT topic and the TLS CN)")
    url = urlsplit(request.broker_url)
    try:
        url.port  # raises on a non-numeric or out-of-range port
        port_ok = True
    except ValueError:
        port_ok = False
    if url.scheme not in ("mqtt", "mqtts") or not url.hostname or not port_ok:
        problems.append(f"{source}: broker_url: {request.broker_url!r} is not mqtts://HOST[:PORT] (or mqtt:// on a bench)")
    elif url.username or url.password:
        problems.append(f"{source}: broker_url: must not contain a user or password (give them as credentials)")
    if problems:
        raise ConfigError(problems)


def read_request(source: Path) -> ProvisionRequest:
    """Parse provision.toml; the CA path inside it is made absolute relative to the file."""
    data = _read_input(source, "provision file")
    try:
        raw = tomllib.loads(data.decode("utf-8"))
        req = msgspec.convert(raw, ProvisionRequest)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError([f"{source}: not valid UTF-8 TOML ({exc})"]) from None
    except msgspec.ValidationError as exc:
        # msgspec names the key path ($.credentials.mqtt_password) but never echoes a value: no secret leaks.
        raise ConfigError([f"{source}: {exc}"]) from None
    if req.ca_file and not Path(req.ca_file).is_absolute():
        req = msgspec.structs.replace(req, ca_file=str(source.parent / req.ca_file))
    return req


def _merged_credentials(path: Path, new: Credentials) -> Credentials:
    """Existing secrets stay unless the request replaces them (a re-provision must not drop LoRa keys)."""
    old = Credentials()
    if path.exists():
        try:
            old = msgspec.convert(tomllib.loads(_read_input(path, "credentials file").decode("utf-8")), Credentials)
        except (UnicodeDecodeError, tomllib.TOMLDecodeError, msgspec.ValidationError):
            raise ConfigError([f"{path}: existing credentials file is unreadable; move it away and provision again"]) from None
    return Credentials(
        mqtt_username=new.mqtt_username or old.mqtt_username,
        mqtt_password=new.mqtt_password or old.mqtt_password,
        command_keys={**old.command_keys, **new.command_keys},
        lora_keys={**old.lora_keys, **new.lora_keys},
    )


def _credentials_toml(creds: Credentials) -> bytes:
    out = ["# courtyard-gateway secrets: written by `gateway provision`. Mode 0600, owner courtyard.", ""]
    out += [f"mqtt_username = {toml_value(creds.mqtt_username)}", f"mqtt_password = {toml_value(creds.mqtt_password)}"]
    for table in ("command_keys", "lora_keys"):
        out += ["", f"[{table}]"] + [f"{toml_value(k)} = {toml_value(v)}" for k, v in sorted(getattr(creds, table).items())]
    return ("\n".join(out) + "\n").encode()


@dataclass
class _ConfigEdit:
    """gateway.toml as it will be written, worked out before anything is written."""

    text: str
    mode: int
    owner: Owner | None
    before: dict


def _plan_config(paths: ProvisionPaths, updates: dict[str, dict[str, str]]) -> _ConfigEdit:
    """Apply `updates` ({table: {key: value}}) to gateway.toml's text, keeping its mode, owner, other lines."""
    try:
        text = paths.config.read_text(encoding="utf-8")
        st = paths.config.stat()
    except FileNotFoundError:
        raise ConfigError([f"{paths.config}: no config to provision; run scripts/install.sh first (it installs the example)"]) from None
    before = check_values(text, str(paths.config), {})
    for table, values in updates.items():
        text = set_keys(text, table, values)
    check_values(text, str(paths.config), updates)
    return _ConfigEdit(text, st.st_mode & 0o7777, Owner(st.st_uid, st.st_gid) if os.geteuid() == 0 else None, before)


def _write_config(paths: ProvisionPaths, edit: _ConfigEdit, report: ProvisionReport) -> None:
    report.record(paths.config, write_atomic(paths.config, edit.text.encode(), edit.mode, edit.owner))


def provision(paths: ProvisionPaths, request: ProvisionRequest, *, new_key: bool = False, source: str = "provision") -> ProvisionReport:
    """Write identity + broker into the config, secrets into the credentials file, make key and CSR.
    Every input is read and checked before the first write. Idempotent: the same request again
    rewrites nothing and keeps the key (the platform may already have signed it)."""
    validate(request, source)
    report = ProvisionReport()
    key_path, csr_path, ca_path = paths.tls_dir / "client.key", paths.tls_dir / "client.csr", paths.tls_dir / "ca.pem"
    uplink: dict[str, str] = {"broker_url": request.broker_url, "credentials_file": paths.target(paths.credentials)}
    ca = b""
    if request.ca_file:
        ca = _read_input(Path(request.ca_file), "CA bundle")
        tls.check_ca(ca, request.ca_file)
        uplink["ca_file"] = paths.target(ca_path)
    identity = {"gateway_id": request.gateway_id}
    identity.update({k: v for k, v in (("community", request.community), ("courtyard", request.courtyard)) if v})
    edit = _plan_config(paths, {"identity": identity, "uplink": uplink})
    creds = _merged_credentials(paths.credentials, request.credentials)
    key_pem = key_path.read_bytes() if key_path.exists() and not new_key else tls.new_key_pem()
    key = tls.load_key(key_pem, str(key_path))

    owner = lookup_owner(paths.root, SERVICE_USER)
    if owner is None:
        report.notes.append(f"user {SERVICE_USER!r} not found under {paths.root} (or not root): files stay owned by the caller")
    ensure_dir(paths.tls_dir, 0o750, lookup_group(paths.root, SERVICE_USER))
    if ca:
        report.record(ca_path, write_atomic(ca_path, ca, 0o644))
    _write_config(paths, edit, report)
    report.record(paths.credentials, write_atomic(paths.credentials, _credentials_toml(creds), 0o600, owner))
    report.record(key_path, write_atomic(key_path, key_pem, 0o600, owner))  # also repairs a wrong mode/owner
    old_csr = csr_path.read_bytes() if csr_path.exists() else b""
    if tls.csr_matches(old_csr, key, request.gateway_id):
        report.record(csr_path, False)
    else:
        report.record(csr_path, write_atomic(csr_path, tls.csr_pem(key, request.gateway_id, request.courtyard), 0o644))
    old_uplink = edit.before.get("uplink", {})
    old_id = edit.before.get("identity", {}).get("gateway_id")
    if isinstance(old_uplink, dict) and old_uplink.get("cert_file") and (new_key or old_id != request.gateway_id):
        report.notes.append(f"uplink.cert_file {old_uplink['cert_file']} no longer matches the key or the gateway id: install a new certificate")
    report.csr_pem = csr_path.read_bytes()
    report.key_sha256 = tls.public_key_sha256(key)
    report.next_steps = [
        f"send {paths.target(csr_path)} (CN={request.gateway_id}, public key sha256 {report.key_sha256[:16]}...) to the platform PKI",
        "install the signed certificate: gateway provision --cert client.pem   (checks it matches this key)",
        f"check and start: gateway config check {paths.target(paths.config)} && systemctl restart courtyard-gateway",
    ]
    return report


def provision_from_file(paths: ProvisionPaths, source: Path, *, new_key: bool = False) -> ProvisionReport:
    """`gateway provision --from provision.toml` (the first-boot flow)."""
    return provision(paths, read_request(source), new_key=new_key, source=str(source))


def install_certificate(paths: ProvisionPaths, cert_file: Path) -> ProvisionReport:
    """`gateway provision --cert FILE`: install the platform-signed certificate and point the config at it."""
    report = ProvisionReport()
    try:
        gateway_id = tomllib.loads(paths.config.read_text(encoding="utf-8"))["identity"]["gateway_id"]
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError):
        raise ConfigError([f"{paths.config}: no identity.gateway_id; run gateway provision first"]) from None
    key_path = paths.tls_dir / "client.key"
    if not key_path.exists():
        raise ConfigError([f"{key_path}: no key; run gateway provision first (it makes the key and the CSR)"])
    key = tls.load_key(_read_input(key_path, "TLS key"), str(key_path))
    pem = _read_input(cert_file, "certificate")
    tls.check_client_cert(pem, str(cert_file), key, gateway_id)
    cert_path = paths.tls_dir / "client.pem"
    edit = _plan_config(paths, {"uplink": {"cert_file": paths.target(cert_path), "key_file": paths.target(key_path)}})
    report.record(cert_path, write_atomic(cert_path, pem, 0o644))
    _write_config(paths, edit, report)
    report.key_sha256 = tls.public_key_sha256(key)
    report.next_steps = [f"check and start: gateway config check {paths.target(paths.config)} && systemctl restart courtyard-gateway"]
    return report
