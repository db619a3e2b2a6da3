"""Atomic writes: whole files only, with the permissions of an ordinary new file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from robustscope.io import atomic_write, read_json, write_bytes, write_json


def test_written_file_has_ordinary_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = write_bytes(tmp_path / "report.html", b"<html></html>")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not the 0o600 of a temporary file
    assert path.read_bytes() == b"<html></html>"


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = write_json(tmp_path / "a.json", {"v": 1})

    def broken(tmp: Path) -> None:
        tmp.write_text('{"v": ')
        raise RuntimeError("killed half-way")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert read_json(path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
