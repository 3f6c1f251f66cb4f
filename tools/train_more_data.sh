#!/usr/bin/env bash
# Experiment: do more phantom training cases close the remaining accuracy gap? (docs/detection.md, "More data")
# Generates 120 more cases (seed 6, default 15% partial views) and 120 more partial-view cases (seed 5), then
#   MR: Noothout's global stage (150 epochs) and local stage (40 epochs: as many patch samples as the shipped
#       80-epoch model saw, on twice the cases) on data/train + data/train2 (240 cases);
#   US: the global stage (150 epochs) on those plus data/train_partial + data/train_partial2 (420 cases), and the
#       local stage on data/train + data/train_partial (50 epochs; the 420-case local run did not fit our time).
# Runs runs/<modality>_g2l-{global,local}_more, runs/us_g2l-local_partial. Choices are made on data/val only
# (tools/evaluate_more_data.sh). About 1.5 hours on 2 CPU cores. Run `make setup` and
# tools/train_shipped_models.sh (for data/train_partial) first.
set -euo pipefail
cd "$(dirname "$0")/.."
LI=.venv/bin/landmarkinit
[ -d data/train2 ] || $LI phantom --count 120 --seed 6 --output data/train2 --workers 2 --quiet
[ -d data/train_partial2 ] || $LI phantom --count 120 --seed 5 --partial-fraction 1.0 --output data/train_partial2 \
    --workers 2 --quiet
train() {  # modality method epochs run training-folders...
  $LI train --data "${@:5}" --val-data data/val --modality "$1" --method "$2" --epochs "$3" \
      --lr-schedule cosine --threads 1 --quiet --output "$4" $( [ -f "$4/last.pt" ] && echo --resume )
}
( train mr g2l-global 150 runs/mr_g2l-global_more data/train data/train2
  train mr g2l-local 40 runs/mr_g2l-local_more data/train data/train2 ) > runs_more_mr.log 2>&1 &
( train us g2l-global 150 runs/us_g2l-global_more data/train data/train2 data/train_partial data/train_partial2
  train us g2l-local 50 runs/us_g2l-local_partial data/train data/train_partial ) > runs_more_us.log 2>&1
wait
