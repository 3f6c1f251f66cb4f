#!/usr/bin/env bash
# Experiment: do more phantom training cases close the remaining accuracy gap? (docs/detection.md)
# Generates 120 more cases (seed 6, default 15% partial views) and 120 more partial-view cases (seed 5), then
# retrains Noothout's global and local stages: MR on data/train + data/train2 (240 cases), US on those plus
# data/train_partial + data/train_partial2 (420 cases). Same methods, epochs and schedule as
# tools/train_shipped_models.sh; runs/<modality>_g2l-{global,local}_more. Models are chosen on data/val only.
# About 1 hour on 2 CPU cores. Run `make setup` and tools/train_shipped_models.sh (for data/train_partial) first.
set -euo pipefail
cd "$(dirname "$0")/.."
GLOBAL_EPOCHS=${1:-150}
LOCAL_EPOCHS=${2:-80}
LI=.venv/bin/landmarkinit
[ -d data/train2 ] || $LI phantom --count 120 --seed 6 --output data/train2 --workers 2 --quiet
[ -d data/train_partial2 ] || $LI phantom --count 120 --seed 5 --partial-fraction 1.0 --output data/train_partial2 \
    --workers 2 --quiet
train() {  # modality method epochs run training-folders...
  $LI train --data "${@:5}" --val-data data/val --modality "$1" --method "$2" --epochs "$3" \
      --lr-schedule cosine --threads 1 --quiet --output "$4" $( [ -f "$4/last.pt" ] && echo --resume )
}
more() {  # modality training-folders...
  train "$1" g2l-global "$GLOBAL_EPOCHS" "runs/$1_g2l-global_more" "${@:2}"
  train "$1" g2l-local "$LOCAL_EPOCHS" "runs/$1_g2l-local_more" "${@:2}"
}
more mr data/train data/train2 > runs_more_mr.log 2>&1 &
more us data/train data/train2 data/train_partial data/train_partial2 > runs_more_us.log 2>&1
wait
