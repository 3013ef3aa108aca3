"""Typed schema of the gateway's own config sections (drivers own their [ports.*] schemas).

Units are in key names; every key that has a safe default has it. Ranges that need a domain
sentence ("is not a Modbus slave id") are checked in check.py; generic ranges are Meta bounds here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from gateway.actions.schema import Notify
from gateway.model import ContactRole, DeviceType, Location, ResidentCategory
from gateway.rules.schema import Rule
from gateway.uplink.gb26875.config import GB26875Section

Positive = Annotated[float, Meta(gt=0)]
NonNegative = Annotated[float, Meta(ge=0)]
Port = Annotated[int, Meta(ge=1, le=65535)]
Text = Annotated[str, Meta(max_length=200)]
Ident = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
MiB = 1024 * 1024


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Subclasses say `frozen=True` again: msgspec inherits it, type checkers do not (msgspec#657)."""


class Identity(_Section, frozen=True):
    # gateway_id is used in MQTT topics and as the certificate CN: keep it topic-safe.
    gateway_id: Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9-]{2,47}$")]
    community: Text = ""
    courtyard: Text = ""


class ClockSection(_Section, frozen=True):
    # "kernel": trust the wall clock once adjtimex reports it synchronised (timesyncd/chrony).
    # "assume_synced": bench machines and tests without a time daemon.
    sync: Literal["kernel", "assume_synced"] = "kernel"


