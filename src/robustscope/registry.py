"""The one registry: named entries (datasets, models, attacks, objectives, probes, ...).

Every kind of pluggable thing in robustscope lives in a :class:`Registry`. The verbs are
the same everywhere:

* ``register(name, entry, doc=...)`` or ``@registry.register(name)`` — a name registered
  twice is refused (a later module silently replacing an earlier entry is a bug);
* ``get(name)`` — the entry, or an error listing every valid name;
* ``available()`` — name → one line of description, sorted by name;
* ``names()``, ``name in registry``, ``len(registry)``.

Example:
    >>> shapes = Registry("shape")
    >>> @shapes.register("square", doc="four equal sides")
    ... def square(a: float) -> float:
    ...     return a * a
    >>> shapes.get("square")(3.0)
    9.0
    >>> shapes.available()
    {'square': 'four equal sides'}
    >>> shapes.get("circle")
    Traceback (most recent call last):
    ...
    robustscope.errors.RobustscopeError: unknown shape 'circle'; valid shapes: square
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, overload

from robustscope.errors import RobustscopeError, unknown_name

__all__ = ["Registry", "first_line"]

T = TypeVar("T")
E = TypeVar("E")


def first_line(obj: Any) -> str:
    """The first line of ``obj``'s docstring ('' when it has none)."""
    doc = getattr(obj, "__doc__", None) or ""
    return doc.strip().split("\n")[0]


class Registry(Generic[T]):
    """Entries of one kind by name.

    Args:
        kind: what the entries are, for messages (``"dataset"``, ``"attack"``, ...).
        error: the exception type raised for unknown and duplicate names.
        describe: one line describing an entry, for :meth:`available`, when no ``doc`` was
            given at registration (default: the first line of its docstring).
    """

    def __init__(
        self,
        kind: str,
        *,
        error: type[RobustscopeError] = RobustscopeError,
        describe: Callable[[T], str] = first_line,
    ) -> None:
        self.kind = kind
        self.error = error
        self._describe = describe
        self._entries: dict[str, T] = {}
        self._docs: dict[str, str] = {}

    @overload
    def register(self, name: str, entry: None = None, *, doc: str = "") -> Callable[[E], E]: ...

    @overload
    def register(self, name: str, entry: T, *, doc: str = "") -> T: ...

    def register(self, name: str, entry: Any = None, *, doc: str = "") -> Any:
        """Register ``entry`` under ``name``; without ``entry``, a decorator that does.

        Raises:
            the registry's error type: ``name`` is empty or already registered.
        """
        if entry is None:

            def deco(obj: E) -> E:
                self._add(name, obj, doc)  # type: ignore[arg-type]
                return obj

            return deco
        self._add(name, entry, doc)
        return entry

    def _add(self, name: str, entry: T, doc: str) -> None:
        if not isinstance(name, str) or not name:
            raise self.error(f"{self.kind} names must be non-empty strings, got {name!r}")
        if name in self._entries:
            raise self.error(
                f"{self.kind} {name!r} is registered twice "
                f"(already: {self._entries[name]!r}); choose another name"
            )
        self._entries[name] = entry
        self._docs[name] = doc or self._describe(entry)

    def get(self, name: str) -> T:
        """The entry registered as ``name``; an error listing the valid names otherwise."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise self.error(unknown_name(self.kind, str(name), list(self._entries))) from None

    def available(self) -> dict[str, str]:
        """Registered names (sorted) with one line of description each."""
        return {k: self._docs[k] for k in sorted(self._entries)}

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs, sorted by name."""
        return [(k, self._entries[k]) for k in sorted(self._entries)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"
