"""Post-hoc transforms of trained models (the layer after probes, before studies).

``apply(model, create("spectral_clip", bound=1.0))`` returns a transformed copy and the
record of what was applied; :func:`save` / :func:`transform_checkpoint` keep that record in
the checkpoint's ``transforms`` metadata. Transforms (``available()``):

* ``spectral_clip`` — wen2020 B.4.2's spectral-norm clipping (:mod:`.spectral_clip`);
* ``m1``, ``m2``, ``m3`` — wu2020's robustification (:mod:`.wu2020`): drop the units active
  on fewer than p % of the training examples, zero the trailing p % of singular values,
  both; on the penultimate fully connected layer by default (:mod:`.layers`).

A new transform is a frozen dataclass subclass of :class:`Transform`, registered with
:func:`register_transform`, with ``needs_data = True`` where it measures the model first.

Training applies the same spectral-norm clipping every epoch when
``TrainConfig.spectral_clip`` is set, by :func:`robustscope.models.spectral.clip_spectral_norms`.
"""

from __future__ import annotations

from robustscope.posthoc.base import (
    TRANSFORMS,
    Transform,
    Transformed,
    TransformError,
    TransformRecord,
    apply,
    available,
    create,
    records_of,
    register_transform,
    save,
    transform_checkpoint,
)
from robustscope.posthoc.spectral_clip import SpectralClip
from robustscope.posthoc.wu2020 import METHODS, DropBoth, DropInactiveUnits, DropSingularValues

__all__ = [
    "METHODS",
    "TRANSFORMS",
    "DropBoth",
    "DropInactiveUnits",
    "DropSingularValues",
    "SpectralClip",
    "Transform",
    "TransformError",
    "TransformRecord",
    "Transformed",
    "apply",
    "available",
    "create",
    "records_of",
    "register_transform",
    "save",
    "transform_checkpoint",
]
