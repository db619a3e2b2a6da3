"""Model zoo behind one registry: ``create(name, num_classes, input_shape, **kwargs)``.

Every model maps pixel-space inputs to logits (``forward``) and exposes
``features(x)``, the representation before the last linear layer. The
normalization (mean/std) is the model's first layer. :func:`wrap` makes any ``nn.Module``
such a model (:mod:`robustscope.models.wrap`).
"""

from __future__ import annotations

# importing the architecture modules registers them
from robustscope.models import resnet as _resnet  # noqa: F401
from robustscope.models import simple as _simple  # noqa: F401
from robustscope.models import vgg as _vgg  # noqa: F401
from robustscope.models.base import Classifier, ModelSpec, Normalize, declared_box
from robustscope.models.registry import (
    ModelEntry,
    available,
    count_parameters,
    create,
    entries,
    from_spec,
    get,
    register,
)
from robustscope.models.wrap import WRAPPED, Wrapped, wrap

__all__ = [
    "WRAPPED",
    "Classifier",
    "ModelEntry",
    "ModelSpec",
    "Normalize",
    "Wrapped",
    "available",
    "count_parameters",
    "create",
    "declared_box",
    "entries",
    "from_spec",
    "get",
    "register",
    "wrap",
]
