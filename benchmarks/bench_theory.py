"""tsipras2019 theory lab timings (issue 12): the closed forms of 1,000 linear classifiers
(target < 1 s) against a Monte-Carlo estimate of the same numbers on 10⁵ draws and against a
per-classifier Python loop of the same formula (the hand-written floor), and the frontier
(target < 2 s) against a brute-force grid over the same three reduced numbers at about the
same resolution. Prints medians over rounds and the ratios.

    .venv/bin/python benchmarks/bench_theory.py --rounds 5
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import numpy as np
from scipy.special import ndtr

from robustscope.theory import frontier
from robustscope.theory.tsipras import Distribution, accuracy, monte_carlo


def median_time(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def loop_floor(dist: Distribution, ws: np.ndarray, eps: float) -> list[tuple[float, float]]:
    """The same closed form written plainly, one classifier at a time."""
    out = []
    for w in ws:
        a, v = float(w[0]), w[1:]
        S, q, l1 = float(v.sum()), math.sqrt(float(v @ v)), float(np.abs(v).sum())
        res = []
        for shift in (0.0, eps * (abs(a) + l1)):
            acc = 0.0
            for s, ps in ((1, dist.p), (-1, 1 - dist.p)):  # no bias: both classes alike
                acc += ps * float(ndtr((s * a + dist.eta * S - shift) / q))
            res.append(acc)
        out.append((res[0], res[1]))
    return out


def brute_frontier(dist: Distribution, eps: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A dense grid over (a, ρ, β), no local search: n points per axis."""
    search = frontier._Search.create(dist, eps, "linf", "linear")
    u = np.linspace(0, 1, n)[:, None, None]
    r = np.linspace(search.lo[1], 0, n)[None, :, None]
    b = np.linspace(0, search.dense_bias, n)[None, None, :]
    s, rob = search.evaluate(u, r, b)[:2]
    keep = frontier.pareto(s, rob)
    return s[keep], rob[keep]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    dist = Distribution.create(1000, 0.95, 0.1)
    eps = 0.2
    rng = np.random.default_rng(0)
    ws = np.abs(rng.normal(size=(1000, dist.d + 1)))
    t_closed = median_time(lambda: accuracy(dist, ws, eps=[eps]), args.rounds)
    t_loop = median_time(lambda: loop_floor(dist, ws, eps), args.rounds)
    t_mc = median_time(lambda: monte_carlo(dist, ws, eps=[eps], n=100_000), 1)
    t_front = median_time(lambda: frontier.frontier(dist, eps), args.rounds)
    ref = frontier.frontier(dist, eps, grid={"a": 321, "rho": 64, "bias": 400}, rounds=14)
    front = frontier.frontier(dist, eps)
    t_brute = median_time(lambda: brute_frontier(dist, eps, 160), 1)
    bs, br = brute_frontier(dist, eps, 160)

    def worst_gap(s: np.ndarray, r: np.ndarray) -> float:
        got = np.array(
            [r[s >= t - 1e-5].max() if (s >= t - 1e-5).any() else -1 for t in ref.standard]
        )
        return float(np.max(ref.robust - got))

    print(f"closed forms, 1,000 classifiers, d = 1000: {1e3 * t_closed:.1f} ms (target < 1000 ms)")
    print(
        f"  per-classifier loop floor: {1e3 * t_loop:.1f} ms  (ratio loop/ours {t_loop / t_closed:.1f}×)"
    )
    print(
        f"  Monte Carlo 1e5 draws:     {1e3 * t_mc:.1f} ms  (ratio MC/ours {t_mc / t_closed:.1f}×)"
    )
    print(
        f"frontier: {1e3 * t_front:.0f} ms (target < 2000 ms), {len(front.standard)} points, "
        f"worst shortfall vs a fine search {worst_gap(front.standard, front.robust):.1e}"
    )
    print(
        f"  brute 160³ grid: {1e3 * t_brute:.0f} ms (ratio {t_brute / t_front:.1f}×), "
        f"worst shortfall {worst_gap(bs, br):.1e}"
    )


if __name__ == "__main__":
    main()
