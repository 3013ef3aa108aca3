"""test:code line ratio per package (issue 16): lines of the test files that import a package, over
the package's own lines. Non-blank lines on both sides; a test file counts for every package it imports.

    python scripts/test_ratio.py drivers/cellular drivers/codecs gateway/rules
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lines(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def imported(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (tests import lazily inside functions too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def ratio(package: str, tests: dict[Path, set[str]]) -> tuple[int, int]:
    mod = package.strip("/").replace("/", ".")
    code = sum(lines(p) for p in (ROOT / package).rglob("*.py"))
    test = sum(lines(p) for p, names in tests.items() if any(n == mod or n.startswith(mod + ".") for n in names))
    return test, code


def main(argv: list[str]) -> int:
    packages = argv or ["drivers/cellular", "drivers/codecs", "gateway/rules"]
    tests = {p: imported(p) for p in (ROOT / "tests").rglob("*.py")}
    for package in packages:
        test, code = ratio(package, tests)
        print(f"{package:24} test {test:6}  code {code:6}  ratio {test / max(1, code):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
