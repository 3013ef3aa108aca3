"""The README's layering rule, checked on the source: drivers/ imports only gateway.model, gateway.clock and
gateway.errors from gateway/ (issue 16), and package __init__ files hold no code that hides the import graph."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED_FROM_GATEWAY = {"gateway.model", "gateway.clock", "gateway.errors"}


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module an import statement names (at any depth: function-level imports count too)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from gateway import model` names gateway.model.
            found += [(node.lineno, f"{node.module}.{a.name}" if node.module == "gateway" else node.module) for a in node.names]
    return found


def test_drivers_import_only_model_clock_errors_from_gateway() -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in sorted((ROOT / "drivers").rglob("*.py"))
        for line, name in _imports(path)
        if (name == "gateway" or name.startswith("gateway.")) and name not in ALLOWED_FROM_GATEWAY
    ]
    assert bad == []


def test_driver_packages_have_no_module_getattr() -> None:
    # A module-level __getattr__ in a package hid an import cycle; specs live in <package>/spec.py.
    offenders = [
        str(init.relative_to(ROOT))
        for init in sorted((ROOT / "drivers").rglob("__init__.py"))
        if any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in ast.parse(init.read_text()).body)
    ]
    assert offenders == []


def test_the_daemon_and_cli_never_import_the_simulators_libraries() -> None:
    # pymodbus is the [sim] extra (pyproject.toml): a Pi in service does not install it.
    import subprocess
    import sys

    code = ("import sys, gateway.daemon, gateway.cli.main, drivers.registry, gateway.config.load; "
            "print(sorted(m for m in ('pymodbus', 'sqlite_utils') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
