"""Tests of the model zoo: shapes, features/head split, normalization, specs, parameter counts."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import torch
from torch import nn

from robustscope.errors import ModelError
from robustscope.models import (
    Classifier,
    ModelSpec,
    available,
    count_parameters,
    create,
    entries,
    from_spec,
)
from robustscope.models.resnet import FixupBlock, FixupResNet, ScalarBias
from robustscope.models.vgg import VGG

MNIST, CIFAR, DIGITS = (1, 28, 28), (3, 32, 32), (1, 8, 8)
IMAGE_SHAPES = [MNIST, CIFAR, DIGITS]
VECTOR = (20,)
K = 10
BATCH = 2

#: options making the big nets small enough for a fast test-suite
SMALL: dict[str, dict[str, Any]] = {
    "mlp": {"widths": (32, 16)},
    "smallcnn": {"width": 0.25},
    "vgg13": {"width": 0.125},
    "resnet56": {"width": 0.5},
    "resnet110": {"width": 0.5},
    "preact_resnet18": {"width": 0.125},
    "wrn": {"depth": 10, "widen_factor": 1},
    "fixup_resnet": {"depth": 14},
}

#: (model, shape) pairs that must be refused
UNSUPPORTED_IMAGES = {("lenet", DIGITS)}
VECTOR_MODELS = {"linear", "mlp"}


def supported_cases() -> list[tuple[str, tuple[int, ...]]]:
    cases = [(n, s) for n in available() for s in IMAGE_SHAPES if (n, s) not in UNSUPPORTED_IMAGES]
    return cases + [(n, VECTOR) for n in sorted(VECTOR_MODELS)]


CASES = supported_cases()
CASE_IDS = [f"{n}-{'x'.join(map(str, s))}" for n, s in CASES]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def small(name: str, shape: tuple[int, ...], **kwargs: Any) -> Classifier:
    return create(name, K, shape, **{**SMALL.get(name, {}), **kwargs})


def same_weights(dst: Classifier, src: Classifier) -> None:
    """Copy every weight of ``src`` into ``dst`` except the normalization buffers."""
    state = {k: v for k, v in src.state_dict().items() if not k.startswith("normalize.")}
    state.update({k: v for k, v in dst.state_dict().items() if k.startswith("normalize.")})
    dst.load_state_dict(state, strict=True)


def randomize_head(model: Classifier) -> None:
    """Fixup starts with a zero classifier (zero logits, zero input gradients): undo that."""
    head = model.head
    assert isinstance(head, nn.Linear)
    nn.init.normal_(head.weight, std=0.1)


# --------------------------------------------------------------------------- every model


def test_registry_lists_all_models() -> None:
    expected = {
        "linear",
        "mlp",
        "cnn",
        "smallcnn",
        "lenet",
        "vgg13",
        "vgg_small",
        "resnet20",
        "resnet32",
        "resnet56",
        "resnet110",
        "preact_resnet18",
        "wrn",
        "fixup_resnet",
    }
    assert expected <= set(available())
    for entry in entries():
        assert entry.notes and "\n" not in entry.notes
        assert len(entry.default_input_shape) in (1, 3)


@pytest.mark.parametrize("name", available())
def test_default_input_shape_is_supported(name: str) -> None:
    shape = next(e.default_input_shape for e in entries() if e.name == name)
    model = small(name, shape).eval()
    assert model(torch.rand(BATCH, *shape)).shape == (BATCH, K)


@pytest.mark.parametrize(("name", "shape"), CASES, ids=CASE_IDS)
def test_forward_features_head(name: str, shape: tuple[int, ...]) -> None:
    model = small(name, shape)
    x = torch.rand(BATCH, *shape)
    model.train()
    assert model(x).shape == (BATCH, K)
    model.eval()
    logits = model(x)
    feats = model.features(x)
    assert logits.shape == (BATCH, K)
    assert feats.ndim == 2 and feats.shape[0] == BATCH
    assert feats.shape[1] == model.head.in_features
    torch.testing.assert_close(model.head(feats), logits)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(("name", "shape"), CASES, ids=CASE_IDS)
def test_gradients_flow_to_input(name: str, shape: tuple[int, ...]) -> None:
    model = small(name, shape).train()
    if isinstance(model, FixupResNet):
        randomize_head(model)
    x = torch.rand(BATCH, *shape, requires_grad=True)
    model(x).logsumexp(dim=1).sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.head.parameters())


@pytest.mark.parametrize(("name", "shape"), CASES, ids=CASE_IDS)
def test_spec_roundtrip_loads_strictly(name: str, shape: tuple[int, ...]) -> None:
    mean = [0.5] * shape[0] if len(shape) == 3 else None
    std = [0.25] * shape[0] if len(shape) == 3 else None
    model = create(name, K, shape, mean=mean, std=std, **SMALL.get(name, {})).eval()
    # through JSON, as a checkpoint's metadata (tuples become lists)
    spec = ModelSpec.from_dict(json.loads(json.dumps(model.spec.to_dict())))
    assert spec.name == name and spec.input_shape == shape and spec.num_classes == K
    rebuilt = from_spec(spec).eval()
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.rand(BATCH, *shape)
    torch.testing.assert_close(rebuilt(x), model(x))
    torch.testing.assert_close(rebuilt.features(x), model.features(x))


@pytest.mark.parametrize("name", available())
def test_normalization_is_the_first_layer(name: str) -> None:
    shape = VECTOR if name in VECTOR_MODELS else CIFAR
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    if len(shape) == 1:
        mean, std = (0.5,), (0.5,)
    normed = create(name, K, shape, mean=mean, std=std, **SMALL.get(name, {})).eval()
    plain = small(name, shape).eval()
    same_weights(plain, normed)
    x = torch.rand(BATCH, *shape)
    m = torch.tensor(mean).reshape(1, -1, *([1] * (len(shape) - 1)))
    s = torch.tensor(std).reshape(1, -1, *([1] * (len(shape) - 1)))
    torch.testing.assert_close(normed(x), plain((x - m) / s))
    torch.testing.assert_close(normed.features(x), plain.features((x - m) / s))
    assert not torch.allclose(normed.features(x), plain.features(x))


def test_normalization_mean_half_std_half_on_mnist() -> None:
    normed = create("smallcnn", K, MNIST, mean=[0.5], std=[0.5], width=0.25).eval()
    plain = create("smallcnn", K, MNIST, width=0.25).eval()
    same_weights(plain, normed)
    x = torch.rand(BATCH, *MNIST)
    torch.testing.assert_close(normed(x), plain((x - 0.5) / 0.5))
    assert not torch.allclose(normed(x), plain(x))


def test_normalization_needs_one_value_per_channel() -> None:
    with pytest.raises(ModelError, match="normalization mean"):
        create("resnet20", K, CIFAR, mean=[0.1, 0.2], std=[1.0])


# ------------------------------------------------------------------------- errors


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(ModelError) as info:
        create("resnet9000", K, CIFAR)
    message = str(info.value)
    assert "resnet9000" in message
    for name in available():
        assert name in message


def test_unknown_option_is_named() -> None:
    with pytest.raises(ModelError, match="no_such_option") as info:
        create("resnet20", K, CIFAR, no_such_option=3)
    assert "width" in str(info.value)  # lists the valid options


@pytest.mark.parametrize("name", sorted(set(available()) - VECTOR_MODELS))
def test_image_models_refuse_vectors(name: str) -> None:
    with pytest.raises(ModelError) as info:
        create(name, K, VECTOR)
    message = str(info.value)
    assert name in message and str(VECTOR) in message and "(C, H, W)" in message


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("lenet", DIGITS),
        ("lenet", (1, 11, 28)),
        ("smallcnn", (1, 3, 3)),
        ("resnet20", (3, 2, 32)),
        ("preact_resnet18", (1, 3, 3)),
        ("wrn", (1, 3, 3)),
        ("fixup_resnet", (1, 3, 3)),
    ],
)
def test_too_small_images_are_refused(name: str, shape: tuple[int, ...]) -> None:
    with pytest.raises(ModelError) as info:
        create(name, K, shape)
    assert name in str(info.value) and str(shape) in str(info.value)


@pytest.mark.parametrize(
    ("name", "kwargs", "needle"),
    [
        ("mlp", {"activation": "gelu"}, "activation"),
        ("mlp", {"widths": (32, 0)}, "widths"),
        ("vgg13", {"variant": "quarter_linear"}, "half_linear"),
        ("resnet20", {"width": 0}, "width"),
        ("wrn", {"depth": 27}, "6n+4"),
        ("wrn", {"dropout": 1.5}, "dropout"),
        ("fixup_resnet", {"depth": 21}, "6n+2"),
        ("lenet", {"padding": -1}, "padding"),
    ],
)
def test_bad_options_are_refused(name: str, kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ModelError, match=re.escape(needle)):
        create(name, K, CIFAR, **kwargs)


# ------------------------------------------------------------------- parameter counts


def test_resnet20_parameter_count() -> None:
    # option-B ResNet-20, 3×32×32, K=10 (convs bias-free, BN: 2 params per channel):
    #   stem: 3·16·9 + 2·16 = 464
    #   stage 1, 3 blocks: 3 · (2·16·16·9 + 2·2·16) = 3 · 4,672 = 14,016
    #   stage 2, first: 16·32·9 + 32·32·9 + 2·2·32 + (16·32 + 2·32) = 14,528
    #            two more: 2 · (2·32·32·9 + 2·2·32) = 37,120
    #   stage 3, first: 32·64·9 + 64·64·9 + 2·2·64 + (32·64 + 2·64) = 57,728
    #            two more: 2 · (2·64·64·9 + 2·2·64) = 147,968
    #   fc: 64·10 + 10 = 650
    #   total 272,474 (option A, without the two projection shortcuts: 269,722 ≈ 0.27M)
    assert count_parameters(create("resnet20", 10, CIFAR)) == 272_474


def test_cnn_parameter_count() -> None:
    # Wong & Kolter 2018's small ConvNet on 1x28x28: conv 1->16 (4x4), conv 16->32 (4x4),
    # fc 32*7*7 -> 100, fc 100 -> 10, all with biases.
    expected = (16 * 16 + 16) + (32 * 16 * 16 + 32) + (1568 * 100 + 100) + (100 * 10 + 10)
    assert count_parameters(create("cnn", 10, MNIST)) == expected
    assert create("cnn", 10, MNIST).head.in_features == 100
    assert create("cnn", 10, CIFAR, width=2).head.in_features == 200


def test_smallcnn_parameter_count() -> None:
    # (32·25+32) + (64·32·25+64) + (3136·1024+1024) + (1024·10+10)
    expected = (32 * 25 + 32) + (64 * 32 * 25 + 64) + (3136 * 1024 + 1024) + (1024 * 10 + 10)
    assert expected == 3_274_634
    assert count_parameters(create("smallcnn", 10, MNIST)) == expected


def test_lenet_parameter_count() -> None:
    # (6·25+6) + (16·6·25+16) + (16·5·5·120+120) + (120·84+84) + (84·10+10)
    assert count_parameters(create("lenet", 10, MNIST)) == 61_706


def test_vgg13_parameter_count() -> None:
    # bias-free convs: 3·64·9 + 64·64·9 + 64·128·9 + 128·128·9 + 128·256·9 + 256·256·9
    #   + 256·512·9 + 3·512·512·9 = 9,402,048; BN: 2·(2·64 + 2·128 + 2·256 + 4·512) = 5,888;
    #   fc: 512·10 + 10 = 5,130
    assert count_parameters(create("vgg13", 10, CIFAR)) == 9_413_066
    # without BN the convolutions have biases instead: 2·64 + 2·128 + 2·256 + 4·512 = 2,944
    assert count_parameters(create("vgg13", 10, CIFAR, batch_norm=False)) == 9_410_122


def test_preact_resnet18_parameter_count() -> None:
    # stem 3·64·9 = 1,728
    # stage 1: 2 blocks · (2·64 + 64·64·9 + 2·64 + 64·64·9) = 147,968
    # stage 2: (2·64 + 64·128·9 + 2·128 + 128·128·9 + 64·128) + (2·128 + 2·128·128·9 + 2·128)
    #          = 229,760 + 295,424 = 525,184
    # stage 3: (2·128 + 128·256·9 + 2·256 + 256·256·9 + 128·256) + (4·256 + 2·256·256·9)
    #          = 918,272 + 1,180,672 = 2,098,944
    # stage 4: (2·256 + 256·512·9 + 2·512 + 512·512·9 + 256·512) + (4·512 + 2·512·512·9)
    #          = 3,671,552 + 4,720,640 = 8,392,192
    # final BN 2·512 = 1,024; fc 512·10 + 10 = 5,130; total 11,172,170
    assert count_parameters(create("preact_resnet18", 10, CIFAR)) == 11_172_170


def test_wrn_28_10_parameter_count() -> None:
    # WRN-28-10: the 36.5M of Zagoruyko & Komodakis (36,479,194 with 1×1 projection shortcuts)
    assert count_parameters(create("wrn", 10, CIFAR)) == 36_479_194


def test_fixup_resnet20_parameter_count() -> None:
    # the convolutions of resnet20 (272,474 − 1,568 BN − 650 fc = 270,256), no BN, + scalars:
    # 1 (stem bias) + 9 blocks · (4 biases + 1 multiplier) + 1 (bias before fc) = 47; fc 650
    assert count_parameters(create("fixup_resnet", 10, CIFAR)) == 270_256 + 47 + 650
    assert count_parameters(create("fixup_resnet", 10, CIFAR, scalars=False)) == 270_256 + 650


def test_width_options_scale_the_features() -> None:
    assert create("resnet32", K, CIFAR, width=2).head.in_features == 128
    assert create("smallcnn", K, MNIST, width=0.5).head.in_features == 512
    assert create("vgg13", K, CIFAR, width=0.25).head.in_features == 128
    assert create("preact_resnet18", K, CIFAR, width=0.25).head.in_features == 128
    assert create("wrn", K, CIFAR, depth=10, widen_factor=2).head.in_features == 128
    assert create("fixup_resnet", K, CIFAR, width=2).head.in_features == 128
    assert create("mlp", K, VECTOR, widths=[64, 8]).head.in_features == 8


# ------------------------------------------------------------------------- simple nets


def test_linear_binary_score_and_features() -> None:
    model = create("linear", 1, MNIST, mean=[0.1307], std=[0.3081]).eval()
    x = torch.rand(BATCH, *MNIST)
    assert model(x).shape == (BATCH, 1)
    torch.testing.assert_close(model.features(x), ((x - 0.1307) / 0.3081).flatten(1))
    no_bias = create("linear", 1, VECTOR, bias=False)
    assert no_bias.head.bias is None
    assert count_parameters(no_bias) == VECTOR[0]


def test_linear_mlp_is_affine() -> None:
    model = create("mlp", K, VECTOR, widths=(16, 16), activation="linear").eval()
    assert not any(isinstance(m, nn.ReLU | nn.Tanh) for m in model.modules())
    x1, x2 = torch.randn(BATCH, *VECTOR), torch.randn(BATCH, *VECTOR)
    torch.testing.assert_close(model(0.3 * x1 + 0.7 * x2), 0.3 * model(x1) + 0.7 * model(x2))
    tanh = create("mlp", K, VECTOR, activation="tanh")
    assert any(isinstance(m, nn.Tanh) for m in tanh.modules())


def test_lenet_padding() -> None:
    # 28×28 gets the first conv padded by 2 (→ the classic 16·5·5 = 400 fc inputs)
    assert create("lenet", K, MNIST).body[0].padding == (2, 2)
    assert create("lenet", K, CIFAR).body[0].padding == (0, 0)
    # 8×8 fits with a larger padding: 8+8-4 = 12 → 6 → 2 → 1
    model = create("lenet", K, DIGITS, padding=4)
    assert model(torch.rand(BATCH, *DIGITS)).shape == (BATCH, K)


# --------------------------------------------------------------------------------- VGG


@pytest.mark.parametrize("name", ["vgg13", "vgg_small"])
def test_vgg_variants_modules(name: str) -> None:
    def kinds(variant: str) -> set[type]:
        model = create(name, K, CIFAR, variant=variant, width=0.125)
        return {type(m) for m in model.modules()}

    normal, half, lin = kinds("normal"), kinds("half_linear"), kinds("linear")
    assert nn.ReLU in normal and nn.MaxPool2d in normal
    assert nn.ReLU not in half and nn.MaxPool2d in half
    assert nn.ReLU not in lin and nn.MaxPool2d not in lin and nn.AvgPool2d in lin


@pytest.mark.parametrize("name", ["vgg13", "vgg_small"])
@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("shape", [CIFAR, MNIST])
def test_vgg_linear_variant_is_affine(name: str, batch_norm: bool, shape: tuple[int, ...]) -> None:
    model = create(name, K, shape, variant="linear", batch_norm=batch_norm, width=0.125).double()
    if batch_norm:  # make eval-mode BN a nontrivial affine map
        model.train()
        model(torch.rand(8, *shape, dtype=torch.float64))
    model.eval()
    x1 = torch.rand(BATCH, *shape, dtype=torch.float64)
    x2 = torch.rand(BATCH, *shape, dtype=torch.float64)
    a, b = 0.3, 0.7  # a + b = 1: affine combinations (the convolutions have biases)
    torch.testing.assert_close(model(a * x1 + b * x2), a * model(x1) + b * model(x2))
    zero = torch.zeros(1, *shape, dtype=torch.float64)  # f(x) − f(0) is linear
    torch.testing.assert_close(
        model(x1 + 2 * x2) - model(zero),
        (model(x1) - model(zero)) + 2 * (model(x2) - model(zero)),
    )


@pytest.mark.parametrize("name", ["vgg13", "vgg_small"])
def test_vgg_normal_variant_is_not_affine(name: str) -> None:
    model = create(name, K, CIFAR, batch_norm=False, width=0.125).double().eval()
    x1 = torch.rand(BATCH, *CIFAR, dtype=torch.float64)
    x2 = torch.rand(BATCH, *CIFAR, dtype=torch.float64)
    assert not torch.allclose(model(0.5 * x1 + 0.5 * x2), 0.5 * model(x1) + 0.5 * model(x2))


def test_vgg_small_layers_on_28x28() -> None:
    model = create("vgg_small", K, MNIST, variant="half_linear", width=0.5)
    assert isinstance(model, VGG) and model.skipped_pools == 0
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 32]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3
    assert model.features(torch.rand(BATCH, *MNIST)).shape == (BATCH, 32)


@pytest.mark.parametrize(("shape", "skipped"), [(CIFAR, 0), (MNIST, 1), (DIGITS, 2)])
def test_vgg_skips_pools_on_small_inputs(shape: tuple[int, ...], skipped: int) -> None:
    model = create("vgg13", K, shape, width=0.125)
    assert isinstance(model, VGG)
    assert model.skipped_pools == skipped
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 5 - skipped


# ------------------------------------------------------------------------------- Fixup


@pytest.mark.parametrize("scalars", [True, False])
def test_fixup_has_no_batchnorm_and_zero_branches_at_init(scalars: bool) -> None:
    model = create("fixup_resnet", K, CIFAR, depth=14, scalars=scalars).eval()
    assert isinstance(model, FixupResNet)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert any(isinstance(m, ScalarBias) for m in model.modules()) == scalars
    blocks = model.blocks()
    assert len(blocks) == model.num_branches == 6
    z = model.normalize(torch.rand(BATCH, *CIFAR))
    for layer in model.body:
        if isinstance(layer, FixupBlock):
            torch.testing.assert_close(layer.residual(z), torch.zeros_like(layer.residual(z)))
            if layer.shortcut is None:  # identity block: the block is relu(x) = x (x ≥ 0)
                torch.testing.assert_close(layer(z), z)
        z = layer(z)
    # zero classifier: the logits start at 0, the features do not
    x = torch.rand(BATCH, *CIFAR)
    assert torch.equal(model(x), torch.zeros(BATCH, K))
    assert model.features(x).abs().sum() > 0


def test_fixup_branch_scaling() -> None:
    # Fixup: first conv of each branch scaled by L^(-1/2) relative to He init (L = 3n = 9)
    torch.manual_seed(0)
    model = create("fixup_resnet", K, CIFAR, depth=20, width=4)
    assert isinstance(model, FixupResNet)
    block = model.blocks()[4]  # 128 → 128 channels
    he_std = (2.0 / (block.conv1.out_channels * 9)) ** 0.5
    ratio = block.conv1.weight.std().item() / he_std
    assert ratio == pytest.approx(9 ** (-0.5), rel=0.05)
    assert torch.count_nonzero(block.conv2.weight) == 0
