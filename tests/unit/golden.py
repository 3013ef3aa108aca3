"""Golden cases per driver (issue 16), like tests/cases/config: `tests/cases/<driver>/<case>/` holds the
input (`input.hex`, `at.txt` or `input.json`, with `case.json` for settings) and `expected.jsonl`, one
output object per line. `input.hex` and `at.txt` take `#` comments so a case can name its fields.

The expected files were produced by the code and then checked by hand against the vendor document each
case cites. To rewrite them after a deliberate change: GOLDEN_UPDATE=1 pytest tests/unit/test_golden_*.py
and review the diff against the documents; never accept it blindly.
"""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "cases"
UPDATE = os.environ.get("GOLDEN_UPDATE") == "1"


def cases(driver: str) -> list[Path]:
    return sorted(p for p in (CASES / driver).iterdir() if p.is_dir())


def settings(case: Path) -> dict[str, Any]:
    p = case / "case.json"
    return json.loads(p.read_text()) if p.exists() else {}


def read_hex(path: Path) -> bytes:
    """Hex digits with any whitespace; `#` starts a comment to the end of the line."""
    text = "".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
    return bytes.fromhex("".join(text.split()))


def read_transcript(path: Path) -> list[tuple[str, str | bytes]]:
    """at.txt: `> AT+CMD` = the host sends a command; `< bytes` = the modem's bytes, with \\r \\n \\xNN
    escapes; blank lines and `#` lines are comments."""
    steps: list[tuple[str, str | bytes]] = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        mark, rest = line[0], line[2:] if len(line) > 1 else ""
        if mark == ">":
            steps.append((">", rest.strip()))
        elif mark == "<":
            raw = codecs.decode(rest.encode("utf-8"), "unicode_escape").encode("latin-1") if rest.isascii() else rest.encode()
            steps.append(("<", raw))
        else:
            raise ValueError(f"{path}: a line must start with '>' or '<': {line!r}")
    return steps


def check(case: Path, got: list[dict[str, Any]]) -> None:
    """Compare with expected.jsonl (or write it when GOLDEN_UPDATE=1)."""
    path = case / "expected.jsonl"
    lines = [json.dumps(g, ensure_ascii=False, sort_keys=True) for g in got]
    if UPDATE:
        path.write_text("".join(line + "\n" for line in lines))
    expected = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert [json.loads(line) for line in lines] == expected, f"{case.name}: output differs from expected.jsonl"
