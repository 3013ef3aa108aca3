"""Config bundles (issue 20): the whole TOML or a patch of top-level sections, with a version and a
SHA-256 over their canonical form. Parsing here is for untrusted input: a signed command is still only
bytes the platform chose, so every field is checked before anything touches the disk."""

from __future__ import annotations

import hashlib
import json
import tomllib
from typing import Any

import msgspec
from gateway.config.write import dumps_config

from gateway.errors import CommandRejected

VERSION_MAX_CHARS = 64
DEFAULT_DEADLINE_S = 60.0
DEADLINE_RANGE_S = (5.0, 600.0)
# A remote patch may not re-home the gateway: identity names the topics and the broker ACL (docs/fleet.md).
FORBIDDEN_SECTIONS = frozenset({"identity"})


class Bundle(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: str
    sha256: str
    config: str | None = None  # the whole TOML text
    patch: dict[str, Any] | None = None  # top-level section -> its new value (replaces the section)
    commit_deadline_s: float = DEFAULT_DEADLINE_S


def bundle_hash(version: str, config: str | None, patch: dict[str, Any] | None) -> str:
    """SHA-256 hex over canonical JSON {"version", "config"|"patch"} (keys sorted, no spaces, UTF-8)."""
    body: dict[str, Any] = {"version": version}
    if config is not None:
        body["config"] = config
    if patch is not None:
        body["patch"] = patch
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canon.encode()).hexdigest()


def make_bundle_args(version: str, *, config: str | None = None, patch: dict[str, Any] | None = None,
                     commit_deadline_s: float = DEFAULT_DEADLINE_S) -> dict[str, Any]:
    """The `args` of a config_apply command, as the platform builds them."""
    args: dict[str, Any] = {"version": version, "sha256": bundle_hash(version, config, patch), "commit_deadline_s": commit_deadline_s}
    if config is not None:
        args["config"] = config
    if patch is not None:
        args["patch"] = patch
    return args


def parse_bundle(args: dict[str, Any]) -> Bundle:
    """The bundle in a command's args, or CommandRejected(bad_bundle | hash_mismatch)."""
    try:
        b = msgspec.convert(args, Bundle)
    except msgspec.ValidationError as exc:
        raise CommandRejected("bad_bundle", str(exc)[:160]) from None
    if not b.version or len(b.version) > VERSION_MAX_CHARS or not b.version.isprintable():
        raise CommandRejected("bad_bundle", f"version must be 1..{VERSION_MAX_CHARS} printable characters")
    if (b.config is None) == (b.patch is None):
        raise CommandRejected("bad_bundle", "exactly one of config (whole TOML) or patch (sections) is required")
    if b.patch is not None:
        bad = sorted(set(b.patch) & FORBIDDEN_SECTIONS)
        if bad or not b.patch:
            raise CommandRejected("bad_bundle", f"patch may not be empty nor change {', '.join(bad) or 'nothing'}")
    lo, hi = DEADLINE_RANGE_S
    if not lo <= b.commit_deadline_s <= hi:
        raise CommandRejected("bad_bundle", f"commit_deadline_s must be in {lo:g}..{hi:g}")
    try:
        expected = bundle_hash(b.version, b.config, b.patch)
    except (TypeError, ValueError):
        raise CommandRejected("bad_bundle", "bundle cannot be canonicalised") from None
    if b.sha256.lower() != expected:
        raise CommandRejected("hash_mismatch", "sha256 does not match the bundle's content")
    return b


def candidate(current_text: str, b: Bundle) -> tuple[str, frozenset[str]]:
    """(new config text, the top-level sections whose parsed value changes). A patch replaces whole
    top-level sections of the running config; none changed means the parsed documents are equal,
    whatever the formatting."""
    try:
        current = tomllib.loads(current_text)
    except tomllib.TOMLDecodeError as exc:  # the running file was readable at start; say so if not now
        raise CommandRejected("config_unreadable", str(exc)[:160]) from None
    if b.config is not None:
        try:
            new = tomllib.loads(b.config)
        except tomllib.TOMLDecodeError as exc:
            raise CommandRejected("invalid_config", f"TOML: {str(exc)[:160]}") from None
        if new.get("identity") != current.get("identity"):
            raise CommandRejected("invalid_config", "identity differs from the running config (wrong gateway?)")
        return b.config, _changed(current, new)
    assert b.patch is not None
    merged = {**current, **b.patch}
    if merged == current:
        return current_text, frozenset()
    header = f"# Written by config_apply (docs/fleet.md): sections {', '.join(sorted(b.patch))} from the platform.\n"
    return header + dumps_config(merged), _changed(current, merged)


def _changed(old: dict[str, Any], new: dict[str, Any]) -> frozenset[str]:
    return frozenset(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
