"""Findings: each claim of the source papers that a study can test, checked on its numbers.

A :class:`Finding` states the claim (as the paper makes it), its source, whether it holds
in this study (``True``/``False``, or ``None`` — "not tested here" — when the study did not
measure what it needs) and the evidence, with the numbers.

How a claim is read off the numbers:

* trends along ε are read per series (model × training family, see
  :mod:`robustscope.report.stats`) on the seed means, and must be *strictly monotone*
  over every training ε of the series; a claim holds when it holds in every series;
* "robust vs standard" claims compare each adversarially trained member (ε > 0) of a
  series with its standard (ε = 0) member;
* only finished runs count.

Example::

    for f in compute_findings(data):
        print(f.claim, f.holds, f.evidence)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from robustscope.report.data import StudyData
from robustscope.report.stats import by_eps, main_robust_column, series, spectra_layers
from robustscope.studies.store.vocab import CLEAN_ACCURACY, format_eps, train_metric

__all__ = [
    "FISHER_FACTOR",
    "P_MIDDLE",
    "Finding",
    "compute_findings",
    "derived_columns",
    "spearman",
]

#: the middle band of true-class probabilities counted by the wen2020 Fig. 5(a) finding
P_MIDDLE = (0.1, 0.9)
#: "far below": the factor by which robust models' Fisher norm must undercut the standard's
FISHER_FACTOR = 3.0
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


def _num(v: float, scale: float = 1.0) -> str:
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


def _eps_list(index: pd.Index) -> str:
    return ", ".join(f"{float(e):g}" for e in index)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when undefined."""
    rx = pd.Series(np.asarray(x, dtype=float)).rank().to_numpy()
    ry = pd.Series(np.asarray(y, dtype=float)).rank().to_numpy()
    if len(rx) < 2 or rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def _first(table: pd.DataFrame, columns: tuple[str, ...]) -> str | None:
    for col in columns:
        if col in table.columns and table[col].notna().any():
            return col
    return None


