"""Findings: each claim of the source papers a study can test, checked on its numbers.

A :class:`Finding` says what the paper claims, whether it holds here (True / False / None
when the study did not measure it) and the evidence. Trends are read per model family
(model × method) from the seed-averaged value at each training ε, ordered by ε.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

__all__ = ["Finding", "compute_findings", "family_series"]


@dataclass(frozen=True)
class Finding:
    """One testable claim and its verdict on this study.

    Attributes:
        claim: the statement tested, e.g. "clean accuracy decreases monotonically with ε".
        paper: where it comes from (paper and figure/section).
        holds: True / False, or None when the study has no data for it.
        evidence: the numbers, e.g. "91.8 → 83.0 → 76.0 (%)".
    """

    claim: str
    paper: str
    holds: bool | None
    evidence: str


def family_series(table: pd.DataFrame, column: str) -> dict[str, pd.Series]:
    """Per family (``"<model> <family>"``), the seed-mean of ``column`` indexed by training ε."""
    out: dict[str, pd.Series] = {}
    if column not in table.columns:
        return out
    for (model, family), group in table.groupby(["model", "family"], sort=True):
        series = group.groupby("eps")[column].mean().sort_index().dropna()
        if len(series) >= 2:
            out[f"{model} {family}"] = series
    return out


def _fmt(values: pd.Series, scale: float) -> str:
    return " → ".join(f"{scale * v:.3g}" for v in values.to_numpy())


def _monotone(
    table: pd.DataFrame,
    column: str,
    *,
    direction: int,
    claim: str,
    paper: str,
    scale: float = 1.0,
    unit: str = "",
) -> Finding:
    series = family_series(table, column)
    if not series:
        return Finding(claim, paper, None, "not measured in this study")
    verdicts, parts = [], []
    for name, s in series.items():
        diffs = s.diff().dropna().to_numpy()
        ok = bool((diffs * direction > 0).all())
        verdicts.append(ok)
        eps = ", ".join(f"{e:g}" for e in s.index)
        parts.append(f"{name} (ε = {eps}): {_fmt(s, scale)}{unit}{'' if ok else ' — not monotone'}")
    return Finding(claim, paper, all(verdicts), "; ".join(parts))


def _ratio_to_standard(
    table: pd.DataFrame, column: str, *, factor: float, claim: str, paper: str
) -> Finding:
    series = family_series(table, column)
    if not series:
        return Finding(claim, paper, None, "not measured in this study")
    verdicts, parts = [], []
    for name, s in series.items():
        if s.index[0] != 0:
            continue
        base = float(s.iloc[0])
        robust = s.iloc[1:]
        worst = float(robust.max())
        ok = worst > 0 and base / worst >= factor
        verdicts.append(ok)
        parts.append(
            f"{name}: standard {base:.3g} vs robust {', '.join(f'{v:.3g}' for v in robust)} "
            f"(≥ {base / worst:.1f}× lower)"
            if worst > 0
            else f"{name}: robust value 0"
        )
    if not verdicts:
        return Finding(claim, paper, None, "no standard (ε = 0) run to compare with")
    return Finding(claim, paper, all(verdicts), "; ".join(parts))


def compute_findings(table: pd.DataFrame, robust_column: str | None) -> list[Finding]:
    """The findings of a study from its per-run table (one row per run: ``model``, ``family``,
    ``eps``, ``seed`` and metric/probe columns such as ``clean_accuracy``,
    ``input_fisher/frobenius_mean``, ``cckl/value``)."""
    findings = [
        _monotone(
            table,
            "clean_accuracy",
            direction=-1,
            claim="clean accuracy decreases monotonically with the training ε",
            paper="tsipras2019 §1, wen2020 Fig. 1(c), the trade-off",
            scale=100,
            unit=" %",
        )
    ]
    if robust_column is not None:
        label = robust_column.rsplit("/", 1)[0].replace("/", " at ε=")
        findings.append(
            _monotone(
                table,
                robust_column,
                direction=+1,
                claim=f"robust accuracy ({label}) increases monotonically with the training ε",
                paper="Madry et al. 2018; wen2020 Fig. 1(c)",
                scale=100,
                unit=" %",
            )
        )
    findings += [
        _ratio_to_standard(
            table,
            "input_fisher/frobenius_mean",
            factor=3.0,
            claim="the input-Fisher norm of adversarially trained models is far (≥ 3×) below "
            "the standard model's",
            paper="shi2020 Figs. 3–4",
        ),
        _monotone(
            table,
            "cckl/value",
            direction=-1,
            claim="the cross-class KL divergence (CCKL) decreases with the training ε",
            paper="shi2020 §3 (robust models separate classes less sharply)",
        ),
        _monotone(
            table,
            "confidence/mean_max_prob",
            direction=-1,
            claim="predictions become less confident as ε grows (mean max-probability falls)",
            paper="wen2020 §1.1 and Fig. 5",
        ),
        _monotone(
            table,
            "margins/test/margin_std",
            direction=-1,
            claim="test margins concentrate (their spread shrinks) as ε grows",
            paper="wen2020 Fig. 1(b), §4.2.1",
        ),
        _monotone(
            table,
            "generalization_gap/loss_gap",
            direction=-1,
            claim="the generalization (loss) gap shrinks as ε grows",
            paper="wen2020 §4.1, Fig. 3",
        ),
        _monotone(
            table,
            "layer_spectra/mean_std",
            direction=-1,
            claim="the spread (std) of the layers' singular values shrinks as ε grows "
            "(mean over layers)",
            paper="wen2020 §4.2.2, Fig. 5c–d",
        ),
        _monotone(
            table,
            "weight_norms/l2_total",
            direction=-1,
            claim="the ℓ2 norm of the weights decreases with ε",
            paper="terzi2021 Fig. 5",
        ),
    ]
    return findings


def is_nan(x: float) -> bool:
    return isinstance(x, float) and math.isnan(x)
