#!/usr/bin/env bash
# `make gpu-check`: aerun on a CUDA GPU, end to end (python -m aerun.gpucheck). Without CUDA it says
# so in one line and exits 0. On a GPU machine whose Python has PyTorch but not aerun's other
# dependencies, and no network, it installs the wheels of .gpu-bundle/ (`make gpu-bundle`) into
# .gpu-site/ (pip --target --no-deps: the machine's own torch is kept, never the pinned one), puts that
# folder and this checkout on PYTHONPATH, and unpacks MNIST.
#   scripts/gpu-check.sh [--install-only] [aerun.gpucheck options: --steps, --budget, --out, --device cpu]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
install_only=0
if [ "${1:-}" = "--install-only" ]; then install_only=1; shift; fi

has_cuda() { "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }
has_deps() { "$PY" -c 'import hydra, omegaconf, submitit, yaml, hydra_plugins.hydra_submitit_launcher, aerun.cli' 2>/dev/null; }

use_site() {  # the bundle's packages, then this checkout (aerun itself), ahead of the interpreter's own
    export PYTHONPATH="$PWD/.gpu-site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
    export PATH="$PWD/.gpu-site/bin:$PATH"
}

install_bundle() {
    if [ ! -d .gpu-bundle/wheels ]; then
        echo "gpu-check: error: $PY lacks aerun's dependencies (hydra-core, omegaconf, submitit) and there is no" \
             ".gpu-bundle/; run \`make gpu-bundle\` on a machine with network and carry .gpu-bundle/ here" >&2
        exit 1
    fi
    rm -rf .gpu-site.tmp
    "$PY" -m pip install --quiet --disable-pip-version-check --no-index --no-deps --no-compile \
        --target .gpu-site.tmp .gpu-bundle/wheels/*.whl
    mkdir -p .gpu-site.tmp/bin
    printf '#!/bin/sh\nexec "%s" -m aerun "$@"\n' "$(command -v "$PY")" > .gpu-site.tmp/bin/aerun
    chmod +x .gpu-site.tmp/bin/aerun
    rm -rf .gpu-site && mv .gpu-site.tmp .gpu-site
}

unpack_mnist() {
    mkdir -p data/MNIST/raw
    for gz in .gpu-bundle/MNIST/*.gz; do
        [ -e "$gz" ] || continue
        raw="data/MNIST/raw/$(basename "$gz" .gz)"
        [ -f "$raw" ] || gunzip -c "$gz" > "$raw"   # aerun checks every file's SHA-256 before use
    done
}

prepare() {
    if ! has_deps; then
        [ -d .gpu-site ] || install_bundle
        use_site
        if ! has_deps; then
            echo "gpu-check: error: aerun still cannot import its dependencies from .gpu-site/ with $PY;" \
                 "run \`make gpu-bundle\` again and carry the new .gpu-bundle/ here" >&2
            exit 1
        fi
    fi
    unpack_mnist
}

if [ "$install_only" = 1 ]; then
    prepare
    echo "gpu-check: ready: $PY${PYTHONPATH:+ with PYTHONPATH=$PYTHONPATH}"
    exit 0
fi
if ! has_cuda && [[ " $* " != *" --device cpu "* ]]; then
    exec "$PY" -m aerun.gpucheck "$@"   # one line, exit 0
fi
prepare
exec "$PY" -m aerun.gpucheck "$@"
