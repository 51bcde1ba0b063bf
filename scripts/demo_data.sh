#!/usr/bin/env bash
# The data `make run` starts with: DATA when given; otherwise, on an empty database, the sample
# beside the repository (../shared/data/cxr-sample) where it exists; otherwise say where to put some.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
DATA="${1:-}"
SAMPLE="${LUNGMARK_SAMPLE_DATA:-../shared/data/cxr-sample}"
if [ -n "$DATA" ]; then
  exec scripts/import_folder.sh "$DATA"
fi
count=$($PY manage.py shell -c "from annotator.models import Radiograph; print(Radiograph.objects.count())" 2>/dev/null | tail -n1)
if [ "${count:-0}" != "0" ]; then
  echo "$count radiographs already imported."
elif [ -d "$SAMPLE/images" ] || [ -d "$SAMPLE/dicom" ]; then
  echo "Empty database: importing the sample data from $SAMPLE (radiographs and annotations)."
  DATASET="${DATASET:-$(basename "$SAMPLE")}" scripts/import_folder.sh "$SAMPLE"
else
  cat <<MSG
No radiographs yet. Put a folder in the sample's layout somewhere:
    FOLDER/images/            PNG or JPEG radiographs
    FOLDER/dicom/             DICOM radiographs (optional)
    FOLDER/metadata.csv       file, source, patient_id, view, modality, finding, ...
    FOLDER/annotations/       lung_boxes.json, lung_polygons.json, findings.csv (optional)
then run  DATA=FOLDER make run  (or import files on the admin page, Import radiographs).
MSG
fi
