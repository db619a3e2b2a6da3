"""Findings: the shared form of a checked claim and the statistics every section reads them by.

A :class:`Finding` states a claim of a source paper (as the paper makes it), its source,
whether it holds in this study (``True``/``False``, or ``None`` — "not tested here" — when
the study did not measure what it needs) and the evidence, with the numbers. Each claim
lives in the report section of its paper (:mod:`robustscope.report.sections`); this module
holds what they share:

* trends along ε (:func:`trend`) are read per series (model × training family, see
  :mod:`robustscope.report.stats`) on the seed means, and must be *strictly monotone* over
  every training ε of the series;
* "robust vs standard" claims (:func:`vs_standard`) compare each adversarially trained
  member (ε > 0) of a series with its standard (ε = 0) member;
* a claim read per series or per run holds when it holds in every one (:func:`verdict`);
* only finished runs count (the table is :meth:`~robustscope.report.data.StudyData.table`).

Example:
    >>> import pandas as pd
    >>> table = pd.DataFrame({"model": "m", "family": "pgd", "eps": [0.0, 0.1, 0.2],
    ...                       "seed": 0, "acc": [0.9, 0.8, 0.85]})
    >>> f = trend(table, ("acc",), direction=-1, claim="accuracy falls", paper="tsipras2019")
    >>> f.holds, f.evidence
    (False, 'm · pgd: 0.9 → 0.8 → 0.85 at ε = 0, 0.1, 0.2 (not monotone: 0.1→0.2)')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from robustscope.report.stats import by_eps, series
from robustscope.studies.store.vocab import format_eps

__all__ = [
    "NOT_TESTED",
    "Finding",
    "eps_list",
    "first_present",
    "not_tested",
    "number",
    "spearman",
    "trend",
    "verdict",
    "vs_standard",
]

#: the start of the evidence of a claim the study could not test
NOT_TESTED = "not tested here: "


@dataclass(frozen=True)
class Finding:
    """One testable claim and its verdict on this study.

    Attributes:
        claim: the statement tested, e.g. "clean accuracy decreases monotonically with ε".
        paper: its source (paper and figure/section).
        holds: True / False, or None when the study has no data for it.
        evidence: the numbers, e.g. "cnn · pgd: 91.8 → 83.0 → 76.0 % at ε = 0, 0.1, 0.2".
    """

    claim: str
    paper: str
    holds: bool | None
    evidence: str


def not_tested(claim: str, paper: str, why: str) -> Finding:
    """The finding of a claim this study cannot test, saying ``why``."""
    return Finding(claim, paper, None, NOT_TESTED + why)


def verdict(
    claim: str, paper: str, judged: Sequence[tuple[bool, str]], untested: str, note: str = ""
) -> Finding:
    """The claim holds when every ``(holds, evidence)`` of ``judged`` (one per series or
    run) holds; not tested (``untested`` says why) when there is none."""
    if not judged:
        return not_tested(claim, paper, untested)
    evidence = "; ".join(text for _, text in judged) + note
    return Finding(claim, paper, all(ok for ok, _ in judged), evidence)


def number(v: float, scale: float = 1.0) -> str:
    """``scale · v`` for evidence: one decimal for percentages, else 3 significant digits."""
    x = scale * float(v)
    if not math.isfinite(x):
        return str(x)
    if scale == 100.0:
        return f"{x:.1f}"
    return f"{x:.3g}"


def _ratio(r: float) -> str:
    if not math.isfinite(r):
        return "∞×"
    return f"{r:.2f}×" if r < 10 else f"{r:.0f}×"


def eps_list(index: pd.Index) -> str:
    """Training ε for evidence: ``0, 0.1, 0.2``."""
    return ", ".join(format_eps(e) for e in index)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when undefined.

    >>> spearman(np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 15.0]))
    0.5
    """
    rx = pd.Series(np.asarray(x, dtype=float)).rank().to_numpy()
    ry = pd.Series(np.asarray(y, dtype=float)).rank().to_numpy()
    if len(rx) < 2 or rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def first_present(table: pd.DataFrame, columns: Sequence[str]) -> str | None:
    """The first of ``columns`` that ``table`` has with at least one value, else None."""
    for col in columns:
        if col in table.columns and table[col].notna().any():
            return col
    return None


Judge = Callable[[str, pd.Series], "tuple[bool, str] | None"]


def _per_series(
    table: pd.DataFrame,
    columns: tuple[str, ...],
    claim: str,
    paper: str,
    judge: Judge,
    untested: str,
) -> Finding:
    """``judge(series name, seed means by ε)`` over every series, on the first of
    ``columns`` with data (a fallback is named in the evidence)."""
    col = first_present(table, columns)
    if col is None:
        return not_tested(claim, paper, f"{columns[0]} was not measured")
    judged = [
        j for name, rows in series(table).items() if (j := judge(name, by_eps(rows, col)["mean"]))
    ]
    note = "" if col == columns[0] else f" [from {col}]"
    return verdict(claim, paper, judged, untested, note)


def trend(
    table: pd.DataFrame,
    columns: tuple[str, ...],
    *,
    direction: int,
    claim: str,
    paper: str,
    scale: float = 1.0,
    unit: str = "",
) -> Finding:
    """Strictly monotone in ε (``direction`` −1: decreasing, +1: increasing) in every series;
    the first of ``columns`` with data is read (a fallback is named in the evidence)."""

    def judge(name: str, s: pd.Series) -> tuple[bool, str] | None:
        if len(s) < 2:
            return None
        diffs = np.diff(s.to_numpy(dtype=float))
        ok = bool((direction * diffs > 0).all())
        values = " → ".join(number(v, scale) for v in s)
        text = f"{name}: {values}{unit} at ε = {eps_list(s.index)}"
        if not ok:
            bad = [
                f"{format_eps(s.index[i])}→{format_eps(s.index[i + 1])}"
                for i in range(len(diffs))
                if not direction * diffs[i] > 0
            ]
            text += f" (not monotone: {', '.join(bad)})"
        return ok, text

    return _per_series(table, columns, claim, paper, judge, "fewer than two training ε measured")


def vs_standard(
    table: pd.DataFrame,
    columns: tuple[str, ...],
    *,
    factor: float,
    claim: str,
    paper: str,
) -> Finding:
    """Every member with ε > 0 strictly below its series' standard member, by at least
    ``factor``× (``factor`` = 1: merely below)."""

    def judge(name: str, s: pd.Series) -> tuple[bool, str] | None:
        if len(s) < 2 or s.index[0] != 0:
            return None
        base, robust = float(s.iloc[0]), s.iloc[1:]
        ratios = [base / v if v > 0 else math.inf for v in robust]
        ok = base > 0 and all(r >= factor and r > 1 for r in ratios)
        lo, hi = min(ratios), max(ratios)
        span = _ratio(lo) if math.isclose(lo, hi) else f"{_ratio(lo)[:-1]}–{_ratio(hi)}"
        return ok, (
            f"{name}: standard {number(base)} vs {', '.join(number(v) for v in robust)} "
            f"at ε = {eps_list(robust.index)} ({span} lower)"
        )

    return _per_series(table, columns, claim, paper, judge, "no standard (ε = 0) model to compare")
