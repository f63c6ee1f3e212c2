#!/usr/bin/env bash
# Shared set-up: a virtualenv in .venv with hotcold installed editable and the demo site's dependencies
# (the [demo] extra: Celery, django-prometheus, psycopg, gunicorn, whitenoise, dj-database-url).
# The install maps only the tiering package; the demo site and example apps are imported from this directory.
# Usage: scripts/bootstrap.sh [test]   ("test" adds the test dependencies)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
target=".[demo]"
[ "${1:-}" = "test" ] && target=".[test]"
log=$(mktemp)
if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e "$target"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "pip install failed (full log above)" >&2
    exit 1
fi
rm -f "$log"
