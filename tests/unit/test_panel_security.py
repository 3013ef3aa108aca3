"""The panel's gates (gateway/panel/security.py, issue 24): PIN hashes, the walk code, the attempt limit."""

from __future__ import annotations

import pytest

from gateway.panel.security import Attempts, check_pin, hash_pin, same_token, walk_code


def test_pin_hash_checks_the_right_pin_only() -> None:
    stored = hash_pin("4711")
    assert stored.startswith("scrypt$") and "4711" not in stored
    assert check_pin("4711", stored)
    assert not check_pin("4712", stored)
    assert not check_pin("", stored)
    assert not check_pin("4711", "")  # no PIN configured: nothing opens
    assert not check_pin("4711", "md5$00$00")
    assert not check_pin("4711", "scrypt$zz$zz")
    assert hash_pin("4711") != stored  # salted


@pytest.mark.parametrize("pin", ["", "123", "abcd", "1234567890123"])
def test_weak_or_odd_pins_are_refused(pin: str) -> None:
    with pytest.raises(ValueError):
        hash_pin(pin)


def test_walk_code_is_per_walk_and_per_key() -> None:
    key = "5a" * 32
    code = walk_code(key, 1000.0)
    assert len(code) == 8 and code.isdigit()
    assert walk_code(key, 1000.0) == code
    assert walk_code(key, 1001.0) != code
    assert walk_code("a5" * 32, 1000.0) != code


def test_attempts_lock_one_address_and_forget_after_the_lockout() -> None:
    a = Attempts(max_attempts=3, lockout_s=60)
    for t in (0, 1, 2):
        assert a.locked_for("10.0.0.5", t) == 0
        a.failed("10.0.0.5", t)
    assert a.locked_for("10.0.0.5", 3) == pytest.approx(57)
    assert a.locked_for("10.0.0.6", 3) == 0  # another tablet is not locked out
    assert a.locked_for("10.0.0.5", 60.5) == 0  # the first failure aged out
    a.succeeded("10.0.0.5")
    assert a.locked_for("10.0.0.5", 61) == 0


def test_attempts_remember_a_bounded_number_of_addresses() -> None:
    a = Attempts(max_attempts=1, lockout_s=60, max_clients=10)
    for i in range(100):
        a.failed(f"10.0.{i}.1", 0)
    assert len(a._failures) == 10


def test_tokens_compare_only_when_both_present() -> None:
    assert same_token("abc", "abc")
    assert not same_token("", "")
    assert not same_token(None, "abc")
    assert not same_token("abc", "abd")


def test_hash_pin_command_prints_lines_for_the_credentials_file() -> None:
    import tomllib

    from click.testing import CliRunner

    from gateway.cli.main import cli

    result = CliRunner().invoke(cli, ["panel", "hash-pin"], input="4711\n4711\n")
    assert result.exit_code == 0, result.output
    lines = tomllib.loads("\n".join(line for line in result.output.splitlines() if line.startswith("panel_")))
    assert check_pin("4711", lines["panel_pin_hash"]) and len(bytes.fromhex(lines["panel_code_key"])) == 32
    assert CliRunner().invoke(cli, ["panel", "hash-pin"], input="12\n12\n").exit_code != 0
