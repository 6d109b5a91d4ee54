#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite, including the few `slow` tests on the embedded model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
python -m pytest tests "$@"
