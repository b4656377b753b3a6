#!/usr/bin/env bash
# Install everything, then run the whole test suite on this machine (CPU: kernels run under
# TRITON_INTERPRET=1; with a GPU the same tests run compiled, plus the GPU-only ones).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" -m pytest -q "$@"
