"""Wide pandas views of the long attack tables, shared by ``Store`` and the report.

The long frames are those of ``Store.attack_results_long()`` (columns
:data:`~robustscope.studies.store.vocab.ATTACK_RESULT_COLUMNS`) and
``Store.attack_flags_long()`` (:data:`~robustscope.studies.store.vocab.ATTACK_FLAG_COLUMNS`).
A wide view has one row per run and one column per (label, ε, quantity) or (label, flag);
:func:`attack_columns` and :func:`flag_columns` describe those columns as data (label, ε,
quantity and the column's display name), so no caller ever reads a column name apart.

An *escalated* result (column ``escalates``: the label of the evaluation it re-attacks) is
the study's second look at a flagged evaluation: :func:`fold_escalations` gives the figures
a study reports — each escalated evaluation at the lower of its two figures per ε — and
:func:`escalations` lists both figures side by side.

Example:
    >>> import pandas as pd
    >>> long = pd.DataFrame({"run_id": ["r", "r"], "label": ["pgd-linf"] * 2,
    ...     "attack": ["pgd"] * 2, "norm": ["linf"] * 2, "params": ["{}"] * 2,
    ...     "attack_eps": [0.1, 0.1], "quantity": ["robust_accuracy",
    ...     "robust_accuracy_on_correct"], "value": [0.4, 0.5], "n": [100, 100]})
    >>> [c.column for c in attack_columns(long, "robust_accuracy")]
    ['pgd-linf/0.1/robust_accuracy']
    >>> robustness_wide(long)[["label", "attack_eps", "robust_accuracy"]].values.tolist()
    [['pgd-linf', 0.1, 0.4]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from robustscope.studies.store.vocab import (
    ATTACK_FLAG_COLUMNS,
    ATTACK_RESULT_COLUMNS,
    ESCALATES,
    QUANTITIES,
    ROBUST_ACCURACY,
    attack_column,
    flag_column,
)

__all__ = [
    "AttackColumn",
    "FlagColumn",
    "attack_columns",
    "attack_results_wide",
    "empty_attack_flags",
    "empty_attack_results",
    "escalations",
    "flag_columns",
    "flags_wide",
    "fold_escalations",
    "robustness_wide",
]

#: the columns of :func:`robustness_wide`
ROBUSTNESS_COLUMNS = (
    "run_id", "label", "attack", "norm", "params", "attack_eps", "n", ESCALATES, *QUANTITIES,
)  # fmt: skip
#: the columns of :func:`escalations`
ESCALATION_COLUMNS = (
    "run_id", "label", "escalation", "attack", "attack_eps", "evaluated", "escalated", "reported",
)  # fmt: skip


@dataclass(frozen=True)
class AttackColumn:
    """One column of :func:`attack_results_wide`: ``quantity`` under the evaluation
    ``label`` (attack ``attack`` in ``norm``) at radius ``eps``; ``column`` is its name."""

    label: str
    attack: str
    norm: str | None
    eps: float
    quantity: str
    column: str


@dataclass(frozen=True)
class FlagColumn:
    """One column of :func:`flags_wide`: the flag ``flag`` of the evaluation ``label``."""

    label: str
    flag: str
    column: str


def empty_attack_results() -> pd.DataFrame:
    """An empty long attack-results frame with its columns."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in ATTACK_RESULT_COLUMNS}).astype(
        {"attack_eps": "float64", "value": "float64"}
    )


def empty_attack_flags() -> pd.DataFrame:
    """An empty long attack-flags frame with its columns."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in ATTACK_FLAG_COLUMNS})


def _escalated(long: pd.DataFrame) -> pd.Series:
    """Which rows of ``long`` are escalated results (none when it has no ``escalates``)."""
    if ESCALATES not in long.columns:
        return pd.Series(False, index=long.index)
    return long[ESCALATES].notna()


def fold_escalations(long: pd.DataFrame) -> pd.DataFrame:
    """The results a study reports: the rows of the runs' own evaluations, each value the
    lower of the evaluation's and of its escalation's at the same (ε, quantity) — NaN only
    where both are — and no escalated rows. ``long`` without escalations comes back as is.

    Example:
        >>> long = pd.DataFrame({"run_id": ["r"] * 2, "label": ["pgd-linf", "pgd-linf+aa"],
        ...     "attack": ["pgd", "aa"], "norm": ["linf"] * 2, "params": ["{}"] * 2,
        ...     "attack_eps": [0.1] * 2, "quantity": ["robust_accuracy"] * 2,
        ...     "value": [0.4, 0.3], "n": [100] * 2, "escalates": [None, "pgd-linf"]})
        >>> fold_escalations(long)[["label", "attack", "value"]].values.tolist()
        [['pgd-linf', 'pgd', 0.3]]
    """
    escalated = _escalated(long)
    if not escalated.any():
        return long
    key = ["run_id", "label", "attack_eps", "quantity"]
    second = long[escalated][["run_id", ESCALATES, "attack_eps", "quantity", "value"]]
    second = second.rename(columns={ESCALATES: "label", "value": "_escalated"})
    own = long[~escalated].reset_index(drop=True)
    folded = own.merge(second, on=key, how="left", validate="one_to_one")
    folded["value"] = np.fmin(folded["value"], folded["_escalated"])
    return folded.drop(columns="_escalated")


def escalations(long: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, escalated evaluation, ε) with its robust accuracy over all points
    under the evaluation's attack (``evaluated``), under the escalation (``escalated``) and
    as reported (``reported``, the lower): columns ``run_id``, ``label`` (the evaluation),
    ``escalation`` (its label), ``attack`` (the escalation's attack), ``attack_eps``,
    ``evaluated``, ``escalated``, ``reported``; sorted by run, label and ε."""
    escalated = _escalated(long)
    if not escalated.any():
        return pd.DataFrame({c: pd.Series(dtype=object) for c in ESCALATION_COLUMNS})
    acc = long[long["quantity"] == ROBUST_ACCURACY]
    second = acc[escalated.loc[acc.index]]
    second = second[["run_id", ESCALATES, "label", "attack", "attack_eps", "value"]].rename(
        columns={"label": "escalation", ESCALATES: "label", "value": "escalated"}
    )
    first = acc[~escalated.loc[acc.index]][["run_id", "label", "attack_eps", "value"]]
    out = second.merge(
        first.rename(columns={"value": "evaluated"}),
        on=["run_id", "label", "attack_eps"],
        how="left",
    )
    out["reported"] = np.fmin(out["evaluated"], out["escalated"])
    out = out.sort_values(["run_id", "label", "attack_eps"], kind="stable")
    return out[list(ESCALATION_COLUMNS)].reset_index(drop=True)


