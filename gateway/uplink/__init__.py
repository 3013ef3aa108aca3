"""The MQTT uplink (issue 3): outbox records to the street platform, signed commands back. Contract: docs/uplink.md.

Names are imported on first use: the config loader imports gateway.uplink.gb26875.config, and must not
pull in paho for `gateway config check`.
"""

from typing import Any

__all__ = ["ConnState", "Uplink", "sign_command"]


def __getattr__(name: str) -> Any:
    if name in ("ConnState", "Uplink"):
        from gateway.uplink import client

        return getattr(client, name)
    if name == "sign_command":
        from gateway.uplink.commands import sign_command

        return sign_command
    raise AttributeError(name)
