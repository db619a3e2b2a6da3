"""Linear-head speed (``robustscope.transfer.fit_head``): a 10-class logistic-regression head
on 10,000 × 100 features. Target (issue 14): under 5 s.

Timed in the same run:

* ``lbfgs-torch`` — full-batch float64 L-BFGS on standardized features (one intra-op thread);
* ``sklearn`` — ``LogisticRegression(lbfgs)`` on the same standardized features with the
  matched ``C = 1/(l2·n)`` and the same ``tol`` (the same objective: agreement printed);
* a plain scikit-learn default, ``LogisticRegression()`` on the raw features (C = 1,
  tol = 1e-4, max_iter = 100), the comparison a user would reach for first.

The features are a seeded Gaussian mixture (10 classes, class means N(0, 0.15²), unit noise,
per-feature scales in [0.2, 5] and offsets, so standardization matters) — ReLU-like
non-negativity is applied to half of them.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_transfer.py [--rounds 3] [--threads 2] [--json]

Medians over rounds after one warm-up; the machine is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from machine import describe
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from robustscope.transfer import fit_head


def features(n: int, f: int, k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    z = 0.15 * torch.randn(k, f, generator=g)[y] + torch.randn(n, f, generator=g)
    z = z * (0.2 + 4.8 * torch.rand(f, generator=g)) + 3 * torch.randn(f, generator=g)
    z[:, : f // 2] = z[:, : f // 2].clamp_min(0)
    return z, y


def timed(fn: Callable[[], Any], rounds: int) -> tuple[float, Any]:
    out = fn()  # warm-up
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--l2", type=float, default=1e-4)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # training features and held-out draws of the same mixture
    zall, yall = features(args.n + 2000, args.features, args.classes)
    z, y, zt, yt = zall[: args.n], yall[: args.n], zall[args.n :], yall[args.n :]

    t_torch, h_torch = timed(lambda: fit_head(z, y, l2=args.l2, tol=args.tol), args.rounds)
    t_skl, h_skl = timed(
        lambda: fit_head(z, y, l2=args.l2, solver="sklearn", tol=args.tol), args.rounds
    )

    def plain() -> tuple[LogisticRegression, bool]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            clf = LogisticRegression().fit(z.numpy(), y.numpy())
        return clf, not any(issubclass(c.category, ConvergenceWarning) for c in caught)

    t_plain, (clf, plain_ok) = timed(plain, args.rounds)
    agree = float((h_torch.predict(zt) == h_skl.predict(zt)).double().mean())
    gap = float((h_torch.weight_std - h_skl.weight_std).abs().max()) / float(
        h_torch.weight_std.abs().max()
    )
    found = {
        "machine": describe("numpy", "scikit-learn"),
        "problem": {k: getattr(args, k) for k in ("n", "features", "classes", "l2", "tol")},
        "lbfgs_torch": {**h_torch.to_dict(), "median_s": t_torch},
        "sklearn_matched": {**h_skl.to_dict(), "median_s": t_skl},
        "sklearn_default": {
            "median_s": t_plain,
            "iterations": int(np.max(clf.n_iter_)),
            "converged": plain_ok,
            "test_accuracy": float((clf.predict(zt.numpy()) == yt.numpy()).mean()),
        },
        "torch_over_sklearn_matched": t_torch / t_skl,
        "torch_over_sklearn_default": t_torch / t_plain,
        "prediction_agreement": agree,
        "relative_weight_gap": gap,
        "test_accuracy": {
            "lbfgs_torch": h_torch.accuracy(zt, yt),
            "sklearn": h_skl.accuracy(zt, yt),
        },
        "target_met": t_torch < 5.0,
    }
    if args.json:
        print(json.dumps(found, indent=2))
        return
    m = found["machine"]
    print(f"{m['date']}: {m['nproc']} cores ({m['cpu']}), load {m['load_average']:.2f}, "
          f"torch {m['torch']} ({m['torch_threads']} threads), sklearn {m['sklearn']}")  # fmt: skip
    print(f"{args.n} × {args.features} features, {args.classes} classes, l2 = {args.l2:g}, "
          f"tol = {args.tol:g}")  # fmt: skip
    for name, key, acc in (
        ("lbfgs-torch", "lbfgs_torch", "lbfgs_torch"),
        ("sklearn (matched C)", "sklearn_matched", "sklearn"),
    ):
        r = found[key]
        print(f"  {name:22s} {r['median_s'] * 1e3:8.1f} ms  {r['iterations']:4d} it  "
              f"converged {r['converged']}  test acc {found['test_accuracy'][acc]:.4f}")  # fmt: skip
    p = found["sklearn_default"]
    print(f"  {'sklearn default (raw)':22s} {p['median_s'] * 1e3:8.1f} ms  {p['iterations']:4d} it  "
          f"converged {p['converged']}  test acc {p['test_accuracy']:.4f}")  # fmt: skip
    print(f"  torch / sklearn matched = {found['torch_over_sklearn_matched']:.2f}, "
          f"torch / sklearn default = {found['torch_over_sklearn_default']:.2f}; "
          f"agreement {agree:.4f}, weight gap {gap:.1e}; "
          f"target < 5 s: {'met' if found['target_met'] else 'MISSED'}")  # fmt: skip


if __name__ == "__main__":
    main()
