"""terzi2021 Lemma 0.8, numerically: for ``y = A z + b`` with ``A ∈ R^{k×p}``, ``k < p``, on
top of a feature extractor ``z = f(x)``, ``tr F_{y|x} ≤ tr F_{z|x}``.

The Fishers. terzi2021 Def. 0.2 defines ``F_{z|x} = E_x S(z|x)``, the Fisher information of
``p_w(z|x)`` about ``x``; the lab's convention (``probes.representation``) makes the
deterministic network a Gaussian channel ``p(z|x) = N(f(x), I)``, so ``S(z|x) = JᵀJ`` with
``J = ∂f/∂x``. The head then acts on that random ``z``: ``y = Az + b ~ N(A f(x) + b, AAᵀ)``,
whose Fisher about ``x`` is ``Jᵀ Aᵀ(AAᵀ)⁻¹A J = Jᵀ P J`` with ``P`` the orthogonal
projection onto A's row space (AAᵀ is invertible when A has full row rank k, which needs
k ≤ p). Since ``0 ⪯ P ⪯ I``, ``F_{y|x} ⪯ F_{z|x}`` (the data-processing inequality for Fisher
information: the head can only lose information), strictly in trace unless A's row space
holds the range of every J — generic for ``k < p`` — and with equality when k = p (A
invertible). It does not depend on A's scale.

When it does NOT hold: reading ``F_{y|x}`` as fresh unit noise on the logits, ``N(A f(x) +
b, I)``, gives ``tr Jᵀ AᵀA J``, which exceeds ``tr F_{z|x}`` as soon as ‖A‖₂ is large — the
lemma is a statement about the noise propagated through the head, which the last test
shows.

Every trace is computed exactly (full Jacobians) in float64.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustscope import data, models
from robustscope.probes.representation import representation_fisher
from robustscope.transfer import extract_features, fit_head


def jacobians(f: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``[N, p, d]`` exact Jacobians of ``f`` at each row of ``x`` ``[N, d]``."""
    return torch.func.vmap(torch.func.jacrev(lambda v: f(v[None])[0]))(x).detach()


def traces(jac: torch.Tensor, a: torch.Tensor) -> tuple[float, float, torch.Tensor]:
    """``tr F_{z|x}``, ``tr F_{y|x}`` (data-averaged) and ``F_{z|x} − F_{y|x}``."""
    proj = a.T @ torch.linalg.solve(a @ a.T, a)  # P = Aᵀ(AAᵀ)⁻¹A
    f_z = torch.einsum("npd,npe->de", jac, jac) / len(jac)
    f_y = torch.einsum("npd,pq,nqe->de", jac, proj, jac) / len(jac)
    return float(torch.trace(f_z)), float(torch.trace(f_y)), f_z - f_y


@pytest.fixture(scope="module")
def extractor() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    f = nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 6), nn.Tanh()).double()
    return f, jacobians(f, torch.randn(40, 12, dtype=torch.float64))


@pytest.mark.parametrize("k", [1, 3, 5])
def test_lemma_0_8_a_narrower_head_loses_fisher_information(
    extractor: tuple[nn.Module, torch.Tensor], k: int
) -> None:
    _, jac = extractor
    g = torch.Generator().manual_seed(k)
    a = 5.0 * torch.randn(k, 6, generator=g, dtype=torch.float64)  # ‖A‖₂ ≫ 1: scale is moot
    tr_z, tr_y, diff = traces(jac, a)
    assert tr_y < tr_z * (1 - 1e-3)  # strictly: fails if the inequality were reversed
    assert float(torch.linalg.eigvalsh(diff).min()) > -1e-10 * tr_z  # F_y ⪯ F_z
    # the bound does not depend on the head's scale (AAᵀ undoes it)
    assert traces(jac, 1e-3 * a)[1] == pytest.approx(tr_y, rel=1e-9)


def test_equality_when_the_head_keeps_every_dimension(
    extractor: tuple[nn.Module, torch.Tensor],
) -> None:
    _, jac = extractor
    a = torch.randn(6, 6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    tr_z, tr_y, _ = traces(jac, a)  # k = p, A invertible: P = I
    assert tr_y == pytest.approx(tr_z, rel=1e-9)


def test_the_lemma_is_about_propagated_noise_not_fresh_noise(
    extractor: tuple[nn.Module, torch.Tensor],
) -> None:
    """With fresh unit noise on the logits (``F = Jᵀ AᵀA J``) a large head would *add*
    information: the inequality holds for the propagated-noise Fisher only."""
    _, jac = extractor
    a = 5.0 * torch.randn(3, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    tr_z, tr_y, _ = traces(jac, a)
    fresh = float(torch.einsum("npd,kp,kq,nqd->", jac, a, a, jac)) / len(jac)
    assert tr_y < tr_z < fresh


def test_lemma_0_8_for_a_fitted_transfer_head() -> None:
    """A real transferred classifier: a digits MLP's features (p = 32) and a 10-class head
    (k = 10) fitted on them; ``tr F_{z|x}`` also equals the lab's probe."""
    torch.manual_seed(1)
    net = models.create("mlp", 10, (1, 8, 8), widths=[32])
    ds = data.load("digits", "train").head(400)
    head = fit_head(extract_features(net, ds), ds.y, l2=1e-3)
    net64 = net.double()
    x = ds.x[:30].double()
    jac = torch.func.vmap(torch.func.jacrev(lambda v: net64.features(v[None])[0]))(x)
    jac = jac.detach().reshape(30, 32, -1)
    tr_z, tr_y, _ = traces(jac, head.weight)
    assert 0 < tr_y < tr_z
    probe = representation_fisher(net.float(), ds.x[:30], method="exact")
    assert float(probe.trace.mean()) == pytest.approx(tr_z, rel=1e-4)
