"""Aggregation shared by figures and findings: series along ε, seed statistics, the main
robust-accuracy column.

A *series* is one (model, training-method family) of the study, its members ordered by
training ε. The planner trains ε = 0 once per model (the standard run, recorded under the
first family listing ε = 0), so a family without its own ε = 0 member borrows the model's
standard run as its ε = 0 point: every curve starts from the same standard model. In a
study with a training-set-size axis (two or more ``train_size`` values), a series is one
(model, family, training-set size) — ``"cnn · pgd · n=500"`` — and borrows the standard run
of its own size: runs on different training sets are never pooled as if they were seeds.

A run without a training ε (NaN: a model loaded from a checkpoint the lab did not train,
:mod:`robustscope.studies.loaded`) belongs to no series: :func:`unplaced` lists such runs,
which figures show as points of their own and claims along ε leave out.
"""

from __future__ import annotations

import pandas as pd

from robustscope.report.data import AttackColumn, StudyData, eval_n, natural_key, num_classes
from robustscope.studies import health as run_health
from robustscope.studies.store.vocab import CLEAN_ACCURACY, COLLAPSED, HEALTH, TRAIN_SIZE, find_eps

__all__ = [
    "attack_curve",
    "by_eps",
    "eval_n",
    "fired_flags",
    "main_robust_column",
    "series",
    "series_name",
    "sized",
    "spectra_layers",
    "trained",
    "unplaced",
]


def trained(table: pd.DataFrame, spec: dict[str, object]) -> pd.DataFrame:
    """The runs of ``table`` that trained. A run that did not is never evidence for or against a
    claim.

    The decision is the study's (:mod:`robustscope.studies.health`): ``table``'s ``health``
    column — the store's mark, or the same rule applied by :meth:`StudyData.health` to runs
    stored before they were marked — and every run not ``collapsed`` is kept. ``data.table()``
    has left the collapsed runs out already, so on it this keeps every row. A table without the
    column (built by hand) is judged by the rule's clean-accuracy test on the ``spec``'s
    evaluation ``n`` and dataset; without a clean accuracy or a chance level every run is kept.
    """
    if HEALTH in table.columns:
        return table[table[HEALTH] != COLLAPSED]
    k = num_classes(dict(spec))
    if k is None or CLEAN_ACCURACY not in table.columns or not len(table):
        return table
    _, line = run_health.chance_line(k, eval_n(dict(spec)))
    acc = table[CLEAN_ACCURACY]
    return table[acc.isna() | (acc > line)]


def series_name(model: str, family: str, size: float | None = None) -> str:
    """``"<model> · <family>"``, with ``" · n=<size>"`` for a training-set size."""
    name = f"{model} · {family}"
    return name if size is None else f"{name} · n={int(size)}"


def sized(table: pd.DataFrame) -> bool:
    """Whether ``table``'s runs span two or more training-set sizes (``train_size``)."""
    return TRAIN_SIZE in table.columns and table[TRAIN_SIZE].dropna().nunique() > 1


