"""The `gateway provision` click command: options in, a plain report out (never a secret)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from gateway.config.schema import Credentials
from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.provision import ProvisionReport

EXIT_FAIL = 1  # README "Exit codes"
EXIT_USAGE = 2


def _print_report(report: ProvisionReport, show_csr: bool) -> None:
    for path in report.written:
        click.echo(f"wrote      {path}")
    for path in report.unchanged:
        click.echo(f"unchanged  {path}")
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    if show_csr and report.csr_pem:
        click.echo("\n" + report.csr_pem.decode().rstrip())
    if report.next_steps:
        click.echo("\nnext:")
        for i, step in enumerate(report.next_steps, 1):
            click.echo(f"  {i}. {step}")


def _password(password_file: str | None) -> str:
    if not password_file:
        return ""
    stream = sys.stdin if password_file == "-" else open(password_file, encoding="utf-8")  # noqa: SIM115
    with stream:
        return stream.readline().rstrip("\r\n")


@click.command("provision")
@click.option("--gateway-id", help="this gateway's id: MQTT topic and TLS CN (a-z, 0-9, '-')")
@click.option("--broker", "broker_url", help="mqtts://HOST:PORT of the street platform")
@click.option("--ca", "ca_file", type=click.Path(dir_okay=False, exists=True), help="CA that signed the broker's certificate")
@click.option("--community", default="", help="community name for the identity section")
@click.option("--courtyard", default="", help="courtyard name for the identity section")
@click.option("--username", "mqtt_username", default="", help="MQTT user name (if the broker wants one)")
@click.option("--password-file", type=click.Path(dir_okay=False, allow_dash=True), help="file whose first line is the MQTT password ('-' = stdin)")
@click.option("--from", "from_file", type=click.Path(dir_okay=False, exists=True), help="take everything from provision.toml (first boot)")
@click.option("--cert", "cert_file", type=click.Path(dir_okay=False, exists=True), help="install the platform-signed certificate for our key")
@click.option("--new-key", is_flag=True, help="replace the TLS key (the old certificate stops matching)")
@click.option("--root", default="/", show_default=True, type=click.Path(file_okay=False), help="staging root (image builds, tests)")
@click.option("--etc-dir", default="/etc/courtyard-gateway", show_default=True, help="config directory as seen on the gateway")
def command(gateway_id: str | None, broker_url: str | None, ca_file: str | None, community: str, courtyard: str, mqtt_username: str,
            password_file: str | None, from_file: str | None, cert_file: str | None, new_key: bool, root: str, etc_dir: str) -> None:
    """Give this gateway its identity, broker, credentials and TLS key; print what to send where.

    \b
    gateway provision --gateway-id gw-xinhong-03 --broker mqtts://platform:8883 --ca ca.pem
    gateway provision --from /boot/firmware/provision.toml
    gateway provision --cert client.pem
    """
    from gateway.provision import ProvisionPaths, ProvisionRequest, install_certificate, provision, provision_from_file

    paths = ProvisionPaths.under(root, etc_dir)
    try:
        if cert_file:
            report = install_certificate(paths, Path(cert_file))
        elif from_file:
            if gateway_id or broker_url:
                raise click.UsageError("--from takes everything from the file; drop --gateway-id/--broker")
            report = provision_from_file(paths, Path(from_file), new_key=new_key)
        else:
            if not gateway_id or not broker_url:
                raise click.UsageError("give --gateway-id and --broker (or --from FILE, or --cert FILE)")
            creds = Credentials(mqtt_username=mqtt_username, mqtt_password=_password(password_file))
            request = ProvisionRequest(
                gateway_id=gateway_id, broker_url=broker_url, community=community, courtyard=courtyard,
                ca_file=ca_file or "", credentials=creds,
            )
            report = provision(paths, request, new_key=new_key, source="command line")
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        click.echo("provisioning failed: nothing after the first error was written", err=True)
        sys.exit(EXIT_FAIL)
    _print_report(report, show_csr=not cert_file)
