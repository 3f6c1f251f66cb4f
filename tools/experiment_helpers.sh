# Sourced by the tools/{train,evaluate}_*_more.sh experiment scripts (run from the repository root, with LI set to
# the landmarkinit command): the steps every one of them repeats.

shipped_models() {  # commit dir: Resources/Models as shipped at that commit, byte for byte, copied into dir once
  [ -f "$2/us_landmarks.json" ] && return 0
  mkdir -p "$2" && git archive "$1" Resources/Models | tar -x -C "$2" --strip-components=2
}

renamed() {  # source name output: a model card under another name (same stages and settings), for the tables
  [ -f "$3" ] && return 0
  .venv/bin/python -c 'import json, sys; c = json.load(open(sys.argv[1])); c["name"] = sys.argv[2]
json.dump(c, open(sys.argv[3], "w"), indent=1)' "$@"
}

validation_cases() {  # data/val (seed 2) and data/val2 (seed 7) when missing, and data/val_qa linking the 90 cases
  [ -d data/val ] || $LI phantom --count 30 --seed 2 --output data/val --workers 2 --quiet
  [ -d data/val2 ] || $LI phantom --count 60 --seed 7 --output data/val2 --workers 2 --quiet
  [ -d data/val_qa ] && return 0
  mkdir -p data/val_qa
  for d in data/val/case_* data/val2/case_*; do
    ln -s "../${d#data/}" "data/val_qa/$(basename "$(dirname "$d")")_$(basename "$d")"
  done
}
