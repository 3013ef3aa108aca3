"""`gateway commission import`: a valid sheet (csv and xlsx) lands in the config's import section and the
keys in the 0600 credentials file; a sheet full of mistakes names every row and column at once (golden
messages in tests/cases/commission/errors/expected.err) and writes nothing."""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path

from click.testing import CliRunner

from gateway.cli.main import cli
from gateway.commission.sheet import read_sheet, write_sheet

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "cases" / "commission"


def setup_case(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    creds = tmp_path / "credentials.toml"
    fd = os.open(creds, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b'mqtt_username = "gw"\n')
    os.close(fd)
    text = (CASES / "gateway.toml").read_text(encoding="utf-8")
    text = text.replace("@PROFILES@", str(ROOT / "config" / "profiles")).replace("@CREDENTIALS@", str(creds)).replace("@DIR@", str(tmp_path))
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(text, encoding="utf-8")
    sheet = tmp_path / "sheet.csv"
    sheet.write_bytes((CASES / name / "sheet.csv").read_bytes())
    return cfg, creds, sheet


def run(*args: str):
    return CliRunner().invoke(cli, ["commission", *args])


def test_valid_sheet_writes_devices_contacts_and_keys(tmp_path):
    cfg, creds, sheet = setup_case(tmp_path, "valid")
    before = cfg.read_text(encoding="utf-8")
    res = run("import", str(sheet), "--config", str(cfg), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["devices"], out["contacts"], out["keys"], out["config_changed"]) == (5, 3, 2, True)
    text = cfg.read_text(encoding="utf-8")
    assert text.startswith(before.rstrip("\n"))  # the hand-written part, comments included, is untouched
    assert text[len(before.rstrip("\n")):].strip() == (CASES / "valid" / "expected.toml").read_text(encoding="utf-8").strip()
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    keys = tomllib.loads(creds.read_text())["lora_keys"]
    assert keys == {"smoke-1-1-202": "00112233445566778899aabbccddeeff", "gas-1-1-401": "ffeeddccbbaa99887766554433221100"}
    assert tomllib.loads(creds.read_text())["mqtt_username"] == "gw"
    check = CliRunner().invoke(cli, ["config", "check", str(cfg)])
    assert check.exit_code == 0 and "6 devices" not in check.output and "5 devices" in check.output
    again = run("import", str(sheet), "--config", str(cfg))
    assert again.exit_code == 0 and "unchanged" in again.output and cfg.read_text(encoding="utf-8") == text


def test_xlsx_reads_as_the_csv_and_a_second_sheet_merges(tmp_path):
    cfg, _creds, sheet = setup_case(tmp_path, "valid")
    headers, rows = read_sheet(sheet)
    xlsx = tmp_path / "sheet.xlsx"
    write_sheet(xlsx, [r.cells for r in rows])
    assert [r.cells for r in read_sheet(xlsx)[1]] == [r.cells for r in rows]
    assert run("import", str(xlsx), "--config", str(cfg)).exit_code == 0
    more = tmp_path / "building3.csv"
    write_sheet(more, [{"building": "3", "unit": "1", "room": "202", "profile": "lora_smoke_v1", "address": "439025678",
                        "key": "0123456789abcdef0123456789abcdef", "resident": "独居老人", "contact_phone": "13900000014"}])
    res = run("import", str(more), "--config", str(cfg), "--json")
    assert res.exit_code == 0, res.output
    doc = tomllib.loads(cfg.read_text(encoding="utf-8"))
    assert [d["id"] for d in doc["devices"]][-1] == "smoke-3-1-202" and len(doc["devices"]) == 6


def test_sheet_full_of_errors_names_every_row_and_column_and_writes_nothing(tmp_path):
    cfg, creds, sheet = setup_case(tmp_path, "errors")
    before, creds_before = cfg.read_bytes(), creds.read_bytes()
    res = run("import", str(sheet), "--config", str(cfg))
    assert res.exit_code == 1
    expected = (CASES / "errors" / "expected.err").read_text(encoding="utf-8").splitlines()
    assert res.stderr.splitlines() == expected
    assert cfg.read_bytes() == before and creds.read_bytes() == creds_before
    as_json = run("import", str(sheet), "--config", str(cfg), "--json")
    assert as_json.exit_code == 1 and json.loads(as_json.stdout) == {"ok": False, "dry_run": False, "errors": expected}


def test_unknown_column_and_missing_required_column(tmp_path):
    cfg, _creds, sheet = setup_case(tmp_path, "valid")
    sheet.write_text("楼栋,颜色,型号\n1,red,lora_smoke_v1\n", encoding="utf-8")
    res = run("import", str(sheet), "--config", str(cfg))
    assert res.exit_code == 1
    assert res.stderr.splitlines() == [
        "sheet.csv: row 1, column '颜色': unknown column (known: building, unit, room, id, profile, port, address, key, "
        "resident, contact_name, contact_role, contact_phone)",
        "sheet.csv: row 1: required column address (地址 address) is missing",
    ]


def test_lorawan_rows_take_hex_addresses_and_the_keys_their_activation_needs(tmp_path):
    """LoRaWAN devices (issue 19) on the installer's sheet: the DevEUI (OTAA, AppKey) or the DevAddr (ABP,
    NwkSKey:AppSKey) as hex; the keys go to the credentials file like the E22 sensors' keys."""
    cfg, creds, sheet = setup_case(tmp_path, "valid")
    with cfg.open("a", encoding="utf-8") as f:
        f.write('\n[ports.lorawan]\ndriver = "lorawan_gwmp"\nbind_host = "127.0.0.1"\nbind_port = 1700\nregion = "CN470"\n')
    header = (CASES / "valid" / "sheet.csv").read_text(encoding="utf-8").splitlines()[0]
    app_key, nwk, app = "0f" * 16, "1e" * 16, "2d" * 16
    good = [f"3,1,201,,milesight_gs524n,,26011B01,{nwk}:{app},独居老人,,,",
            f"3,1,202,,milesight_gs524n,,24E124535B312345,{app_key.upper()},独居老人,,,"]
    bad = [f"3,1,203,,milesight_gs524n,,26011b02,{app_key},独居老人,,,",  # ABP with one key
           "3,1,204,,milesight_gs524n,,24e124535b3199,,独居老人,,,",  # 14 hex digits, no key
           f"3,1,205,,milesight_gs524n,,24e124535b312399,{nwk}:{app},独居老人,,,"]  # OTAA with two keys
    sheet.write_text("\n".join([header, *bad]) + "\n", encoding="utf-8")
    res = run("import", str(sheet), "--config", str(cfg))
    assert res.exit_code == 1
    assert "row 2, column 密钥 key: an ABP LoRaWAN device (DevAddr address) needs NwkSKey:AppSKey" in res.output
    assert "row 3, column 地址 address: '24e124535b3199' is not a LoRaWAN address" in res.output
    assert "row 4, column 密钥 key: an OTAA LoRaWAN device (DevEUI address) needs its AppKey" in res.output
    sheet.write_text("\n".join([header, *good]) + "\n", encoding="utf-8")
    res = run("import", str(sheet), "--config", str(cfg), "--json")
    assert res.exit_code == 0, res.output
    devices = {d["address"]: d for d in tomllib.loads(cfg.read_text(encoding="utf-8"))["devices"]}
    assert devices["26011b01"]["port"] == devices["24e124535b312345"]["port"] == "lorawan"
    keys = tomllib.loads(creds.read_text())["lora_keys"]
    assert keys[devices["26011b01"]["id"]] == f"{nwk}:{app}" and keys[devices["24e124535b312345"]["id"]] == app_key
    assert CliRunner().invoke(cli, ["config", "check", str(cfg)]).exit_code == 0
