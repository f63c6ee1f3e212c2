#!/usr/bin/env bash
# The demo on the embedded default: two SQLite files (data/hot.sqlite3 and
# data/cold.sqlite3), demo data, a real archive run, the dashboard served.
# It listens on 127.0.0.1 (the demo has the superuser admin/admin); HOST=0.0.0.0 opens it to the network.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export TIERING_RUN_IN_PROCESS=1   # "Run now" moves in the web process: no worker needed for the demo
PY=.venv/bin/python
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
$PY manage.py migrate --no-input -v0
$PY manage.py migrate --database=cold --no-input -v0
if [ "$($PY manage.py shell -c 'from orders.models import Order; print(Order.objects.exists())')" != "True" ]; then
    $PY manage.py seed_demo --customers 2000 --orders 20000
fi
$PY manage.py migrate_cold --no-input
$PY manage.py tiering_schedule -v0 || true   # beat schedules (run `celery -A hotcold_site beat` to use them)
DJANGO_SUPERUSER_PASSWORD=${DEMO_PASSWORD:-admin} $PY manage.py createsuperuser --no-input \
    --username admin --email admin@example.com >/dev/null 2>&1 || true
$PY manage.py analyze_tiers
echo
echo "Dashboard: http://$HOST:$PORT/tiering/   admin: http://$HOST:$PORT/admin/  (admin / ${DEMO_PASSWORD:-admin})"
exec $PY manage.py runserver "$HOST:$PORT"
