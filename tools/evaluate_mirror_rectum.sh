#!/usr/bin/env bash
# Mirror averaging and the rectum-decoupled US local models (tools/train_local_rectum.sh), compared on the 90
# validation cases only (data/val_qa = seeds 2 + 7; build/eval_mirror_rectum_val/): every candidate with the
# shipped global stages, one local pass, the shipped mid-gland weights, with and without mirror averaging; then
# the error diagnosis (along the gland's axes, and against the phantom parameters) of the main candidates.
set -euo pipefail
cd "$(dirname "$0")/.."
LI=.venv/bin/landmarkinit
C=build/candidates
M=Resources/Models
OUT=build/eval_mirror_rectum_val
mkdir -p $C/mirror $OUT
[ -d data/val_qa ] || tools/evaluate_local_lateral.sh  # makes data/val2 and data/val_qa (then compares)
for run in us_g2l-local_rect us_g2l-local_rect5; do
  [ -f "$C/$run.json" ] || $LI export "runs/$run" --output "$C/$run" --name "$run" > /dev/null
done
card() {  # name mid-gland-weight mirror(0/1) global-card local-cards...
  $LI two-stage --global "$4" --local "${@:5}" --iterations 1 --mid-gland "$2" --name "$1" \
      $( [ "$3" = 1 ] && echo --mirror-average ) --output "$C/mirror/$1.json" --force > /dev/null \
      && echo "$C/mirror/$1.json"
}
G=$M/us_landmarks_g2l-global.json
cards=()
for mirror in 0 1; do
  cards+=(
    $(card "mr_shipped_mirror$mirror" 1 $mirror $M/mr_landmarks_g2l-global.json $M/mr_landmarks_g2l-local.json)
    $(card "us_shipped_mirror$mirror" 0.5 $mirror $G $M/us_landmarks_g2l-local.json $M/us_landmarks_g2l-local-fine.json)
    $(card "us_rect+rect5_mirror$mirror" 0.5 $mirror $G $C/us_g2l-local_rect.json $C/us_g2l-local_rect5.json)
    $(card "us_rect5_mirror$mirror" 0.5 $mirror $G $C/us_g2l-local_rect5.json)
    $(card "us_all+fine5+rect+rect5_mirror$mirror" 0.5 $mirror $G $M/us_landmarks_g2l-local.json \
        $M/us_landmarks_g2l-local-fine.json $C/us_g2l-local_rect.json $C/us_g2l-local_rect5.json)
  )
done
$LI evaluate-detectors --models "${cards[@]}" --data data/val_qa --output-dir $OUT --quiet \
    --description "90 validation cases (seeds 2 + 7), synthetic phantom: mirror averaging and rectum-decoupled US local models"
for name in us_shipped_mirror1 us_rect+rect5_mirror0 us_rect+rect5_mirror1 mr_shipped_mirror1; do
  .venv/bin/python tools/diagnose_landmark_errors.py "$C/mirror/$name.json" data/val_qa --top 2
done > $OUT/diagnosis.md
