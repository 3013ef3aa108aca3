"""Codec registry: profile `codec = "<name>"` -> decode function. Explicit, one line per codec."""

from __future__ import annotations

from drivers.codecs import Decode

CODECS: dict[str, Decode] = {}
