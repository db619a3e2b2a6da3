"""Singular values of layer operators (wen2020 §4.2.2, B.2, B.4.2) against dense references."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

from robustscope import models
from robustscope.errors import ModelError, ProbeError
from robustscope.models.spectral import (
    clip_operator_norm_,
    conv_geometry,
    conv_operator_matrix,
    conv_singular_values,
    layer_input_shapes,
    operator_frobenius_sq,
    operator_matrix,
    operator_top_singular_values,
    patch_singular_values,
)
from robustscope.probes.base import ProbeData
from robustscope.probes.registry import run_probe
from robustscope.probes.spectra import SpectraResult, compare_spectra, layer_spectra

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
F64 = torch.float64


def make_conv(seed: int, c_in: int, c_out: int, k: int, **kw: Any) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(c_in, c_out, k, bias=False, **kw).double()


def dense_of(conv: nn.Conv2d, hw: tuple[int, int]) -> torch.Tensor:
    """The explicit operator of a module (its own geometry, uneven 'same' padding included)."""
    return operator_matrix(conv.weight.detach(), conv_geometry(conv, hw))


def svd(a: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(a)


# --- explicit operator ---------------------------------------------------------------------


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    c_in=st.integers(1, 3),
    groups=st.sampled_from([1, 2]),
    k=st.integers(1, 4),
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
    dilation=st.integers(1, 2),
    mode=st.sampled_from(["zeros", "circular", "reflect", "replicate"]),
    h=st.integers(4, 7),
    w=st.integers(4, 7),
)
def test_operator_matrix_is_the_convolution(
    seed: int,
    c_in: int,
    groups: int,
    k: int,
    stride: int,
    padding: int,
    dilation: int,
    mode: str,
    h: int,
    w: int,
) -> None:
    assume(h + 2 * padding >= dilation * (k - 1) + 1 and w + 2 * padding >= dilation * (k - 1) + 1)
    conv = make_conv(
        seed,
        c_in * groups,
        2 * groups,
        k,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=mode,
    )
    a = conv_operator_matrix(
        conv.weight.detach(),
        (h, w),
        stride=stride,
        padding=padding,
        padding_mode=mode,  # type: ignore[arg-type]
        dilation=dilation,
        groups=groups,
    )
    x = torch.randn(3, c_in * groups, h, w, dtype=F64)
    y = conv(x)  # nn.Conv2d's own padding, not ours
    assert a.shape == (y[0].numel(), x[0].numel())
    torch.testing.assert_close(x.flatten(1) @ a.T, y.flatten(1), rtol=1e-12, atol=1e-12)


def test_operator_matrix_refuses_large_operators() -> None:
    w = torch.zeros(16, 16, 3, 3)
    with pytest.raises(ModelError, match="max_entries"):
        conv_operator_matrix(w, (32, 32), padding=1)


# --- exact structured spectra ----------------------------------------------------------------


def test_fft_singular_values_small_example() -> None:
    conv = make_conv(0, 2, 3, 3, padding=1, padding_mode="circular")
    s = conv_singular_values(conv.weight.detach(), (6, 6))
    ref = svd(dense_of(conv, (6, 6)))
    assert s.shape == ref.shape == (2 * 36,)
    torch.testing.assert_close(s, ref, rtol=1e-10, atol=1e-12)


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    c_in=st.integers(1, 3),
    c_out=st.integers(1, 4),
    k=st.integers(1, 4),
    stride=st.integers(1, 2),
    dilation=st.integers(1, 2),
    pick=st.integers(0, 1),
    m=st.integers(2, 4),
    groups=st.sampled_from([1, 2]),
)
def test_fft_method_equals_dense_svd_of_circular_convolutions(
    seed: int,
    c_in: int,
    c_out: int,
    k: int,
    stride: int,
    dilation: int,
    pick: int,
    m: int,
    groups: int,
) -> None:
    h, w = stride * m, stride * (m + 1)
    # an output of H/s × W/s (a full circular convolution) needs e − s ≤ 2p < e, e = extent
    extent = dilation * (k - 1) + 1
    pads = [p for p in range(extent) if extent - stride <= 2 * p < extent]
    assume(pads)  # symmetric padding cannot centre an even extent at stride 1
    padding = pads[min(pick, len(pads) - 1)]
    assume(padding <= h)
    conv = make_conv(
        seed,
        c_in * groups,
        c_out * groups,
        k,
        stride=stride,
        dilation=dilation,
        padding=padding,
        padding_mode="circular",
        groups=groups,
    )
    geo = conv_geometry(conv, (h, w))
    assert geo.circular_exact
    s = conv_singular_values(
        conv.weight.detach(), (h, w), stride=stride, dilation=dilation, groups=groups
    )
    ref = svd(dense_of(conv, (h, w)))
    assert s.shape == ref.shape
    torch.testing.assert_close(s, ref, rtol=1e-9, atol=1e-10)


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    k=st.integers(1, 3),
    extra=st.integers(0, 2),
    padding=st.integers(0, 2),
    h=st.integers(3, 9),
)
def test_patch_method_equals_dense_svd(seed: int, k: int, extra: int, padding: int, h: int) -> None:
    conv = make_conv(seed, 3, 2, k, stride=k + extra, padding=padding)
    assume(h + 2 * padding >= k)
    geo = conv_geometry(conv, (h, h + 1))
    assert geo.disjoint_patches
    s = patch_singular_values(conv.weight.detach(), geo)
    torch.testing.assert_close(s, svd(dense_of(conv, (h, h + 1))), rtol=1e-10, atol=1e-12)


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    k=st.integers(1, 5),
    stride=st.integers(1, 3),
    padding=st.integers(0, 3),
    dilation=st.integers(1, 2),
    mode=st.sampled_from(["zeros", "circular", "reflect", "replicate"]),
    h=st.integers(4, 8),
)
def test_operator_frobenius_is_exact(
    seed: int, k: int, stride: int, padding: int, dilation: int, mode: str, h: int
) -> None:
    extent = dilation * (k - 1) + 1
    assume(h + 2 * padding >= extent and padding < h)
    conv = make_conv(
        seed, 2, 3, k, stride=stride, padding=padding, dilation=dilation, padding_mode=mode
    )
    geo = conv_geometry(conv, (h, h))
    got = operator_frobenius_sq(conv.weight.detach(), geo)
    ref = dense_of(conv, (h, h)).square().sum()
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_same_padding_with_even_kernel_pads_unevenly() -> None:
    conv = make_conv(3, 2, 2, 4, padding="same")
    x = torch.randn(2, 2, 5, 5, dtype=F64)
    a = dense_of(conv, (5, 5))
    torch.testing.assert_close(x.flatten(1) @ a.T, conv(x).flatten(1))
    geo = conv_geometry(conv, (5, 5))
    torch.testing.assert_close(operator_frobenius_sq(conv.weight.detach(), geo), a.square().sum())


# --- iterative top-k ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "hw"),
    [
        ({"stride": 2, "padding": 1}, (8, 8)),  # zero padding, stride 2 (conv_transpose2d)
        ({"stride": 1, "padding": 1}, (7, 6)),
        ({"stride": 2, "padding": 2, "padding_mode": "reflect"}, (8, 7)),  # vjp adjoint
        ({"stride": 1, "padding": 2, "dilation": 2}, (6, 6)),
        ({"stride": 2, "padding": 1, "groups": 2}, (7, 7)),
    ],
)
def test_top_k_iteration_matches_dense_svd(kw: dict[str, Any], hw: tuple[int, int]) -> None:
    conv = make_conv(1, 4, 4, 3, **kw)
    ref = svd(dense_of(conv, hw))
    top = operator_top_singular_values(conv, (4, *hw), k=4, tol=1e-10, seed=2)
    assert top.converged and top.values.shape == (4,)
    assert float(top.residuals.max()) <= 1e-10
    torch.testing.assert_close(top.values, ref[:4], rtol=1e-6, atol=0)
    # the returned vectors are right singular vectors: ‖A v‖ = σ
    a = dense_of(conv, hw)
    av = top.right_vectors.flatten(1) @ a.T
    torch.testing.assert_close(av.norm(dim=1), top.values, rtol=1e-6, atol=0)


@pytest.mark.parametrize("k", [3, 4])
def test_top_k_finds_repeated_singular_values(k: int) -> None:
    # on an odd torus with a zero-mean kernel every singular value of a circular convolution
    # comes twice (Ŵ(−f) is the conjugate of Ŵ(f), and Ŵ(0) = 0)
    conv = make_conv(4, 3, 3, 3, padding=1, padding_mode="circular")
    with torch.no_grad():
        conv.weight.sub_(conv.weight.mean(dim=(2, 3), keepdim=True))
    exact = conv_singular_values(conv.weight.detach(), (5, 5))
    torch.testing.assert_close(exact[0], exact[1], rtol=1e-12, atol=0)
    torch.testing.assert_close(exact[2], exact[3], rtol=1e-12, atol=0)
    top = operator_top_singular_values(conv, (3, 5, 5), k=k, tol=1e-11)
    torch.testing.assert_close(top.values, exact[:k], rtol=1e-7, atol=0)


def test_top_k_of_linear_and_of_an_affine_function() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(30, 12).double()
    ref = svd(lin.weight.detach())
    top = operator_top_singular_values(lin, (30,), k=3, tol=1e-12)
    torch.testing.assert_close(top.values, ref[:3], rtol=1e-8, atol=0)
    fn_top = operator_top_singular_values(lambda x: lin(x) + 5.0, (30,), k=3, tol=1e-12)
    torch.testing.assert_close(fn_top.values, ref[:3], rtol=1e-8, atol=0)


def test_top_k_is_deterministic_and_reports_non_convergence() -> None:
    conv = make_conv(5, 4, 4, 3, padding=1)
    a = operator_top_singular_values(conv, (4, 8, 8), k=2, seed=3)
    b = operator_top_singular_values(conv, (4, 8, 8), k=2, seed=3)
    assert torch.equal(a.values, b.values) and a.matvecs == b.matvecs
    short = operator_top_singular_values(conv, (4, 8, 8), k=2, tol=1e-14, iters=1, depth=1)
    assert not short.converged and float(short.residuals.max()) > 1e-14


# --- clipping ------------------------------------------------------------------------------


CLIP_LAYERS: list[tuple[str, dict[str, Any]]] = [
    ("linear", {}),
    ("zeros-stride2", {"stride": 2, "padding": 1}),  # iteration
    ("circular", {"padding": 1, "padding_mode": "circular"}),  # FFT
    ("pointwise", {"stride": 2, "kernel": 1}),  # patch blocks
]


def clip_layer(kind: str, kw: dict[str, Any]) -> nn.Linear | nn.Conv2d:
    torch.manual_seed(7)
    if kind == "linear":
        return nn.Linear(20, 9)
    kw = dict(kw)
    k = kw.pop("kernel", 3)
    return nn.Conv2d(3, 4, k, **kw)


def exact_norm(layer: nn.Module, hw: tuple[int, int]) -> float:
    if isinstance(layer, nn.Linear):
        return float(svd(layer.weight.detach().double())[0])
    assert isinstance(layer, nn.Conv2d)
    return float(svd(operator_matrix(layer.weight.detach().double(), conv_geometry(layer, hw)))[0])


@pytest.mark.parametrize(("kind", "kw"), CLIP_LAYERS)
def test_clip_bounds_the_exact_operator_norm(kind: str, kw: dict[str, Any]) -> None:
    layer = clip_layer(kind, kw)
    hw = (6, 6)
    before = exact_norm(layer, hw)
    c = 0.5 * before
    bias = layer.bias.detach().clone() if layer.bias is not None else None
    reported = clip_operator_norm_(layer, c, hw)
    assert reported == pytest.approx(before, rel=1e-7)
    after = exact_norm(layer, hw)
    assert after <= c * (1 + 1e-6)
    assert after == pytest.approx(c, rel=1e-6)  # scaled down to the bound, not below it
    assert bias is not None and layer.bias is not None and torch.equal(layer.bias, bias)


@pytest.mark.parametrize(("kind", "kw"), CLIP_LAYERS)
def test_clip_leaves_layers_below_the_bound_unchanged(kind: str, kw: dict[str, Any]) -> None:
    layer = clip_layer(kind, kw)
    w = layer.weight.detach().clone()
    before = exact_norm(layer, (6, 6))
    reported = clip_operator_norm_(layer, before * 1.01, (6, 6))
    assert reported == pytest.approx(before, rel=1e-7)
    assert torch.equal(layer.weight, w)


def test_clip_refuses_a_nonpositive_bound_and_a_conv_without_size() -> None:
    with pytest.raises(ModelError, match="> 0"):
        clip_operator_norm_(nn.Linear(3, 3), 0.0)
    with pytest.raises(ModelError, match="input"):
        clip_operator_norm_(nn.Conv2d(1, 1, 3), 1.0)


# --- the probe -----------------------------------------------------------------------------


def conv_linear_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]


@pytest.mark.parametrize("name", ["cnn", "smallcnn"])
def test_probe_lists_every_layer_with_exact_spectra(name: str) -> None:
    torch.manual_seed(0)
    model = models.create(name, 10, (1, 8, 8), width=0.25)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    rng = torch.get_rng_state()
    res = layer_spectra(model, (1, 8, 8))
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert [s.name for s in res.layers] == conv_linear_names(model)
    shapes = layer_input_shapes(model, (1, 8, 8))
    modules = dict(model.named_modules())
    for spec in res.layers:
        module = modules[spec.name]
        if isinstance(module, nn.Linear):
            mat = module.weight.detach().double()
            assert spec.kind == "linear" and spec.method == "svdvals"
        else:
            assert isinstance(module, nn.Conv2d)
            mat = operator_matrix(
                module.weight.detach().double(), conv_geometry(module, shapes[spec.name][-2:])
            )
            assert spec.kind == "conv2d" and spec.method == "dense"
        ref = svd(mat)
        assert spec.exact and spec.complete and spec.count == len(ref) == min(mat.shape)
        torch.testing.assert_close(spec.singular_values, ref, rtol=1e-9, atol=1e-12)
        assert spec.std == pytest.approx(float(ref.std(correction=0)), rel=1e-9)
        assert spec.max == pytest.approx(float(ref[0]), rel=1e-12)
        assert spec.min == pytest.approx(float(ref[-1]), abs=1e-12)
        frob = float(mat.norm())
        assert spec.frobenius == pytest.approx(frob, rel=1e-9)
        assert spec.stable_rank == pytest.approx(frob**2 / float(ref[0]) ** 2, rel=1e-9)
    scalars = res.scalars()
    assert scalars["n_layers"] == len(res.layers)
    assert scalars[f"{res.layers[0].name}/std"] == res.layers[0].std
    assert set(res.arrays()) == {f"{s.name}/singular_values" for s in res.layers}


def test_probe_topk_layers_report_exact_top_and_circular_approximation() -> None:
    torch.manual_seed(1)
    model = models.create("smallcnn", 10, (1, 8, 8), width=0.25)
    res = layer_spectra(model, (1, 8, 8), method="topk", k=3, tol=1e-10)
    shapes = layer_input_shapes(model, (1, 8, 8))
    modules = dict(model.named_modules())
    convs = [s for s in res.layers if s.kind == "conv2d"]
    assert convs and all(s.method == "topk" and not s.complete for s in convs)
    for spec in convs:
        module = modules[spec.name]
        assert isinstance(module, nn.Conv2d)
        w = module.weight.detach().double()
        mat = operator_matrix(w, conv_geometry(module, shapes[spec.name][-2:]))
        ref = svd(mat)
        torch.testing.assert_close(spec.singular_values, ref[:3], rtol=1e-6, atol=0)
        assert spec.std is None and spec.min is None and spec.residual is not None
        # Frobenius norm and stable rank of the zero-padded operator, not of the kernel
        frob = float(mat.norm())
        assert spec.frobenius == pytest.approx(frob, rel=1e-9)
        assert spec.frobenius != pytest.approx(float(w.norm()) * 8, rel=1e-3)
        assert spec.stable_rank == pytest.approx(frob**2 / float(ref[0]) ** 2, rel=1e-6)
        circ = conv_singular_values(w, (8 // 2 ** (spec.name != "body.0"),) * 2)
        assert spec.approx_singular_values is not None
        torch.testing.assert_close(spec.approx_singular_values, circ)
        assert spec.approx_std == pytest.approx(float(circ.std(correction=0)))


def test_probe_uses_fft_for_circular_layers_and_refuses_bad_options() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"), nn.ReLU(), nn.Flatten()
    )
    res = layer_spectra(model, (2, 6, 6), max_dense=1)
    (spec,) = res.layers
    assert spec.method == "fft" and spec.exact and spec.complete
    conv = model[0]
    assert isinstance(conv, nn.Conv2d)
    ref = svd(operator_matrix(conv.weight.detach().double(), conv_geometry(conv, (6, 6))))
    torch.testing.assert_close(spec.singular_values, ref, rtol=1e-9, atol=1e-12)
    kernel = layer_spectra(model, (2, 6, 6), method="kernel").layers[0]
    assert kernel.method == "kernel" and not kernel.exact and (kernel.rows, kernel.cols) == (3, 18)
    with pytest.raises(ProbeError, match="method"):
        layer_spectra(model, (2, 6, 6), method="svd")  # type: ignore[arg-type]
    with pytest.raises(ProbeError, match="input shape"):
        layer_spectra(model, (5, 6, 6))


def test_registered_probe_reads_the_test_input_shape() -> None:
    torch.manual_seed(0)
    model = models.create("mlp", 10, (1, 8, 8), widths=[16])
    x, y = torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4,))
    res = run_probe("layer_spectra", model, ProbeData(test=(x, y)), method="auto", k=1)
    assert isinstance(res, SpectraResult)
    assert [s.name for s in res.layers] == conv_linear_names(model)
    assert res.to_json()["scalars"]["n_layers"] == 2


def test_input_shapes_leave_batchnorm_statistics_alone() -> None:
    torch.manual_seed(0)
    model = models.create("resnet20", 10, (3, 8, 8), width=0.25)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    shapes = layer_input_shapes(model, (3, 8, 8))
    assert model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert shapes["body.0"] == (3, 8, 8) and shapes["head"] == (16,)


# --- wen2020 B.2 ---------------------------------------------------------------------------


def test_compare_spectra_accumulates_std_differences() -> None:
    torch.manual_seed(3)
    a_model = models.create("cnn", 10, (1, 8, 8), width=0.25)
    b_model = models.create("cnn", 10, (1, 8, 8), width=0.25)
    with torch.no_grad():  # flatten b's spectra in two layers: their STDs go down
        for name in ("body.0", "head"):
            layer = dict(b_model.named_modules())[name]
            assert isinstance(layer, nn.Linear | nn.Conv2d)
            layer.weight.mul_(0.3)
    a = layer_spectra(a_model, (1, 8, 8))
    b = layer_spectra(b_model, (1, 8, 8))
    cmp = compare_spectra(a, b)
    d = [sa.std - sb.std for sa, sb in zip(a.layers, b.layers, strict=True)]  # type: ignore[operator]
    dec = [v for v in d if v > 0]
    inc = [-v for v in d if v < 0]
    assert cmp.decreased_count == len(dec) >= 2
    assert cmp.decreased_sum == pytest.approx(sum(dec))
    assert cmp.decreased_mean == pytest.approx(sum(dec) / len(dec))
    assert cmp.increased_count == len(inc)
    assert cmp.increased_sum == pytest.approx(sum(inc))
    assert cmp.net == pytest.approx(sum(d))
    assert float(cmp.cumulative[-1]) == pytest.approx(sum(d))
    assert cmp.source == ("exact",) * len(d)
    if not inc:
        assert math.isnan(cmp.increased_mean) and cmp.ratio == math.inf
    same = compare_spectra(a, a)
    assert same.decreased_count == same.increased_count == 0 and math.isnan(same.ratio)


def test_compare_spectra_uses_circular_stds_for_topk_layers_and_checks_layers() -> None:
    torch.manual_seed(4)
    m1 = models.create("smallcnn", 10, (1, 8, 8), width=0.25)
    m2 = models.create("smallcnn", 10, (1, 8, 8), width=0.25)
    a = layer_spectra(m1, (1, 8, 8), method="topk")
    b = layer_spectra(m2, (1, 8, 8), method="topk")
    cmp = compare_spectra(a, b)
    assert cmp.source[:2] == ("circular", "circular") and cmp.source[2:] == ("exact", "exact")
    assert float(cmp.std_a[0]) == a.layers[0].approx_std
    with pytest.raises(ProbeError, match="allow_approx"):
        compare_spectra(a, b, allow_approx=False)
    other = layer_spectra(models.create("cnn", 10, (1, 8, 8), width=0.25), (1, 8, 8))
    with pytest.raises(ProbeError, match="different layers"):
        compare_spectra(a, other)
