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
S=build/shipped_s4  # copies of the models shipped before this update (same bytes), the "shipped" candidates
OUT=build/eval_mirror_rectum_val
mkdir -p $C/mirror $OUT
# VAL=0 skips the validation comparison (for SHIP=1 / TEST=1 runs after it).
if [ "${VAL:-1}" = 1 ]; then
[ -d data/val_qa ] || tools/evaluate_local_lateral.sh  # makes data/val2 and data/val_qa (then compares)
for run in us_g2l-local_rect us_g2l-local_rect5 mr_g2l-local_rect; do
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
    $(card "us_shipped_mirror$mirror" 0.5 $mirror $G $S/us_landmarks_g2l-local.json $S/us_landmarks_g2l-local-fine.json)
    $(card "us_rect+rect5_mirror$mirror" 0.5 $mirror $G $C/us_g2l-local_rect.json $C/us_g2l-local_rect5.json)
    $(card "us_rect5_mirror$mirror" 0.5 $mirror $G $C/us_g2l-local_rect5.json)
    $(card "us_all+fine5+rect+rect5_mirror$mirror" 0.5 $mirror $G $S/us_landmarks_g2l-local.json \
        $S/us_landmarks_g2l-local-fine.json $C/us_g2l-local_rect.json $C/us_g2l-local_rect5.json)
  )
done
$LI evaluate-detectors --models "${cards[@]}" --data data/val_qa --output-dir $OUT --quiet \
    --description "90 validation cases (seeds 2 + 7), synthetic phantom: mirror averaging and rectum-decoupled US local models"
# MR separately (its fine-tuned local model finishes later): build/eval_mirror_rectum_val/mr/
mr_cards=()
for mirror in 0 1; do
  mr_cards+=(
    $(card "mr_shipped_mirror$mirror" 1 $mirror $M/mr_landmarks_g2l-global.json $S/mr_landmarks_g2l-local.json)
    $(card "mr_rect_mirror$mirror" 1 $mirror $M/mr_landmarks_g2l-global.json $C/mr_g2l-local_rect.json)
  )
done
$LI evaluate-detectors --models "${mr_cards[@]}" --data data/val_qa --output-dir $OUT/mr --quiet \
    --description "90 validation cases (seeds 2 + 7), synthetic phantom: mirror averaging and the rectum-decoupled MR local model"
for name in us_shipped_mirror1 us_rect+rect5_mirror0 us_rect+rect5_mirror1 mr_shipped_mirror1 mr_rect_mirror1; do
  .venv/bin/python tools/diagnose_landmark_errors.py "$C/mirror/$name.json" data/val_qa --top 2
done > $OUT/diagnosis.md
fi
# SHIP=1: write what validation chose (docs/detection.md, "Mirror averaging and rectum-decoupled training data") to
# Resources/Models: US = the shipped global stage + the two fine-tuned local models (rect, rect5), posterior median
# pulled half-way to mid-gland height, mirror-averaged; MR = its global stage + MR_LOCAL (default: the
# fine-tuned rect model; MR_LOCAL=shipped keeps the previous one), pulled all the way, mirror-averaged. The
# models shipped before are kept in build/shipped_s4 (copied by hand before this update). Then the QA thresholds
# are recalibrated on the validation cases.
if [ "${SHIP:-0}" = 1 ]; then
  $LI export runs/us_g2l-local_rect --output $M/us_landmarks_g2l-local --name us_landmarks_g2l-local --force
  $LI export runs/us_g2l-local_rect5 --output $M/us_landmarks_g2l-local-fine --name us_landmarks_g2l-local-fine --force
  $LI two-stage --global $M/us_landmarks_g2l-global.json \
      --local $M/us_landmarks_g2l-local.json $M/us_landmarks_g2l-local-fine.json --iterations 1 --mid-gland 0.5 \
      --mirror-average --name us_landmarks_two-stage --output $M/us_landmarks.json --force
  if [ "${MR_LOCAL:-rect}" = rect ]; then
    $LI export runs/mr_g2l-local_rect --output $M/mr_landmarks_g2l-local --name mr_landmarks_g2l-local --force
  fi
  $LI two-stage --global $M/mr_landmarks_g2l-global.json --local $M/mr_landmarks_g2l-local.json --iterations 1 \
      --mid-gland 1 --mirror-average --name mr_landmarks_two-stage --output $M/mr_landmarks.json --force
  $LI evaluate --data data/val --output-dir build/eval_registration_val --calibrate-qa $M/qa_thresholds.json --workers 2
fi
# TEST=1: after shipping, the held-out test evaluation behind docs/detection_results.md and
# docs/registration_results.md (as in tools/evaluate_local_ensemble.sh, with the session-4 detectors of
# build/shipped_s4 as "before").
if [ "${TEST:-0}" = 1 ]; then
  source tools/test_table_models.sh
  DESCRIPTION="**Synthetic phantom data, not patient data.** Seeds 1 / 2 / 3: 120 training, 30 validation, 50 test cases; extra training cases: seed 6 (120 cases, 15% partial views), seeds 4 / 5 (60 / 120 cases, all with the probe aimed off the gland) and seed 8 (240 cases, 15% partial views, the rectum up to 12 mm to either side instead of 4). Shipped detectors (mr_landmarks / us_landmarks, chosen on validation): MR = g2l-global (120 cases) + g2l-local (${MR_DESCRIPTION:-240 cases, seeds 1 + 6, fine-tuned 20 epochs on those + seed 8}), posterior median pulled to mid-gland height (weight 1), mirror-averaged; US = g2l-global (420 cases: seeds 1, 6, 4, 5) + the mean of two g2l-local models (patch centres up to 10 mm and up to 5 mm from the landmark; 40 epochs on the 420 cases, then fine-tuned 20 epochs on those + seed 8), posterior median pulled half-way to mid-gland height (weight 0.5), mirror-averaged (the volume and its left-right mirror image); one local pass. *_session4_two-stage: the detectors shipped before this update (same global stages, local models before fine-tuning, no mirror averaging). *_session3_two-stage: the ones before those (US local stage on 180 cases; no mid-gland step). *_previous_two-stage: earlier still (US global on seeds 1 + 4, both local stages on the 120 cases, 80 epochs). Table 1 models (mr_/us_dsnt, dsnt-var, dsnt-dist, regression, heatmap): 40 epochs each on the 120 cases. *_landmarks_dsnt-dist (best single-stage method, shipped): 150 epochs, cosine. mr_/us_g2l-global and the combinations with '+': 120 training cases (us_g2l-global_partial: + seed 4), g2l-global 150 epochs, local models 80 epochs, cosine."
  $LI evaluate-detectors --data data/test --output-dir build/eval_mirror_rectum_test --quiet --models \
      $M/mr_landmarks.json $M/us_landmarks.json build/shipped_s4/mr_session4.json build/shipped_s4/us_session4.json \
      "${BASELINE_MODELS[@]}" --description "$DESCRIPTION"
  $LI evaluate --data data/test --output-dir build/eval_registration --workers 2
fi
