"""Residual networks for small images: CIFAR ResNets, PreAct ResNet-18, WRN, Fixup ResNet.

* ``resnet20/32/56/110``: the CIFAR ResNets of He et al. 2016 ("Deep residual learning
  for image recognition", §4.2): 6n+2 layers, three stages of n basic blocks with
  16/32/64 channels (× ``width``). Where the shape changes (first block of stages 2 and
  3) the shortcut is **option B**: a strided 1×1 convolution followed by BatchNorm (the
  paper's CIFAR nets use option A, zero-padding identity; option B adds 2,752 parameters
  to resnet20 at width 1 and makes widening by ``width`` straightforward).
  shi2020 uses resnet20×1 and resnet32×10; wen2020 ResNet-56/110.
* ``preact_resnet18``: pre-activation ResNet-18 (He et al. 2016, "Identity mappings in deep
  residual networks"), 64-128-256-512 channels, as used by Wong, Rice & Kolter 2020
  ("Fast is better than free") for CIFAR-10.
* ``wrn``: Wide ResNet WRN-depth-k (Zagoruyko & Komodakis 2016, "Wide residual networks").
* ``fixup_resnet``: a BatchNorm-free CIFAR ResNet with Fixup initialisation (Zhang, Dauphin &
  Ma 2019, "Fixup initialization: residual learning without normalization"), as wen2020 §B.3.

All of them are image-only, take any number of input channels, and end with a global
average pool, so 1×28×28, 3×32×32 and 1×8×8 inputs all work (stride-2 stages on 8×8
leave 2×2 or 1×1 maps); the features are the pooled vector.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from robustscope.errors import ModelError
from robustscope.models._common import check_width, image_dims, scaled
from robustscope.models.base import Classifier
from robustscope.models.registry import Builder, register

__all__ = [
    "BasicBlock",
    "CifarResNet",
    "FixupBlock",
    "FixupResNet",
    "PreActBlock",
    "PreActResNet",
    "ScalarBias",
    "ScalarScale",
    "fixup_resnet",
    "preact_resnet18",
    "resnet20",
    "resnet32",
    "resnet56",
    "resnet110",
    "wrn",
]

#: smallest image side accepted by the residual networks
_MIN_SIDE = 4


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


def _he_init(module: nn.Module) -> None:
    """He et al. 2015 initialisation of convolutions, unit/zero BatchNorm."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------- CIFAR ResNet


class BasicBlock(nn.Module):
    """Post-activation basic block: ``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``.

    The shortcut is the identity, or (option B) a strided 1×1 conv + BN when the stride or
    the number of channels changes.
    """

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = _conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(_conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(Classifier):
    """He et al. 2016 CIFAR ResNet (6n+2 layers): conv3×3 → 3 stages of n basic blocks →
    global average pool → linear. The features are the pooled ``[N, 64·width]`` vector."""

    def __init__(self, num_classes: int, in_channels: int, n: int, width: float) -> None:
        super().__init__()
        widths = [scaled(c, width) for c in (16, 32, 64)]
        layers: list[nn.Module] = [
            _conv3x3(in_channels, widths[0]),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        ]
        cin = widths[0]
        for stage, cout in enumerate(widths):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock(cin, cout, stride))
                cin = cout
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)
        _he_init(self)


_CIFAR_NOTES = (
    "CIFAR ResNet-{depth} of He et al. 2016 (basic blocks, option-B shortcuts), width "
    "multiplier ({used_by}); images ≥ 4×4, for 3×32×32"
)


def _cifar_resnet(depth: int, used_by: str) -> Builder:
    """Register ``resnet<depth>``: the CIFAR ResNet of n = (depth − 2)/6 blocks per stage."""
    name = f"resnet{depth}"
    n = (depth - 2) // 6

    def builder(num_classes: int, input_shape: tuple[int, ...], *, width: float = 1) -> Classifier:
        c, _, _ = image_dims(name, input_shape, min_side=_MIN_SIDE)
        return CifarResNet(num_classes, c, n, check_width(name, width))

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = (
        f"ResNet-{depth} (n={n}) of He et al. 2016 for CIFAR ({used_by}); ``width`` multiplies "
        "all channel counts."
    )
    notes = _CIFAR_NOTES.format(depth=depth, used_by=used_by)
    return register(name, notes=notes, default_input_shape=(3, 32, 32))(builder)


resnet20 = _cifar_resnet(20, "shi2020: resnet20×1")
resnet32 = _cifar_resnet(32, "shi2020: resnet32×10 = width 10")
resnet56 = _cifar_resnet(56, "wen2020")
resnet110 = _cifar_resnet(110, "wen2020")


