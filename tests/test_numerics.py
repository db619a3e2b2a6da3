"""robustscope.numerics against float64 brute force: power iteration, sign fixing, the Fisher
quadratic form, per-example reshapes."""

from __future__ import annotations

import math

import pytest
import torch

from robustscope.numerics import (
    fisher_quadratic_form,
    fix_sign,
    gaussian_start,
    per_example,
    power_iteration,
)

F64 = torch.float64


def psd_batch(seed: int, n: int, d: int, rank: int | None = None) -> torch.Tensor:
    """``[n, d, d]`` random PSD matrices ``AᵀA`` (rank ≤ ``rank``) with a clear top gap."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, rank or d, d, generator=gen, dtype=F64)
    m = a.transpose(1, 2) @ a
    top = torch.linalg.eigh(m).eigenvectors[:, :, -1]
    # widen the gap between λ₁ and λ₂ so that a few hundred iterations converge
    return m + 3.0 * m.diagonal(dim1=1, dim2=2).mean(1)[:, None, None] * (
        top[:, :, None] * top[:, None, :]
    )


def matvec_of(m: torch.Tensor):  # type: ignore[no-untyped-def]
    return lambda v: torch.einsum("nij,nj->ni", m, v)


# --- power iteration -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_power_iteration_matches_eigh(seed: int) -> None:
    m = psd_batch(seed, 5, 7)
    start = gaussian_start((5, 7), seed)
    top = power_iteration(matvec_of(m), start, iters=2000, tol=1e-15)
    evals, evecs = torch.linalg.eigh(m)
    torch.testing.assert_close(top.value, evals[:, -1], rtol=1e-12, atol=0)
    ref = fix_sign(evecs[:, :, -1])
    torch.testing.assert_close(top.vector, ref, rtol=0, atol=1e-7)
    assert torch.allclose(top.vector.norm(dim=1), torch.ones(5, dtype=F64))
    assert bool((top.rel_change <= 1e-15).all())
    assert bool((top.iterations < 2000).all())


def test_each_example_stops_on_its_own_and_is_independent_of_the_batch() -> None:
    # examples with very different gaps: their iteration counts differ, and an example run
    # alone (or in another batch, at another position) gives exactly the same result
    m = torch.cat([psd_batch(3, 3, 6), psd_batch(4, 3, 6, rank=2)])
    start = gaussian_start((6,), 11).expand(6, 6)
    batch = power_iteration(matvec_of(m), start, iters=500, tol=1e-10)
    assert int(batch.iterations.min()) < int(batch.iterations.max())
    for i in range(len(m)):
        alone = power_iteration(matvec_of(m[i : i + 1]), start[i : i + 1], iters=500, tol=1e-10)
        assert torch.equal(alone.iterations, batch.iterations[i : i + 1])
        torch.testing.assert_close(alone.value, batch.value[i : i + 1], rtol=1e-14, atol=0)
        torch.testing.assert_close(alone.vector, batch.vector[i : i + 1], rtol=0, atol=1e-14)
    order = torch.tensor([4, 0, 5, 2])
    other = power_iteration(matvec_of(m[order]), start[order], iters=500, tol=1e-10)
    assert torch.equal(other.iterations, batch.iterations[order])
    torch.testing.assert_close(other.value, batch.value[order], rtol=1e-14, atol=0)


def test_power_iteration_reports_iterations_and_change() -> None:
    m = psd_batch(5, 3, 5)
    start = gaussian_start((3, 5), 0)
    one = power_iteration(matvec_of(m), start, iters=1, tol=0.0)
    assert one.iterations.tolist() == [1, 1, 1] and bool(one.rel_change.isnan().all())
    # one product: λ is the Rayleigh quotient of the normalised start
    v0 = start / start.norm(dim=1, keepdim=True)
    torch.testing.assert_close(one.value, torch.einsum("ni,nij,nj->n", v0, m, v0))
    three = power_iteration(matvec_of(m), start, iters=3, tol=0.0)
    assert three.iterations.tolist() == [3, 3, 3] and bool((three.rel_change > 0).all())


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_zero_and_rank_one_operators(dtype: torch.dtype) -> None:
    zero = power_iteration(
        lambda v: torch.zeros_like(v), torch.ones(2, 4, dtype=dtype), iters=9, tol=0
    )
    # vᵀMv = 0 for a PSD M means Mv = 0: one product settles it
    assert zero.value.tolist() == [0.0, 0.0] and zero.iterations.tolist() == [1, 1]
    assert torch.equal(zero.vector, torch.zeros(2, 4, dtype=dtype))
    assert zero.rel_change.tolist() == [0.0, 0.0]
    # a zero operator beside a non-zero one in the same batch (float32 gave NaN here before)
    scale = torch.tensor([[0.0], [2.0]], dtype=dtype)
    mixed = power_iteration(lambda v: scale * v, torch.ones(2, 3, dtype=dtype), iters=9, tol=0)
    assert float(mixed.value[0]) == 0.0 and float(mixed.value[1]) == pytest.approx(2.0, rel=1e-6)
    assert bool(torch.isfinite(mixed.vector).all())
    assert torch.equal(mixed.vector[0], torch.zeros(3, dtype=dtype))
    u = torch.tensor([[0.0, -3.0, 4.0]], dtype=F64)
    rank_one = power_iteration(
        lambda v: u.to(dtype) * (v * u.to(dtype)).sum(1, keepdim=True),
        torch.ones(1, 3, dtype=dtype),
        iters=50,
        tol=0,
    )
    torch.testing.assert_close(rank_one.value, torch.tensor([25.0], dtype=F64))
    expected = torch.tensor([[0.0, -0.6, 0.8]], dtype=dtype)
    torch.testing.assert_close(rank_one.vector, expected)


def test_power_iteration_refuses_bad_arguments() -> None:
    mv = matvec_of(psd_batch(0, 1, 2))
    with pytest.raises(ValueError, match="iters"):
        power_iteration(mv, torch.ones(1, 2, dtype=F64), iters=0, tol=0)
    with pytest.raises(ValueError, match="tol"):
        power_iteration(mv, torch.ones(1, 2, dtype=F64), iters=1, tol=-1)
    with pytest.raises(ValueError, match=r"expand\(N, d\)"):
        power_iteration(mv, torch.ones(2, dtype=F64), iters=1, tol=0)


# --- sign convention, starts, reshapes --------------------------------------------------------


def test_fix_sign_convention() -> None:
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(20, 3, 4, generator=gen, dtype=F64)
    out = fix_sign(v)
    for row, ref in zip(out, v, strict=True):
        flat = ref.flatten()
        k = int(flat.abs().argmax())
        expected = flat if flat[k] > 0 else -flat
        assert torch.equal(row.flatten(), expected)
    assert torch.equal(fix_sign(-v), out)  # the two signs of a vector map to one
    tie = torch.tensor([[1.0, -1.0], [-1.0, 1.0], [0.0, 0.0]])
    assert fix_sign(tie).tolist() == [[1.0, -1.0], [1.0, -1.0], [0.0, 0.0]]
    assert fix_sign(torch.zeros(2, 0)).shape == (2, 0)
    assert fix_sign(torch.zeros(0, 3, 2)).shape == (0, 3, 2)


def test_gaussian_start_is_seeded_dtype_and_device_independent() -> None:
    a = gaussian_start((4, 3), 5)
    assert a.dtype == F64 and torch.equal(a, gaussian_start((4, 3), 5))
    assert torch.equal(gaussian_start((4, 3), 5, dtype=torch.float32), a.float())
    assert not torch.equal(a, gaussian_start((4, 3), 6))
    state = torch.random.get_rng_state()
    gaussian_start((3,), 1)
    assert torch.equal(state, torch.random.get_rng_state())  # a seed never touches the global RNG


def test_per_example_broadcasts() -> None:
    s = torch.tensor([2.0, 3.0])
    x = torch.ones(2, 3, 4, 5)
    assert per_example(s, x).shape == (2, 1, 1, 1)
    assert torch.equal((per_example(s, x) * x)[1], torch.full((3, 4, 5), 3.0))
    assert per_example(s, torch.ones(2)).shape == (2,)


# --- Fisher quadratic form ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_fisher_quadratic_form_matches_the_explicit_matrix(seed: int) -> None:
    # F = Σ_k p_k g_k g_kᵀ with g_k = ∇ log p_k of a linear softmax model z = W x, built as a
    # d × d matrix in float64 from the Jacobian of log-softmax
    gen = torch.Generator().manual_seed(seed)
    k, d = 4, 6
    w = torch.randn(k, d, generator=gen, dtype=F64)
    x = torch.randn(d, generator=gen, dtype=F64)
    v = torch.randn(d, generator=gen, dtype=F64)
    jac = torch.autograd.functional.jacobian(lambda t: torch.log_softmax(w @ t, 0), x)
    p = torch.softmax(w @ x, 0)
    fisher = sum(p[j] * torch.outer(jac[j], jac[j]) for j in range(k))
    assert isinstance(fisher, torch.Tensor)
    ref = float(v @ fisher @ v)
    got = fisher_quadratic_form(p[None], (jac @ v)[None])
    assert got.dtype == F64 and got.shape == (1,)
    assert float(got[0]) == pytest.approx(ref, rel=1e-12)

    # the Fisher form is also the second derivative of KL(p(x) ‖ p(x + t v)) at t = 0
    def kl(t: torch.Tensor) -> torch.Tensor:
        q = torch.log_softmax(w @ (x + t * v), 0)
        return (p * (torch.log(p) - q)).sum()

    hess = torch.autograd.functional.hessian(kl, torch.zeros((), dtype=F64))
    assert float(hess) == pytest.approx(ref, rel=1e-9)
    with pytest.raises(ValueError, match=r"\[N, K\]"):
        fisher_quadratic_form(p, jac @ v)
    assert math.isfinite(float(got[0]))
