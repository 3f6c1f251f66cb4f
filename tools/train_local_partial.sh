#!/usr/bin/env bash
# Experiment: the two US local models fine-tuned further on the 900 training cases, partial views included
# (docs/detection.md, "Local models on the partial views"). The session-9 update (tools/train_partial_more.sh)
# fine-tuned the global stage (40 epochs) and the 10 mm local model (8 epochs, its validation error still falling)
# on them, and not the 5 mm local model. Both start from the detectors shipped at 8257066 (taken from git into
# build/shipped_s10), fresh optimizer, cosine schedule, one core each:
#   runs/us_g2l-local-fine_partial3   5 mm local model ("g2l-local-fine"), 8 epochs from 3e-4, seed 0
#   runs/us_g2l-local-fine_partial3s1 the same with seed 1 (other augmentations and order: an ensemble member)
#   runs/us_g2l-local_partial4        10 mm local model, 12 more epochs from 2e-4, seed 1
# Measured on 2 cores: 3-7 minutes per epoch each (the two 5 mm runs one after the other, about 60 minutes, beside
# the 10 mm run, about 47 minutes).
# The data folders come from tools/train_partial_more.sh (run it first when they are missing).
# tools/evaluate_local_partial.sh compares them on validation.
set -euo pipefail
cd "$(dirname "$0")/.."
LI=.venv/bin/landmarkinit
S=build/shipped_s10
source tools/experiment_helpers.sh
shipped_models 8257066 $S
DATA=(data/train data/train2 data/train_partial data/train_partial2 data/train_rectum12 data/train_partial3
      data/train_partial4)
for d in "${DATA[@]}"; do [ -d "$d" ] || { echo "missing $d: run tools/train_partial_more.sh first" >&2; exit 2; }; done
finetune() {  # run-name source-card epochs lr seed max-offset
  $LI train --data "${DATA[@]}" --val-data data/val --modality us --method g2l-local --epochs "$3" --batch-size 4 \
      --lr "$4" --lr-schedule cosine --seed "$5" --channels 16 32 64 128 --threads 1 --quiet --max-offset "$6" \
      --init-weights "$2" --output "runs/$1" $( [ -f "runs/$1/last.pt" ] && echo --resume )
}
mkdir -p logs
( finetune us_g2l-local-fine_partial3 $S/us_landmarks_g2l-local-fine.json 8 3e-4 0 5 \
    > logs/train_local_fine_partial3.log 2>&1
  finetune us_g2l-local-fine_partial3s1 $S/us_landmarks_g2l-local-fine.json 8 3e-4 1 5 \
    > logs/train_local_fine_partial3s1.log 2>&1 ) &
finetune us_g2l-local_partial4 $S/us_landmarks_g2l-local.json 12 2e-4 1 10 > logs/train_local_partial4.log 2>&1
wait
