#!/usr/bin/env bash
# The whole test suite, from a fresh machine: system packages, virtualenv, the linter, pytest.
# PostgreSQL and Redis are started on loopback by the tests themselves (tests/servers.py).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-packages.sh
scripts/bootstrap.sh test
.venv/bin/ruff check .   # the configuration is pyproject.toml's [tool.ruff]
exec .venv/bin/python -m pytest "$@"
