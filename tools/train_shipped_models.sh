#!/usr/bin/env bash
# Train and export the shipped detectors (Resources/Models): the best method of Table 1 (dsnt-dist), longer
# (200 epochs, cosine learning-rate schedule), on the phantom data of tools/reproduce_detectors.sh.
# About 30 minutes on 2 CPU cores (both modalities at once, one thread each). Run `make setup` first.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-200}
LI=.venv/bin/landmarkinit
ship() {  # modality
  $LI train --data data/train --val-data data/val --modality "$1" --method dsnt-dist --epochs "$EPOCHS" \
      --lr-schedule cosine --threads 1 --quiet --output "runs/shipped_$1" \
      $( [ -f "runs/shipped_$1/last.pt" ] && echo --resume )
  $LI export "runs/shipped_$1" --output "Resources/Models/$1_landmarks" --name "$1_landmarks_dsnt-dist" --force
}
ship mr > runs_shipped_mr.log 2>&1 &
ship us > runs_shipped_us.log 2>&1
wait