def attack_columns(long: pd.DataFrame, quantity: str | None = None) -> list[AttackColumn]:
    """The columns of the wide view of ``long`` (those of ``quantity`` only, if given),
    ordered by label, then quantity (in :data:`QUANTITIES` order), then ε."""
    if not len(long):
        return []
    rows = long if quantity is None else long[long["quantity"] == quantity]
    keys = rows.drop_duplicates(["label", "attack_eps", "quantity"])
    rank = {q: i for i, q in enumerate(QUANTITIES)}
    ordered = sorted(
        keys[["label", "attack", "norm", "attack_eps", "quantity"]].itertuples(index=False),
        key=lambda k: (
            str(k.label),
            rank.get(str(k.quantity), len(rank)),
            str(k.quantity),
            float(k.attack_eps),
        ),
    )
    out: list[AttackColumn] = []
    names: set[str] = set()
    for k in ordered:
        name = attack_column(str(k.label), float(k.attack_eps), str(k.quantity))
        if name in names:  # two ε equal to six significant digits: keep both, exactly named
            name = f"{k.label}/{float(k.attack_eps)!r}/{k.quantity}"
        names.add(name)
        norm = None if pd.isna(k.norm) else str(k.norm)
        eps, quantity = float(k.attack_eps), str(k.quantity)
        out.append(AttackColumn(str(k.label), str(k.attack), norm, eps, quantity, name))
    return out


def attack_results_wide(long: pd.DataFrame, quantity: str | None = None) -> pd.DataFrame:
    """One row per run (index ``run_id``), one float column per :func:`attack_columns` entry."""
    cols = attack_columns(long, quantity)
    if not cols:
        return pd.DataFrame(index=pd.Index([], name="run_id", dtype=object))
    name = {(c.label, c.eps, c.quantity): c.column for c in cols}
    rows = long if quantity is None else long[long["quantity"] == quantity]
    keys = zip(rows["label"], rows["attack_eps"], rows["quantity"], strict=True)
    keyed = rows.assign(column=[name[(str(lbl), float(e), str(q))] for lbl, e, q in keys])
    wide = keyed.pivot(index="run_id", columns="column", values="value")
    wide = wide.reindex(columns=[c.column for c in cols]).astype("float64")
    wide.columns.name = None
    return wide.sort_index()


def flag_columns(long: pd.DataFrame) -> list[FlagColumn]:
    """The columns of :func:`flags_wide`, ordered by their names."""
    if not len(long):
        return []
    keys = long.drop_duplicates(["label", "flag"])
    cols = [
        FlagColumn(str(lbl), str(f), flag_column(str(lbl), str(f)))
        for lbl, f in zip(keys["label"], keys["flag"], strict=True)
    ]
    return sorted(cols, key=lambda c: c.column)


def flags_wide(long: pd.DataFrame) -> pd.DataFrame:
    """One row per run with a flag (index ``run_id``), one column per :func:`flag_columns`
    entry: 1.0 where the evaluation raised the flag, NaN where it did not."""
    cols = flag_columns(long)
    if not cols:
        return pd.DataFrame(index=pd.Index([], name="run_id", dtype=object))
    pairs = zip(long["label"], long["flag"], strict=True)
    keyed = long.assign(column=[flag_column(str(lbl), str(f)) for lbl, f in pairs], raised=1.0)
    wide = keyed.pivot(index="run_id", columns="column", values="raised")
    wide = wide.reindex(columns=[c.column for c in cols]).astype("float64")
    wide.columns.name = None
    return wide.sort_index()


def robustness_wide(long: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, label, attack ε) with columns :data:`ROBUSTNESS_COLUMNS`: the
    evaluation's attack, norm, params, n and what it escalates (None for the spec's own
    evaluations), and one column per quantity (NaN where the quantity was not stored), sorted
    by run, label and ε."""
    if not len(long):
        return pd.DataFrame({c: pd.Series(dtype=object) for c in ROBUSTNESS_COLUMNS})
    if ESCALATES not in long.columns:
        long = long.assign(**{ESCALATES: None})
    key = ["run_id", "label", "attack_eps"]
    values = long.pivot(index=key, columns="quantity", values="value")
    values = values.reindex(columns=list(QUANTITIES)).astype("float64")
    values.columns.name = None
    meta = long.drop_duplicates(key).set_index(key)[["attack", "norm", "params", "n", ESCALATES]]
    out = meta.join(values).sort_index().reset_index()
    return out[list(ROBUSTNESS_COLUMNS)]
