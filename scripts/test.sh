#!/usr/bin/env bash
# The whole test suite, from a fresh machine: system packages, virtualenv, the linter, pytest.
# PostgreSQL, MariaDB and Redis are started on loopback by the tests themselves (tests/servers.py); the ones this run
# started are stopped when it ends, and servers that were already running are left running.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-packages.sh
scripts/bootstrap.sh test
.venv/bin/ruff check .   # the configuration is pyproject.toml's [tool.ruff]
before=" $(.venv/bin/python -m tests.servers running) "
stop_started() {
    local started=()
    for name in postgres redis pg-replica mariadb mariadb2; do
        [[ "$before" == *" $name "* ]] || started+=("$name")
    done
    [ ${#started[@]} -eq 0 ] || .venv/bin/python -m tests.servers stop "${started[@]}"
}
trap stop_started EXIT
# one pytest-xdist worker per core, up to four (each worker has its own test databases: tests/settings.py);
# worksteal rebalances the queue when one worker is left holding the long crash-round tests
export HOTCOLD_REQUIRE_SERVERS=1   # a server that did not start fails the run (tests/conftest.py)
workers=$(nproc)
[ "$workers" -le 4 ] || workers=4
.venv/bin/python -m pytest -n "$workers" --dist worksteal "$@"
