"""The one printer of the command line: a command builds its result once, :func:`emit`
prints it as strict JSON (``--json``) or in its human form (tables and lines).

Example:
    >>> emit({"name": "pgd", "accuracy": float("nan")}, as_json=True)
    {
      "name": "pgd",
      "accuracy": null
    }
    >>> emit({"pgd": "projected gradient descent"}, False, TableView([Column("attack", "name")]))
    ┏━━━━━━━━┓
    ┃ attack ┃
    ┡━━━━━━━━┩
    │ pgd    │
    └────────┘
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

__all__ = [
    "Column",
    "TableView",
    "cell",
    "emit",
    "err_console",
    "finite",
    "fixed",
    "out_console",
    "print_json",
    "rows_of",
]

out_console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def finite(obj: Any) -> Any:
    """``obj`` as plain JSON data: dataclasses as dicts, NaN and ±inf floats as None.

    Example:
        >>> finite({"a": [1.0, float("inf")], "b": (float("nan"),)})
        {'a': [1.0, None], 'b': [None]}
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return finite(dataclasses.asdict(obj))
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def print_json(obj: Any) -> None:
    """One strict JSON document on stdout (non-finite numbers written as null)."""
    sys.stdout.write(json.dumps(finite(obj), indent=2, default=str, allow_nan=False) + "\n")


def cell(value: Any) -> str:
    """A table cell: None empty, booleans yes/no, floats to 4 decimals, lists comma-joined.

    Example:
        >>> [cell(v) for v in (None, True, 0.123456, ["a", "b"], 3)]
        ['', 'yes', '0.1235', 'a, b', '3']
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return str(value)


def fixed(digits: int) -> Callable[[Any], str]:
    """A cell format: floats with ``digits`` decimals, anything else as :func:`cell`."""

    def fmt(value: Any) -> str:
        return f"{value:.{digits}f}" if isinstance(value, float) else cell(value)

    return fmt


@dataclass(frozen=True)
class Column:
    """One column of a table.

    Attributes:
        header: the column's title.
        value: the row's key it shows, or a function of the row.
        format: how the value becomes text (default :func:`cell`).
    """

    header: str
    value: str | Callable[[Mapping[str, Any]], Any]
    format: Callable[[Any], str] = cell

    def text(self, row: Mapping[str, Any]) -> str:
        return self.format(self.value(row) if callable(self.value) else row.get(self.value))


def rows_of(result: Any) -> list[Mapping[str, Any]]:
    """The table rows of a result: a list of dicts or dataclasses, or a mapping name → row
    (a dict, whose rows gain the key ``name``, or a value, shown under the key ``value``).

    Example:
        >>> rows_of({"pgd": "projected gradient", "fgsm": "one step"})[1]
        {'name': 'fgsm', 'value': 'one step'}
    """
    if isinstance(result, Mapping):
        return [
            {"name": k, **v} if isinstance(v, Mapping) else {"name": k, "value": v}
            for k, v in result.items()
        ]
    return [
        dataclasses.asdict(r) if dataclasses.is_dataclass(r) and not isinstance(r, type) else r
        for r in result
    ]


@dataclass(frozen=True)
class TableView:
    """How a result reads as a table.

    Attributes:
        columns: the columns, in order.
        rows: the rows (see :func:`rows_of`); None: the result itself.
        title: shown above the table.
        compact: a light frame (a header rule only) for wide tables.
    """

    columns: Sequence[Column]
    rows: Any = None
    title: str | None = None
    compact: bool = False

    def render(self, result: Any) -> Table:
        style: dict[str, Any] = {"box": box.SIMPLE_HEAD, "padding": (0, 1)} if self.compact else {}
        table = Table(*(c.header for c in self.columns), title=self.title, **style)
        for row in rows_of(result if self.rows is None else self.rows):
            table.add_row(*(c.text(row) for c in self.columns))
        return table


#: one piece of a result's human form: a table, a line of text (rich markup), nothing, or a
#: function giving one of those (called only when the human form is printed)
Part = TableView | str | None | Callable[[], "TableView | str | None"]


def emit(result: Any, as_json: bool, *parts: Part) -> None:
    """Print ``result``: strict JSON with ``--json``, else its human form ``parts`` in order.

    Args:
        result: what the command found (dicts, lists, dataclasses, numbers, strings).
        as_json: the command's ``--json``.
        parts: tables (:class:`TableView`, rendered from ``result`` unless given rows) and
            lines; None is skipped; a callable is called first (work only the table needs).
    """
    if as_json:
        print_json(result)
        return
    for part in parts:
        shown = part() if callable(part) else part
        if shown is not None:
            out_console.print(shown.render(result) if isinstance(shown, TableView) else shown)
