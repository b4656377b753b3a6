#!/usr/bin/env bash
# Install everything, then serve the embedded default model (SmolLM2-135M-Instruct) with the
# OpenAI-compatible server on http://127.0.0.1:8000. Extra arguments go to the server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" -m minivllm.server "$@"
