#!/usr/bin/env bash
# Verified cascade benchmark on GSM8K (benchmarks/cascade/RESULTS.md), ~6 min on 2 cores.
#
#   bash benchmarks/cascade/run.sh            # from the repository root
#
# 1. trains the shipped default learned verifier (src/modelmix/data/cascade/default) on all
#    of data/routellm/gsm8k.csv, with 5-fold CV metrics in its manifest;
# 2. evaluates the cascade with the learned verifier retrained per fold (5-fold CV by
#    prompt) next to the prompt-only router (the shipped router's learner retrained per
#    fold on GSM8K + MMLU, as the shipped router was trained), random and the oracle;
# 3. the same with the arithmetic verifier alone (no training, no router);
# 4. the feature-group comparison (features.py -> features.json).
set -euo pipefail
cd "$(dirname "$0")/../.."
MODELMIX=${MODELMIX:-.venv/bin/modelmix}
PY=${PY:-.venv/bin/python}
WEAK="mistralai/Mixtral-8x7B-Instruct-v0.1"
OUT=benchmarks/cascade

"$MODELMIX" cascade train --data data/routellm/gsm8k.csv --response-column "${WEAK}_response" \
  --out src/modelmix/data/cascade/default --cv 5
"$MODELMIX" cascade eval --data data/routellm/gsm8k.csv --router-data data/routellm/mmlu.csv \
  --verifier learned --cv 5 --out "$OUT/learned"
"$MODELMIX" cascade eval --data data/routellm/gsm8k.csv --verifier arithmetic --no-router \
  --cv 5 --out "$OUT/arithmetic"
"$PY" "$OUT/features.py"
