#!/usr/bin/env bash
# Install the comparison libraries of the benchmarks into .venv (the [bench] extra), pinned
# beside torch==2.13.0. torchattacks declares torchvision, which does not import beside this
# torch build, and an old `requests` pin; its attacks need neither, so it goes in without deps.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=".venv/bin/python -m pip"
$PIP install -q torch==2.13.0 foolbox adversarial-robustness-toolbox tqdm requests
$PIP install -q torch==2.13.0 --no-deps torchattacks
.venv/bin/python -c "import torchattacks, foolbox, art; print('torchattacks', torchattacks.__version__, 'foolbox', foolbox.__version__, 'art', art.__version__)"
