"""The generic registry: the verbs every registry of robustscope shares."""

from __future__ import annotations

import pytest

from robustscope.errors import DataError, RobustscopeError
from robustscope.registry import Registry


def test_register_get_available() -> None:
    reg: Registry[object] = Registry("widget")

    @reg.register("b")
    class B:
        """A widget called b.

        More text.
        """

    reg.register("a", 1, doc="the number one")
    assert reg.get("b") is B
    assert reg.get("a") == 1
    assert reg.names() == ["a", "b"]
    assert reg.available() == {"a": "the number one", "b": "A widget called b."}
    assert "a" in reg and "c" not in reg
    assert len(reg) == 2 and list(reg) == ["a", "b"]
    assert reg.items() == [("a", 1), ("b", B)]


def test_unknown_name_lists_valid_names() -> None:
    reg: Registry[int] = Registry("gizmo", error=DataError)
    reg.register("x", 1)
    reg.register("y", 2)
    with pytest.raises(DataError, match=r"unknown gizmo 'z'; valid gizmos: x, y"):
        reg.get("z")


def test_duplicate_and_empty_names_refused() -> None:
    reg: Registry[int] = Registry("gizmo")
    reg.register("x", 1)
    with pytest.raises(RobustscopeError, match="registered twice"):
        reg.register("x", 2)
    assert reg.get("x") == 1
    with pytest.raises(RobustscopeError, match="non-empty"):
        reg.register("", 3)
