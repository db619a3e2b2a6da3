"""Inversion speed: ``robustscope.visual.invert`` (terzi2021 eq. 3: Adam on ‖z̄ − f(x′)‖₂,
cosine-decayed step size, box projection, L_inv recorded per example and iteration) on a
batch of 64 Fashion-MNIST test images with the default CNN
(``models.create("cnn", 10, (1, 28, 28))``) for 500 iterations (target, issue 14: < 30 s
on 2 CPU cores), against a minimal hand-written PyTorch loop doing the same iterations
(same model in eval mode with frozen weights, start, Adam, clamp; nothing recorded) as
the floor. Rounds alternate the two; the figures are medians.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_inversion.py [--n 64] [--steps 500] [--rounds 3] [--threads 2] [--json]

The machine description is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from machine import describe

from robustscope import data, models
from robustscope.data.box import UNIT
from robustscope.visual import invert
from robustscope.visual.inversion import DEFAULT_LR, DEFAULT_SIGMA, inversion_start


def floor_loop(
    model: torch.nn.Module, z: torch.Tensor, start: torch.Tensor, steps: int
) -> torch.Tensor:
    """The hand-written floor: the same Adam iterations, nothing recorded, constant lr."""
    x = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=DEFAULT_LR)
    for _ in range(steps):
        loss = torch.linalg.vector_norm(model.features(x) - z, dim=1).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0.0, 1.0)
    return x.detach()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=64, help="images inverted together")
    ap.add_argument("--steps", type=int, default=500, help="iterations")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of both loops")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = models.create("cnn", 10, (1, 28, 28)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        x = data.load("fashion-mnist", "test").x[: args.n]
    except Exception:  # no data files: random images time the same
        x = torch.rand(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z = model.features(x)
    start = inversion_start(tuple(x.shape), UNIT, sigma=DEFAULT_SIGMA, seed=0, dtype=x.dtype)
    ours_t: list[float] = []
    floor_t: list[float] = []
    print(f"inversion of {len(x)} images, {args.steps} iterations, cnn (1, 28, 28)", flush=True)
    for r in range(args.rounds):
        t0 = time.perf_counter()
        res = invert(model, z, x0=start, steps=args.steps, seed=0)
        ours_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        floor_loop(model, z, start, args.steps)
        floor_t.append(time.perf_counter() - t0)
        print(
            f"  round {r + 1}: robustscope {ours_t[-1]:.2f} s, floor {floor_t[-1]:.2f} s "
            f"(L_inv {float(res.mean_loss[0]):.3g} → {float(res.mean_loss[-1]):.3g})",
            flush=True,
        )
    ours, floor = statistics.median(ours_t), statistics.median(floor_t)
    ok = "✓" if ours < 30 else "✗"
    print(
        f"median: robustscope {ours:.2f} s {ok} (target < 30 s), floor {floor:.2f} s, "
        f"ratio {ours / floor:.3f}"
    )
    info = describe()
    print("machine:", info)
    if args.json:
        print(
            json.dumps(
                {
                    "n": len(x),
                    "steps": args.steps,
                    "robustscope_s": ours_t,
                    "floor_s": floor_t,
                    "ratio": ours / floor,
                    "machine": info,
                }
            )
        )


if __name__ == "__main__":
    main()
