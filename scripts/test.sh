#!/usr/bin/env bash
# Set up a fresh machine and run the test suite (this is what CI runs, via .ci/run).
#   bash scripts/test.sh            # all tests
#   bash scripts/test.sh -k specs   # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
# The CPU wheel of torch first, so pip never pulls a multi-GB CUDA build.
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e '.[dev]'
# Headless Chromium for the report's browser test (Debian packages; skipped where apt is absent).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
    || echo "warning: chromium could not be installed; the browser test will be skipped" >&2
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec python3 -m pytest -q -p no:cacheprovider "$@"
