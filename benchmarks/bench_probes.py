"""Probe speed: robustscope's probes against their floors and the alternatives, one run.

* ``input_fisher`` (exact, Gram form) on a batch vs one forward + input-gradient backward
  on the same batch (a hand-written floor): target ≤ (K + 2) × floor;
* its spectral norm vs power iteration (Zhao et al.) run until every example's λ_max is
  within 1e-4 (relative) of the exact value: target ≥ 10× faster;
* ``cckl`` on 10,000 points (10 classes): target ≤ 5 s;
* ``layer_spectra`` of every layer of ``resnet20`` at 32×32: target ≤ 10 s.

    .venv/bin/python benchmarks/bench_probes.py [--threads 2] [--rounds 3] [--json]

Medians over rounds; the machine description is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from machine import describe, summary

from robustscope import data, models
from robustscope.attacks import attack_mode
from robustscope.attacks.fisher import input_fisher_gram, input_fisher_power
from robustscope.probes import cckl, layer_spectra


def _time(fn: Any, rounds: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_fisher(rounds: int, n: int) -> dict[str, Any]:
    torch.manual_seed(0)
    model = models.create("cnn", 10, (1, 28, 28)).eval()
    x = data.load("fashion-mnist", "test").x[:n] if _has_fmnist() else torch.rand(n, 1, 28, 28)
    y = model(x).argmax(1).detach()

    def floor() -> None:
        with attack_mode(model):
            xg = x.clone().requires_grad_()
            torch.autograd.grad(F.cross_entropy(model(xg), y), xg)

    t_floor = _time(floor, rounds)
    t_gram = _time(lambda: input_fisher_gram(model, x).spectral_norm, rounds)
    exact = input_fisher_gram(model, x).spectral_norm
    # power iteration until every example is within 1e-4 of the exact λ_max
    iters = 1
    while True:
        lam = input_fisher_power(model, x, iters=iters, tol=0.0, seed=0).eigenvalue
        if bool(((lam - exact).abs() <= 1e-4 * exact.abs()).all()) or iters > 4096:
            break
        iters *= 2
    lo, hi = iters // 2, iters
    while hi - lo > 1:  # the fewest iterations reaching 1e-4 everywhere
        mid = (lo + hi) // 2
        lam = input_fisher_power(model, x, iters=mid, tol=0.0, seed=0).eigenvalue
        ok = bool(((lam - exact).abs() <= 1e-4 * exact.abs()).all())
        lo, hi = (lo, mid) if ok else (mid, hi)
    t_power = _time(lambda: input_fisher_power(model, x, iters=hi, tol=0.0, seed=0), rounds)
    return {
        "n": n,
        "K": 10,
        "floor_s": t_floor,
        "gram_s": t_gram,
        "gram_over_floor": t_gram / t_floor,
        "target_gram_over_floor": 12,
        "power_iterations_to_1e-4": hi,
        "power_s": t_power,
        "power_over_gram": t_power / t_gram,
    }


def _has_fmnist() -> bool:
    return any(s.name == "fashion-mnist" and s.present for s in data.available())


def bench_cckl(rounds: int) -> dict[str, Any]:
    torch.manual_seed(0)
    model = models.create("cnn", 10, (1, 28, 28)).eval()
    if _has_fmnist():
        ds = data.load("fashion-mnist", "test")
        x, y = ds.x, ds.y
    else:
        x, y = torch.rand(10_000, 1, 28, 28), torch.randint(0, 10, (10_000,))
    t = _time(lambda: cckl(model, x, y), rounds)
    return {"n": len(x), "cckl_s_including_forward": t, "target_s": 5.0}


def bench_spectra(rounds: int) -> dict[str, Any]:
    torch.manual_seed(0)
    model = models.create("resnet20", 10, (3, 32, 32))
    t = _time(lambda: layer_spectra(model, (3, 32, 32)), rounds)
    res = layer_spectra(model, (3, 32, 32))
    return {"layers": len(res.layers), "layer_spectra_s": t, "target_s": 10.0}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=256, help="batch of the input_fisher benchmark")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    machine = summary(describe())
    out = {
        "machine": machine,
        "input_fisher": bench_fisher(args.rounds, args.n),
        "cckl": bench_cckl(args.rounds),
        "layer_spectra": bench_spectra(args.rounds),
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    f, c, s = out["input_fisher"], out["cckl"], out["layer_spectra"]
    print(machine)
    print(
        f"input_fisher (cnn, n={f['n']}, K=10): floor {f['floor_s']:.4f} s, exact Gram "
        f"{f['gram_s']:.4f} s = {f['gram_over_floor']:.2f} × floor (target ≤ {f['target_gram_over_floor']}) "
        f"{'✓' if f['gram_over_floor'] <= 12 else '✗'}"
    )
    print(
        f"  power iteration to 1e-4 on every example: {f['power_iterations_to_1e-4']} iterations, "
        f"{f['power_s']:.3f} s = {f['power_over_gram']:.1f} × the exact spectral norm (target ≥ 10) "
        f"{'✓' if f['power_over_gram'] >= 10 else '✗'}"
    )
    print(
        f"cckl on {c['n']} points (forward included): {c['cckl_s_including_forward']:.3f} s "
        f"(target ≤ 5) {'✓' if c['cckl_s_including_forward'] <= 5 else '✗'}"
    )
    print(
        f"layer_spectra of resnet20 at 32×32 ({s['layers']} layers): {s['layer_spectra_s']:.2f} s "
        f"(target ≤ 10) {'✓' if s['layer_spectra_s'] <= 10 else '✗'}"
    )


if __name__ == "__main__":
    main()