class LogSection(_Section, frozen=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"
    # Repeated identical warnings/errors: one line per damp_s seconds with `repeated=<count>` (gateway.log.Damper).
    damp_s: Annotated[float, Meta(ge=0, le=3600)] = 10.0  # 0 = every line (a bench or a debugging session)


class Uplink(_Section, frozen=True):
    broker_url: str  # mqtt://host:1883 or mqtts://host:8883
    client_id: str = ""  # default: the gateway id
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    credentials_file: str = ""
    keepalive_s: Annotated[int, Meta(ge=5, le=600)] = 30
    probe_interval_s: Annotated[float, Meta(gt=0, le=2)] = 2.0
    reconnect_base_s: Annotated[float, Meta(gt=0, le=30)] = 1.0
    reconnect_cap_s: Annotated[float, Meta(ge=1, le=600)] = 30.0
    session_expiry_s: Annotated[int, Meta(ge=0, le=7 * 86400)] = 3600
    max_inflight: Annotated[int, Meta(ge=1, le=100)] = 20
    batch_max_bytes: Annotated[int, Meta(ge=1024, le=256 * 1024)] = 16384
    batch_max_readings: Annotated[int, Meta(ge=1, le=10000)] = 500
    drain_readings_per_s: Annotated[float, Meta(gt=0)] = 5000.0
    # A telemetry batch leaves when full or this long after its first reading (issue 17): the age at the
    # platform vs bytes per reading on the wire. 200 ms measured: age p99 206 ms, 51.6 B/reading at
    # 200 readings/s (100 ms: 136 ms, 61 B) with telemetry v1; v2 at 200 ms: 30.1 B (docs/BENCHMARKS.md
    # "SD-card writes and telemetry age").
    batch_linger_ms: Annotated[float, Meta(ge=0, le=5000)] = 200.0
    # Telemetry batch format (docs/uplink.md): 2 = stream tables by hash, scaled values (issue 17, ~30 B per
    # reading); 1 = the self-contained v1 batch, for a platform not yet able to read v2 (upgrade it first).
    telemetry_version: Literal[1, 2] = 2
    command_window_s: Annotated[float, Meta(ge=10, le=3600)] = 120.0
    status_interval_s: Annotated[float, Meta(ge=5)] = 60.0
    # Reconnect manners for a clustered broker (issue 21, docs/uplink.md "Reconnect"): the backoff resets
    # only after a session stayed up this long; busy/quota/rate CONNACKs wait about busy_backoff_s.
    stable_after_s: Annotated[float, Meta(ge=0, le=3600)] = 60.0
    busy_backoff_s: Annotated[float, Meta(ge=1, le=3600)] = 120.0
    # First connect after the broker is seen back waits uniform(0, connect_jitter_s); an alarm cuts it short.
    connect_jitter_s: Annotated[float, Meta(ge=0, le=600)] = 0.5
    # Downlink messages waiting for the one command worker; more are rejected "busy" (issue 15 item 6).
    command_queue_max: Annotated[int, Meta(ge=1, le=1000)] = 32


class Store(_Section, frozen=True):
    path: str = "/var/lib/courtyard-gateway/outbox.db"
    # Cap on database + WAL together (reliability §0.11: the WAL grew to 4 MB beside a 4 kB file).
    max_bytes: Annotated[int, Meta(ge=1 * MiB)] = 512 * MiB
    telemetry_max_rows: Annotated[int, Meta(ge=1000)] = 5_000_000
    telemetry_ttl_s: Annotated[float, Meta(ge=60)] = 14 * 86400.0
    # Telemetry group commit (FULL, one fsync each): the power-cut loss window for readings (alarms commit at once).
    commit_interval_s: Annotated[float, Meta(ge=0.01, le=10)] = 1.0
    harden_interval_s: Annotated[float, Meta(ge=1, le=600)] = 10.0
    # Space kept back so alarms still commit when the disk is full.
    ballast_bytes: Annotated[int, Meta(ge=0, le=256 * MiB)] = 4 * MiB


class Control(_Section, frozen=True):
    socket: str = "/run/courtyard-gateway/control.sock"
    group: str = ""  # group owning the socket (mode 0660); default: the daemon's own group


class Contact(_Section, frozen=True):
    id: Ident
    name: Text
    role: ContactRole
    phone: Annotated[str, Meta(pattern=r"^\+?[0-9]{3,20}$")]


class DeviceEntry(_Section, frozen=True):
    id: Ident
    profile: str
    port: str
    address: int | str
    building: Text = ""
    unit: Text = ""
    room: Text = ""
    resident: ResidentCategory = ResidentCategory.COMMON_AREA
    contacts: list[str] = []
    description: Text = ""

    @property
    def location(self) -> Location:
        return Location(self.building, self.unit, self.room)


class ProfileField(_Section, frozen=True):
    unit: str = ""
    description: str = ""
    min: float | None = None
    max: float | None = None


class Profile(_Section, frozen=True):
    """A device profile file (config/profiles/<name>.toml). The [<protocol>] table is the driver's."""

    type: DeviceType
    protocol: Literal["modbus", "lora", "nbiot", "lorawan"]
    vendor: str = ""
    model: str = ""
    description: str = ""
    heartbeat_s: NonNegative = 0.0  # 0: polled device, liveness comes from polls
    fields: dict[str, ProfileField] = {}
    events: list[str] = []
    params: dict[str, float] = {}
    modbus: dict[str, Any] | None = None  # raw until the driver's profile_schema converts it
    lora: dict[str, Any] | None = None
    nbiot: dict[str, Any] | None = None
    lorawan: dict[str, Any] | None = None


class Credentials(_Section, frozen=True):
    """The secrets file (mode 0600, never in the main config, never logged)."""

    mqtt_username: str = ""
    mqtt_password: str = ""
    # Downlink command signing keys: key id -> hex key (HMAC-SHA256).
    command_keys: dict[str, str] = {}
    # LoRa per-device AES-128 keys: device id -> 32 hex chars.
    lora_keys: dict[str, str] = {}
    # The web panel (issue 24, gateway/panel/): the guard PIN's scrypt hash (`gateway panel hash-pin`)
    # and the hex key the installer's one-time walk codes are made with. Empty: no panel actions.
    panel_pin_hash: str = ""
    panel_code_key: str = ""

    def secret_values(self) -> list[str]:
        """Every secret string, for log redaction."""
        out = [self.mqtt_password, *self.command_keys.values(), *self.lora_keys.values(), self.panel_pin_hash, self.panel_code_key]
        return [s for s in out if s and len(s) >= 4]


class Config(msgspec.Struct, frozen=True, kw_only=True):
    """The validated whole. Ports hold driver-typed structs, profiles are resolved."""

    source: str  # file the config came from, for messages
    identity: Identity
    clock: ClockSection
    log: LogSection
    uplink: Uplink
    store: Store
    control: Control
    ports: dict[str, tuple[str, Any]]  # port name -> (driver name, driver port struct)
    devices: tuple[DeviceEntry, ...]
    contacts: tuple[Contact, ...]
    profiles: dict[str, Profile]
    profile_specs: dict[str, Any]  # profile name -> its driver-typed [<protocol>] section
    rules: tuple[Rule, ...] = ()  # gateway/rules/schema.py, issue 7
    notify: Notify | None = None  # [notify]: sounder, SMS, escalation (gateway/actions/schema.py)
    gb26875: GB26875Section | None = None  # [gb26875]: the fire centre uplink, issue 11
    # Sections registered in gateway.config.load.EXTRA_SECTIONS, already typed; also holds `notify` and
    # `gb26875` as deprecated aliases of the typed fields above (read those).
    extra: dict[str, Any] = {}
