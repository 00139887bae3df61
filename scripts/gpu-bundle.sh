#!/usr/bin/env bash
# `make gpu-bundle`: what `make gpu-check` needs on a GPU machine whose Python has PyTorch, torchvision,
# numpy, scipy, matplotlib, Pillow, PyYAML, tqdm, joblib and pytest but no network: the pure-Python wheels
# of aerun's other dependencies (the versions this checkout's .venv runs; installed there with --no-deps,
# so the machine's own torch is kept) and MNIST, gzipped. Written to .gpu-bundle/ (ignored by git; carry it
# with the working tree).
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=.gpu-bundle
PIP=".venv/bin/python -m pip --disable-pip-version-check --quiet"
version() { .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))"; }
# What such a machine lacks (Hydra and its launchers, OmegaConf, submitit, torchmetrics); all pure Python.
PURE="hydra-core omegaconf hydra-joblib-launcher hydra-submitit-launcher submitit torchmetrics lightning-utilities"

rm -rf "$BUNDLE.tmp" && mkdir -p "$BUNDLE.tmp/wheels" "$BUNDLE.tmp/MNIST"
specs=(); for p in $PURE; do specs+=("$p==$(version "$p")"); done
$PIP download --no-deps --only-binary=:all: --dest "$BUNDLE.tmp/wheels" "${specs[@]}"
# antlr4-python3-runtime (omegaconf's parser) is published as a source archive only: build its wheel here.
$PIP wheel --no-deps --wheel-dir "$BUNDLE.tmp/wheels" "antlr4-python3-runtime==$(version antlr4-python3-runtime)"
for f in data/MNIST/raw/*-ubyte; do gzip -9 -c "$f" > "$BUNDLE.tmp/MNIST/$(basename "$f").gz"; done
rm -rf "$BUNDLE" && mv "$BUNDLE.tmp" "$BUNDLE"
echo "gpu-bundle: $(ls "$BUNDLE/wheels" | wc -l) wheels and MNIST in $BUNDLE ($(du -sh "$BUNDLE" | cut -f1)); carry it to the GPU machine with the working tree, then: make gpu-check"
