#!/usr/bin/env bash
# Experiment: does lateral context fix the posterior median's lateral error? (docs/detection.md, "Lateral context")
# On validation the shipped US detector's posterior-median error is largest across the gland (1.5 mm RMS) and
# follows the rectum's lateral offset (r = 0.73): the 32 mm local patch sees the rectum behind the landmark but
# not the gland's sides. Two US g2l-local models with 64 x 40 x 40 patches at 0.8 mm (51 mm across the probe's
# lateral axis, index axis I), on the same 420 training cases and schedule as tools/train_local_ensemble.sh:
#   runs/us_g2l-local_lat     patch centres up to 10 mm from the landmark
#   runs/us_g2l-local_lat5    patch centres up to 5 mm (second-pass specialist)
# About 65 minutes per run on one core, both at once. tools/evaluate_local_ensemble.sh chooses on validation.
set -euo pipefail
cd "$(dirname "$0")/.."
LI=.venv/bin/landmarkinit
DATA=(data/train data/train2 data/train_partial data/train_partial2)
train() {  # run-name extra-options...
  $LI train --data "${DATA[@]}" --val-data data/val --modality us --method g2l-local --epochs 40 \
      --lr-schedule cosine --threads 1 --quiet --grid-shape 64 40 40 --grid-spacing 0.8 --output "runs/$1" "${@:2}" \
      $( [ -f "runs/$1/last.pt" ] && echo --resume )
}
mkdir -p logs
train us_g2l-local_lat > logs/train_local_lat.log 2>&1 &
train us_g2l-local_lat5 --max-offset 5 > logs/train_local_lat5.log 2>&1
wait
