#!/usr/bin/env bash
# Regenerates the EP 128 serving comparison that docs/answers.md (question 13) reads:
# round-robin against KV-balanced assignment, 2000 decode steps of DeepSeek-V3 at EP 128.
# About 7 minutes on a 2-core machine (release build; 6 min 46 s measured). Writes docs/data/serve-ep128.csv (one
# row per policy, `epsim serve --format csv`) and docs/img/serve-ep128.svg.
set -euo pipefail
cd "$(dirname "$0")/.."
epsim="${EPSIM:-.build/release/epsim}"
if [ ! -x "$epsim" ]; then swift build -c release --product epsim >&2; fi
"$epsim" serve Scenarios/serving/serve-ep128.yaml --vary serving.policy=round-robin,least-kv --jobs 2 --no-store \
    --format csv --plot docs/img/serve-ep128.svg > docs/data/serve-ep128.csv
echo "wrote docs/data/serve-ep128.csv and docs/img/serve-ep128.svg" >&2
