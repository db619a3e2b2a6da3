"""Findings: the shared form of a checked claim and the statistics every section reads them by.

A :class:`Finding` states a claim of a source paper (as the paper makes it), its source,
its :class:`~robustscope.report.evidence.Verdict` on this study — **holds**, **does not
hold**, **inconclusive**, or **not tested** when the study did not measure what it needs —
and the evidence, with the numbers and the 95 % interval the verdict was read from
(:mod:`robustscope.report.evidence` owns the statistical rule). Each claim lives in the
report section of its paper (:mod:`robustscope.report.sections`); this module holds what
they share:

* trends along ε (:func:`trend`) are read per series (model × training family, see
  :mod:`robustscope.report.stats`): the least-squares slope of the quantity along the
  training ε, with its bootstrap interval over test points (and seeds);
* "robust vs standard" claims (:func:`vs_standard`) compare each adversarially trained
  member (ε > 0) of a series with its standard (ε = 0) member by their ratio;
* a claim read per series or per run holds when it holds in every one and does not hold
  when it fails in one (:func:`verdict`, :func:`~robustscope.report.evidence.combine`);
* only finished runs that trained count (the table is
  :meth:`~robustscope.report.data.StudyData.table`, filtered by
  :func:`~robustscope.report.stats.trained`).

Example:
    >>> import pandas as pd
    >>> table = pd.DataFrame({"model": "m", "family": "pgd", "eps": [0.0, 0.1, 0.2, 0.3],
    ...                       "seed": 0, "w": [0.9, 0.8, 0.85, 0.7]})
    >>> f = trend(table, ("w",), direction=-1, claim="w falls", paper="tsipras2019")
    >>> f.verdict, f.evidence
    (<Verdict.INCONCLUSIVE: 'inconclusive'>, 'm · pgd: 0.9 → 0.8 → 0.85 → 0.7 at ε = 0, 0.1, 0.2, 0.3; ρ = -0.80, one-sided permutation p = 0.167')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from robustscope.report.evidence import (
    Draws,
    Interval,
    Samples,
    Verdict,
    combine,
    permutation_trend,
    slope,
    spearman,
)
from robustscope.report.stats import series
from robustscope.studies.store.vocab import format_eps

__all__ = [
    "NOT_TESTED",
    "Finding",
    "PointSource",
    "Verdict",
    "decided",
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


#: ``(run_id, column) → the per-point values behind that cell``, or None
PointSource = Callable[[str, str], "Samples | None"]


@dataclass(frozen=True)
class Finding:
    """One testable claim and its verdict on this study.

    Attributes:
        claim: the statement tested, e.g. "clean accuracy decreases with ε".
        paper: its source (paper and figure/section).
        verdict: holds / does not hold / inconclusive / not tested
            (:class:`~robustscope.report.evidence.Verdict`).
        evidence: the numbers and the interval, e.g. "cnn · pgd: 91.8 → 83.0 → 76.0 % at
            ε = 0, 0.1, 0.2; slope −79 [−85, −73] %/ε".
    """

    claim: str
    paper: str
    verdict: Verdict
    evidence: str

    def __post_init__(self) -> None:
        if not isinstance(self.verdict, Verdict):
            raise TypeError(
                f"Finding {self.claim!r}: verdict must be a Verdict, got {self.verdict!r} "
                "(use decided() for a claim decided without an interval)"
            )

    @property
    def holds(self) -> bool | None:
        """True (holds), False (does not hold), None (inconclusive or not tested)."""
        return {Verdict.HOLDS: True, Verdict.FAILS: False}.get(self.verdict)


def decided(ok: bool) -> Verdict:
    """The verdict of a claim decided exactly (a theorem's inequality on closed forms, a
    check): holds or does not hold."""
    return Verdict.HOLDS if ok else Verdict.FAILS


def not_tested(claim: str, paper: str, why: str) -> Finding:
    """The finding of a claim this study cannot test, saying ``why``."""
    return Finding(claim, paper, Verdict.UNTESTED, NOT_TESTED + why)


def verdict(
    claim: str,
    paper: str,
    judged: Sequence[tuple[Verdict | bool, str]],
    untested: str,
    note: str = "",
) -> Finding:
    """The claim over every ``(verdict, evidence)`` of ``judged`` (one per series or run;
    a bool is an exact decision, :func:`decided`), combined by
    :func:`~robustscope.report.evidence.combine`; not tested (``untested`` says why) when
    there is none."""
    if not judged:
        return not_tested(claim, paper, untested)
    evidence = "; ".join(text for _, text in judged) + note
    verdicts = [v if isinstance(v, Verdict) else decided(bool(v)) for v, _ in judged]
    return Finding(claim, paper, combine(verdicts), evidence)


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


def first_present(table: pd.DataFrame, columns: Sequence[str]) -> str | None:
    """The first of ``columns`` that ``table`` has with at least one value, else None."""
    for col in columns:
        if col in table.columns and table[col].notna().any():
            return col
    return None


Judge = Callable[[str, pd.DataFrame, str], "tuple[Verdict, str] | None"]


def _per_series(
    table: pd.DataFrame,
    columns: tuple[str, ...],
    claim: str,
    paper: str,
    judge: Judge,
    untested: str,
) -> Finding:
    """``judge(series name, its rows, column)`` over every series, on the first of
    ``columns`` with data (a fallback column must state the same quantity; it is named in
    the evidence)."""
    col = first_present(table, columns)
    if col is None:
        return not_tested(claim, paper, f"{columns[0]} was not measured")
    judged = [j for name, rows in series(table).items() if (j := judge(name, rows, col))]
    note = "" if col == columns[0] else f" [from {col}]"
    return verdict(claim, paper, judged, untested, note)


def members(
    rows: pd.DataFrame, column: str, points: PointSource | None
) -> tuple[list[float], list[list[tuple[float, Samples | None]]]]:
    """A series' training ε (ascending) and, per ε, ``(value, per-point samples)`` of each
    seed's run with a value in ``column`` (samples from ``points``, None without)."""
    out: dict[float, list[tuple[float, Samples | None]]] = {}
    for rid, row in rows.iterrows():
        value = row.get(column)
        if value is None or value != value:
            continue
        samples = points(str(rid), column) if points is not None else None
        out.setdefault(float(row["eps"]), []).append((float(value), samples))
    eps = sorted(out)
    return eps, [out[e] for e in eps]


