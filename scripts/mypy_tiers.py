"""Keep the two mypy tiers in pyproject.toml honest (issue 16).

    .venv/bin/python scripts/mypy_tiers.py candidates     # modules clean under --strict, not yet listed STRICT
    .venv/bin/python scripts/mypy_tiers.py promote MOD... # move modules to STRICT (and off "not yet clean")
    .venv/bin/python scripts/mypy_tiers.py gradual MOD... # take modules off "not yet clean" (clean at the default level)
    .venv/bin/python scripts/mypy_tiers.py park MOD...    # a merge broke them: off STRICT, onto "not yet clean"
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"


def _module(path: str) -> str:
    name = path.removesuffix(".py").replace("/", ".")
    return name.removesuffix(".__init__")


def tiers(text: str) -> tuple[set[str], set[str]]:
    strict, not_clean = tomllib.loads(text)["tool"]["mypy"]["overrides"][:2]
    return set(strict["module"]), set(not_clean["module"])


def _block(mods: set[str]) -> str:
    lines, cur = [], "   "
    for m in sorted(mods):
        if len(cur) + len(m) + 4 > 110:
            lines.append(cur)
            cur = "   "
        cur += f' "{m}",'
    return "module = [\n" + "\n".join([*lines, cur]) + "\n]"


def write(text: str, strict: set[str], not_clean: set[str]) -> str:
    blocks = list(re.finditer(r"module = \[\n.*?\n\]", text, re.S))
    text = text[: blocks[0].start()] + _block(strict) + text[blocks[0].end() : blocks[1].start()] + _block(not_clean) + text[blocks[1].end() :]
    text = re.sub(r"clean on these \(\d+ modules\)", f"clean on these ({len(strict)} modules)", text)
    return re.sub(r"gradual level \(\d+ modules", f"gradual level ({len(not_clean)} modules", text)


def candidates() -> list[str]:
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--config-file", "/dev/null", "--python-version", "3.11",
                          "gateway", "drivers"], cwd=ROOT, capture_output=True, text=True).stdout
    failing = {_module(line.split(":", 1)[0]) for line in out.splitlines() if ": error:" in line}
    files = subprocess.run(["git", "ls-files", "gateway/*.py", "drivers/*.py"], cwd=ROOT, capture_output=True, text=True).stdout
    strict, _ = tiers(PYPROJECT.read_text())
    return sorted({_module(f) for f in files.split()} - failing - strict)


def main(argv: list[str]) -> None:
    if argv[:1] == ["candidates"]:
        print("\n".join(candidates()))
    elif argv[:1] == ["promote"] and argv[1:]:
        text = PYPROJECT.read_text()
        strict, not_clean = tiers(text)
        PYPROJECT.write_text(write(text, strict | set(argv[1:]), not_clean - set(argv[1:])))
    elif argv[:1] in (["gradual"], ["park"]) and argv[1:]:
        text = PYPROJECT.read_text()
        strict, not_clean = tiers(text)
        mods = set(argv[1:])
        if argv[0] == "park":
            strict, not_clean = strict - mods, not_clean | mods
        else:
            not_clean -= mods
        PYPROJECT.write_text(write(text, strict, not_clean))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
