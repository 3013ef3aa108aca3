"""The MQTT uplink (issue 3): outbox records to the street platform, signed commands back. Contract: docs/uplink.md.
Import from the modules: gateway.uplink.client (Uplink), gateway.uplink.commands, gateway.platform.signing."""
