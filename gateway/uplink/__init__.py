"""The MQTT uplink (issue 3): outbox records to the street platform, signed commands back. Contract: docs/uplink.md.

Import from the modules (gateway.uplink.client, gateway.uplink.commands). The one name below stays only
until gateway/daemon.py imports `gateway.uplink.client.Uplink` itself (its owner's edit); then delete it.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "Uplink":
        from gateway.uplink.client import Uplink

        return Uplink
    raise AttributeError(name)
