"""Downlink over a real broker: signed commands run and are answered on .../reply; forged ones are
answered `rejected` and never run; a replay after a gateway restart is still refused."""

import asyncio
import json

import msgspec

from gateway import log as logsetup
from gateway.clock import Clock
from gateway.config.schema import Credentials, Identity
from gateway.config.schema import Uplink as UplinkCfg
from gateway.uplink.client import Uplink
from gateway.uplink.commands import sign_command
from tests.integration.uplink_support import GW, Platform, open_outbox
from tests.support.wait import async_wait_for
from tests.unit.uplink_schema import check_message

KEY_ID, KEY = "ops-1", "7f" * 32
CREDS = Credentials(command_keys={KEY_ID: KEY})
CMD, RELAY = f"cg/v1/{GW}/cmd", f"cg/v1/{GW}/relay"


def _uplink(url, outbox, clock, ran, relayed):
    async def silence(args):
        ran.append(("silence", args))
        return {"silenced": args["alarm_id"]}

    async def relay(body):
        relayed.append(body)

    conf = msgspec.structs.replace(UplinkCfg(broker_url=url))
    return Uplink(conf, CREDS, Identity(gateway_id=GW), outbox, clock, logsetup.get(),
                  handlers={"silence": silence}, relay_handler=relay, status_provider=lambda: {"drivers": {}})


async def _session(broker, platform, tmp_path, payloads, ran, relayed):
    """Run one gateway life: send each (topic, payload), wait for its reply, stop. Returns the replies."""
    clock = Clock("assume_synced")
    outbox = await open_outbox(tmp_path, clock)
    up = _uplink(broker.url, outbox, clock, ran, relayed)
    task = asyncio.create_task(up.run())
    await async_wait_for(lambda: up.state == "connected", what="connected")
    replies = []
    for topic, payload in payloads:
        n = len(platform.on("reply"))
        await asyncio.to_thread(platform.publish, topic, payload)
        await async_wait_for(lambda: len(platform.on("reply")) > n, timeout_s=5, what=f"reply to {payload[:40]!r}")
        replies.append(platform.on("reply")[-1])
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await outbox.close()
    return replies


def test_signed_command_runs_and_forged_ones_never_do_even_after_restart(broker, tmp_path):
    platform = Platform(broker.port)
    ran, relayed = [], []
    good = sign_command(KEY_ID, KEY, GW, "silence", {"alarm_id": "a-1"}, cmd_id="c-good")
    body = {"device_id": "nb-7", "hex": "0102"}
    first = [
        (CMD, good),
        (CMD, sign_command(KEY_ID, "00" * 32, GW, "silence", {"alarm_id": "a-1"}, cmd_id="c-badsig")),
        (CMD, json.dumps({**json.loads(good), "sig": ""}).encode()),
        (CMD, b"{not json"),
        (CMD, sign_command(KEY_ID, KEY, GW, "silence", {"pad": "x" * 70000}, cmd_id="c-big")),
        (CMD, sign_command(KEY_ID, KEY, "gw-002", "silence", {"alarm_id": "a-1"}, cmd_id="c-other")),
        (RELAY, sign_command(KEY_ID, KEY, GW, "relay", body, cmd_id="c-relay")),
    ]
    replies = asyncio.run(_session(broker, platform, tmp_path, first, ran, relayed))
    assert [(r["status"], r["reason"]) for r in replies] == [
        ("accepted", ""), ("rejected", "bad_signature"), ("rejected", "unsigned"), ("rejected", "malformed"),
        ("rejected", "oversized"), ("rejected", "wrong_gateway"), ("accepted", "")]
    assert replies[0]["id"] == "c-good" and replies[0]["result"] == {"silenced": "a-1"}
    assert ran == [("silence", {"alarm_id": "a-1"})] and relayed == [body]
    # The gateway restarts (same database): the very same command replayed is refused.
    again = asyncio.run(_session(broker, platform, tmp_path, [(CMD, good)], ran, relayed))
    assert (again[0]["status"], again[0]["reason"], again[0]["id"]) == ("rejected", "replayed", "c-good")
    assert len(ran) == 1
    for topic, payload, _r in platform.snapshot():
        if topic.endswith("/reply"):
            assert check_message(topic, payload) == []
    platform.close()


def test_every_malformed_message_gets_one_reply_with_a_reason_over_the_broker(broker, tmp_path):
    """Issue 16: NaN in args, a non-ASCII sig and nesting near the recursion limit used to get no reply."""
    platform = Platform(broker.port)
    good = sign_command(KEY_ID, KEY, GW, "silence", {"alarm_id": "a-1"}, cmd_id="c-x")
    nested = b'{"a":' * 990 + b"1" + b"}" * 990
    payloads = [
        (CMD, good.replace(b'"args":{', b'"args":{"x":NaN,')),
        (CMD, json.dumps({**json.loads(good), "sig": "\u00e9" * 64}, ensure_ascii=False).encode()),
        (CMD, good.replace(b'"args":{', b'"args":{"x":' + nested + b",")),
        (CMD, b"\xff\xfe not even UTF-8"),
    ]
    ran, relayed = [], []
    try:
        replies = asyncio.run(_session(broker, platform, tmp_path, payloads, ran, relayed))
    finally:
        platform.close()
    assert [(r["status"], r["reason"]) for r in replies] == [("rejected", "malformed")] * 4
    assert [r["id"] for r in replies[:2]] == ["c-x"] * 2 and ran == []  # too deep to parse: the id cannot be read
    for r in replies:
        assert check_message(f"cg/v1/{GW}/reply", json.dumps(r).encode()) == []
