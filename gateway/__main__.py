"""`python -m gateway` is the `gateway` command."""

from gateway.cli.main import cli

cli(prog_name="gateway")
