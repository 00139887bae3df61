# The two README commands: `make demo` and `make test`. Each sets everything up from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup data demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

data: setup
	$(BIN)/aerun data

# The whole assignment: every part trained (complete runs reused), evaluated, plotted, written up.
demo: data
	$(BIN)/aerun report
	@echo
	@echo "Open outputs/report/index.html (or read outputs/report/report.md); the runs are in outputs/report/runs/."

test: data
	AERUN_TEST_MNIST=$(CURDIR)/data $(BIN)/python -m pytest -q

# One epoch of the original DataLoader pipeline against aerun's, and the FLOP bound -> outputs/bench/<time>/bench.json
bench: data
	$(BIN)/aerun bench

clean:
	rm -rf $(VENV) outputs .pytest_cache
