"""Small classifiers: ``linear``, ``mlp``, ``cnn`` (Wong & Kolter 2018; the lab's default CNN),
``smallcnn`` (Madry et al. 2018) and ``lenet``.

``linear`` and ``mlp`` take any input shape (images are flattened, vectors ``(D,)``
used as they are); ``cnn``, ``smallcnn`` and ``lenet`` are image-only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from robustscope.errors import ModelError
from robustscope.models._common import (
    EXAMPLE_IMAGE_SHAPES,
    activation,
    check_choice,
    check_width,
    image_dims,
    scaled,
)
from robustscope.models.base import Classifier
from robustscope.models.registry import register

__all__ = [
    "CNN",
    "MLP",
    "LeNet",
    "LinearClassifier",
    "SmallCNN",
    "cnn",
    "lenet",
    "linear",
    "mlp",
    "smallcnn",
]


class LinearClassifier(Classifier):
    """``x ↦ W·flatten(x) + b``; the features are the flattened (normalized) input.

    With ``num_classes=1`` the single output is a binary score (positive: class 1), as
    the linear classifiers of Tsipras et al. 2019 ("Robustness may be at odds with accuracy").
    """

    def __init__(self, num_classes: int, input_dim: int, bias: bool = True) -> None:
        super().__init__()
        self.body = nn.Flatten()
        self.head = nn.Linear(input_dim, num_classes, bias=bias)


class MLP(Classifier):
    """Fully connected network; the features are the last hidden layer (after its activation)."""

    def __init__(
        self, num_classes: int, input_dim: int, widths: Sequence[int], activation_name: str
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = input_dim
        for width in widths:
            layers += [nn.Linear(fan_in, width), activation("mlp", activation_name)]
            fan_in = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(fan_in, num_classes)


class _TwoStageCNN(Classifier):
    """Two convolution stages, each halving the side, then one fully connected ReLU layer (the
    features) and the K logits. A subclass gives the base ``widths`` (first conv, second conv,
    fc; each multiplied by ``width``) and its :meth:`stage`.
    """

    widths: tuple[int, int, int]

    @staticmethod
    def stage(cin: int, cout: int) -> list[nn.Module]:
        """The layers of one stage: ``cin`` → ``cout`` channels, the side halved."""
        raise NotImplementedError

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], width: float) -> None:
        super().__init__()
        c, h, w = input_shape
        c1, c2, fc = (scaled(v, width) for v in self.widths)
        flat = c2 * (h // 2 // 2) * (w // 2 // 2)
        self.body = nn.Sequential(
            *self.stage(c, c1),
            *self.stage(c1, c2),
            nn.Flatten(),
            nn.Linear(flat, fc),
            nn.ReLU(),
        )
        self.head = nn.Linear(fc, num_classes)


class CNN(_TwoStageCNN):
    """The small ConvNet of Wong & Kolter 2018 ("Provable defenses against adversarial
    examples via the convex outer adversarial polytope"): conv 16@4×4 stride 2 → ReLU →
    conv 32@4×4 stride 2 → ReLU → fc 100 → ReLU → fc K (convolutions padded by 1, so each
    halves the side). The features are the 100-d layer.
    """

    widths = (16, 32, 100)

    @staticmethod
    def stage(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, kernel_size=4, stride=2, padding=1), nn.ReLU()]


class SmallCNN(_TwoStageCNN):
    """The MNIST CNN of Madry et al. 2018 ("Towards deep learning models resistant to
    adversarial attacks"): conv 32@5×5 → ReLU → maxpool 2 → conv 64@5×5 → ReLU → maxpool 2
    → fc 1024 → ReLU → fc K (convolutions "same"-padded). The features are the 1024-d layer.
    """

    widths = (32, 64, 1024)

    @staticmethod
    def stage(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(2)]


class LeNet(Classifier):
    """LeNet-5 (LeCun et al. 1998) with max pooling: conv 6@5×5 → pool → conv 16@5×5 → pool
    → fc 120 → fc 84 → fc K. The features are the 84-d layer (after its activation).
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int],
        padding: int,
        activation_name: str,
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        hf, wf = _lenet_sizes(h, padding)[-1], _lenet_sizes(w, padding)[-1]

        def act() -> nn.Module:
            return activation("lenet", activation_name)

        self.body = nn.Sequential(
            nn.Conv2d(c, 6, kernel_size=5, padding=padding),
            act(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),
            act(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * hf * wf, 120),
            act(),
            nn.Linear(120, 84),
            act(),
        )
        self.head = nn.Linear(84, num_classes)


def _lenet_sizes(side: int, padding: int) -> list[int]:
    """Spatial side after each LeNet stage: conv1, pool1, conv2, pool2."""
    conv1 = side + 2 * padding - 4
    pool1 = conv1 // 2
    conv2 = pool1 - 4
    return [conv1, pool1, conv2, conv2 // 2]


def _input_dim(input_shape: Sequence[int]) -> int:
    return math.prod(int(s) for s in input_shape)


@register("linear")
def linear(num_classes: int, input_shape: tuple[int, ...], *, bias: bool = True) -> Classifier:
    """Linear classifier on the flattened input (1 output: a binary score, tsipras2019); any input.

    Linear classifier ``W·flatten(x) + b``; ``num_classes=1`` gives one binary score.

    Args:
        num_classes: number of outputs K (1 allowed: a binary score, as in Tsipras et al. 2019).
        input_shape: ``(C, H, W)`` or ``(D,)``; the input is flattened.
        bias: whether the linear layer has a bias.
    """
    return LinearClassifier(num_classes, _input_dim(input_shape), bias=bool(bias))


@register("mlp")
def mlp(
    num_classes: int,
    input_shape: tuple[int, ...],
    *,
    widths: Sequence[int] = (256, 256),
    activation: str = "relu",
) -> Classifier:
    """Fully connected net, hidden widths (256, 256), ReLU/tanh/linear; images or vectors (D,).

    Multi-layer perceptron on the flattened input.

    Args:
        num_classes: number of logits K.
        input_shape: ``(C, H, W)`` or ``(D,)``; the input is flattened.
        widths: hidden-layer widths (empty: a linear classifier).
        activation: ``relu``, ``tanh`` or ``linear`` (no nonlinearity: a deep linear network).
    """
    check_choice("mlp", "activation", activation, ("relu", "tanh", "linear"))
    if isinstance(widths, int | str) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in widths
    ):
        raise ModelError(
            f"model 'mlp': widths must be a sequence of positive integers, got {widths!r}"
        )
    return MLP(num_classes, _input_dim(input_shape), tuple(widths), activation)


@register("cnn")
def cnn(num_classes: int, input_shape: tuple[int, ...], *, width: float = 1) -> Classifier:
    """The default: Wong & Kolter 2018's small ConvNet (conv16/s2-conv32/s2-fc100); images ≥ 4×4.

    The lab's default CNN: the small ConvNet of Wong & Kolter 2018, widths scaled by ``width``.

    Two 4×4 convolutions with stride 2 and padding 1 (16 and 32 channels, each halving the
    side) each followed by ReLU, then a 100-unit ReLU layer (the features) and the K logits;
    an H×W input gives ``32 · ⌊H/4⌋ · ⌊W/4⌋`` inputs to the fc layer (1568 for 28×28).
    Chosen as the default because a PGD-10 adversarial-training epoch over Fashion-MNIST
    costs about 1.2 minutes on 2 CPU cores, about 6× less than ``smallcnn`` (measured in
    ``benchmarks/README.md``).

    Args:
        num_classes: number of logits K.
        input_shape: ``(C, H, W)``; H, W ≥ 4.
        width: multiplier of all widths (16, 32, 100).
    """
    dims = image_dims("cnn", input_shape, min_side=4)
    return CNN(num_classes, dims, check_width("cnn", width))


@register("smallcnn")
def smallcnn(num_classes: int, input_shape: tuple[int, ...], *, width: float = 1) -> Classifier:
    """MNIST CNN of Madry et al. 2018 (conv32-conv64-fc1024); images ≥ 4×4.

    The CNN Madry et al. 2018 train on MNIST, with every layer's width scaled by ``width``.

    Two "same"-padded 5×5 convolutions (32 and 64 channels) each followed by ReLU and a
    2×2 max pool, then a 1024-unit ReLU layer (the features) and the K logits. An H×W input
    gives ``64 · ⌊H/4⌋ · ⌊W/4⌋`` inputs to the fc layer (3136 for 28×28, 4096 for 32×32,
    256 for 8×8); images need H, W ≥ 4.

    Args:
        num_classes: number of logits K.
        input_shape: ``(C, H, W)``.
        width: multiplier of all widths (32, 64, 1024), as Madry et al.'s capacity study.
    """
    dims = image_dims("smallcnn", input_shape, min_side=4)
    return SmallCNN(num_classes, dims, check_width("smallcnn", width))


@register("lenet")
def lenet(
    num_classes: int,
    input_shape: tuple[int, ...],
    *,
    padding: int | None = None,
    activation: str = "relu",
) -> Classifier:
    """LeNet-5 (LeCun et al. 1998) with max pooling; images ≥ 12×12 (1×28×28: first conv padded).

    LeNet-5 (LeCun et al. 1998, "Gradient-based learning applied to document recognition").

    conv 6@5×5 → pool 2 → conv 16@5×5 → pool 2 → fc 120 → fc 84 → fc K, with max pooling.
    The classic network reads 32×32 images; smaller ones (28×28 MNIST) get their first
    convolution padded by 2 so that the layers see the classic sizes.

    Args:
        num_classes: number of logits K.
        input_shape: ``(C, H, W)``; with the default padding, H, W ≥ 12.
        padding: padding of the first convolution; None: 2 for images smaller than 32×32,
            else 0.
        activation: ``relu`` (default) or ``tanh`` (closer to the 1998 network).

    Raises:
        ModelError: when a spatial size would drop below 1.
    """
    c, h, w = image_dims(
        "lenet", input_shape, min_side=1, sizes="with H, W ≥ 12 (≥ 16 without padding)"
    )
    check_choice("lenet", "activation", activation, ("relu", "tanh"))
    if padding is None:
        padding = 2 if min(h, w) < 32 else 0
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ModelError(f"model 'lenet': padding must be an integer ≥ 0, got {padding!r}")
    for side in (h, w):
        sizes = _lenet_sizes(side, padding)
        if min(sizes) < 1:
            chain = " → ".join(str(s) for s in [side, *sizes])
            raise ModelError(
                f"model 'lenet' does not fit input_shape {(c, h, w)}: with first-conv padding "
                f"{padding} the spatial size goes {chain} (conv, pool, conv, pool) and drops "
                f"below 1; with this padding it needs H, W ≥ {max(1, 16 - 2 * padding)} "
                f"(e.g. {EXAMPLE_IMAGE_SHAPES})"
            )
    return LeNet(num_classes, (c, h, w), padding, activation)
