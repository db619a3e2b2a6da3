"""The training configuration: one validated object, saved as the run's ``config.json``."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Schedule = Literal["constant", "multistep", "cosine", "onecycle"]


class TrainConfig(BaseModel):
    """Everything that determines a training run (same config + seed ⇒ same weights on CPU).

    Learning-rate schedules (``lr`` is the peak/base rate):

    * ``constant``;
    * ``multistep``: multiply by ``gamma`` at each epoch in ``milestones``
      (shi2020: ×0.1 at epochs 80 and 120 of 160);
    * ``cosine``: cosine decay from ``lr`` to 0 over all steps;
    * ``onecycle``: linear ramp 0 → ``lr`` over the first ``warmup_fraction`` of the
      steps, then linearly down to 0 (the cyclic schedule of Wong et al. 2020).
    """

    model_config = ConfigDict(extra="forbid")

    dataset: str = "fashion-mnist"
    data_root: str | None = None
    dataset_params: dict[str, Any] = Field(
        default_factory=dict, description="dataset options, e.g. {'d': 10} for tsipras"
    )
    train_subset: int | None = Field(
        None, ge=1, description="use only the first N training examples"
    )
    test_subset: int | None = Field(None, ge=1, description="evaluate on the first N test examples")
    augment: str | None = Field(
        None, description="'none', 'crop_flip' or None for the dataset default"
    )

    model: str = "smallcnn"
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    normalize: bool = Field(True, description="dataset mean/std as the model's first layer")

    method: str = "standard"
    method_params: dict[str, Any] = Field(default_factory=dict)

    epochs: int = Field(5, ge=1)
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(1000, ge=1)
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Schedule = "cosine"
    milestones: list[int] = Field(default_factory=list)
    gamma: float = Field(0.1, gt=0)
    warmup_fraction: float = Field(0.4, gt=0, lt=1)

    seed: int = 0
    device: str = "auto"

    @field_validator("milestones")
    @classmethod
    def _sorted(cls, v: list[int]) -> list[int]:
        if any(m < 1 for m in v):
            raise ValueError("milestones are epoch numbers ≥ 1")
        return sorted(v)

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.schedule == "multistep" and not self.milestones:
            raise ValueError("schedule 'multistep' needs milestones (e.g. [80, 120])")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs optimizer 'sgd' with momentum > 0")
        return self

    # fields that may differ between a run and its resumption
    RESUMABLE_CHANGES: ClassVar[tuple[str, ...]] = ("device", "eval_batch_size")

    def differences(self, other: TrainConfig) -> dict[str, tuple[Any, Any]]:
        """Fields (other than those allowed to change on resume) whose values differ."""
        a, b = self.model_dump(), other.model_dump()
        return {k: (a[k], b[k]) for k in a if k not in self.RESUMABLE_CHANGES and a[k] != b[k]}
