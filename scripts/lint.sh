#!/usr/bin/env bash
# Lint and type-check (issue 16): ruff with the rules in pyproject.toml, then mypy with its two tiers
# (the STRICT module list and the gradual rest, [tool.mypy] in pyproject.toml). Both must be clean.
# Usage: scripts/lint.sh      (makes .venv with the dev extra when missing, like scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-venv.sh
ensure_venv dev
.venv/bin/ruff check .
.venv/bin/mypy || {
    echo "mypy failed: fix the module, or (a merge of code written without mypy) take it off the STRICT tier:" >&2
    echo "  .venv/bin/python scripts/mypy_tiers.py park MODULE   (and open an issue to clean it)" >&2
    exit 1
}
