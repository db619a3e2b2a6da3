"""Catastrophic-overfitting detector: an epoch callback for single-step adversarial training.

Fast adversarial training (FGSM-RS, Wong et al. 2020) can overfit catastrophically: within
an epoch or two the model's accuracy under multi-step PGD drops to near zero while its
accuracy under the single-step FGSM it trains on stays high or rises — the model has learnt
to mask the FGSM gradient, not to be robust. Wong et al. detect this on a held-out
minibatch and stop early, keeping the model from before the collapse.

:class:`CatastrophicOverfittingDetector` does that for any method. After every epoch it
measures, on a fixed held-out batch (the first ``co_batch`` = 512 test points), the PGD
accuracy (PGD-10 at the training ε by default) and the FGSM accuracy, and adds to the
history row ``co_pgd_accuracy``, ``co_fgsm_accuracy``, ``co_best_pgd_accuracy``,
``co_best_epoch`` and ``co_collapse``. A **collapse** is flagged when, with ``best`` the
highest PGD accuracy so far (at least ``min_best``),

* PGD accuracy fell sharply: ``best − pgd > drop`` (20 points) or ``pgd < ratio · best``
  (0.2 × best), **and**
* FGSM accuracy stayed high: ``fgsm ≥ fgsm_keep · fgsm_at_best`` (0.8 × the FGSM accuracy
  of the best epoch) — a model that simply got worse loses FGSM accuracy too.

With a run directory, the weights of the best epoch (highest PGD accuracy on the batch; the
first such epoch on ties) are kept in ``best.safetensors``; with ``early_stop`` a collapse
asks the loop to stop (the callback returns ``{"stop": reason}``) and the reason is recorded
in the history row (``stop_reason``) and the run's summary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustscope import checkpoint
from robustscope.attacks import evaluate as attack_evaluate
from robustscope.data.dataset import ArrayDataset
from robustscope.errors import TrainingError
from robustscope.params import parse_eps, parse_real
from robustscope.training.config import TrainConfig

__all__ = ["BEST_FILE", "STOP", "CatastrophicOverfittingDetector", "CollapseCriteria"]

BEST_FILE = "best.safetensors"
#: the key an epoch callback returns to ask the loop to stop (value: the reason, a string)
STOP = "stop"


@dataclass(frozen=True)
class CollapseCriteria:
    """When a drop of PGD accuracy counts as catastrophic overfitting (see the module doc)."""

    drop: float = 0.2
    ratio: float = 0.2
    fgsm_keep: float = 0.8
    min_best: float = 0.1

    def collapsed(self, pgd: float, fgsm: float, best: float, fgsm_at_best: float) -> bool:
        if not best >= self.min_best:
            return False
        sharp = best - pgd > self.drop or pgd < self.ratio * best
        return sharp and fgsm >= self.fgsm_keep * fgsm_at_best


class CatastrophicOverfittingDetector:
    """Epoch callback measuring PGD and FGSM accuracy on a fixed batch (see the module doc).

    Args:
        x, y: the fixed held-out batch.
        eps: radius ε of both attacks (the training ε); ``norm`` their norm.
        steps, step_size: the PGD budget (step size default ``2.5 ε / steps``).
        criteria: the collapse rule.
        early_stop: ask the loop to stop at a collapse.
        run_dir: where ``best.safetensors`` is kept (None: not kept).
        config: the run's configuration, recorded in the best checkpoint.
        seed: seed of PGD's random start (the same at every epoch).
        batch_size: examples per attack call.

    The state (best PGD accuracy, its epoch and FGSM accuracy) is saved with the run
    (``state_dict``) so that a resumed run continues the comparison.
    """

    name = "co"

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: float,
        norm: str = "linf",
        steps: int = 10,
        step_size: float | None = None,
        criteria: CollapseCriteria | None = None,
        *,
        early_stop: bool = False,
        run_dir: Path | None = None,
        config: TrainConfig | None = None,
        seed: int = 0,
        batch_size: int = 512,
    ) -> None:
        self.x, self.y = x, y
        self.eps, self.norm = float(eps), norm
        self.pgd_params: dict[str, Any] = {"steps": steps}
        if step_size is not None:
            self.pgd_params["step_size"] = float(step_size)
        self.criteria = criteria or CollapseCriteria()
        self.early_stop = early_stop
        self.run_dir = run_dir
        self.config = config
        self.seed = seed
        self.batch_size = batch_size
        self.best_pgd = -math.inf
        self.best_epoch = 0
        self.fgsm_at_best = math.nan

    @classmethod
    def from_config(
        cls,
        config: TrainConfig,
        test_ds: ArrayDataset,
        device: torch.device,
        run_dir: Path | None,
    ) -> CatastrophicOverfittingDetector | None:
        """The detector described by ``config.co_*`` (None unless co_detect or early_stop)."""
        if not (config.co_detect or config.early_stop):
            return None
        params = dict(config.co_params)
        eps = params.pop("eps", config.method_params.get("eps"))
        if eps is None:
            raise TrainingError(
                "the catastrophic-overfitting detector needs eps: the method has none, so "
                "set co_params {'eps': ...}"
            )
        norm = params.pop("norm", config.method_params.get("norm", "linf"))
        step_size = params.pop("step_size", None)
        steps = params.pop("steps", 10)
        try:
            criteria = CollapseCriteria(**params)
        except TypeError as exc:
            raise TrainingError(f"co_params: {exc}") from None
        head = test_ds.head(config.co_batch)
        return cls(
            head.x.to(device),
            head.y.to(device),
            parse_eps(eps, "co_params.eps", error=TrainingError),
            norm,
            steps,
            None
            if step_size is None
            else parse_real(step_size, "co_params.step_size", minimum=0.0, error=TrainingError),
            criteria,
            early_stop=config.early_stop,
            run_dir=run_dir,
            config=config,
        )

    # --- measurement and decision ----------------------------------------------------------

    def measure(self, model: nn.Module) -> tuple[float, float]:
        """``(PGD accuracy, FGSM accuracy)`` of ``model`` on the fixed batch."""
        common: dict[str, Any] = {
            "norm": self.norm,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "checks": False,
        }
        pgd = attack_evaluate(model, self.x, self.y, "pgd", [self.eps], **common, **self.pgd_params)
        fgsm = attack_evaluate(model, self.x, self.y, "fgsm", [self.eps], **common)
        return (
            next(iter(pgd.robust_accuracy.values())),
            next(iter(fgsm.robust_accuracy.values())),
        )

    def observe(self, epoch: int, pgd: float, fgsm: float) -> tuple[bool, bool]:
        """Record one epoch's measurements; returns ``(new best, collapse)``."""
        collapse = self.criteria.collapsed(pgd, fgsm, self.best_pgd, self.fgsm_at_best)
        is_best = pgd > self.best_pgd
        if is_best:
            self.best_pgd, self.best_epoch, self.fgsm_at_best = pgd, epoch, fgsm
        return is_best, collapse

    def __call__(self, model: nn.Module, epoch: int, row: dict[str, Any]) -> dict[str, Any]:
        pgd, fgsm = self.measure(model)
        is_best, collapse = self.observe(epoch, pgd, fgsm)
        out: dict[str, Any] = {
            "co_pgd_accuracy": pgd,
            "co_fgsm_accuracy": fgsm,
            "co_best_pgd_accuracy": self.best_pgd,
            "co_best_epoch": self.best_epoch,
            "co_collapse": collapse,
        }
        if is_best and self.run_dir is not None:
            self._save_best(model, epoch, {**row, **out})
        if collapse and self.early_stop:
            kept = f"; epoch {self.best_epoch} kept in {BEST_FILE}" if self.run_dir else ""
            out[STOP] = (
                f"catastrophic overfitting at epoch {epoch}: PGD accuracy on the held-out "
                f"batch fell to {pgd:.3f} from its best {self.best_pgd:.3f} (epoch "
                f"{self.best_epoch}) while FGSM accuracy is {fgsm:.3f}{kept}"
            )
        return out

    def _save_best(self, model: nn.Module, epoch: int, metrics: dict[str, Any]) -> None:
        assert self.run_dir is not None
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.save(
            self.run_dir / BEST_FILE,
            model,
            {
                "dataset": cfg.dataset if cfg else "",
                "training": cfg.model_dump() if cfg else {},
                "metrics": metrics,
                "extra": {
                    "epoch": epoch,
                    "selected_by": "highest co_pgd_accuracy (catastrophic-overfitting detector)",
                },
            },
        )

    # --- resume ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_pgd": self.best_pgd if self.best_epoch else None,
            "best_epoch": self.best_epoch,
            "fgsm_at_best": self.fgsm_at_best if self.best_epoch else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_epoch = int(state["best_epoch"])
        if self.best_epoch:
            self.best_pgd = float(state["best_pgd"])
            self.fgsm_at_best = float(state["fgsm_at_best"])
