"""Downlink commands: a signed, fresh, first-seen command runs; every forged or broken one is rejected and never runs."""

import asyncio
import hashlib
import hmac
import json

import pytest

from gateway import log as logsetup
from gateway.clock import ManualClock
from gateway.errors import CommandRejected
from gateway.uplink.commands import MAX_COMMAND_BYTES, NonceCache, Verifier, canonical, sign_command
from gateway.uplink.dispatch import Dispatcher
from tests.unit.uplink_fakes import FakeOutbox
from tests.unit.uplink_schema import check_message

GW = "gw-001"
KEY_ID, KEY = "ops-1", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
OTHER_KEY = "ff" * 32
WINDOW_S = 120.0


class Harness:
    def __init__(self, db_path: str = ":memory:", clock: ManualClock | None = None) -> None:
        logsetup.setup("critical")
        self.clock = clock or ManualClock(wall_s=1_790_000_000.0)
        self.outbox = FakeOutbox(db_path)
        self.ran: list[tuple[str, dict]] = []
        self.relayed: list[dict] = []

        async def silence(args):
            self.ran.append(("silence", args))
            return {"silenced": args.get("alarm_id")}

        async def ack_alarm(args):
            self.ran.append(("ack_alarm", args))
            raise CommandRejected("unknown_alarm", "no active alarm a-9")

        async def relay(body):
            self.relayed.append(body)

        verifier = Verifier(GW, {KEY_ID: KEY}, WINDOW_S, self.clock)
        self.d = Dispatcher(verifier, NonceCache(self.outbox, WINDOW_S), {"silence": silence, "ack_alarm": ack_alarm},
                            relay, lambda: {"drivers": {}}, self.clock, logsetup.get())

    def sign(self, command="silence", args=None, **kw):
        kw.setdefault("issued_at", int(self.clock.wall()))
        return sign_command(kw.pop("key_id", KEY_ID), kw.pop("key", KEY), kw.pop("gateway_id", GW), command,
                            {"alarm_id": "a-1"} if args is None else args, **kw)

    def handle(self, payload: bytes, relay: bool = False):
        return asyncio.run(self.d.handle(relay, payload))


def test_signed_fresh_command_runs_and_is_accepted():
    h = Harness()
    reply = h.handle(h.sign())
    assert (reply.status, reply.reason, reply.result) == ("accepted", "", {"silenced": "a-1"})
    assert h.ran == [("silence", {"alarm_id": "a-1"})]


def test_canonical_form_matches_the_documented_test_vector():
    # docs/uplink.md "Commands": the vector a platform implementation must reproduce.
    body = canonical("c-1", "gw-001", "silence", {"alarm_id": "a-1", "by": "张三"}, 1790000000, "n-1", "ops-1")
    assert body == '["cg-cmd-v1","c-1","gw-001","silence",{"alarm_id":"a-1","by":"张三"},1790000000,"n-1","ops-1"]'.encode()
    sig = hmac.new(bytes.fromhex(KEY), body, hashlib.sha256).hexdigest()
    payload = sign_command(KEY_ID, KEY, GW, "silence", {"alarm_id": "a-1", "by": "张三"}, issued_at=1790000000, nonce="n-1", cmd_id="c-1")
    assert json.loads(payload)["sig"] == sig
    assert check_message("cg/v1/gw-001/cmd", payload) == []


def _tamper(payload: bytes, **changes) -> bytes:
    doc = json.loads(payload)
    doc.update(changes)
    return json.dumps(doc).encode()


REJECTIONS = {
    "unsigned": lambda h: _tamper(h.sign(), sig=""),
    "bad_signature": lambda h: _tamper(h.sign(), args={"alarm_id": "a-2"}),
    "bad_signature_other_key": lambda h: h.sign(key=OTHER_KEY),
    "unknown_key": lambda h: h.sign(key_id="nobody"),
    "stale": lambda h: h.sign(issued_at=int(h.clock.wall() - WINDOW_S - 5)),
    "future": lambda h: h.sign(issued_at=int(h.clock.wall() + WINDOW_S + 5)),
    "wrong_gateway": lambda h: h.sign(gateway_id="gw-002"),
    "malformed": lambda h: b'{"id": "c-1", "command": "silence", ',
    "malformed_types": lambda h: _tamper(h.sign(), issued_at="yesterday"),
    "malformed_not_object": lambda h: b"[1, 2, 3]",
    "oversized": lambda h: h.sign(args={"pad": "x" * MAX_COMMAND_BYTES}),
    "unknown_command": lambda h: h.sign(command="reboot", args={}),
}


@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_forged_or_broken_command_is_rejected_and_never_runs(case):
    h = Harness()
    reply = h.handle(REJECTIONS[case](h))
    expected = case.split("_other")[0].split("_types")[0].split("_not_object")[0]
    assert reply.status == "rejected" and reply.reason == expected
    assert h.ran == [] and h.d.rejected == {expected: 1}


