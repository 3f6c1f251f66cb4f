#!/usr/bin/env bash
# Train and export the shipped detectors (Resources/Models) on the phantom data of tools/reproduce_detectors.sh:
#   <modality>_landmarks_dsnt-dist: the best single-stage method of Table 1, 150 epochs, cosine schedule;
#   <modality>_landmarks_g2l-global, _g2l-local: Noothout's global FCNN (150 epochs; US: on data/train plus 60
#     partial-view cases, data/train_partial) and local refinement on 0.8 mm patches (80 epochs), cosine schedule;
#   <modality>_landmarks.json: the default two-stage card (g2l-global, then one g2l-local pass; chosen on the
#     validation cases, docs/detection.md).
# About 1.5 hours on 2 CPU cores (both modalities at once, one thread each). Run `make setup` first.
# Usage: tools/train_shipped_models.sh [GLOBAL_EPOCHS] [LOCAL_EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
GLOBAL_EPOCHS=${1:-150}
LOCAL_EPOCHS=${2:-80}
LI=.venv/bin/landmarkinit
M=Resources/Models
$LI phantom --count 60 --seed 4 --partial-fraction 1.0 --output data/train_partial --workers 2 --quiet
train() {  # modality method epochs run [extra training folders]
  $LI train --data data/train "${@:5}" --val-data data/val --modality "$1" --method "$2" --epochs "$3" \
      --lr-schedule cosine --threads 1 --quiet --output "$4" $( [ -f "$4/last.pt" ] && echo --resume )
}
ship() {  # modality
  train "$1" dsnt-dist "$GLOBAL_EPOCHS" "runs/shipped_$1"
  $LI export "runs/shipped_$1" --output "$M/$1_landmarks_dsnt-dist" --name "$1_landmarks_dsnt-dist" --force
  if [ "$1" = us ]; then
    train us g2l-global "$GLOBAL_EPOCHS" runs/us_g2l-global_partial data/train_partial
    $LI export runs/us_g2l-global_partial --output "$M/us_landmarks_g2l-global" --name us_landmarks_g2l-global --force
  else
    train "$1" g2l-global "$GLOBAL_EPOCHS" "runs/$1_g2l-global"
    $LI export "runs/$1_g2l-global" --output "$M/$1_landmarks_g2l-global" --name "$1_landmarks_g2l-global" --force
  fi
  train "$1" g2l-local "$LOCAL_EPOCHS" "runs/$1_g2l-local"
  $LI export "runs/$1_g2l-local" --output "$M/$1_landmarks_g2l-local" --name "$1_landmarks_g2l-local" --force
  $LI two-stage --global "$M/$1_landmarks_g2l-global.json" --local "$M/$1_landmarks_g2l-local.json" \
      --iterations 1 --name "$1_landmarks_two-stage" --output "$M/$1_landmarks.json" --force
}
ship mr > runs_shipped_mr.log 2>&1 &
ship us > runs_shipped_us.log 2>&1
wait