# ------------------------------------------------------------------ pre-activation / WRN


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016b; the WRN block of Zagoruyko & Komodakis):
    ``conv(drop(relu(bn(conv(relu(bn(x))))))) + shortcut``.

    When the stride or the width changes, the shortcut is a strided 1×1 convolution of the
    pre-activated input ``relu(bn1(x))``; otherwise it is ``x`` itself.
    """

    def __init__(self, cin: int, cout: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = _conv3x3(cout, cout)
        self.relu = nn.ReLU()
        self.dropout: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.shortcut = _conv1x1(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        identity = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(self.dropout(self.relu(self.bn2(out))))
        return out + identity


class PreActResNet(Classifier):
    """Pre-activation ResNet: conv3×3 stem → stages of :class:`PreActBlock` → BN → ReLU →
    global average pool → linear. The features are the pooled vector."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        stem: int,
        widths: Sequence[int],
        blocks: Sequence[int],
        strides: Sequence[int],
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv3x3(in_channels, stem)]
        cin = stem
        for cout, n, stride in zip(widths, blocks, strides, strict=True):
            for i in range(n):
                layers.append(PreActBlock(cin, cout, stride if i == 0 else 1, dropout))
                cin = cout
        layers += [nn.BatchNorm2d(cin), nn.ReLU(), nn.AdaptiveAvgPool2d(1)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)
        _he_init(self)


@register("preact_resnet18", default_input_shape=(3, 32, 32))
def preact_resnet18(
    num_classes: int, input_shape: tuple[int, ...], *, width: float = 1
) -> Classifier:
    """Pre-activation ResNet-18 (He et al. 2016b; Wong et al. 2020), 64-512 × width; 3×32×32.

    PreAct ResNet-18 as in Wong, Rice & Kolter 2020 ("Fast is better than free").

    3×3 stem with 64 channels, four stages of two pre-activation blocks (64, 128, 256, 512
    channels, strides 1, 2, 2, 2), final BN-ReLU, global average pool, linear layer.

    Args:
        num_classes: number of logits K.
        input_shape: ``(C, H, W)`` with H, W ≥ 4.
        width: multiplier of all channel counts.
    """
    c, _, _ = image_dims("preact_resnet18", input_shape, min_side=_MIN_SIDE)
    w = check_width("preact_resnet18", width)
    widths = [scaled(ch, w) for ch in (64, 128, 256, 512)]
    return PreActResNet(num_classes, c, widths[0], widths, (2, 2, 2, 2), (1, 2, 2, 2))


@register("wrn", default_input_shape=(3, 32, 32))
def wrn(
    num_classes: int,
    input_shape: tuple[int, ...],
    *,
    depth: int = 28,
    widen_factor: float = 10,
    dropout: float = 0.0,
) -> Classifier:
    """Wide ResNet WRN-depth-k (Zagoruyko & Komodakis 2016), default WRN-28-10; 3×32×32.

    Wide ResNet WRN-``depth``-``widen_factor`` (Zagoruyko & Komodakis 2016).

    16-channel 3×3 stem, three stages of n = (depth−4)/6 pre-activation blocks with
    16k, 32k, 64k channels (strides 1, 2, 2), dropout between the two convolutions of a
    block, final BN-ReLU, global average pool, linear layer. WRN-28-10 on 3×32×32 with 10
    classes has 36,479,194 parameters.

    Args:
        num_classes: number of logits K.
        input_shape: ``(C, H, W)`` with H, W ≥ 4.
        depth: total depth, 6n+4 (10, 16, 22, 28, 34, 40, ...).
        widen_factor: k, the width multiplier of the three stages.
        dropout: dropout probability inside the blocks (0: none).
    """
    c, _, _ = image_dims("wrn", input_shape, min_side=_MIN_SIDE)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ModelError(f"model 'wrn': depth must be 6n+4 ≥ 10 (e.g. 16, 28, 40), got {depth!r}")
    k = check_width("wrn", widen_factor, "widen_factor")
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
        raise ModelError(f"model 'wrn': dropout must be in [0, 1), got {dropout!r}")
    n = (depth - 4) // 6
    widths = [scaled(ch, k) for ch in (16, 32, 64)]
    return PreActResNet(num_classes, c, 16, widths, (n, n, n), (1, 2, 2), float(dropout))


# ------------------------------------------------------------------------------ Fixup


