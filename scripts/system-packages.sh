#!/usr/bin/env bash
# Debian packages the test suite uses: PostgreSQL, MariaDB and Redis servers (started by
# the tests on loopback), Chromium and its driver (the browser test), and the
# venv module with pip (scripts/bootstrap.sh; tests/test_wheel.py makes a fresh virtualenv).
set -euo pipefail
need=()
"${PYTHON:-python3}" -c "import ensurepip, venv" 2>/dev/null || need+=(python3-venv)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v redis-server >/dev/null || need+=(redis-server)
command -v mariadb-install-db >/dev/null || need+=(mariadb-server)
pkg-config --exists libmariadb 2>/dev/null || need+=(libmariadb-dev pkg-config gcc)  # mysqlclient builds on it
command -v pt-archiver >/dev/null || need+=(percona-toolkit)  # bench/archive.py --backend mariadb
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "Installing Debian packages: ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
