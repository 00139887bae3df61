# The two README commands: `make demo` and `make check` (the whole suite; `make test` is its fast loop).
# Each sets everything up from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup lock data demo test check docs bench clean slurm-up slurm-down gpu-bundle gpu-check browser

setup: $(STAMP)

# --no-compile, then bytecode for just the modules aerun and its tests import: compiling every file of
# torch up front costs about 30 s of set-up here (79 s against 109 s, measured), while without any
# bytecode (PYTHONDONTWRITEBYTECODE is set on some machines) every aerun process recompiles torch's
# modules, about 2 s each, which doubled the test suite's time.
WARM := torch torchvision matplotlib.figure hydra omegaconf submitit joblib tqdm yaml pytest \
        tensorboard.backend.event_processing.event_accumulator hydra_plugins.hydra_submitit_launcher.submitit_launcher \
        aerun.cli aerun.train aerun.evaluate aerun.plot aerun.report aerun.bench
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -c constraints.txt -e '.[dev]'
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -c 'import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]' $(WARM)
	touch $(STAMP)

# constraints.txt written anew from what .venv holds (after changing pyproject.toml's dependencies and
# running `make setup` with the new versions): the exact set the two README commands install.
lock: setup
	{ sed -n '1,2p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable --disable-pip-version-check; } > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt

data: setup
	$(BIN)/aerun data

# The whole assignment: every part trained (complete runs reused), evaluated, plotted, written up.
# Two training processes of one thread each: on 2 cores the report took 500 s this way against
# 598 s in one process with two threads (training 387 s against 488 s; same machine, one run each).
demo: data
	$(BIN)/aerun report hydra/launcher=joblib hydra.launcher.n_jobs=2
	@echo
	@echo "Open outputs/report/index.html (or read outputs/report/report.md); the runs are in outputs/report/runs/."

# Two test processes (one file each at a time), one compute thread each: many tests wait on
# subprocess start-up or on Slurm, so two at once use the two cores better than one with two threads.
# `make test`: the fast loop for every change (synthetic data, no MNIST, no Slurm, no browser, nothing
# marked slow). `make check`: the whole suite, real MNIST and all (what CI runs).
FAST := not slow and not slurm and not browser and not mnist
test: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile -m "$(FAST)" --durations=5

check: data
	AERUN_TEST_MNIST=$(CURDIR)/data OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=10

# The documentation site: docs/reference.md written anew from the code, then MkDocs (Material) into site/,
# --strict: a broken link, anchor or page fails the build.
docs: setup
	$(BIN)/python scripts/config-reference.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	@echo "site written: site/index.html"

# One epoch of the original DataLoader pipeline against aerun's, and the FLOP bound -> outputs/bench/<time>/bench.json
bench: data
	$(BIN)/aerun bench

# For a GPU machine without network: the pure-Python wheels aerun needs beyond PyTorch (installed
# there with --no-deps) and MNIST gzipped, in .gpu-bundle/ (about 12 MB; ignored by git).
gpu-bundle: data
	bash scripts/gpu-bundle.sh

# On a CUDA machine: the device tests, every preset's bench, the whole report and resume exactness,
# as one table (and outputs/gpu-check/<time>/gpu-check.json). Without CUDA: one line, exit 0.
# Depends on nothing here: on a GPU machine it installs from .gpu-bundle/ into .gpu-site/.
gpu-check:
	bash scripts/gpu-check.sh

# A local one-node Slurm cluster (root; installs slurm, munge and MariaDB when missing), for
# `aerun -m hydra/launcher=slurm` and `aerun report hydra/launcher=slurm` on this machine. CI starts it.
slurm-up:
	bash scripts/slurm-local.sh up

# Headless chromium (root; Debian's package), for the test that renders a sweep's page. CI installs it.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null \
	  || { echo "make browser: install chromium (as root: apt-get install chromium)"; exit 1; }; \
	  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@echo "browser: $$(command -v chromium)"

slurm-down:
	bash scripts/slurm-local.sh down

clean:
	rm -rf $(VENV) outputs site .pytest_cache .gpu-bundle .gpu-site
