"""Acceptance runs of the adversarial-training issue on real Fashion-MNIST (too slow for CI).

Trains the default CNN (``cnn``, Wong & Kolter 2018) four ways at ℓ∞ ε = 0.1 and evaluates each on the
test set with PGD-20 at ε = 0.1 (robustscope.attacks.evaluate, gradient-masking checks on):

* standard training;
* ``pgd`` (Madry et al.; 10 steps, step 2.5·ε/10) for 10 epochs;
* ``trades`` (β = 5, as shi2020 Table 1) for 10 epochs;
* ``fgsm-rs`` (Wong et al. 2020; step 1.25·ε, one-cycle schedule) for 10 epochs,
  with the catastrophic-overfitting detector on.

Targets (issue 4): standard ≥ 90 % clean and PGD-20 < 5 %; pgd ≥ 80 % clean and ≥ 65 %
PGD-20; trades in the same range with clean accuracy ≥ pgd's at equal robust accuracy;
fgsm-rs within 5 points of pgd's robust accuracy at ≤ 35 % of its training time.

Each run lives in ``examples/out/<name>`` and resumes if interrupted (run the script again).

    python examples/acceptance_adversarial_training.py [--epochs 10] [--n-eval 10000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from robustscope import attacks, data
from robustscope.training import TrainConfig, train

EPS = 0.1


def runs(epochs: int) -> dict[str, TrainConfig]:
    common = {"dataset": "fashion-mnist", "model": "cnn", "seed": 0, "device": "auto"}
    adv = {"eps": EPS, "steps": 10}
    return {
        "standard": TrainConfig(**common, epochs=epochs),
        "pgd": TrainConfig(**common, epochs=epochs, method="pgd", method_params=adv),
        "trades": TrainConfig(
            **common, epochs=epochs, method="trades", method_params={**adv, "beta": 5.0}
        ),
        "fgsm-rs": TrainConfig(
            **common,
            epochs=epochs,
            method="fgsm-rs",
            method_params={"eps": EPS},
            schedule="onecycle",
            lr=0.1,
            co_detect=True,
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--n-eval", type=int, default=10_000)
    ap.add_argument("--out", type=Path, default=Path("examples/out"))
    ap.add_argument("--only", default="", help="comma-separated subset of the runs")
    args = ap.parse_args()
    test = data.load("fashion-mnist", "test").head(args.n_eval)
    results = {}
    for name, config in runs(args.epochs).items():
        if args.only and name not in args.only.split(","):
            continue
        t0 = time.perf_counter()
        result = train(config, args.out / name, resume=True)
        train_time = sum(row["train_time_s"] for row in result.history)
        curve = attacks.evaluate(
            result.model, test.x, test.y, "pgd", [0.0, EPS], steps=20, progress=True
        )
        results[name] = {
            "clean_accuracy": curve.clean_accuracy,
            "pgd20_accuracy": curve.robust_accuracy[EPS],
            "train_time_s": train_time,
            "flags": [f.name for f in curve.flags],
            "stop_reason": result.stop_reason,
            "wall_s": time.perf_counter() - t0,
        }
        print(name, json.dumps(results[name]))
    if "pgd" in results and "fgsm-rs" in results:
        pgd, fast = results["pgd"], results["fgsm-rs"]
        print(
            f"fgsm-rs vs pgd: robust accuracy gap {pgd['pgd20_accuracy'] - fast['pgd20_accuracy']:+.3f}, "
            f"training time ratio {fast['train_time_s'] / pgd['train_time_s']:.2f}"
        )
    (args.out / "acceptance.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
