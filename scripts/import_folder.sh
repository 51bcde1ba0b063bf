#!/usr/bin/env bash
# Import a folder in the sample's layout: radiographs, then whatever annotation files it has.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="$1"
NAME="${DATASET:-$(basename "$DATA")}"
PY=.venv/bin/python
VAR="${LUNGMARK_VAR_DIR:-var}"
mkdir -p "$VAR"
$PY manage.py import_radiographs "$DATA" --dataset "$NAME" --report "$VAR/import-report.json"
args=()
[ -f "$DATA/annotations/lung_boxes.json" ] && args+=(--lung-boxes "$DATA/annotations/lung_boxes.json")
[ -f "$DATA/annotations/lung_polygons.json" ] && args+=(--lung-polygons "$DATA/annotations/lung_polygons.json")
[ -f "$DATA/annotations/findings.csv" ] && args+=(--findings "$DATA/annotations/findings.csv")
if [ ${#args[@]} -gt 0 ]; then $PY manage.py import_annotations --dataset "$NAME" "${args[@]}"; fi
