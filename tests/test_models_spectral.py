"""The one chooser of the exact spectral method per layer (models.spectral.methods), against
dense float64 SVDs of the explicit operators."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from robustscope.errors import ModelError
from robustscope.models import spectral
from robustscope.models.spectral import (
    conv_geometry,
    exact_method,
    exact_singular_values,
    operator_norm,
)

F64 = torch.float64

# (layer, input shape, method without dense, method with max_dense=1024)
CASES: list[tuple[str, dict[str, Any], tuple[int, ...], str, str]] = [
    ("linear", {}, (6,), "svdvals", "svdvals"),
    ("conv", {"kernel_size": 3, "padding": 1, "padding_mode": "circular"}, (2, 6, 6), "fft", "fft"),
    (
        "conv",
        {"kernel_size": 3, "padding": 1, "stride": 2, "padding_mode": "circular"},
        (2, 6, 6),
        "fft",
        "fft",
    ),
    ("conv", {"kernel_size": 1}, (2, 5, 5), "fft", "fft"),
    ("conv", {"kernel_size": 2, "stride": 2}, (2, 6, 6), "patch", "patch"),
    ("conv", {"kernel_size": 1, "stride": 2}, (2, 5, 5), "patch", "patch"),
    ("conv", {"kernel_size": 3, "padding": 1}, (2, 6, 6), "topk", "dense"),
    (
        "conv",
        {"kernel_size": 3, "padding": 1, "padding_mode": "reflect"},
        (2, 5, 5),
        "topk",
        "dense",
    ),
]


def make(kind: str, kw: dict[str, Any], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    layer = nn.Linear(6, 4) if kind == "linear" else nn.Conv2d(2, 3, **kw)
    return layer.double()


def dense_svd(layer: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    """Singular values of the layer's linear map from its Jacobian, taken through the layer's
    own forward pass (bias removed): independent of the library's operator construction."""

    def linear_part(x: torch.Tensor) -> torch.Tensor:
        zero = torch.zeros(1, *shape, dtype=F64)
        return (layer(x.reshape(1, *shape)) - layer(zero)).reshape(-1)

    jac = torch.autograd.functional.jacobian(linear_part, torch.zeros(*shape, dtype=F64))
    return torch.linalg.svdvals(jac.reshape(jac.shape[0], -1))


@pytest.mark.parametrize(("kind", "kw", "shape", "plain", "with_dense"), CASES)
def test_chooser_and_its_values_match_dense_svd(
    kind: str, kw: dict[str, Any], shape: tuple[int, ...], plain: str, with_dense: str
) -> None:
    layer = make(kind, kw)
    assert exact_method(layer, shape) == plain
    assert exact_method(layer, shape, max_dense=1024) == with_dense
    ref = dense_svd(layer, shape)
    values = exact_singular_values(layer, shape, with_dense)  # type: ignore[arg-type]
    assert values.dtype == F64 and values.shape == ref.shape
    torch.testing.assert_close(values, ref, rtol=1e-10, atol=1e-12)
    assert operator_norm(layer, shape) == pytest.approx(float(ref[0]), rel=1e-8)
    assert operator_norm(layer, shape, max_dense=1024) == pytest.approx(float(ref[0]), rel=1e-12)


def test_dense_needs_a_small_operator() -> None:
    layer = make("conv", {"kernel_size": 3, "padding": 1})
    rows, cols = conv_geometry(layer, (6, 6)).shape  # 108 × 72
    assert exact_method(layer, (2, 6, 6), max_dense=min(rows, cols)) == "dense"
    assert exact_method(layer, (2, 6, 6), max_dense=min(rows, cols) - 1) == "topk"
    assert exact_method(layer, (2, 6, 6), max_dense=50) == "topk"  # 4·50² < 108·72


def test_methods_that_do_not_apply_are_refused() -> None:
    zero_padded = make("conv", {"kernel_size": 3, "padding": 1})
    with pytest.raises(ModelError, match="exact_method"):
        exact_singular_values(zero_padded, (2, 6, 6), "fft")
    with pytest.raises(ModelError, match="does not give all"):
        exact_singular_values(zero_padded, (2, 6, 6), "topk")
    with pytest.raises(ModelError, match="does not give all"):
        exact_singular_values(make("linear", {}), (6,), "dense")
    with pytest.raises(ModelError, match="input size"):
        exact_method(zero_padded)
    with pytest.raises(ModelError, match=r"nn\.Linear or nn\.Conv2d"):
        exact_method(nn.ReLU())
    with pytest.raises(ModelError, match="operator_norm of a Conv2d needs the input size"):
        operator_norm(zero_padded)


def test_public_names_of_the_package() -> None:
    # the split kept the former module's names (tests/test_probes_spectra.py imports the
    # others from robustscope.models.spectral directly)
    kept = {"MAX_ENTRIES", "TopSingularValues", "dense_conv_weight", "linear_layers"}
    assert kept | {"operator_norm", "clip_operator_norm_", "clip_spectral_norms"} <= set(
        spectral.__all__
    )
