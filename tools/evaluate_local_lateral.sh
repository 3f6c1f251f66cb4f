#!/usr/bin/env bash
# Export the runs of tools/train_local_lateral.sh and compare US two-stage detectors on the 90 validation cases
# (data/val_qa: seeds 2 and 7; build/eval_lateral_val/detectors.md), all with the shipped global stage. The
# test cases are not used for the choice. Baseline: the detector shipped in session 4 (build/shipped_s4, a copy of
# Resources/Models). Result (docs/detection.md, "Where the remaining US error is"): at most 0.03 mm gained, not shipped.
set -euo pipefail
cd "$(dirname "$0")/.."
LI=.venv/bin/landmarkinit
C=build/candidates
M=Resources/Models
S4=build/shipped_s4
mkdir -p $C/lateral
# the 90 validation cases: data/val (seed 2) plus 60 more (seed 7), linked into one folder
[ -d data/val2 ] || $LI phantom --count 60 --seed 7 --output data/val2 --workers 2 --quiet
if [ ! -d data/val_qa ]; then
  mkdir -p data/val_qa
  for d in data/val/case_* data/val2/case_*; do ln -s "../${d#data/}" "data/val_qa/$(basename "$(dirname "$d")")_$(basename "$d")"; done
fi
for run in us_g2l-local_lat us_g2l-local_lat5; do
  [ -f "$C/$run.json" ] || $LI export "runs/$run" --output "$C/$run" --name "$run" > /dev/null
done
card() {  # name mid-gland-weight local-cards...
  $LI two-stage --global $S4/us_landmarks_g2l-global.json --local "${@:3}" --iterations 1 --mid-gland "$2" \
      --name "$1" --output "$C/lateral/$1.json" --force > /dev/null && echo "$C/lateral/$1.json"
}
ALL=$S4/us_landmarks_g2l-local.json
FINE5=$S4/us_landmarks_g2l-local-fine.json
LAT=$C/us_g2l-local_lat.json
LAT5=$C/us_g2l-local_lat5.json
cards=(
  $S4/us_session4.json
  $(card us_lat_mg0.5 0.5 $LAT)
  $(card us_lat5_mg0.5 0.5 $LAT5)
  $(card us_lat+lat5_mg0.5 0.5 $LAT $LAT5)
  $(card us_all+fine5+lat_mg0.5 0.5 $ALL $FINE5 $LAT)
  $(card us_all+fine5+lat5_mg0.5 0.5 $ALL $FINE5 $LAT5)
  $(card us_all+fine5+lat+lat5_mg0.5 0.5 $ALL $FINE5 $LAT $LAT5)
  $(card us_all+fine5+lat+lat5_mg1 1 $ALL $FINE5 $LAT $LAT5)
  $(card us_fine5+lat5_mg0.5 0.5 $FINE5 $LAT5)
)
$LI evaluate-detectors --models "${cards[@]}" --data data/val_qa --output-dir build/eval_lateral_val --quiet \
    --description "90 validation cases (seeds 2 and 7), synthetic phantom: does a local patch with lateral context help?"
for c in "${cards[@]}"; do .venv/bin/python tools/diagnose_landmark_errors.py "$c" data/val_qa --top 2; done \
    > build/eval_lateral_val/diagnosis.md
