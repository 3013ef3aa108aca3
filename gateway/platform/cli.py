"""`gateway platform watch`: a live fleet view from the reference consumer (issue 21).

Prints, every --every seconds, the gateways online/offline with queue depths and active alarms, and the
seq ledger's holes and duplicates. Joins a shared-subscription group, so it can run beside the real
platform consumers without taking records from them only if it uses its own --group.
"""

from __future__ import annotations

import json
import time

import click

from gateway.platform.consumer import PlatformConsumer


def render(snap: dict) -> str:
    lines = [f"{time.strftime('%H:%M:%S')}  gateways {snap['online']} online, {snap['offline']} offline; "
             f"duplicates {snap['duplicates']}, undecodable {snap['undecodable']}"]
    for gw, v in snap["gateways"].items():
        queue = ",".join(f"{k}={n}" for k, n in v["queue"].items() if n) or "empty"
        down = v.get("uplink_last_down") or {}
        last = f"  last down {down.get('reason')} {down.get('for_s')} s" if down else ""
        lines.append(f"  {gw:<24} {'online ' if v['online'] else 'OFFLINE'}  alarms active {v['active_alarms']:<3} queue {queue}{last}")
    for store, r in snap["stores"].items():
        if r["holes"] or r["duplicates"]:
            lines.append(f"  store {store}: seq {r['low']}..{r['max']}, holes {r['holes']} (evicted {r['evicted']}, "
                         f"unexplained {r['unexplained_holes']}), duplicates {r['duplicates']}")
    return "\n".join(lines)


@click.group("platform")
def platform() -> None:
    """The platform side of the uplink contract (reference consumer)."""


@platform.command("watch")
@click.option("--broker", "broker_url", required=True, help="mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
@click.option("--group", default="watch", show_default=True, help="shared-subscription group for records")
@click.option("--gateway", "gateway_id", default="+", show_default=True, help="one gateway id, or + for the fleet")
@click.option("--username", default="")
@click.option("--password", default="", envvar="CG_PLATFORM_PASSWORD")
@click.option("--ca-file", default="")
@click.option("--cert-file", default="")
@click.option("--key-file", default="")
@click.option("--every", "every_s", default=5.0, show_default=True, help="seconds between views")
@click.option("--count", default=0, help="stop after this many views (0: until Ctrl-C)")
@click.option("--json", "as_json", is_flag=True, help="one JSON snapshot per line")
def watch(broker_url: str, group: str, gateway_id: str, username: str, password: str, ca_file: str, cert_file: str,
          key_file: str, every_s: float, count: int, as_json: bool) -> None:
    """Live fleet view: gateways online/offline, queue depths, active alarms, seq holes and duplicates."""
    consumer = PlatformConsumer(broker_url, group=group, gateway_id=gateway_id, username=username, password=password,
                                ca_file=ca_file, cert_file=cert_file, key_file=key_file, session_expiry_s=0)
    consumer.start()
    shown = 0
    try:
        while count == 0 or shown < count:
            time.sleep(every_s)
            snap = consumer.snapshot()
            click.echo(json.dumps(snap, ensure_ascii=False) if as_json else render(snap))
            shown += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.stop()
