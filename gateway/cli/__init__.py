"""The `gateway` command: daemon, config check, simulators, and the maintainer/installer tools."""