def test_replayed_command_is_rejected():
    h = Harness()
    payload = h.sign()
    assert h.handle(payload).status == "accepted"
    reply = h.handle(payload)
    assert (reply.status, reply.reason) == ("rejected", "replayed")
    assert len(h.ran) == 1


def test_replay_after_restart_is_still_rejected(tmp_path):
    db = str(tmp_path / "nonces.db")
    clock = ManualClock(wall_s=1_790_000_000.0)
    first = Harness(db, clock)
    payload = first.sign()
    assert first.handle(payload).status == "accepted"
    first.outbox.conn.close()
    clock.advance(30)  # restart within the window
    second = Harness(db, clock)
    assert second.handle(payload).reason == "replayed"
    assert second.ran == []


def test_rejected_command_does_not_burn_its_nonce():
    h = Harness()
    bad = h.sign(nonce="n-7", gateway_id="gw-002")
    assert h.handle(bad).reason == "wrong_gateway"
    assert h.handle(h.sign(nonce="n-7")).status == "accepted"


def test_unsynced_clock_refuses_commands_with_a_reason():
    h = Harness(clock=ManualClock(synced=False))
    reply = h.handle(h.sign())
    assert (reply.status, reply.reason) == ("rejected", "clock_unsynced") and h.ran == []


def test_handler_refusal_is_a_rejected_reply():
    h = Harness()
    reply = h.handle(h.sign("ack_alarm", {"alarm_id": "a-9"}))
    assert (reply.status, reply.reason) == ("rejected", "unknown_alarm")


def test_relay_goes_to_the_relay_handler_only_on_the_relay_topic():
    h = Harness()
    body = {"device_id": "nb-7", "payload_hex": "0a0b"}
    assert h.handle(h.sign("relay", body), relay=True).status == "accepted"
    assert h.relayed == [body]
    assert h.handle(h.sign("relay", body), relay=False).reason == "wrong_topic"
    assert h.handle(h.sign("silence"), relay=True).reason == "wrong_topic"
    assert h.relayed == [body] and h.ran == []


def test_builtin_ping_and_get_status_answer():
    h = Harness()
    assert h.handle(h.sign("ping", {})).result["pong"] is True
    assert h.handle(h.sign("get_status", {})).result == {"drivers": {}}


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


# Issue 16: these got no reply at all (an exception escaped the verifier), though every message is owed one.
MALFORMED = {
    "nan_in_args": lambda h: h.sign().replace(b'"args":{', b'"args":{"x":NaN,'),
    "infinity_in_args": lambda h: h.sign().replace(b'"args":{', b'"args":{"x":-Infinity,'),
    "non_ascii_sig": lambda h: _tamper(h.sign(), sig="é" * 64),
    "sig_not_a_string": lambda h: _tamper(h.sign(), sig=12345),
    "nesting_past_the_cap": lambda h: h.sign().replace(b'"args":{', b'"args":{"x":' + _nested(40).encode() + b","),
    "nesting_near_the_recursion_limit": lambda h: h.sign().replace(b'"args":{', b'"args":{"x":' + _nested(990).encode() + b","),
    "nesting_past_the_recursion_limit": lambda h: h.sign().replace(b'"args":{', b'"args":{"x":' + _nested(5000).encode() + b","),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_command_gets_exactly_one_rejected_reply_with_a_reason(case):
    h = Harness()
    payload = MALFORMED[case](h)
    assert len(payload) <= MAX_COMMAND_BYTES
    reply = h.handle(payload)
    assert (reply.status, reply.reason) == ("rejected", "malformed"), reply
    assert h.ran == []


def test_a_verifier_bug_still_gets_a_failed_reply_not_silence():
    h = Harness()

    def broken(payload):
        raise TypeError("a bug")

    h.d.verifier.verify = broken
    reply = h.handle(h.sign(cmd_id="c-bug"))
    assert (reply.id, reply.status, reply.reason) == ("c-bug", "failed", "internal_error")


def test_the_documented_signature_vector():
    """docs/uplink.md's test vector, the expected `sig` included (computed independently with openssl)."""
    import hashlib
    import hmac

    from gateway.platform.signing import canonical

    raw = canonical("c-1", "gw-001", "silence", {"alarm_id": "a-1", "by": "张三"}, 1790000000, "n-1", "ops-1")
    assert raw == '["cg-cmd-v1","c-1","gw-001","silence",{"alarm_id":"a-1","by":"张三"},1790000000,"n-1","ops-1"]'.encode()
    sig = hmac.new(bytes.fromhex(KEY), raw, hashlib.sha256).hexdigest()
    assert sig == "508e8bae1b9c15837261aa4eb06796900711996eec0f21a2ab547bf2a211f820"
