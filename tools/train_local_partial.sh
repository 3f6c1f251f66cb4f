#!/usr/bin/env bash
# Experiment: the two US local models fine-tuned further on the 900 training cases, partial views included
# (docs/detection.md, "Local models on the partial views"). The session-9 update (tools/train_partial_more.sh)
# fine-tuned the global stage (40 epochs) and the 10 mm local model (8 epochs, its validation error still falling)
# on them, and not the 5 mm local model. Fresh optimizer, cosine schedule, one core each.
# ROUND=1: from the detectors shipped at 8257066 (taken from git into build/shipped_s10):
#   runs/us_g2l-local-fine_partial3   5 mm local model ("g2l-local-fine"), 8 epochs from 3e-4, seed 0
#   runs/us_g2l-local-fine_partial3s1 the same with seed 1 (other augmentations and order: an ensemble member)
#   runs/us_g2l-local_partial4        10 mm local model, 12 more epochs from 2e-4, seed 1
# Measured on 2 cores: 3-7 minutes per epoch each (the two 5 mm runs one after the other, about 60 minutes, beside
# the 10 mm run, about 47 minutes).
# ROUND=2 (the default): from the ones round 1 shipped, at 7907de4 (build/shipped_s11), both 8 more epochs from
# 1e-4, seed 2: runs/us_g2l-local_partial5 and runs/us_g2l-local-fine_partial5 (about 30 minutes on 2 cores).
# The data folders come from tools/train_partial_more.sh (run it first when they are missing).
# ROUND=... tools/evaluate_local_partial.sh compares them on validation.
set -euo pipefail
cd "$(dirname "$0")/.."
LI=.venv/bin/landmarkinit
source tools/experiment_helpers.sh
DATA=(data/train data/train2 data/train_partial data/train_partial2 data/train_rectum12 data/train_partial3
      data/train_partial4)
for d in "${DATA[@]}"; do [ -d "$d" ] || { echo "missing $d: run tools/train_partial_more.sh first" >&2; exit 2; }; done
finetune() {  # run-name source-card epochs lr seed max-offset
  $LI train --data "${DATA[@]}" --val-data data/val --modality us --method g2l-local --epochs "$3" --batch-size 4 \
      --lr "$4" --lr-schedule cosine --seed "$5" --channels 16 32 64 128 --threads 1 --quiet --max-offset "$6" \
      --init-weights "$2" --output "runs/$1" $( [ -f "runs/$1/last.pt" ] && echo --resume ) > "logs/train_$1.log" 2>&1
}
mkdir -p logs
if [ "${ROUND:-2}" = 1 ]; then
  S=build/shipped_s10
  shipped_models 8257066 $S
  ( finetune us_g2l-local-fine_partial3 $S/us_landmarks_g2l-local-fine.json 8 3e-4 0 5
    finetune us_g2l-local-fine_partial3s1 $S/us_landmarks_g2l-local-fine.json 8 3e-4 1 5 ) &
  finetune us_g2l-local_partial4 $S/us_landmarks_g2l-local.json 12 2e-4 1 10
else
  S=build/shipped_s11
  shipped_models 7907de4 $S
  finetune us_g2l-local-fine_partial5 $S/us_landmarks_g2l-local-fine.json 8 1e-4 2 5 &
  finetune us_g2l-local_partial5 $S/us_landmarks_g2l-local.json 8 1e-4 2 10
fi
wait
