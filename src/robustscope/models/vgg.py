"""VGG13 (Simonyan & Zisserman 2015) in the three variants of shi2020, Table 1, and a small
VGG-style net with the same variants for laptop-scale studies.

Shi et al. 2020 ("Disentangling non-robust and robust components ... CCKL ... Fisher
information") train with TRADES a *pure linear* VGG13 (no ReLU, average pooling), a
*half linear* VGG13 (no ReLU, max pooling) and a *normal* VGG13 (ReLU, max pooling) on
CIFAR-10 to show that robust and standard accuracy rise together with nonlinearity.

Adapting to the input size: the five 2×2 pools of VGG13 take 32×32 to 1×1. A pool that
would take a side below 1 is skipped (28×28: 28→14→7→3→1 and the fifth pool is skipped;
8×8: the last two are skipped), and a global average pool before the classifier makes
the feature vector ``512·width`` long for every input size (it is the identity on a 1×1
map). Skipped pools and the global average pool are linear, so the ``linear`` variant
stays linear (affine, with biases) in eval mode.

``vgg_small`` keeps the three variants (the capacity axis of Table 1) at a fraction of the
cost: three 3×3 convolutions of 16/32/64 channels (× ``width``), each followed by a 2×2
pool, as in VGG, for 28×28 images (28→14→7→3).
"""

from __future__ import annotations

from torch import nn

from robustscope.models._common import check_choice, check_width, image_dims, scaled
from robustscope.models.base import Classifier
from robustscope.models.registry import register

__all__ = ["VGG", "VGG13_CONFIG", "VGG_SMALL_CONFIG", "VGG_VARIANTS", "vgg13", "vgg_small"]

#: VGG13 ("configuration B"): conv widths, "M" = 2×2 pool
VGG13_CONFIG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M",
)  # fmt: skip

#: the small VGG-style net: one 3×3 convolution per stage, three stages
VGG_SMALL_CONFIG: tuple[int | str, ...] = (16, "M", 32, "M", 64, "M")

#: variant → (ReLU after each conv, pooling): shi2020 Table 1
VGG_VARIANTS: dict[str, tuple[bool, str]] = {
    "normal": (True, "max"),
    "half_linear": (False, "max"),
    "linear": (False, "avg"),
}


class VGG(Classifier):
    """VGG-style network: 3×3 convolutions (+BN) (+ReLU), 2×2 pools, global average pool,
    one linear layer. The features are the pooled ``[N, last width]`` vector.

    Attributes:
        variant: ``normal``, ``half_linear`` or ``linear`` (see :data:`VGG_VARIANTS`).
        skipped_pools: how many pools were skipped because the map was already 1 pixel wide.
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int],
        config: tuple[int | str, ...],
        variant: str,
        batch_norm: bool,
        width: float,
    ) -> None:
        super().__init__()
        relu, pool = VGG_VARIANTS[variant]
        self.variant = variant
        self.skipped_pools = 0
        channels, h, w = input_shape
        layers: list[nn.Module] = []
        for item in config:
            if item == "M":
                if min(h, w) < 2:
                    self.skipped_pools += 1
                    continue
                layers.append(nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2))
                h, w = h // 2, w // 2
                continue
            out = scaled(int(item), width)
            layers.append(nn.Conv2d(channels, out, kernel_size=3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            if relu:
                layers.append(nn.ReLU())
            channels = out
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)


@register("vgg13", default_input_shape=(3, 32, 32))
def vgg13(
    num_classes: int,
    input_shape: tuple[int, ...],
    *,
    variant: str = "normal",
    batch_norm: bool = True,
    width: float = 1.0,
) -> Classifier:
    """VGG13, variants normal/half_linear/linear of shi2020 Table 1; 3×32×32 (pools adapt).

    VGG13 for small images with one linear classifier (the CIFAR VGG of shi2020).

    Config 64,64,M,128,128,M,256,256,M,512,512,M,512,512,M (3×3 convs, padding 1).
    Convolutions carry a bias only without batch norm. Default PyTorch initialisation.

    Args:
        num_classes: number of logits K.
        input_shape: ``(C, H, W)``; any size (pools that would shrink a side below 1 are
            skipped, then a global average pool; see the module docstring).
        variant: ``normal`` (ReLU + max pool), ``half_linear`` (no ReLU, max pool) or
            ``linear`` (no ReLU, average pool), as in Shi et al. 2020, Table 1.
        batch_norm: BatchNorm after every convolution.
        width: multiplier of every convolution's width.
    """
    return _vgg("vgg13", VGG13_CONFIG, num_classes, input_shape, variant, batch_norm, width)


@register("vgg_small", default_input_shape=(1, 28, 28))
def vgg_small(
    num_classes: int,
    input_shape: tuple[int, ...],
    *,
    variant: str = "normal",
    batch_norm: bool = True,
    width: float = 1.0,
) -> Classifier:
    """Small VGG-style net (conv16-M-conv32-M-conv64-M), shi2020's three variants; 1×28×28.

    The VGG of :func:`vgg13` with :data:`VGG_SMALL_CONFIG` (3×3 convolutions, padding 1, each
    followed by BatchNorm, the variant's activation and a 2×2 pool; global average pool; one
    linear layer): the capacity axis of shi2020 Table 1 (``linear`` / ``half_linear`` /
    ``normal``, defined there as VGG13 without ReLU and with average pooling / without ReLU
    and with max pooling / with ReLU and max pooling) at laptop scale.

    Args:
        num_classes: number of logits K.
        input_shape: ``(C, H, W)``, any size (pools that would shrink a side below 1 are
            skipped).
        variant: ``normal``, ``half_linear`` or ``linear`` (shi2020 Table 1).
        batch_norm: BatchNorm after every convolution.
        width: multiplier of every convolution's width.
    """
    return _vgg("vgg_small", VGG_SMALL_CONFIG, num_classes, input_shape, variant, batch_norm, width)


def _vgg(
    name: str,
    config: tuple[int | str, ...],
    num_classes: int,
    input_shape: tuple[int, ...],
    variant: str,
    batch_norm: bool,
    width: float,
) -> Classifier:
    """The :class:`VGG` of ``config`` with the registered model ``name``'s checks."""
    dims = image_dims(name, input_shape, min_side=1, sizes="of any size")
    check_choice(name, "variant", variant, tuple(VGG_VARIANTS))
    return VGG(num_classes, dims, config, variant, bool(batch_norm), check_width(name, width))
