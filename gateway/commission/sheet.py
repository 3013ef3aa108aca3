"""The installer's device list as a spreadsheet: .xlsx (openpyxl, read-only, values not formulas) or
.csv (UTF-8, with or without BOM, as Excel and WPS save it), one row per device, headers in Chinese,
English or both ("楼栋 building"). Reading only: validation is rows.py's.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import ConfigError

# Column key -> header words that name it (any one word of a header cell is enough).
COLUMNS: dict[str, tuple[str, ...]] = {
    "building": ("building", "楼栋", "楼号", "栋"),
    "unit": ("unit", "单元"),
    "room": ("room", "室", "房号", "门牌"),
    "id": ("id", "device_id", "设备编号"),
    "profile": ("profile", "型号", "设备型号"),
    "port": ("port", "端口"),
    "address": ("address", "deveui", "imei", "地址", "从站地址"),
    "key": ("key", "密钥"),
    "resident": ("resident", "住户类别", "住户"),
    "contact_name": ("contact_name", "联系人"),
    "contact_role": ("contact_role", "关系", "联系人类别"),
    "contact_phone": ("contact_phone", "phone", "电话", "联系电话"),
}
REQUIRED = ("profile", "address")
# Bilingual header row of the template (config/demo/courtyard-devices.xlsx|.csv).
TEMPLATE_HEADERS = {
    "building": "楼栋 building", "unit": "单元 unit", "room": "室 room", "id": "设备编号 id", "profile": "型号 profile",
    "port": "端口 port", "address": "地址 address", "key": "密钥 key", "resident": "住户类别 resident",
    "contact_name": "联系人 contact_name", "contact_role": "关系 contact_role", "contact_phone": "电话 contact_phone",
}
MAX_ROWS = 5000  # a courtyard has tens to hundreds of devices; more is the wrong file


@dataclass(frozen=True)
class SheetRow:
    number: int  # as the spreadsheet shows it (the header is row 1)
    cells: dict[str, str]


def _cell_text(value: object) -> str:
    """Excel stores 302 as 302.0 and a phone number as a float: give the text a person typed."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def header_key(text: str) -> str | None:
    words = {w.lower() for w in re.split(r"[\s()/（）、,，:：]+", text.strip()) if w}
    return next((key for key, aliases in COLUMNS.items() if words & set(aliases)), None)


def read_table(path: Path) -> list[list[str]]:
    try:
        if path.suffix.lower() == ".xlsx":
            import openpyxl

            wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
            try:
                ws = wb.worksheets[0]
                return [[_cell_text(v) for v in row] for row in ws.iter_rows(max_row=MAX_ROWS + 1, values_only=True)]
            finally:
                wb.close()
        if path.suffix.lower() == ".csv":
            with path.open(encoding="utf-8-sig", newline="") as f:
                return [[c.strip() for c in row] for _, row in zip(range(MAX_ROWS + 1), csv.reader(f))]
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except (OSError, ValueError, KeyError) as exc:  # openpyxl: InvalidFileException (ValueError), BadZipFile (...)
        raise ConfigError([f"{path.name}: not a readable spreadsheet: {exc}"]) from None
    except Exception as exc:  # noqa: BLE001 - zipfile.BadZipFile and openpyxl's own errors: one message, no traceback
        raise ConfigError([f"{path.name}: not a readable spreadsheet: {type(exc).__name__}: {exc}"]) from None
    raise ConfigError([f"{path.name}: give a .xlsx or .csv file"])


def read_sheet(path: Path) -> tuple[dict[str, str], list[SheetRow]]:
    """(column key -> header as written, rows). Blank rows are skipped; unknown columns are an error."""
    table = read_table(path)
    if not table:
        raise ConfigError([f"{path.name}: the sheet is empty"])
    headers: dict[str, str] = {}
    index: dict[int, str] = {}
    problems = []
    for i, text in enumerate(table[0]):
        if not text:
            continue
        key = header_key(text)
        if key is None:
            problems.append(f"{path.name}: row 1, column {text!r}: unknown column (known: {', '.join(COLUMNS)})")
        elif key in headers:
            problems.append(f"{path.name}: row 1, column {text!r}: {key} appears twice")
        else:
            headers[key], index[i] = text, key
    problems += [f"{path.name}: row 1: required column {k} ({TEMPLATE_HEADERS[k]}) is missing" for k in REQUIRED if k not in headers]
    if problems:
        raise ConfigError(problems)
    rows = []
    for n, raw in enumerate(table[1:], start=2):
        cells = {key: raw[i] if i < len(raw) else "" for i, key in index.items()}
        if any(cells.values()):
            rows.append(SheetRow(n, cells))
    return headers, rows


def write_sheet(path: Path, rows: list[dict[str, str]]) -> None:
    """The template / hand-over list: bilingual headers, one row per device (.xlsx or .csv by suffix)."""
    keys = list(TEMPLATE_HEADERS)
    table = [[TEMPLATE_HEADERS[k] for k in keys]] + [[r.get(k, "") for k in keys] for r in rows]
    if path.suffix.lower() == ".csv":
        with path.open("w", encoding="utf-8-sig", newline="") as f:
            csv.writer(f).writerows(table)
        return
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "devices"
    for row in table:
        ws.append(row)
    for col in ws.columns:  # text columns: Excel must not turn a phone number or a 0x address into a float
        for cell in col:
            cell.number_format = "@"
    wb.save(path)
