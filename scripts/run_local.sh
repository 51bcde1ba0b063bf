#!/usr/bin/env bash
# Start the web server, a real Celery worker and beat on the embedded defaults, then queue what the
# models need (a stopped training resumes; with no model and enough accepted annotations, a bootstrap
# training starts). Ctrl+C (or TERM) stops all three within seconds: a training in progress saves
# last.pt and continues from it on the next start.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
VAR="${LUNGMARK_VAR_DIR:-var}"
LOG_DIR="$VAR/log"
ADDRESS="${HOST:-127.0.0.1}:${PORT:-8000}"
mkdir -p "$LOG_DIR"
pids=()

stop() {
  trap - EXIT INT TERM
  echo "stopping (web, worker, beat)"
  # TERM is a warm shutdown for Celery: the worker asks a running training to stop at its next batch
  # (it saves last.pt). Up to 3 s for all three to exit; then whatever is left is killed (the next
  # start queues an unfinished training again, and it resumes from its last saved epoch).
  kill -TERM "${pids[@]}" 2>/dev/null || true
  sleep 3 &
  local timer=$! left=${#pids[@]} done_pid
  while [ "$left" -gt 0 ]; do
    done_pid=""
    wait -n -p done_pid "${pids[@]}" "$timer" 2>/dev/null || true
    [ "$done_pid" = "$timer" ] && break
    left=$((left - 1))
  done
  kill -KILL "${pids[@]}" "$timer" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One process that runs tasks in its main thread (the solo pool), so a shutdown request reaches a
# running training directly; training and pre-annotation take turns on the few local cores anyway.
$PY -m celery -A config worker -Q gpu,default --pool solo --loglevel INFO --without-mingle --without-gossip \
  >"$LOG_DIR/worker.log" 2>&1 &
pids+=($!)
$PY -m celery -A config beat --loglevel INFO --schedule "$VAR/celerybeat-schedule" >"$LOG_DIR/beat.log" 2>&1 &
pids+=($!)
$PY manage.py runserver --noreload "$ADDRESS" &
pids+=($!)
$PY manage.py training_bootstrap || echo "could not check the models (see above); the tool runs without suggestions"
echo "worker and beat started (logs in $LOG_DIR); web at http://$ADDRESS/ (Ctrl+C stops everything)"
wait -n || true  # one of the three stopped (e.g. the port was taken): stop the others
