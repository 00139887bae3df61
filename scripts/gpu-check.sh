#!/usr/bin/env bash
# `make gpu-check`: aerun on a CUDA GPU, end to end (python -m aerun.gpucheck). Without CUDA it says
# so in one line and exits 0. On a GPU machine without aerun's dependencies and without network,
# it installs them from .gpu-bundle/ (`make gpu-bundle`) into .gpu-venv, on top of the machine's own
# PyTorch (--system-site-packages, --no-deps: the pinned torch is never pulled), and unpacks MNIST.
#   scripts/gpu-check.sh [--install-only] [aerun.gpucheck options]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
install_only=0
if [ "${1:-}" = "--install-only" ]; then install_only=1; shift; fi

has_cuda() { "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }
has_deps() { "$PY" -c 'import hydra, omegaconf, submitit, yaml, hydra_plugins.hydra_submitit_launcher, aerun.cli' 2>/dev/null; }

install_bundle() {
    if [ ! -d .gpu-bundle/wheels ]; then
        echo "gpu-check: error: $PY lacks aerun's dependencies (hydra-core, omegaconf, submitit) and there is no" \
             ".gpu-bundle/; run \`make gpu-bundle\` on a machine with network and carry .gpu-bundle/ here" >&2
        exit 1
    fi
    # A venv with its own pip; where the image's Python has no ensurepip, a venv without pip that
    # the image's own pip installs into (pip >= 22.3: --python).
    local pip=(.gpu-venv/bin/python -m pip)
    if [ -n "${AERUN_GPU_VENV_WITHOUT_PIP:-}" ] || ! python3 -m venv --system-site-packages .gpu-venv 2>/dev/null; then
        rm -rf .gpu-venv
        python3 -m venv --system-site-packages --without-pip .gpu-venv
        pip=(python3 -m pip --python .gpu-venv/bin/python)
    fi
    "${pip[@]}" install --quiet --disable-pip-version-check --no-index --no-deps .gpu-bundle/wheels/*.whl
    "${pip[@]}" install --quiet --disable-pip-version-check --no-index --no-deps --no-build-isolation -e .
    PY=.gpu-venv/bin/python
}

unpack_mnist() {
    mkdir -p data/MNIST/raw
    for gz in .gpu-bundle/MNIST/*.gz; do
        [ -e "$gz" ] || continue
        raw="data/MNIST/raw/$(basename "$gz" .gz)"
        [ -f "$raw" ] || gunzip -c "$gz" > "$raw"   # aerun checks every file's SHA-256 before use
    done
}

if [ "$install_only" = 1 ]; then
    has_deps || install_bundle
    unpack_mnist
    echo "gpu-check: ready: $PY"
    exit 0
fi
if ! has_cuda; then
    exec "$PY" -m aerun.gpucheck "$@"   # one line, exit 0
fi
if [ -x .gpu-venv/bin/python ]; then PY=.gpu-venv/bin/python; fi
has_deps || install_bundle
unpack_mnist
export PATH="$(dirname "$PY"):$PATH"
exec "$PY" -m aerun.gpucheck "$@"
