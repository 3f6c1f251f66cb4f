#!/usr/bin/env bash
# Reproduce the detector results of docs/detection.md: phantom data, the five methods of Table 1 for both
# modalities, export, evaluation on held-out cases. About 1.5-2 hours on 2 CPU cores (two trainings at a time,
# one thread each). Usage: tools/reproduce_detectors.sh [EPOCHS]   (run `make setup` first)
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-30}
LI=.venv/bin/landmarkinit
$LI phantom --count 120 --seed 1 --output data/train --workers 2 --quiet
$LI phantom --count 30 --seed 2 --output data/val --workers 2 --quiet
$LI phantom --count 50 --seed 3 --output data/test --workers 2 --quiet

train() {  # modality method
  $LI train --data data/train --val-data data/val --modality "$1" --method "$2" --epochs "$EPOCHS" \
      --threads 1 --quiet --output "runs/$1_$2" $( [ -f "runs/$1_$2/last.pt" ] && echo --resume )
}
for method in dsnt-dist dsnt-var dsnt regression heatmap; do
  train mr "$method" > "runs_mr_$method.log" 2>&1 &
  train us "$method" > "runs_us_$method.log" 2>&1
  wait
done
mkdir -p build/models
for run in runs/*_*; do
  $LI export "$run" --output "build/models/$(basename "$run")" --force
done
$LI evaluate-detectors --models build/models/*.json --data data/test --output-dir build/eval_detectors \
    --description "120 training, 30 validation, 50 test cases (seeds 1, 2, 3), $EPOCHS epochs."
