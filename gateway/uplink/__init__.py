"""The MQTT uplink (issue 3): outbox records to the street platform, signed commands back. Contract: docs/uplink.md."""

from gateway.uplink.client import ConnState, Uplink
from gateway.uplink.commands import sign_command

__all__ = ["ConnState", "Uplink", "sign_command"]
