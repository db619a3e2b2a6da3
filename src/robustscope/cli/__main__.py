"""``python -m robustscope.cli`` (as ``python -m robustscope``)."""

from robustscope.cli import main

main()
