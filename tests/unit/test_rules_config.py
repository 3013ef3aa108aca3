"""`[[rules]]` and `[notify]` config: the documented example loads; each mistake gives its precise message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.rules.check import check_rules
from gateway.rules.schema import CorrelateRule, EventRule, OfflineRule, RateRule, ThresholdRule

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_BLOCK = re.search(r"```toml\n(.*?)```", (ROOT / "docs/rules.md").read_text(), re.S).group(1)


def example_without_rules() -> str:
    """The example config minus its rules/notify block (the same block docs/rules.md documents)."""
    text = (ROOT / "config/gateway.example.toml").read_text()
    head, rest = text.split("# ---- Rules:", 1)
    return head + "# ---- Second uplink" + rest.split("# ---- Second uplink", 1)[1]


def test_example_config_carries_the_documented_rules_block():
    assert EXAMPLE_BLOCK.strip() in (ROOT / "config/gateway.example.toml").read_text()


def write(tmp_path, extra: str, edit=lambda text: text) -> Path:
    base = edit(example_without_rules())
    base = base.replace('profiles_dir = "profiles"', f'profiles_dir = "{ROOT / "config/profiles"}"')
    p = tmp_path / "gateway.toml"
    p.write_text(base + "\n" + extra)
    return p


def problems(tmp_path, extra: str, edit=lambda text: text) -> list[str]:
    """Every problem, whether load_config already runs check_rules (wired in) or not yet."""
    try:
        cfg = load_config(write(tmp_path, extra, edit))
    except ConfigError as exc:
        return exc.problems
    errors: list[str] = []
    check_rules(cfg, "gateway.toml", errors)
    return errors


def test_documented_example_loads_with_every_kind_and_passes_the_cross_checks(tmp_path):
    cfg = load_config(write(tmp_path, EXAMPLE_BLOCK))
    kinds = {type(r) for r in cfg.rules}
    assert kinds == {EventRule, ThresholdRule, RateRule, OfflineRule, CorrelateRule}
    notify = cfg.notify
    assert notify.sounder.device == "guard-relay" and [t.after_s for t in notify.tiers] == [0, 300, 600]
    errors: list[str] = []
    check_rules(cfg, "gateway.toml", errors)
    assert errors == []


RULE = '[[rules]]\nkind = "{kind}"\nid = "r1"\nseverity = "major"\n'

CASES = {
    "unknown_kind": (
        '[[rules]]\nkind = "expression"\nid = "r1"\nseverity = "major"\n',
        "gateway.toml: rules[0].kind: 'expression': Invalid value 'expression'"),
    "unknown_device": (
        RULE.format(kind="event") + 'events = ["alarm"]\ndevices = ["hydrant-9"]\n',
        "gateway.toml: rules[0].devices[0]: 'hydrant-9' is not a device id (known: gas-2-1-401, guard-relay, hydrant-1, hydrant-2, lwleak-pump, lwsmoke-4-1-301, nbsmoke-3-2-502, pump-1, smoke-2-1-401)"),
    "unknown_profile": (
        RULE.format(kind="event") + 'events = ["alarm"]\nprofiles = ["smoke_nb"]\n',
        "gateway.toml: rules[0].profiles[0]: 'smoke_nb' is not a known profile (known: guard_relay_box, hydrant_monitor, lora_door_ws301, lora_gas_v1, lora_manhole_v1, lora_smoke_v1, lora_sos_ws101, lora_water_em300di, lora_water_flow_v1, milesight_em300_sld, milesight_gs101, milesight_gs524n, milesight_ws301, milesight_ws303, nbiot_smoke_udp, pump_station)"),
    "unknown_type": (
        RULE.format(kind="event") + 'events = ["alarm"]\ntypes = ["sprinkler"]\n',
        "gateway.toml: rules[0].types[0]: 'sprinkler' is not allowed"),
    "duplicate_id": (
        RULE.format(kind="event") + 'events = ["alarm"]\n' + RULE.format(kind="event") + 'events = ["fault"]\n',
        "gateway.toml: rules[1].id: 'r1' duplicates rules[0]"),
    "hysteresis_on_the_wrong_side": (
        RULE.format(kind="threshold") + 'types = ["hydrant"]\nfield = "pressure_mpa"\nop = "<"\nlimit = 0.10\nclear = 0.05\n',
        "gateway.toml: rules[0].clear: 0.05 must be at or above the limit 0.1 for op '<' (hysteresis)"),
    "field_not_in_profile": (
        RULE.format(kind="threshold") + 'types = ["hydrant"]\nfield = "presure_mpa"\nop = "<"\nlimit = 0.10\n',
        "gateway.toml: rules[0].field: 'presure_mpa' is not a field of the matched profiles (hydrant_monitor)"),
    "auto_clear_without_clearing_event": (
        RULE.format(kind="event") + 'events = ["tamper"]\n',
        "gateway.toml: rules[0].auto_clear: events tamper have no clearing event; set auto_clear = false (clear by acknowledge + clear command)"),
    "sounder_action_without_sounder": (
        RULE.format(kind="event") + 'events = ["alarm"]\nactions = ["sounder"]\n',
        "gateway.toml: rules[0].actions: 'sounder' needs [notify.sounder] device = the relay box id"),
    "correlate_condition_both_event_and_field": (
        RULE.format(kind="correlate") + 'a = { types = ["hydrant"], event = "alarm", field = "pressure_mpa" }\nb = { event = "alarm" }\n',
        "gateway.toml: rules[0].a: give exactly one of `event` (an event kind) or `field` (a reading test)"),
    "sounder_device_not_a_relay_box": (
        '[notify.sounder]\ndevice = "hydrant-1"\n',
        "gateway.toml: notify.sounder.device: 'hydrant-1' is a hydrant device, not a relay_box"),
    "sounder_output_not_in_profile": (
        '[notify.sounder]\ndevice = "guard-relay"\nstrobe_outputs = ["beacon"]\n',
        "gateway.toml: notify.sounder.strobe_outputs[0]: 'beacon' is not an output of profile 'guard_relay_box' (outputs: sounder, strobe, trouble)"),
    "tiers_not_increasing": (
        '[[notify.tiers]]\nafter_s = 300\nroles = ["grid_worker"]\n[[notify.tiers]]\nafter_s = 300\nroles = ["street_center"]\n',
        "gateway.toml: notify.tiers[1].after_s: 300.0 must be later than the tier before (300.0)"),
    "unknown_placeholder": (
        '[notify.templates]\nraised = "{place} {titel}"\n',
        "gateway.toml: notify.templates.raised: unknown placeholder {titel} (allowed: advice, community, courtyard, date, device, place, resident, room, severity, tier, time, title)"),
    "unknown_timezone": (
        '[notify]\ntimezone = "Asia/Beijing"\n',
        "gateway.toml: notify.timezone: 'Asia/Beijing' is not a known time zone (e.g. 'Asia/Shanghai')"),
    "unknown_sms_policy": (
        '[notify.sms]\ncritical = "sometimes"\n',
        "gateway.toml: notify.sms.critical: 'sometimes' is not allowed (one of: 'always', 'uplink_down', 'never')"),
    "inactivity_volume_needs_field": (
        RULE.format(kind="inactivity") + '[[rules.sources]]\ndevices = ["gas-2-1-401"]\nactivity = "volume"\n',
        "gateway.toml: rules[0].sources[0].field: activity 'volume' needs the reading field to watch"),
    "inactivity_source_without_flat": (
        RULE.format(kind="inactivity") + '[[rules.sources]]\ndevices = ["hydrant-1"]\n',
        "gateway.toml: rules[0].sources[0]: device 'hydrant-1' has no location.room: the rule cannot tell whose flat it is in"),
    "inactivity_bad_hours": (
        RULE.format(kind="inactivity") + 'quiet_hours = "22-7"\n[[rules.sources]]\ndevices = ["gas-2-1-401"]\n',
        "gateway.toml: rules[0].quiet_hours"),
}


@pytest.mark.parametrize("extra,message", CASES.values(), ids=CASES.keys())
def test_rule_mistake_gives_its_precise_message(tmp_path, extra, message):
    found = problems(tmp_path, extra)
    assert any(p.startswith(message) for p in found), found


def test_tier_role_nobody_has_is_an_error_once_a_rule_sends_sms(tmp_path):
    sms_rule = RULE.format(kind="event") + 'events = ["alarm"]\nactions = ["sms"]\n'

    def no_street_center(text):
        return text.replace('role = "street_center"', 'role = "grid_worker"')

    assert problems(tmp_path, "", no_street_center) == []  # no rule sends SMS: those contacts are not required
    assert problems(tmp_path, sms_rule, no_street_center) == [
        "gateway.toml: notify.tiers[2].roles[0]: no contact has role 'street_center'"
    ]
