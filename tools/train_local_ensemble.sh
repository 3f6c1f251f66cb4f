#!/usr/bin/env bash
# Experiment: can the US local stage reach the accuracy the MR one has? (docs/detection.md, "Local ensemble")
# Three US g2l-local models on all 420 US training cases (seeds 1, 6, 4, 5: data/train, train2, train_partial,
# train_partial2), 40 epochs, cosine, each 40^3 patches:
#   runs/us_g2l-local_all     0.8 mm (32 mm patch, the shipped local model's grid)
#   runs/us_g2l-local_wide    1.2 mm (48 mm: sees more of the gland, for the posterior median)
#   runs/us_g2l-local_wide16  1.6 mm (64 mm)
#   runs/us_g2l-local_fine5   0.8 mm, patch centres at most 5 mm from the landmark (a second-pass specialist)
# About 40 minutes per run on one core, two at a time. Run tools/train_more_data.sh first (the data).
# Then tools/evaluate_local_ensemble.sh chooses on the validation cases.
set -euo pipefail
cd "$(dirname "$0")/.."
LI=.venv/bin/landmarkinit
DATA=(data/train data/train2 data/train_partial data/train_partial2)
train() {  # run-name extra-options...
  $LI train --data "${DATA[@]}" --val-data data/val --modality us --method g2l-local --epochs 40 \
      --lr-schedule cosine --threads 1 --quiet --output "runs/$1" "${@:2}" $( [ -f "runs/$1/last.pt" ] && echo --resume )
}
( train us_g2l-local_all; train us_g2l-local_fine5 --max-offset 5 ) > runs_local_a.log 2>&1 &
( train us_g2l-local_wide --grid-spacing 1.2; train us_g2l-local_wide16 --grid-spacing 1.6 ) > runs_local_b.log 2>&1
wait
