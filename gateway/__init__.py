"""courtyard-gateway: the edge daemon of a courtyard's fire-safety network."""

__version__ = "0.1.0"
