# The two README commands: `make demo` and `make test`. Each sets everything up from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := outputs/demo/$(shell date +%Y-%m-%d_%H-%M-%S)

.PHONY: setup data demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

data: setup
	$(BIN)/aerun data

# Assignment part 1: PCA against the deep autoencoder, as one two-job sweep.
demo: data
	$(BIN)/aerun -m model=pca,deep hydra.sweep.dir=$(DEMO)
	$(BIN)/aerun eval run=$(DEMO)
	$(BIN)/aerun plot run=$(DEMO)
	@echo
	@echo "Results in $(DEMO): eval.md (table), figures/*.png, and one folder per job."

test: data
	AERUN_TEST_MNIST=$(CURDIR)/data $(BIN)/python -m pytest -q

# One epoch of the original DataLoader pipeline against aerun's, and the FLOP bound -> outputs/bench/<time>/bench.json
bench: data
	$(BIN)/aerun bench

clean:
	rm -rf $(VENV) outputs .pytest_cache
