# The two user-facing targets: `make demo` (the main job) and `make test` (the suite).
# Each does its own idempotent setup on a fresh machine.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  := torch==2.13.0
STAMP  := $(VENV)/.robustscope-installed

.PHONY: demo test setup data lint

# the default study: trains the family, attacks and probes it, writes runs/tradeoff-fmnist/report.html
demo: setup data
	$(VENV)/bin/robustscope study --preset tradeoff-fmnist --out runs/tradeoff-fmnist

test: setup
	@bash scripts/ensure-fashion-mnist.sh $(PY) || echo "warning: Fashion-MNIST unavailable;" \
		"the tests that need it skip and say so"
	@bash scripts/ensure-chromium.sh
	bash scripts/lint.sh
	$(PY) -m pytest -n 2 --dist loadfile -q --doctest-modules src/robustscope tests

# --- setup (not user-facing) ---------------------------------------------------------

setup: $(STAMP)

# torch is pinned on every pip line so no other build is ever pulled in
$(STAMP): pyproject.toml benchmarks/setup.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q $(TORCH) -e '.[dev,mlflow,tensorboard]'
	bash benchmarks/setup.sh
	touch $@

data: setup
	@bash scripts/ensure-fashion-mnist.sh $(PY)

# ruff (lint + format check) and mypy; part of `make test`
lint: setup
	bash scripts/lint.sh
