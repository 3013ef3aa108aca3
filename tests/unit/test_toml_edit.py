"""Provisioning edits gateway.toml with tomlkit: the keys asked for change, every other byte stays."""

from __future__ import annotations

import tomllib

import pytest

from gateway.errors import ConfigError
from gateway.provision.toml_edit import check_values, set_keys, toml_value

TEXT = """# courtyard gateway
[identity]
# lowercase, digits, '-'
gateway_id = "gw-old"   # the id

[uplink]
broker_url = "mqtts://old.invalid:8883"
# ca_file = "/etc/courtyard-gateway/tls/ca.pem"         # CA that signed the broker's certificate
keepalive_s = 60

[[devices]]
id = "smoke-1"
"""


def test_set_keys_changes_only_the_lines_asked_for_and_activates_documented_keys_in_place() -> None:
    out = set_keys(TEXT, "uplink", {"broker_url": "mqtts://platform:8883", "ca_file": "/etc/ca.pem", "keepalive_s": 30})
    out = set_keys(out, "identity", {"gateway_id": "gw-new-07"})
    changed = [(a, b) for a, b in zip(TEXT.splitlines(), out.splitlines(), strict=True) if a != b]
    assert changed == [
        ('gateway_id = "gw-old"   # the id', 'gateway_id = "gw-new-07"   # the id'),
        ('broker_url = "mqtts://old.invalid:8883"', 'broker_url = "mqtts://platform:8883"'),
        ('# ca_file = "/etc/courtyard-gateway/tls/ca.pem"         # CA that signed the broker\'s certificate',
         'ca_file = "/etc/ca.pem"         # CA that signed the broker\'s certificate'),
        ("keepalive_s = 60", "keepalive_s = 30"),
    ]
    check_values(out, "gateway.toml", {"uplink": {"ca_file": "/etc/ca.pem", "keepalive_s": 30}})


def test_a_missing_table_is_added_and_strings_are_escaped() -> None:
    tricky = 'say "hi"\\ \x7f 新鸿'
    out = set_keys(TEXT, "gb26875", {"operator": tricky, "enabled": True})
    assert tomllib.loads(out)["gb26875"] == {"operator": tricky, "enabled": True}
    assert out.startswith(TEXT.rstrip("\n"))
    assert tomllib.loads("k = " + toml_value(tricky))["k"] == tricky


def test_check_values_names_what_did_not_come_out() -> None:
    with pytest.raises(ConfigError, match="could not set uplink.keepalive_s"):
        check_values(TEXT, "gateway.toml", {"uplink": {"keepalive_s": 30}})
