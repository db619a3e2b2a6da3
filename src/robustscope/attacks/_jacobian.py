"""Per-example input gradients of several outputs at once (rows of the input Jacobian).

Shared by :mod:`robustscope.attacks.fisher` (the K rows of ∇ₓ log p) and DeepFool in
:mod:`robustscope.attacks.minimal` (the gradients of the candidate logit differences).

Examples in a batch do not interact (the model is in eval mode), so the gradient of
``outputs[:, r].sum()`` with respect to the batch is, row by row, the gradient of each
example's own output r: R backward passes through one forward pass give the R Jacobian
rows of the whole batch without a per-example loop.

On CPU this ("loop", one backward per output) was the fastest or tied of the batched ways
measured (``benchmarks/README.md``, "Design measurements"); ``"batched"``
(``is_grads_batched``) is kept for devices where vectorising the backward pays.
"""

from __future__ import annotations

from typing import Literal

import torch

from robustscope.errors import RobustscopeError

GradMethod = Literal["loop", "batched"]
GRAD_METHODS: tuple[str, ...] = ("loop", "batched")


def output_grads(
    outputs: torch.Tensor, x: torch.Tensor, method: GradMethod = "loop"
) -> torch.Tensor:
    """``∇ₓ outputs[n, r]`` for every example n and output r.

    Args:
        outputs: ``[N, R]``, a differentiable function of ``x`` in which example n's row
            depends only on ``x[n]`` (true of any model in eval mode).
        x: ``[N, ...]`` the leaf the gradients are taken with respect to (requires grad).
        method: ``"loop"`` (R backward passes) or ``"batched"`` (one vectorised backward,
            ``torch.autograd.grad(..., is_grads_batched=True)``).

    Returns:
        ``[N, R, ...]`` detached, in ``x``'s dtype. The autograd graph of ``outputs`` is freed.
    """
    n, r = outputs.shape
    if r == 0:
        return x.new_zeros((n, 0, *x.shape[1:]))
    if method == "loop":
        rows = []
        for k in range(r):
            (g,) = torch.autograd.grad(outputs[:, k].sum(), x, retain_graph=k < r - 1)
            rows.append(g)
        return torch.stack(rows, dim=1).detach()
    if method == "batched":
        eye = torch.eye(r, dtype=outputs.dtype, device=outputs.device)
        cot = eye[:, None, :].expand(r, n, r)
        (g,) = torch.autograd.grad(outputs, x, grad_outputs=cot, is_grads_batched=True)
        return g.transpose(0, 1).detach()
    raise RobustscopeError(
        f"unknown gradient method {method!r}; valid methods: {', '.join(GRAD_METHODS)}"
    )