def trend(
    table: pd.DataFrame,
    columns: tuple[str, ...],
    *,
    direction: int,
    claim: str,
    paper: str,
    scale: float = 1.0,
    unit: str = "",
    points: PointSource | None = None,
) -> Finding:
    """The quantity decreases (``direction`` −1) or increases (+1) with ε in every series:
    the bootstrap interval of the slope along ε lies below (above) 0, or — with nothing
    to resample — the permutation test of Spearman's ρ decides. ``points`` gives the
    per-point values to resample (without them: the seeds only)."""

    def judge(name: str, rows: pd.DataFrame, col: str) -> tuple[Verdict, str] | None:
        eps, seeds = members(rows, col, points)
        if len(eps) < 2:
            return None
        draws = Draws.of(seeds, eps)
        if draws.draws is None:
            iv = permutation_trend(eps, draws.point, direction)
        else:
            iv = draws.interval(slope)
        values = " → ".join(number(v, scale) for v in draws.point)
        text = f"{name}: {values}{unit} at ε = {eps_list(pd.Index(eps))}; "
        if iv.p is not None:
            text += iv.text()
        else:
            text += f"slope {iv.text(lambda v: number(v, scale))}{unit}/ε"
        return iv.decide(0.0, direction), text

    return _per_series(table, columns, claim, paper, judge, "fewer than two training ε measured")


def vs_standard(
    table: pd.DataFrame,
    columns: tuple[str, ...],
    *,
    factor: float,
    claim: str,
    paper: str,
    points: PointSource | None = None,
    exact: bool = False,
) -> Finding:
    """Every member with ε > 0 below its series' standard member by at least ``factor``×
    (``factor`` = 1: merely below): the 95 % interval of the ratio standard / member lies
    above ``factor`` (and 1). With nothing to resample (one seed, no per-point values) the
    ratio is compared as measured when the quantity is ``exact`` (a property of the
    weights), else the verdict is inconclusive."""

    def judge(name: str, rows: pd.DataFrame, col: str) -> tuple[Verdict, str] | None:
        eps, seeds = members(rows, col, points)
        if len(eps) < 2 or eps[0] != 0:
            return None
        draws = Draws.of(seeds, eps)
        verdicts, parts = [], []
        for j in range(1, len(eps)):

            def ratio(_: np.ndarray, v: np.ndarray, j: int = j) -> np.ndarray:
                with np.errstate(divide="ignore", invalid="ignore"):
                    return np.asarray(v[..., 0] / v[..., j])

            iv = draws.interval(ratio)
            if draws.draws is None and not exact:
                verdicts.append(Verdict.INCONCLUSIVE)
            else:
                verdicts.append(iv.decide(max(factor, 1.0), +1))
            parts.append(f"{number(draws.point[j])} at ε = {format_eps(eps[j])} "
                         f"({_ratio(iv.estimate)} lower{_ratio_interval(iv)})")  # fmt: skip
        text = f"{name}: standard {number(draws.point[0])} vs " + ", ".join(parts)
        return combine(verdicts), text

    return _per_series(table, columns, claim, paper, judge, "no standard (ε = 0) model to compare")


def _ratio_interval(iv: Interval) -> str:
    if iv.exact:
        return ", as measured: no per-point values or seeds to resample"
    return f", 95 % interval {_ratio(iv.lo)[:-1]}–{_ratio(iv.hi)}"
