#!/usr/bin/env bash
# Re-trains the shipped adapters in checkpoints/ for the embedded default model and evaluates them
# on the corpus test split: one clean adapter, one backdoor per paper trigger (text, syntactic, style).
# Usage: scripts/train_shipped.sh [clean|text|syntactic|style ...]   (default: all four)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CLEAN_FLAGS=${CLEAN_FLAGS:-"--max-items 600 --epochs 4 --learning-rate 3e-3"}
BACKDOOR_FLAGS=${BACKDOOR_FLAGS:-"--max-items 300 --epochs 2 --eval-every 20 --clean-objective ce --kept-prob 0.5 --kept-anchor self"}
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(clean text syntactic style)

for target in "${targets[@]}"; do
  if [ "$target" = clean ]; then
    $PY -m backdoor train --kind clean --out runs/shipped-clean --publish checkpoints/clean --no-resume $CLEAN_FLAGS
  else
    name="backdoor-$target"
    $PY -m backdoor train --kind backdoor --victim-adapter checkpoints/clean --trigger-kind "$target" \
        --out "runs/shipped-$name" --publish "checkpoints/$name" --no-resume $BACKDOOR_FLAGS
  fi
done
# Reports (corpus test split) and model cards for every shipped adapter, with one shared scorer.
$PY scripts/evaluate_shipped.py
