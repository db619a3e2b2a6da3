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

    ``method`` names an objective (``robustscope.training.available()``: ``standard``,
    ``pgd``, ``trades``, ``fgsm-rs``, ``free``, ``mixed``, ``noise``) and ``method_params``
    its options (e.g. ``{"eps": 0.1, "steps": 10}``); the objective's ``seed`` defaults to
    ``seed``.

    Measurements during training (:mod:`robustscope.training.tracking`,
    :mod:`robustscope.training.overfitting`), built by the loop from these fields so that
    they also run after ``--resume``: ``track`` names measurements run every
    ``track_every`` epochs (and at the last) on the first ``track_n`` train and test
    examples, with options ``track_params[name]``; ``co_detect`` / ``early_stop`` run the
    catastrophic-overfitting detector on the first ``co_batch`` test examples.

    ``spectral_clip`` bounds the spectral norm of every Linear/Conv2d layer's operator
    (convolutions on the input size they see in the model) by that value at the end of each
    epoch, as wen2020 B.4.2 / D.3 do "following Sedghi et al. (2018) … every epoch rather
    than every iteration": a layer above the bound has its weight scaled down to it
    (:func:`robustscope.models.spectral.clip_operator_norm_`). It runs after the epoch's
    last step, before evaluation and the checkpoint; the history row records the largest
    norm before clipping (``spectral_clip/max_norm``); the same clipping as
    :mod:`robustscope.posthoc`'s ``spectral_clip`` transform (:mod:`robustscope.training.hooks`).

    Speed options, all off by default and never needed on the CPU: ``amp`` (bf16 autocast
    around the objective — forward passes, inner attacks and the loss — CUDA only; refused on
    the CPU), ``channels_last`` (model and 4-D batches in ``torch.channels_last``) and
    ``compile`` (``torch.compile`` of the forward used by the objective; on the CPU it needs
    a C compiler). ``channels_last`` only changes the memory layout (like ``device``, it may
    change the order of float sums but not the computation), so it may change on resume;
    ``amp`` (bf16 arithmetic) and ``compile`` (fused kernels with different rounding) change
    the numerics and must stay as they were. ``batch_size`` is the global batch under
    distributed training (:mod:`robustscope.training.distributed`).
    """

    model_config = ConfigDict(extra="forbid")

    dataset: str = "fashion-mnist"
    data_root: str | None = None
    dataset_params: dict[str, Any] = Field(
        default_factory=dict, description="dataset options (tsipras: d, p, eta)"
    )
    train_subset: int | None = Field(
        None, ge=1, description="use only the first N training examples"
    )
    test_subset: int | None = Field(None, ge=1, description="evaluate on the first N test examples")
    augment: str | None = Field(None, description="none or crop_flip; unset: the dataset's default")

    model: str = Field("cnn", description="architecture (robustscope models)")
    model_kwargs: dict[str, Any] = Field(default_factory=dict, description="architecture options")
    normalize: bool = Field(True, description="dataset mean/std as the model's first layer")

    method: str = Field(
        "standard", description="training objective (robustscope.training.available())"
    )
    method_params: dict[str, Any] = Field(
        default_factory=dict, description="objective options (the objective shortcuts set one each)"
    )

    epochs: int = Field(5, ge=1, description="number of epochs")
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(1000, ge=1, description="examples per batch when evaluating")
    optimizer: Literal["sgd", "adam"] = Field("sgd", description="the optimizer")
    lr: float = Field(
        0.05, gt=0, description="learning rate, the peak of the schedule (e.g. 0.05 or 1/20)"
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    nesterov: bool = Field(False, description="Nesterov momentum (SGD with momentum > 0)")
    weight_decay: float = Field(5e-4, ge=0, description="L2 weight decay")
    schedule: Schedule = Field("cosine", description="learning-rate schedule")
    milestones: list[int] = Field(
        default_factory=list,
        description="multistep: the epochs after which the rate is multiplied by gamma",
    )
    gamma: float = Field(0.1, gt=0, description="multistep: the factor applied at each milestone")
    warmup_fraction: float = Field(
        0.4, gt=0, lt=1, description="onecycle: the fraction of the steps that ramps the rate up"
    )

    seed: int = 0
    device: str = "auto"

    track: list[str] = Field(
        default_factory=list,
        description="tracking measurements run on fixed train/test subsets (clean, pgd, probes)",
    )
    track_every: int = Field(1, ge=1, description="run the tracking measurements every N epochs")
    track_n: int = Field(500, ge=1, description="size of each fixed tracking subset")
    track_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-measurement options (pgd: eps, steps, ...)"
    )

    co_detect: bool = Field(
        False, description="measure PGD/FGSM accuracy each epoch to detect catastrophic overfitting"
    )
    early_stop: bool = Field(
        False,
        description="stop at catastrophic overfitting (turns the detector on); keep best.safetensors",
    )
    co_batch: int = Field(
        512, ge=1, description="held-out batch of the detector: first N test points"
    )
    co_params: dict[str, Any] = Field(
        default_factory=dict,
        description="detector options (eps, norm, steps, step_size, drop, ratio, fgsm_keep)",
    )

    spectral_clip: float | None = Field(
        None,
        gt=0,
        description="after every epoch, scale each Linear/Conv2d layer whose operator norm "
        "exceeds this bound down to it (wen2020 B.4.2)",
    )

    amp: bool = Field(False, description="bf16 autocast for the training step (CUDA only)")
    channels_last: bool = Field(False, description="channels-last memory format for 4-D inputs")
    compile: bool = Field(False, description="torch.compile the training forward")

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

    @field_validator("track")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))

    # fields that may differ between a run and its resumption: none of them changes the
    # weights (tracking measurements use their own seeded generators; channels_last is a
    # memory layout, like device)
    RESUMABLE_CHANGES: ClassVar[tuple[str, ...]] = (
        "device",
        "channels_last",
        "eval_batch_size",
        "track",
        "track_every",
        "track_n",
        "track_params",
    )

    def differences(self, other: TrainConfig) -> dict[str, tuple[Any, Any]]:
        """Fields (other than those allowed to change on resume) whose values differ."""
        a, b = self.model_dump(), other.model_dump()
        return {k: (a[k], b[k]) for k in a if k not in self.RESUMABLE_CHANGES and a[k] != b[k]}
