#!/usr/bin/env bash
# Experiment: take the rectum decoupling (tools/train_local_rectum.sh) to the US global stage (docs/detection.md,
# "Rectum-decoupled global stage"). On validation the shipped US two-stage detector's posterior-median lateral
# error follows the *global* stage's (r = 0.75): a local patch sees a nearly flat stretch of the posterior surface
# and keeps much of its starting point's lateral offset, and the global stage, never trained on decoupled cases,
# puts the landmark in front of the rectum (0.43 mm of lateral error per mm of rectum_lateral).
#   runs/us_g2l-global_rect   the US global stage shipped at commit 301a6d9 fine-tuned 40 epochs (fresh optimizer,
#                             cosine from 3e-4) on its 420 training cases + the 240 rectum-decoupled ones (seed 8)
# The starting weights are taken from git (build/shipped_s6, the exact files shipped before this update), so the
# run is reproducible after the new model replaced them in Resources/Models. On 2 cores: about 70 minutes to
# generate the 690 cases when none are there, then about 23 minutes of training on one core.
# tools/evaluate_rectum_more.sh compares it on the validation cases.
set -euo pipefail
cd "$(dirname "$0")/.."
LI=.venv/bin/landmarkinit
S=build/shipped_s6
source tools/experiment_helpers.sh
shipped_models 301a6d9 $S  # the detectors shipped at 301a6d9, byte for byte
[ -d data/train ] || $LI phantom --count 120 --seed 1 --output data/train --workers 2 --quiet
[ -d data/train2 ] || $LI phantom --count 120 --seed 6 --output data/train2 --workers 2 --quiet
[ -d data/train_partial ] || $LI phantom --count 60 --seed 4 --partial-fraction 1.0 --output data/train_partial \
    --workers 2 --quiet
[ -d data/train_partial2 ] || $LI phantom --count 120 --seed 5 --partial-fraction 1.0 --output data/train_partial2 \
    --workers 2 --quiet
[ -d data/train_rectum12 ] || $LI phantom --count 240 --seed 8 --rectum-lateral 12 --output data/train_rectum12 \
    --workers 2 --quiet
[ -d data/val ] || $LI phantom --count 30 --seed 2 --output data/val --workers 2 --quiet
mkdir -p logs
$LI train --data data/train data/train2 data/train_partial data/train_partial2 data/train_rectum12 \
    --val-data data/val --modality us --method g2l-global --epochs 40 --batch-size 4 --lr 3e-4 --lr-schedule cosine \
    --seed 0 --channels 16 32 64 128 --threads 1 --quiet --init-weights $S/us_landmarks_g2l-global.json \
    --output runs/us_g2l-global_rect $( [ -f runs/us_g2l-global_rect/last.pt ] && echo --resume ) \
    > logs/train_global_rect.log 2>&1
