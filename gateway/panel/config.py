"""The [panel] config section (issue 24). Secrets (the guard PIN's hash, the walk-code key) live in the
credentials file, never here; there is no default PIN."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

# Not gateway.config.schema's _Section: gateway.config.load imports this module, and the reverse import
# would be circular. Same options as _Section.
Port = Annotated[int, Meta(ge=1, le=65535)]


class PanelSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # Where to listen: a LAN interface's name (its IPv4 address is looked up at start) or an address.
    # Neither given: the panel refuses to start, so it never listens on the uplink interface by default.
    interface: Annotated[str, Meta(max_length=15)] = ""
    address: Annotated[str, Meta(max_length=64)] = ""
    port: Port = 8080
    # HTTPS with the gateway's certificate when both are set (docs/panel.md "TLS").
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # How often the panel asks the daemon (one request each for status, alarms, devices, walk).
    poll_period_s: Annotated[float, Meta(ge=0.2, le=5)] = 0.5
    # Wrong PIN / code attempts allowed per client address before it must wait lockout_s.
    max_attempts: Annotated[int, Meta(ge=1, le=20)] = 5
    lockout_s: Annotated[float, Meta(ge=10, le=3600)] = 300.0
