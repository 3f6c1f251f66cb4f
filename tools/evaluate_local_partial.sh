#!/usr/bin/env bash
# The US local models fine-tuned on the partial views (tools/train_local_partial.sh) and the posterior median's
# axis-plane step (detection/axis_plane.py), compared on validation cases only: data/val_qa (90 cases, seeds 2 + 7:
# the choice is made here) and data/val_partial (60 cases, seed 13, every probe aimed off the gland).
# Step 1: tools/compare_local_ensembles.py scores every subset of the shipped and the new local models at mid-gland
# weight 0.75 and axis-plane weights 0-0.25 (the first one is the reference's), from one run of each network per
# case (OUT/<set>/ensembles.md). Step 2: the detector chosen there, written as a card, and the shipped one through
# `landmarkinit evaluate-detectors` (OUT/<set>/detectors.md). Then SHIP=1 writes what validation chose and TEST=1
# makes the held-out test tables.
# ROUND=1: against the detector shipped at 8257066 (build/shipped_s10; its two local models, the three new ones of
# round 1; output build/eval_local_partial_val/). ROUND=2 (the default): against the one round 1 shipped, at
# 7907de4 (build/shipped_s11; its two local models, the two of round 2; output build/eval_local_partial5_val/).
set -euo pipefail
cd "$(dirname "$0")/.."
LI=.venv/bin/landmarkinit
M=Resources/Models
source tools/experiment_helpers.sh
S10=build/shipped_s10
shipped_models 8257066 $S10
renamed $S10/us_landmarks.json us_shipped_s10 $S10/us_shipped_s10.json
if [ "${ROUND:-2}" = 1 ]; then
  S=$S10 PREVIOUS=us_shipped_s10 C=build/candidates/local_partial OUT=build/eval_local_partial_val
  NEW=(us_g2l-local_partial4 us_g2l-local-fine_partial3 us_g2l-local-fine_partial3s1)
  WEIGHTS=(0 0.1 0.15 0.2 0.25)
  # chosen on val_qa: the new 10 mm and 5 mm (seed 0) local models, axis-plane weight 0.15
  CHOSEN=(us_g2l-local_partial4 us_g2l-local-fine_partial3)
else
  S=build/shipped_s11 PREVIOUS=us_shipped_s11 C=build/candidates/local_partial5 OUT=build/eval_local_partial5_val
  shipped_models 7907de4 $S
  renamed $S/us_landmarks.json us_shipped_s11 $S/us_shipped_s11.json
  NEW=(us_g2l-local_partial5 us_g2l-local-fine_partial5)
  WEIGHTS=(0.15 0 0.1 0.2 0.25)
  # chosen on val_qa: the two new local models, axis-plane weight 0.15
  CHOSEN=(us_g2l-local_partial5 us_g2l-local-fine_partial5)
fi
CHOSEN_AXIS_PLANE=0.15
mkdir -p $C $OUT
LOCAL=($S/us_landmarks_g2l-local.json $S/us_landmarks_g2l-local-fine.json)
for run in "${NEW[@]}"; do LOCAL+=($C/$run.json); done
CHOSEN_LOCAL=()
for run in "${CHOSEN[@]}"; do CHOSEN_LOCAL+=($C/$run.json); done
if [ "${VAL:-1}" = 1 ]; then
validation_cases
[ -d data/val_partial ] || $LI phantom --count 60 --seed 13 --partial-fraction 1.0 --output data/val_partial \
    --workers 2 --quiet
for run in "${NEW[@]}"; do
  [ -f $C/$run.json ] || $LI export runs/$run --output $C/$run --name $run > /dev/null
done
for data in val_qa val_partial; do  # one core each
  .venv/bin/python tools/compare_local_ensembles.py --global $S/us_landmarks_g2l-global.json --local "${LOCAL[@]}" \
      --data data/$data --reference 0 1 --mid-gland 0.75 --axis-plane "${WEIGHTS[@]}" --output $OUT/$data \
      > $OUT/$data.log &
done
wait
$LI two-stage --global $S/us_landmarks_g2l-global.json --local "${CHOSEN_LOCAL[@]}" --iterations 1 --mid-gland 0.75 \
    --axis-plane $CHOSEN_AXIS_PLANE --mirror-average --name us_chosen --output $C/us_chosen.json --force > /dev/null
