#!/usr/bin/env bash
# Experiment: training data in which the rectum does not give away the posterior median (docs/detection.md,
# "Rectum-decoupled training data"). On validation the US posterior median's lateral error follows the rectum's
# lateral offset (r = 0.73): with the anatomical +-4 mm range, "in front of the rectum" is a good enough guess to
# learn. 240 extra phantom cases (seed 8, 15% partial views) with the rectum - and the probe in it - up to 12 mm
# to either side, then the two shipped US local models fine-tuned on the 420 + 240 cases (20 epochs, cosine from
# 3e-4, fresh optimizer; about 35 minutes each on one core, both at once):
#   runs/us_g2l-local_rect     from runs/us_g2l-local_all   (starts up to 10 mm)
#   runs/us_g2l-local_rect5    from runs/us_g2l-local_fine5 (starts up to 5 mm)
# Then the MR local model fine-tuned the same way on its 240 cases + the 240 new ones (about 25 minutes):
#   runs/mr_g2l-local_rect     from runs/mr_g2l-local_more  (the shipped MR local stage)
# tools/evaluate_mirror_rectum.sh compares them on the validation cases (anatomical +-4 mm range).
set -euo pipefail
cd "$(dirname "$0")/.."
LI=.venv/bin/landmarkinit
$LI phantom --count 240 --seed 8 --rectum-lateral 12 --workers 2 --output data/train_rectum12 --quiet
DATA=(data/train data/train2 data/train_partial data/train_partial2 data/train_rectum12)
finetune() {  # run-name source-run extra-options...
  $LI train --data "${DATA[@]}" --val-data data/val --modality "${MODALITY:-us}" --method g2l-local --epochs 20 --lr 3e-4 \
      --lr-schedule cosine --threads 1 --quiet --init-weights "runs/$2" --output "runs/$1" "${@:3}" \
      $( [ -f "runs/$1/last.pt" ] && echo --resume )
}
mkdir -p logs
finetune us_g2l-local_rect us_g2l-local_all > logs/train_local_rect.log 2>&1 &
finetune us_g2l-local_rect5 us_g2l-local_fine5 --max-offset 5 > logs/train_local_rect5.log 2>&1
wait
DATA=(data/train data/train2 data/train_rectum12)
MODALITY=mr finetune mr_g2l-local_rect mr_g2l-local_more > logs/train_local_rect_mr.log 2>&1
