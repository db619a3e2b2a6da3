"""``robustscope ARGS`` as a user runs it, for the tests of the command line."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from robustscope.cli import main


def run_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``robustscope ARGS`` through ``main`` (which turns an
    error into one line and exit status 2)."""
    monkeypatch.setattr(sys, "argv", ["robustscope", *args])
    code: Any = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return int(code or 0), captured.out, captured.err
