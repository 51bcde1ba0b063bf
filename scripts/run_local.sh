#!/usr/bin/env bash
# Start the web server and a real Celery worker (plus beat) on the embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
LOG_DIR="${LUNGMARK_VAR_DIR:-var}/log"
mkdir -p "$LOG_DIR"
$PY -m celery -A config worker -Q gpu,default -c 1 --loglevel INFO --without-mingle --without-gossip \
  >"$LOG_DIR/worker.log" 2>&1 &
WORKER=$!
$PY -m celery -A config beat --loglevel INFO --schedule "${LUNGMARK_VAR_DIR:-var}/celerybeat-schedule" >"$LOG_DIR/beat.log" 2>&1 &
BEAT=$!
trap 'kill $WORKER $BEAT 2>/dev/null; wait' EXIT INT TERM
echo "worker and beat started (logs in $LOG_DIR); web at http://${HOST:-127.0.0.1}:${PORT:-8000}/"
$PY manage.py runserver --noreload "${HOST:-127.0.0.1}:${PORT:-8000}"
