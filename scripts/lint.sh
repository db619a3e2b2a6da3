#!/usr/bin/env bash
# ruff (lint + format check) and mypy on the package; `make test` runs it before pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check src tests benchmarks examples
.venv/bin/ruff format --check src tests benchmarks examples
.venv/bin/mypy
