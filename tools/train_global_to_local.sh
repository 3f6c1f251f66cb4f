#!/usr/bin/env bash
# Train, export and evaluate the global-to-local detectors of docs/detection.md (issue: Noothout et al. 2020 and
# two-stage refinement) on the phantom data of tools/reproduce_detectors.sh: the g2l-global FCNN, the g2l-local
# and dsnt-local refinement models, both modalities (two trainings at a time, one thread each), then two-stage
# cards and the Table 1 evaluation against the shipped single-stage models. About 1.5 hours on 2 CPU cores.
# Usage: tools/train_global_to_local.sh [GLOBAL_EPOCHS] [LOCAL_EPOCHS]   (run `make setup` first)
set -euo pipefail
cd "$(dirname "$0")/.."
GLOBAL_EPOCHS=${1:-150}
LOCAL_EPOCHS=${2:-80}
LI=.venv/bin/landmarkinit
OUT=build/models_g2l

train() {  # modality method epochs
  $LI train --data data/train --val-data data/val --modality "$1" --method "$2" --epochs "$3" \
      --lr-schedule cosine --threads 1 --quiet --output "runs/$1_$2" \
      $( [ -f "runs/$1_$2/last.pt" ] && echo --resume )
  $LI export "runs/$1_$2" --output "$OUT/$1_$2" --force
}
for modality in mr us; do
  ( train "$modality" g2l-global "$GLOBAL_EPOCHS" && train "$modality" dsnt-local "$LOCAL_EPOCHS" \
      && train "$modality" g2l-local "$LOCAL_EPOCHS" ) > "runs_g2l_$modality.log" 2>&1 &
done
wait
# local refinement passes per modality: the shipped cards' choice, made on the validation cases (docs/detection.md)
declare -A PASSES=([mr]=$(python3 -c "import json;print(json.load(open('Resources/Models/mr_landmarks.json'))['stages']['local']['iterations'])")
                   [us]=$(python3 -c "import json;print(json.load(open('Resources/Models/us_landmarks.json'))['stages']['local']['iterations'])"))
for modality in mr us; do
  n=${PASSES[$modality]}
  $LI two-stage --global "$OUT/${modality}_g2l-global.json" --local "$OUT/${modality}_g2l-local.json" \
      --iterations "$n" --output "$OUT/${modality}_g2l-global+g2l-local.json" --force
  for local in dsnt-local g2l-local; do
    $LI two-stage --global "Resources/Models/${modality}_landmarks_dsnt-dist.json" --local "$OUT/${modality}_$local.json" \
        --iterations "$n" --output "$OUT/${modality}_dsnt-dist+$local.json" --force
  done
done
$LI evaluate-detectors --models Resources/Models/*_landmarks.json Resources/Models/*_landmarks_dsnt-dist.json "$OUT"/*g2l-global.json "$OUT"/*+*.json \
    --data data/test --output-dir build/eval_g2l \
    --description "120 training, 30 validation, 50 test cases (seeds 1, 2, 3); g2l-global $GLOBAL_EPOCHS epochs, local models $LOCAL_EPOCHS epochs, cosine schedule."
