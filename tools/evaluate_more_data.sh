#!/usr/bin/env bash
# Export the runs of tools/train_more_data.sh and compare two-stage combinations (one local pass) on the
# validation cases only: build/eval_more_val/detectors.md. The test cases are not used for the choice.
set -euo pipefail
cd "$(dirname "$0")/.."
LI=.venv/bin/landmarkinit
C=build/candidates
M=Resources/Models
mkdir -p $C
for run in "$@"; do
  $LI export "runs/$run" --output "$C/$run" --name "$run" --force > /dev/null
done
pair() {  # name global-card local-card
  [ -f "$2" ] && [ -f "$3" ] && $LI two-stage --global "$2" --local "$3" --iterations 1 --name "$1" \
      --output "$C/$1.json" --force > /dev/null && echo "$C/$1.json"
  return 0
}
cards=(
  $(pair mr_shipped $M/mr_landmarks_g2l-global.json $M/mr_landmarks_g2l-local.json)
  $(pair mr_gmore+lshipped $C/mr_g2l-global_more.json $M/mr_landmarks_g2l-local.json)
  $(pair mr_gshipped+lmore $M/mr_landmarks_g2l-global.json $C/mr_g2l-local_more.json)
  $(pair mr_gmore+lmore $C/mr_g2l-global_more.json $C/mr_g2l-local_more.json)
  $(pair us_shipped $M/us_landmarks_g2l-global.json $M/us_landmarks_g2l-local.json)
  $(pair us_gshipped+lpartial $M/us_landmarks_g2l-global.json $C/us_g2l-local_partial.json)
  $(pair us_gmore+lshipped $C/us_g2l-global_more.json $M/us_landmarks_g2l-local.json)
  $(pair us_gmore+lpartial $C/us_g2l-global_more.json $C/us_g2l-local_partial.json)
)
$LI evaluate-detectors --models "${cards[@]}" --data data/val --output-dir build/eval_more_val --quiet \
    --description "30 validation cases (seed 2), synthetic phantom: choosing among the more-data candidates"
# SHIP=1 (superseded by tools/evaluate_local_ensemble.sh, which writes the detectors shipped now): write the
# pairs chosen on validation (docs/detection.md, "More training data") to Resources/Models:
# MR = shipped global stage + the 240-case local stage; US = the 420-case global stage + the 180-case local stage.
if [ "${SHIP:-0}" = 1 ]; then
  $LI export runs/mr_g2l-local_more --output $M/mr_landmarks_g2l-local --name mr_landmarks_g2l-local --force
  $LI export runs/us_g2l-global_more --output $M/us_landmarks_g2l-global --name us_landmarks_g2l-global --force
  $LI export runs/us_g2l-local_partial --output $M/us_landmarks_g2l-local --name us_landmarks_g2l-local --force
  for m in mr us; do
    $LI two-stage --global $M/${m}_landmarks_g2l-global.json --local $M/${m}_landmarks_g2l-local.json --iterations 1 \
        --name ${m}_landmarks_two-stage --output $M/${m}_landmarks.json --force
  done
  $LI evaluate --data data/val --output-dir build/eval_registration_val --calibrate-qa $M/qa_thresholds.json --workers 2
fi
