"""``python -m robustscope`` (also what ``torchrun -m robustscope`` runs)."""

from robustscope.cli import main

main()
