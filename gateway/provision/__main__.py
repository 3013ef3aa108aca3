"""`python -m gateway.provision ...`: the same command as `gateway provision`, without the CLI group."""

from gateway.provision.command import command

command(prog_name="gateway provision")
