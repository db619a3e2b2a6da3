#!/usr/bin/env bash
# ruff (lint + format check) and mypy on the public API. Run after `make test` set up .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
.venv/bin/mypy
