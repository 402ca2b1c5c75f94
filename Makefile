# Two commands on a fresh machine: `make demo` (main job) and `make test` (test suite).
# Both create .venv with the pinned dependencies first if it is missing or out of date.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench bench-gpu clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=... to another 3.11+)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mmrebal demo

test: $(STAMP)
	$(BIN)/ruff check mmrebal tests benchmarks
	$(BIN)/python -m pytest -q -ra

bench: $(STAMP)
	$(BIN)/python benchmarks/prep.py
	$(BIN)/python benchmarks/train_step.py
	$(BIN)/python benchmarks/scoring.py
	$(BIN)/python benchmarks/loader.py

# On a machine with a GPU: the step and feed goals of the GPU presets (a few minutes)
bench-gpu: $(STAMP)
	$(BIN)/python benchmarks/train_step.py --preset ogm --shapes ogm --device cuda --bf16 --repeats 3
	$(BIN)/python benchmarks/loader.py --shapes ogm-3f,bss-ks --device cuda --workers 0,2,8 --clips 8

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