for data in val_qa val_partial; do
  $LI evaluate-detectors --models $S/$PREVIOUS.json $C/us_chosen.json --data data/$data \
      --output-dir $OUT/$data --quiet --description "validation cases ($data), synthetic phantom: US local models \
fine-tuned on the partial views (round ${ROUND:-2}), posterior median toward the axis plane" &
done
wait
fi
# SHIP=1: write what validation chose (docs/detection.md, "Local models on the partial views") to Resources/Models:
# US = the shipped global stage + the chosen 10 mm and 5 mm local models, mid-gland 0.75, axis plane 0.15,
# mirror-averaged. MR is unchanged. Then the QA thresholds are recalibrated on the validation cases.
if [ "${SHIP:-0}" = 1 ]; then
  $LI export runs/${CHOSEN[0]} --output $M/us_landmarks_g2l-local --name us_landmarks_g2l-local --force
  $LI export runs/${CHOSEN[1]} --output $M/us_landmarks_g2l-local-fine --name us_landmarks_g2l-local-fine --force
  $LI two-stage --global $M/us_landmarks_g2l-global.json \
      --local $M/us_landmarks_g2l-local.json $M/us_landmarks_g2l-local-fine.json --iterations 1 \
      --mid-gland 0.75 --axis-plane $CHOSEN_AXIS_PLANE --mirror-average --name us_landmarks_two-stage \
      --output $M/us_landmarks.json --force
  $LI evaluate --data data/val --output-dir build/eval_registration_val --calibrate-qa $M/qa_thresholds.json --workers 2
fi
# TEST=1: after shipping, the held-out test evaluation behind docs/detection_results.md and
# docs/registration_results.md: the shipped detectors, the ones shipped before (7907de4: build/shipped_s11, round 2
# only; 8257066: build/shipped_s10, also with only the axis-plane step added; d22f208: build/shipped_s8; session 6:
# build/shipped_s6; session 4: build/shipped_s4, all from git) and the shipped single-stage detectors; then the
# registration evaluation, and again with the US detector shipped before for a paired comparison.
if [ "${TEST:-0}" = 1 ]; then
  [ -d data/test ] || $LI phantom --count 50 --seed 3 --output data/test --workers 2 --quiet
  S8=build/shipped_s8
  S6=build/shipped_s6
  S4=build/shipped_s4
  shipped_models d22f208 $S8
  shipped_models 301a6d9 $S6
  shipped_models 379e08b $S4
  renamed $S8/us_landmarks.json us_shipped_s8 $S8/us_shipped_s8.json
  for m in mr us; do
    renamed $S6/${m}_landmarks.json ${m}_session6_two-stage $S6/${m}_session6.json
    renamed $S4/${m}_landmarks.json ${m}_session4_two-stage $S4/${m}_session4.json
  done
  $LI two-stage --global $S10/us_landmarks_g2l-global.json \
      --local $S10/us_landmarks_g2l-local.json $S10/us_landmarks_g2l-local-fine.json --iterations 1 --mid-gland 0.75 \
      --axis-plane $CHOSEN_AXIS_PLANE --mirror-average --name us_shipped_s10_axis-plane \
      --output $S10/us_shipped_s10_axis-plane.json --force > /dev/null
  BEFORE=($S/$PREVIOUS.json)
  [ "$S" = "$S10" ] || BEFORE+=($S10/us_shipped_s10.json)
  DESCRIPTION="${DESCRIPTION:?set DESCRIPTION to the description of the table data and models}"
  $LI evaluate-detectors --data data/test --output-dir build/eval_local_partial_test --quiet --models \
      $M/mr_landmarks.json $M/us_landmarks.json "${BEFORE[@]}" $S10/us_shipped_s10_axis-plane.json \
      $S8/us_shipped_s8.json $S6/mr_session6.json $S6/us_session6.json $S4/mr_session4.json $S4/us_session4.json \
      $M/mr_landmarks_g2l-global.json $M/us_landmarks_g2l-global.json \
      $M/mr_landmarks_dsnt-dist.json $M/us_landmarks_dsnt-dist.json --description "$DESCRIPTION"
  $LI evaluate --data data/test --output-dir build/eval_registration --workers 2
  $LI evaluate --data data/test --output-dir build/eval_registration_${PREVIOUS#us_shipped_} --us-model \
      $S/$PREVIOUS.json --workers 2
fi