def unplaced(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``table`` without a training ε (NaN), which no series holds."""
    return table[table["eps"].isna()] if len(table) else table


def series(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """``"<model> · <family>"`` (``… · n=<size>`` when :func:`sized`) → that series' rows
    (ε = 0 borrowed as the module doc says), in the table's order of models, families and
    sizes; runs without a training ε (:func:`unplaced`) are in none."""
    out: dict[str, pd.DataFrame] = {}
    if len(table):
        table = table[table["eps"].notna()]
    if not len(table):
        return out
    by_size = sized(table)
    keys = ["model", "family", TRAIN_SIZE] if by_size else ["model", "family"]
    for key, rows in table.groupby(keys, sort=False, dropna=False):
        model, family = key[0], key[1]
        size = float(key[2]) if by_size else None
        if family != "standard" and not (rows["eps"] == 0).any():
            std = table[(table["model"] == model) & (table["method"] == "standard")]
            if by_size:
                std = std[_same_size(std[TRAIN_SIZE], size)]
            rows = pd.concat([std[std["eps"] == 0], rows])
        if by_size and size is not None and size != size:  # NaN: the whole training split
            size = None
        out[series_name(str(model), str(family), size)] = rows.sort_values(["eps", "seed"])
    return out


def _same_size(sizes: pd.Series, size: float | None) -> pd.Series:
    if size is None or size != size:
        return sizes.isna()
    return sizes == size


def by_eps(rows: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per training ε: ``mean``, ``lo`` (min), ``hi`` (max), ``std`` (ddof 1, NaN for one
    seed) and ``n`` of ``column`` over the seeds, NaN values dropped; index ε ascending."""
    cols = ["mean", "lo", "hi", "std", "n"]
    if column not in rows.columns:
        return pd.DataFrame(columns=cols, dtype=float)
    values = rows[["eps", column]].dropna()
    if not len(values):
        return pd.DataFrame(columns=cols, dtype=float)
    g = values.groupby("eps")[column]
    out = pd.DataFrame(
        {"mean": g.mean(), "lo": g.min(), "hi": g.max(), "std": g.std(), "n": g.count()}
    )
    return out.sort_index()


def main_robust_column(
    data: StudyData, eval_eps: float | None = None, table: pd.DataFrame | None = None
) -> AttackColumn | None:
    """The robust-accuracy column the frontier and findings use: the first attack at
    ``eval_eps`` if given, else at the middle (upper median) training ε > 0 that the attack
    evaluates, else at its middle evaluated ε > 0. ε are matched with the store's tolerance
    (:func:`robustscope.studies.store.vocab.find_eps`: ``0.0313725`` finds ``8/255``).
    ``table``: ``data.table()`` when the caller has it already."""
    cols = data.robust_columns()
    if not cols:
        return None
    key = data.first_attack()
    mine = [c for c in cols if c.label == key] or [c for c in cols if c.label == cols[0].label]
    evaluated = {c.eps: c for c in mine}
    if eval_eps is not None:
        found = find_eps(eval_eps, evaluated)
        return None if found is None else evaluated[found]
    table = data.table() if table is None else table
    train_eps = sorted({float(e) for e in table["eps"] if e > 0}) if len(table) else []
    candidates = [evaluated[f] for e in train_eps if (f := find_eps(e, evaluated)) is not None]
    if not candidates:
        candidates = [c for eps, c in sorted(evaluated.items()) if eps > 0]
    if not candidates:
        return None
    return candidates[len(candidates) // 2]


def spectra_layers(table: pd.DataFrame) -> dict[str, str]:
    """Layer name → the column of the STD of its singular values (``layer_spectra`` probe:
    the exact ``std``, else the circular approximation's ``approx_std``), in the model's
    order (natural sort, head last)."""
    layers: dict[str, str] = {}
    for col in table.columns:
        parts = str(col).split("/")
        if len(parts) != 3 or parts[0] != "layer_spectra" or parts[2] not in ("std", "approx_std"):
            continue
        if not table[col].notna().any():
            continue
        if parts[2] == "std" or parts[1] not in layers:
            layers[parts[1]] = str(col)
    return dict(sorted(layers.items(), key=lambda kv: natural_key(kv[0])))


def fired_flags(data: StudyData, table: pd.DataFrame) -> list[str]:
    """``"<run label>: <flag>"`` for every gradient-masking flag raised on a run of
    ``table`` (the finished runs), by flag column, then run."""
    flags = [c for c in data.flag_columns() if c.column in table.columns]
    return [
        f"{table.loc[rid, 'label']}: {c.flag}"
        for c in flags
        for rid, value in table[c.column].items()
        if value == value and value > 0
    ]


def attack_curve(
    members: pd.DataFrame, points: dict[float, str]
) -> list[tuple[float, float, float, float]]:
    """``(attack ε, mean, min, max)`` over ``members`` (runs, e.g. the seeds of one training ε)
    of one attack's robust-accuracy columns ``points`` (attack ε → column), in increasing ε;
    the attack ε = 0 point is the clean accuracy when the attack did not evaluate it."""
    curve = []
    for a_eps, col in sorted(points.items()):
        if col not in members.columns:
            continue
        vals = members[col].dropna()
        if len(vals):
            curve.append((a_eps, float(vals.mean()), float(vals.min()), float(vals.max())))
    if find_eps(0.0, list(points)) is None and curve and CLEAN_ACCURACY in members.columns:
        vals = members[CLEAN_ACCURACY].dropna()
        if len(vals):
            curve.insert(0, (0.0, float(vals.mean()), float(vals.min()), float(vals.max())))
    return curve
