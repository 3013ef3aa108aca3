"""The reference platform consumer (issue 21): what a district platform runs on the other side of docs/uplink.md.

Importable with only paho-mqtt and the standard library (no daemon dependencies), so a platform team
can vendor or read it: decode.py (topics, telemetry batches), signing.py (command canonical form and
HMAC), ledger.py (dedupe and the seq ledger), consumer.py (MQTT v5, shared subscriptions, commands).
"""
