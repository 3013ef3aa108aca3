"""The control socket: a local Unix socket speaking JSON lines, for the CLI (and only the CLI)."""