def _trend(
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
    col = _first(table, columns)
    if col is None:
        return Finding(claim, paper, None, NOT_TESTED + f"{columns[0]} was not measured")
    verdicts, parts = [], []
    for name, rows in series(table).items():
        s = by_eps(rows, col)["mean"]
        if len(s) < 2:
            continue
        diffs = np.diff(s.to_numpy(dtype=float))
        ok = bool((direction * diffs > 0).all())
        verdicts.append(ok)
        values = " → ".join(_num(v, scale) for v in s)
        text = f"{name}: {values}{unit} at ε = {_eps_list(s.index)}"
        if not ok:
            bad = [
                f"{float(s.index[i]):g}→{float(s.index[i + 1]):g}"
                for i in range(len(diffs))
                if not direction * diffs[i] > 0
            ]
            text += f" (not monotone: {', '.join(bad)})"
        parts.append(text)
    if not verdicts:
        return Finding(claim, paper, None, NOT_TESTED + "fewer than two training ε measured")
    note = "" if col == columns[0] else f" [from {col}]"
    return Finding(claim, paper, all(verdicts), "; ".join(parts) + note)


def _vs_standard(
    table: pd.DataFrame,
    columns: tuple[str, ...],
    *,
    factor: float,
    claim: str,
    paper: str,
) -> Finding:
    """Every member with ε > 0 strictly below its series' standard member, by at least
    ``factor``× (``factor`` = 1: merely below)."""
    col = _first(table, columns)
    if col is None:
        return Finding(claim, paper, None, NOT_TESTED + f"{columns[0]} was not measured")
    verdicts, parts = [], []
    for name, rows in series(table).items():
        s = by_eps(rows, col)["mean"]
        if len(s) < 2 or s.index[0] != 0:
            continue
        base, robust = float(s.iloc[0]), s.iloc[1:]
        ratios = [base / v if v > 0 else math.inf for v in robust]
        ok = base > 0 and all(r >= factor and r > 1 for r in ratios)
        verdicts.append(ok)
        lo, hi = min(ratios), max(ratios)
        span = _ratio(lo) if math.isclose(lo, hi) else f"{_ratio(lo)[:-1]}–{_ratio(hi)}"
        parts.append(
            f"{name}: standard {_num(base)} vs {', '.join(_num(v) for v in robust)} "
            f"at ε = {_eps_list(robust.index)} ({span} lower)"
        )
    if not verdicts:
        return Finding(claim, paper, None, NOT_TESTED + "no standard (ε = 0) model to compare")
    note = "" if col == columns[0] else f" [from {col}]"
    return Finding(claim, paper, all(verdicts), "; ".join(parts) + note)


def derived_columns(data: StudyData, table: pd.DataFrame) -> pd.DataFrame:
    """``table`` plus the quantities some findings need that no probe stores as a scalar:

    * ``derived/margin_rms`` = √(mean² + std²) of the test margins (their root-mean-square
      distance from zero, exact from the ``margins`` scalars, population std);
    * ``derived/p_true_middle`` — fraction of test examples with ``0.1 ≤ p_y < 0.9``, from
      the ``margins`` probe's fixed-bin histogram ``test/p_true_hist`` (bins counted by
      their centre; exact when 0.1 and 0.9 are bin edges, as with the default 20 bins);
    * ``derived/wrong_loss_mean`` — mean test cross-entropy of the misclassified examples,
      from the ``margins`` arrays ``test/loss`` and ``test/correct``.
    """
    out = table.copy()
    if {"margins/test/margin_mean", "margins/test/margin_std"} <= set(out.columns):
        out["derived/margin_rms"] = np.sqrt(
            out["margins/test/margin_mean"] ** 2 + out["margins/test/margin_std"] ** 2
        )
    middle, wrong = {}, {}
    for rid in out.index:
        hist = data.array(str(rid), "margins", "test/p_true_hist")
        edges = data.array(str(rid), "margins", "test/p_true_edges")
        if hist is not None and edges is not None and hist.sum() > 0:
            centers = 0.5 * (edges[1:] + edges[:-1])
            inside = (centers >= P_MIDDLE[0]) & (centers < P_MIDDLE[1])
            middle[rid] = float(hist[inside].sum() / hist.sum())
        loss = data.array(str(rid), "margins", "test/loss")
        correct = data.array(str(rid), "margins", "test/correct")
        if loss is not None and correct is not None and len(loss) == len(correct):
            bad = ~np.asarray(correct, dtype=bool)
            if bad.any():
                wrong[rid] = float(np.asarray(loss, dtype=float)[bad].mean())
    if middle:
        out["derived/p_true_middle"] = pd.Series(middle, dtype=float)
    if wrong:
        out["derived/wrong_loss_mean"] = pd.Series(wrong, dtype=float)
    return out


def _fisher_over_training(data: StudyData, table: pd.DataFrame) -> Finding:
    claim = (
        "During standard training the input-Fisher norm grows with the test accuracy "
        "(Spearman ρ > 0 over the tracked epochs, and a higher norm at the last epoch than "
        "at the first)"
    )
    paper = "shi2020 Fig. 3, §3.3"
    h = data.history
    fisher = "track/test/input_fisher_frobenius_mean"
    if not len(h) or fisher not in h.columns:
        return Finding(claim, paper, None, NOT_TESTED + "input_fisher was not tracked")
    acc = _first(h, ("track/test/clean_accuracy", "test_accuracy"))
    verdicts, parts = [], []
    for rid in table.index[table["eps"] == 0]:
        rows = h[h["run_id"] == rid].sort_values("epoch")
        if acc is None:
            break
        rows = rows[["epoch", fisher, acc]].dropna()
        if len(rows) < 3:
            continue
        rho = spearman(rows[acc].to_numpy(), rows[fisher].to_numpy())
        first, last = rows.iloc[0], rows.iloc[-1]
        ok = bool(rho > 0 and last[fisher] > first[fisher])
        verdicts.append(ok)
        parts.append(
            f"{table.loc[rid, 'label']}: epoch {int(first['epoch'])}→{int(last['epoch'])}, "
            f"accuracy {_num(first[acc], 100)}→{_num(last[acc], 100)} %, "
            f"‖F_x‖_F {_num(first[fisher])}→{_num(last[fisher])} (ρ = {rho:.2f})"
        )
    if not verdicts:
        return Finding(claim, paper, None, NOT_TESTED + "no standard run with ≥ 3 tracked epochs")
    return Finding(claim, paper, all(verdicts), "; ".join(parts))


def _cckl_tracks_accuracy(table: pd.DataFrame) -> Finding:
    claim = "CCKL and clean accuracy rank the models alike (Spearman ρ > 0.5 over the models)"
    paper = "shi2020 Fig. 2 (CCKL indicates test accuracy)"
    cols = ["cckl/value", CLEAN_ACCURACY]
    if not set(cols) <= set(table.columns):
        return Finding(claim, paper, None, NOT_TESTED + "needs cckl and the clean accuracy")
    rows = table[cols].dropna()
    if len(rows) < 3:
        return Finding(claim, paper, None, NOT_TESTED + "fewer than three models measured")
    rho = spearman(rows[CLEAN_ACCURACY].to_numpy(), rows["cckl/value"].to_numpy())
    if math.isnan(rho):
        return Finding(claim, paper, None, NOT_TESTED + "no spread in CCKL or in accuracy")
    return Finding(claim, paper, rho > 0.5, f"ρ = {rho:.2f} over {len(rows)} models")


def _spectra_spread(table: pd.DataFrame) -> Finding:
    claim = (
        "Singular values spread less under stronger adversarial training: from the weakest to "
        "the strongest training ε the per-layer STD of the singular values falls in most "
        "layers, and the summed decreases exceed the summed increases"
    )
    paper = "wen2020 Fig. 5(c–d), §4.2.2, B.2"
    layers = spectra_layers(table)
    if not layers:
        return Finding(claim, paper, None, NOT_TESTED + "layer_spectra did not run")
    verdicts, texts = [], []
    for name, rows in series(table).items():
        stds = {layer: by_eps(rows, col)["mean"] for layer, col in layers.items()}
        eps = sorted({float(e) for s in stds.values() for e in s.index})
        positive = [e for e in eps if e > 0]
        if len(positive) >= 2:
            weak, strong = positive[0], positive[-1]
        elif len(eps) >= 2:
            weak, strong = eps[0], eps[-1]
        else:
            continue
        diffs = [
            float(s[weak] - s[strong])
            for s in stds.values()
            if weak in s.index and strong in s.index
        ]
        if not diffs:
            continue
        dec = [d for d in diffs if d > 0]
        inc = [-d for d in diffs if d < 0]
        ok = len(dec) > len(inc) and sum(dec) > sum(inc)
        verdicts.append(ok)
        texts.append(
            f"{name}, ε = {weak:g} vs {strong:g}: STD lower in {len(dec)} of {len(diffs)} "
            f"layers; summed decrease {sum(dec):.3g} vs summed increase {sum(inc):.3g}"
        )
    if not verdicts:
        return Finding(claim, paper, None, NOT_TESTED + "fewer than two training ε measured")
    return Finding(claim, paper, all(verdicts), "; ".join(texts))


def _masking_check(data: StudyData, table: pd.DataFrame) -> Finding:
    claim = "No gradient-masking warning fired when the models were attacked"
    paper = "evaluation check (attacks.evaluate's sanity checks, after AutoAttack)"
    evaluation = data.spec.get("evaluation") or {}
    flags = [c for c in data.flag_columns() if c.column in table.columns]
    attacked = any(c.eps > 0 for c in data.robust_columns())
    if not flags and (evaluation.get("checks") is False or not attacked):
        return Finding(claim, paper, None, NOT_TESTED + "the checks did not run")
    fired = [
        f"{table.loc[rid, 'label']}: {c.flag}"
        for c in flags
        for rid, value in table[c.column].items()
        if value == value and value > 0
    ]
    if fired:
        return Finding(claim, paper, False, "; ".join(fired))
    return Finding(claim, paper, True, f"no warning over {len(table)} models")


def _gap_finding(t: pd.DataFrame) -> Finding:
    claim = "The generalization gap (test − train loss) shrinks as ε grows"
    paper = "wen2020 Fig. 3(a), §4.1 (the error-rate gap need not: it grew on CIFAR-10, B.3)"
    if "generalization_gap/loss_gap" not in t.columns and {
        "margins/test/loss_mean",
        "margins/train/loss_mean",
    } <= set(t.columns):
        t = t.assign(
            **{"derived/loss_gap": t["margins/test/loss_mean"] - t["margins/train/loss_mean"]}
        )
    return _trend(
        t,
        ("generalization_gap/loss_gap", "derived/loss_gap"),
        direction=-1,
        claim=claim,
        paper=paper,
    )


def compute_findings(data: StudyData, *, eval_eps: float | None = None) -> list[Finding]:
    """The findings of a study (see the module doc): the trade-off, shi2020, wen2020,
    terzi2021/tsipras2019 claims, then the evaluation check.

    Args:
        data: the study.
        eval_eps: attack ε at which the robust-accuracy claim is read (default: see
            :func:`robustscope.report.stats.main_robust_column`).
    """
    table = data.table()
    if not len(table):
        return [Finding("Any claim", "—", None, NOT_TESTED + "no finished run")]
    t = derived_columns(data, table)
    robust = main_robust_column(data, eval_eps)
    if robust is not None:
        robust_claim = (
            f"Robust accuracy ({robust.label} at ε = {format_eps(robust.eps)}) increases "
            "monotonically with the training ε"
        )
    else:
        robust_claim = "Robust accuracy increases monotonically with the training ε"
    return [
        _trend(
            t,
            (CLEAN_ACCURACY, train_metric("test_accuracy")),
            direction=-1,
            claim="Clean accuracy decreases monotonically as the training ε grows",
            paper="tsipras2019 §2–3; wen2020 Fig. 1(c), Fig. 3(b); shi2020 §3.3",
            scale=100,
            unit=" %",
        ),
        _trend(
            t,
            (robust.column,),
            direction=+1,
            claim=robust_claim,
            paper="wen2020 Fig. 1(c); Madry et al. 2018",
            scale=100,
            unit=" %",
        )
        if robust is not None
        else Finding(
            robust_claim,
            "wen2020 Fig. 1(c); Madry et al. 2018",
            None,
            NOT_TESTED + "no attack was evaluated at ε > 0",
        ),
        _vs_standard(
            t,
            (
                "input_fisher/frobenius_mean",
                train_metric("track/test/input_fisher_frobenius_mean"),
            ),
            factor=FISHER_FACTOR,
            claim="The input-Fisher norm ‖F_x‖_F (mean over test points) of every adversarially "
            f"trained model is far below the standard model's (at least {FISHER_FACTOR:g}× lower)",
            paper="shi2020 Fig. 4, §3.3",
        ),
        _fisher_over_training(data, t),
        _vs_standard(
            t,
            ("taylor_split/g1_share",),
            factor=1.0,
            claim="Adversarially trained models rely less on the non-robust second-order term: "
            "the G1 share of the cross-class KL is below the standard model's",
            paper="shi2020 §3.3, eq. 11",
        ),
        _trend(
            t,
            ("cckl/value",),
            direction=-1,
            claim="CCKL decreases as the training ε grows (it tracks accuracy, and robust "
            "models cannot use its G1 part)",
            paper="shi2020 §3.1–3.3 (implied; the paper plots CCKL over training, Fig. 2)",
        ),
        _cckl_tracks_accuracy(t),
        _trend(
            t,
            ("derived/margin_rms",),
            direction=-1,
            claim="Test margins concentrate around zero as ε grows (their root-mean-square "
            "√(mean² + std²) decreases)",
            paper="wen2020 Fig. 1(b), Fig. 4, §4.2.1",
        ),
        _trend(
            t,
            ("derived/p_true_middle",),
            direction=+1,
            claim="More test examples get a middle true-class probability "
            f"({P_MIDDLE[0]:g} ≤ p_y < {P_MIDDLE[1]:g}) as ε grows",
            paper="wen2020 Fig. 5(a), §4.2.1",
            scale=100,
            unit=" %",
        ),
        _trend(
            t,
            ("confidence/mean_max_prob", "margins/test/p_true_mean"),
            direction=-1,
            claim="Predictions become less confident as ε grows (mean max-probability falls)",
            paper="wen2020 §1.1, §4.2.1",
        ),
        _trend(
            t,
            ("derived/wrong_loss_mean", "margins/test/loss_q95"),
            direction=-1,
            claim="Wrong test predictions cost less as ε grows (mean test loss of the "
            "misclassified examples falls)",
            paper="wen2020 Fig. 5(b), §4.2.1",
        ),
        _trend(
            t,
            ("generalization_gap/train_loss", "margins/train/loss_mean"),
            direction=+1,
            claim="The training loss rises with ε (adversarial training reduces the capacity "
            "to fit the training set)",
            paper="wen2020 Fig. 3(a), §4.1",
        ),
        _gap_finding(t),
        _trend(
            t,
            ("generalization_gap/test_loss", "margins/test/loss_mean"),
            direction=-1,
            claim="The test loss falls as ε grows even though the test error rises",
            paper="wen2020 Fig. 3(b), §4.1 (CIFAR-10/100; not on Tiny-ImageNet)",
        ),
        _spectra_spread(t),
        _trend(
            t,
            ("weight_norms/l2_total",),
            direction=-1,
            claim="The ℓ2 norm of the weights decreases as ε grows",
            paper="terzi2021 Fig. 5 (ℓ2 adversarial training: only for ε > 1 — two regimes)",
        ),
        _vs_standard(
            t,
            ("weight_norms/l1_total",),
            factor=1.0,
            claim="The ℓ1 norm of the weights of adversarially trained models is below the "
            "standard model's",
            paper="tsipras2019 Table 5 (linear classifier on MNIST: 41.08 vs 13.69)",
        ),
        _trend(
            t,
            ("weight_information/log_variance_mean",),
            direction=+1,
            claim="The weights hold less information as ε grows (the mean log-variance of the "
            "optimal Gaussian posterior rises)",
            paper="terzi2021 Fig. 4",
        ),
        _trend(
            t,
            ("representation_fisher/lambda_max_mean",),
            direction=-1,
            claim="Adversarial training flattens the representation's Fisher w.r.t. the input "
            "(its largest eigenvalue falls as ε grows)",
            paper="terzi2021 eq. 5",
        ),
        _masking_check(data, t),
    ]
