"""The ``transfer`` probe: one trained model's linear transferability (terzi2021 Tables 1–3),
for studies — :func:`robustscope.transfer.transfer` with that model alone.

Per target (the ``targets`` option, in its order): the new head's test accuracy, Cui et al.'s
task distance from the ``source`` (the run's dataset, given as an option) in *this* model's
feature space, and the transferred classifier's PGD accuracy at each ``pgd_eps``. The report
compares the members of a family on one axis by taking the distances of its standard (ε = 0)
run — terzi2021's fixed feature space — and the gaps ``acc(member) − acc(standard)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from robustscope.params import parse_eps_list
from robustscope.probes.base import ProbeResult
from robustscope.probes.registry import register_probe
from robustscope.transfer.errors import TransferError
from robustscope.transfer.run import transfer

__all__ = ["TransferProbeResult", "transfer_probe"]


@dataclass(frozen=True)
class TransferProbeResult(ProbeResult):
    """One model transferred to each target (module doc); arrays indexed by the ``targets``
    option's order.

    Attributes:
        source: the source dataset; targets: comma-joined target names (in ``to_json``).
        accuracy: ``[T]`` the new head's accuracy on each target's first ``n_test`` test
            examples; ``train_accuracy`` ``[T]`` on the examples it was fitted on.
        distance: ``[T]`` Cui et al.'s EMD from the source in this model's feature space.
        eps: ``[E]`` the PGD radii; robust: ``[T, E]`` the transferred classifier's PGD
            accuracy (empty without ``pgd_eps``).
        source_accuracy: the model's own accuracy on the source's test examples.
        n_train, n_test: examples per target (the smallest over the targets).
        per_target: ``{target: accuracy}`` as scalars (``accuracy/<target>``).
    """

    source: str
    targets: str
    accuracy: np.ndarray
    train_accuracy: np.ndarray
    distance: np.ndarray
    eps: np.ndarray
    robust: np.ndarray
    source_accuracy: float
    n_train: int
    n_test: int
    per_target: dict[str, float]


@register_probe(
    "transfer",
    "terzi2021 Tables 1–3: linear-head accuracy on other datasets (frozen features), task "
    "distance from the source, PGD accuracy of the transferred classifier",
    tracked=False,
)
def transfer_probe(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    source: str = "",
    targets: str = "mnist-5k,digits",
    n_train: int = 2000,
    n_test: int = 1000,
    l2: float = 1e-4,
    adapter: str = "resize",
    pgd_eps: str = "",
    pgd_norm: str = "l2",
    pgd_steps: int = 20,
    batch_size: int = 500,
) -> TransferProbeResult:
    """Transfer ``model`` from ``source`` to each of ``targets`` (module doc)."""
    if not source:
        raise TransferError(
            "probe 'transfer': give the source dataset (the run's dataset) as the option "
            "source, e.g. {name: transfer, options: {source: fashion-mnist}}"
        )
    names = [t.strip() for t in str(targets).split(",") if t.strip()]
    eps = parse_eps_list(pgd_eps, "pgd_eps") if str(pgd_eps).strip() else []
    res = transfer(
        {"model": model},
        source,
        names,
        n_train=n_train,
        n_test=n_test,
        l2=l2,
        adapter_mode=adapter,
        pgd_eps=eps or None,
        pgd_norm=pgd_norm,
        pgd_steps=pgd_steps,
        batch_size=batch_size,
    )
    cells = [res.cell("model", t) for t in names]
    robust = np.array(
        [[(c.robust or {}).get(e, np.nan) for e in eps] for c in cells], dtype=np.float64
    ).reshape(len(names), len(eps))
    return TransferProbeResult(
        source=source,
        targets=",".join(names),
        accuracy=np.array([c.accuracy for c in cells]),
        train_accuracy=np.array([c.train_accuracy for c in cells]),
        distance=np.array([res.distance(t) for t in names]),
        eps=np.asarray(eps, dtype=np.float64),
        robust=robust,
        source_accuracy=float(res.source_accuracy["model"]),
        n_train=min(c.n_train for c in cells),
        n_test=min(c.n_test for c in cells),
        per_target={t: c.accuracy for t, c in zip(names, cells, strict=True)},
    )