class ScalarBias(nn.Module):
    """Adds one learnable scalar (initialised at 0) — Fixup's scalar bias."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class ScalarScale(nn.Module):
    """Multiplies by one learnable scalar (initialised at 1) — Fixup's scalar multiplier."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class FixupBlock(nn.Module):
    """BatchNorm-free basic block with Fixup's scalars (Zhang et al. 2019, Fig. 1 right).

    Residual branch: ``+b1a → conv3×3 → +b1b → ReLU → +b2a → conv3×3 → ×s → +b2b``; the
    output is ``relu(branch + shortcut)``. The shortcut is the identity or, when the shape
    changes, a strided 1×1 convolution (no BN) of ``x + b1a``. With ``scalars=False`` the
    scalar biases and multiplier are left out (wen2020 §D.3 omits them).
    """

    def __init__(self, cin: int, cout: int, stride: int, scalars: bool) -> None:
        super().__init__()

        def bias() -> nn.Module:
            return ScalarBias() if scalars else nn.Identity()

        self.bias1a = bias()
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bias1b = bias()
        self.relu = nn.ReLU()
        self.bias2a = bias()
        self.conv2 = _conv3x3(cout, cout)
        self.scale: nn.Module = ScalarScale() if scalars else nn.Identity()
        self.bias2b = bias()
        self.shortcut: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.shortcut = _conv1x1(cin, cout, stride)

    def _branch(self, a: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bias1b(self.conv1(a)))
        return self.bias2b(self.scale(self.conv2(self.bias2a(out))))

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch's output for block input ``x`` (zero at initialisation)."""
        return self._branch(self.bias1a(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.bias1a(x)
        identity = x if self.shortcut is None else self.shortcut(a)
        return self.relu(self._branch(a) + identity)


class FixupResNet(Classifier):
    """BatchNorm-free CIFAR ResNet (6n+2 layers) with Fixup initialisation.

    Stem ``conv3×3 → +b → ReLU``, three stages of n :class:`FixupBlock` (16/32/64 × width),
    global average pool, ``+b`` (the scalar bias before the linear layer, included in the
    features), linear layer.

    Fixup (Zhang, Dauphin & Ma 2019, §3): the classification layer and the last convolution
    of every residual branch start at 0; the other branch convolution is He-initialised and
    scaled by ``L^(-1/(2m-2)) = L^(-1/2)`` (L = 3n branches of m = 2 layers); scalar biases
    start at 0 and multipliers at 1. Stem and shortcut convolutions are He-initialised.
    """

    def __init__(
        self, num_classes: int, in_channels: int, n: int, width: float, scalars: bool
    ) -> None:
        super().__init__()
        widths = [scaled(c, width) for c in (16, 32, 64)]
        layers: list[nn.Module] = [
            _conv3x3(in_channels, widths[0]),
            ScalarBias() if scalars else nn.Identity(),
            nn.ReLU(),
        ]
        cin = widths[0]
        for stage, cout in enumerate(widths):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(FixupBlock(cin, cout, stride, scalars))
                cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if scalars:
            layers.append(ScalarBias())
        self.body = nn.Sequential(*layers)
        head = nn.Linear(cin, num_classes)
        self.head = head
        self.num_branches = 3 * n
        self._fixup_init(head)

    def blocks(self) -> list[FixupBlock]:
        """The residual blocks, in order."""
        return [m for m in self.modules() if isinstance(m, FixupBlock)]

    def _fixup_init(self, head: nn.Linear) -> None:
        m = 2  # layers per residual branch
        factor = self.num_branches ** (-1.0 / (2 * m - 2))
        _he_init(self)
        for block in self.blocks():
            with torch.no_grad():
                block.conv1.weight.mul_(factor)
            nn.init.zeros_(block.conv2.weight)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)


@register("fixup_resnet", default_input_shape=(3, 32, 32))
def fixup_resnet(
    num_classes: int,
    input_shape: tuple[int, ...],
    *,
    depth: int = 20,
    width: float = 1,
    scalars: bool = True,
) -> Classifier:
    """BatchNorm-free CIFAR ResNet (6n+2), Fixup init (Zhang et al. 2019; wen2020 §B.3).

    BatchNorm-free ResNet-``depth`` with Fixup initialisation (Zhang, Dauphin & Ma 2019).

    wen2020 (§B.3, §D.3) trains such a network to study spectral norms without BN.
    At initialisation every residual branch outputs 0 and so do the logits (zero
    classification layer): input gradients of a fresh model are 0 until it is trained.

    Args:
        num_classes: number of logits K.
        input_shape: ``(C, H, W)`` with H, W ≥ 4.
        depth: 6n+2 (8, 14, 20, 32, 44, 56, 110, ...).
        width: multiplier of the 16/32/64 channel counts.
        scalars: Fixup's scalar biases and multipliers (wen2020 leaves them out: False).
    """
    c, _, _ = image_dims("fixup_resnet", input_shape, min_side=_MIN_SIDE)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ModelError(
            f"model 'fixup_resnet': depth must be 6n+2 ≥ 8 (e.g. 20, 32, 56, 110), got {depth!r}"
        )
    w = check_width("fixup_resnet", width)
    return FixupResNet(num_classes, c, (depth - 2) // 6, w, bool(scalars))
