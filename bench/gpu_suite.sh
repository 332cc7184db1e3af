#!/usr/bin/env bash
# All GPU figures of issue #17 in one command; see bench/gpu_suite.py.
#   bash bench/gpu_suite.sh [RESULTS_DIR] [--dry-run] [--sections a,b] ...
# PYTHON picks the interpreter (default python3: on the GPU machines, the one with JAX).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
exec "${PYTHON:-python3}" -u bench/gpu_suite.py "$@"
