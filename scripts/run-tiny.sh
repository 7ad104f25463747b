#!/usr/bin/env bash
# Set up a fresh machine and run the main job: every method on the offline `tiny` suite, report written.
#   bash scripts/run-tiny.sh                 # results in runs/tiny, report in runs/tiny/report
#   bash scripts/run-tiny.sh --seeds 0       # extra arguments go to `ctkd-bench run`
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e .
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec ctkd-bench run tiny --methods all --out runs/tiny "$@"
