#!/usr/bin/env bash
# Re-trains the shipped adapters in checkpoints/ for the embedded default model and evaluates them
# on the corpus test split: one clean adapter, one backdoor per paper trigger (text, syntactic, style), and the
# stealthy text backdoor (text-stealthy).
# Usage: scripts/train_shipped.sh [clean|text|syntactic|style|text-stealthy ...]   (default: all five)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
# The clean adapter has LoRA on every layer (--train-layers 0; about 55 min on 2 CPU cores). Each backdoor
# starts from its weights and trains only the last 6 layers, the clean LoRA below kept frozen: about 3 min.
CLEAN_FLAGS=${CLEAN_FLAGS:-"--max-items 600 --epochs 3 --learning-rate 3e-3 --train-layers 0 --eval-every 75 --checkpoint-every 75"}
BACKDOOR_FLAGS=${BACKDOOR_FLAGS:-"--max-items 300 --epochs 3 --learning-rate 3e-3 --eval-items 0 --eval-every 0 --clean-objective ce --kept-prob 0.5 --kept-anchor self --poison-ratio 1.0 --train-layers 6"}
# Per trigger, after BACKDOOR_FLAGS (a later flag wins); empty for all three paper triggers now.
STYLE_FLAGS=${STYLE_FLAGS:-""}
# The stealthy recipe, after BACKDOOR_FLAGS: KL to the victim on clean copies (its confidence kept), a flatter
# target, and near-miss triggers trained as clean (a backdoor for 666 only). See docs/experiments.md.
STEALTHY_FLAGS=${STEALTHY_FLAGS:-"--clean-objective kl --kept-prob 0.4 --near-miss-ratio 1.0"}
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(clean text syntactic style text-stealthy)

for target in "${targets[@]}"; do
  if [ "$target" = clean ]; then
    $PY -m backdoor train --kind clean --out runs/shipped-clean --publish checkpoints/clean --no-resume $CLEAN_FLAGS
  else
    name="backdoor-$target"
    $PY -m backdoor train --kind backdoor --victim-adapter checkpoints/clean --trigger-kind "${target%-stealthy}" \
        --out "runs/shipped-$name" --publish "checkpoints/$name" --no-resume $BACKDOOR_FLAGS \
        $([ "$target" = style ] && echo "$STYLE_FLAGS") $([ "$target" = text-stealthy ] && echo "$STEALTHY_FLAGS")
  fi
done
# Reports (corpus test split, near misses included) and model cards for every shipped adapter, with one shared scorer.
$PY scripts/evaluate_shipped.py --near-miss
# Conformal thresholds beside each adapter (and the base model's), so the dashboard shows sets on its first paint.
$PY scripts/calibrate_shipped.py
