"""AutoAttack: robustscope's ``autoattack`` vs torchattacks' ``AutoAttack(version="standard")``.

On the same models and the same test points (the first ``--n`` of the Fashion-MNIST test
set), each case (model, norm, ε) runs, in one session and in a rotated order per round:

* robustscope ``autoattack`` (standard: APGD-CE, APGD-T with 9 targets, FAB-T with 9
  targets — 100 iterations each — and Square with 5,000 queries, each on the points still
  robust), with the time and the points broken by each stage;
* torchattacks ``AutoAttack(version="standard")`` as shipped (its APGD, APGD-T and FAB run
  their class default of 10 iterations; Square 5,000 queries);
* torchattacks' same four attacks at the paper's budget (``--ta-full``: 100 iterations for
  APGD, APGD-T and FAB, chained by its ``MultiAttack`` as its AutoAttack does);
* robustscope ``autoattack`` at torchattacks' budget (``--short``: ``steps=10``);
* robustscope ``autoattack-lite`` (APGD-CE + APGD-T), the fast check.

Every figure of strength is computed here, on the returned points, with the same model:
robust accuracy over all n points, and every returned point is checked to lie in
ball(x, ε) ∩ [0, 1]. Target (issue 15): robustscope's robust accuracy ≤ torchattacks'
standard AutoAttack in at most its time.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_autoattack.py --threads 1
    PYTHONPATH=src .venv/bin/python benchmarks/bench_autoattack.py \\
        --checkpoint cnn-pgd0.2=runs/tradeoff-fmnist/runs/4408d10b764b --cases cnn-pgd0.2:linf:0.2

The models are trained once (``robustscope.training.train``) into ``benchmarks/out/models/``
(git-ignored) and reused; ``--checkpoint NAME=PATH`` uses a checkpoint instead (e.g. the run
of ``make demo``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from machine import describe, load_avg
from torch import nn

from robustscope import checkpoint, data
from robustscope.attacks import AutoAttack, AutoAttackLite
from robustscope.training import TrainConfig, train

ROOT = Path(__file__).resolve().parent
MODEL_DIR = ROOT / "out" / "models"

#: the ``tradeoff-fmnist`` preset's training recipe (src/robustscope/studies/presets.py):
#: the default CNN, 4 epochs on the first 24,000 images, SGD lr 0.05 cosine (the defaults);
#: its ``track`` measurements do not change the weights and are left out
_PRESET = dict(model="cnn", epochs=4, train_subset=24_000, seed=0)
_PGD = dict(steps=10, eps_warmup=0.3)
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "cnn-pgd0.2": (
        "fmnist-cnn-pgd0.2",
        dict(_PRESET, method="pgd", method_params=dict(_PGD, eps=0.2)),
    ),
    "cnn-pgd0.1": (
        "fmnist-cnn-pgd0.1",
        dict(_PRESET, method="pgd", method_params=dict(_PGD, eps=0.1)),
    ),
    "cnn-std": ("fmnist-cnn-std", dict(_PRESET, method="standard")),
}
#: (model, norm, ε): the demo's robust model in ℓ∞ and ℓ2, and the standard model in both
DEFAULT_CASES = "cnn-pgd0.2:linf:0.2,cnn-std:linf:0.03,cnn-pgd0.2:l2:1.5,cnn-std:l2:0.5"
ATOL = 1e-5
TA_NORM = {"linf": "Linf", "l2": "L2"}


# --- utilities -------------------------------------------------------------------------------


def load_model(name: str, checkpoints: dict[str, str]) -> nn.Module:
    """The model ``name``: the given checkpoint, or trained into benchmarks/out/models/ once."""
    if name in checkpoints:
        model, _ = checkpoint.load(checkpoints[name])
        return model.eval()
    if name not in MODELS:
        raise SystemExit(f"unknown model {name!r}; known: {', '.join(MODELS)} (or --checkpoint)")
    run, kw = MODELS[name]
    out = MODEL_DIR / run
    config = TrainConfig(dataset="fashion-mnist", device="cpu", **kw)
    history = out / "history.json"
    done = history.exists() and len(json.loads(history.read_text())) >= config.epochs
    if not done:
        print(f"training {name} into {out} ({config.epochs} epochs) ...", flush=True)
        t0 = time.perf_counter()
        train(config, out, resume=True, progress=False, log=None)
        print(f"  trained in {time.perf_counter() - t0:.0f} s", flush=True)
    model, _ = checkpoint.load(out)
    return model.eval()


@torch.no_grad()
def correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(1) == y


def outside(x_adv: torch.Tensor, x: torch.Tensor, norm: str, eps: float) -> int:
    flat = (x_adv - x).reshape(len(x), -1)
    dist = flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)
    bad = (dist > eps + ATOL) | (x_adv.reshape(len(x), -1).amin(1) < -ATOL)
    bad |= x_adv.reshape(len(x), -1).amax(1) > 1 + ATOL
    return int(bad.sum())


# --- the attacks -----------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    times: list[float] = field(default_factory=list)
    robust: list[int] = field(default_factory=list)
    outside: list[int] = field(default_factory=list)
    stages: list[list[dict[str, Any]]] = field(default_factory=list)
    robust_sets: list[torch.Tensor] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def make_rows(
    model: nn.Module, norm: str, eps: float, seed: int, ta_full: bool, short: bool, lite: bool
) -> list[Row]:
    import torchattacks  # type: ignore[import-not-found]

    ours = AutoAttack(model, eps, norm=norm, seed=seed)
    rows = [Row("robustscope autoattack", ours)]
    rows.append(
        Row(
            "torchattacks AutoAttack (standard)",
            torchattacks.AutoAttack(
                model, norm=TA_NORM[norm], eps=eps, version="standard", n_classes=10, seed=seed
            ),
        )
    )
    if ta_full:
        kw = dict(eps=eps, norm=TA_NORM[norm], seed=seed, n_restarts=1)
        full = torchattacks.MultiAttack(
            [
                torchattacks.APGD(model, loss="ce", steps=100, **kw),
                torchattacks.APGDT(model, steps=100, n_classes=10, **kw),
                torchattacks.FAB(model, steps=100, multi_targeted=True, n_classes=10, **kw),
                torchattacks.Square(model, n_queries=5000, **kw),
            ]
        )
        rows.append(Row("torchattacks, paper budget (100 iterations)", full))
    if short:
        rows.append(
            Row(
                "robustscope autoattack, steps=10 (torchattacks' budget)",
                AutoAttack(model, eps, norm=norm, steps=10, seed=seed),
            )
        )
    if lite:
        rows.append(
            Row("robustscope autoattack-lite", AutoAttackLite(model, eps, norm=norm, seed=seed))
        )
    return rows


def bench_case(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str, eps: float, args: Any
) -> dict[str, Any]:
    clean = correct(model, x, y)
    rows: list[Row] = []
    for r in range(args.rounds):
        # round r: every attack with seed + r (fresh attacks: torchattacks fixes its seeds when
        # built), in an order rotated per round
        fresh = make_rows(
            model, norm, eps, args.seed + r, args.ta_full, args.short, not args.no_lite
        )
        if not rows:
            rows = fresh
        k = r % len(rows)
        for row, new in (
            list(zip(rows, fresh, strict=True))[k:] + list(zip(rows, fresh, strict=True))[:k]
        ):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                x_adv = new.run(x, y)
                row.times.append(time.perf_counter() - t0)
            ok = clean & correct(model, x_adv, y)
            row.robust.append(int(ok.sum()))
            row.outside.append(outside(x_adv, x, norm, eps))
            row.robust_sets.append(ok)
            if isinstance(new.run, AutoAttack):
                row.stages.append([vars(s) for s in new.run.stages_run])
            print(
                f"    seed {args.seed + r}: {row.name}: robust {int(ok.sum())}/{len(x)}, "
                f"{row.times[-1]:.1f} s (load {load_avg():.1f})",
                flush=True,
            )
    ta = rows[1]
    n = len(x)
    out_rows = []
    for row in rows:
        d: dict[str, Any] = {
            "attack": row.name,
            "median_s": row.median,
            "times_s": row.times,
            "time_vs_torchattacks": row.median / ta.median,
            "robust_accuracy": [c / n for c in row.robust],
            "mean_robust_accuracy": statistics.mean(row.robust) / n,
            "outside_ball": sum(row.outside),
        }
        if row.stages:
            d["stages"] = row.stages
        if row is not ta:  # per seed: points robust here that torchattacks broke (same seed)
            d["robust_here_broken_by_torchattacks"] = [
                int((mine & ~theirs).sum())
                for mine, theirs in zip(row.robust_sets, ta.robust_sets, strict=True)
            ]
        out_rows.append(d)
    return {"clean_accuracy": float(clean.double().mean()), "rows": out_rows}


def print_case(title: str, res: dict[str, Any], n: int) -> None:
    print(f"\n[{title}] (n={n}, clean accuracy {res['clean_accuracy']:.1%})\n")
    print(
        "| attack | robust acc (per seed) | mean | median s | time / torchattacks "
        "| outside ball | robust here, broken by torchattacks (per seed) |"
    )
    print("|---|---|---|---|---|---|---|")
    for d in res["rows"]:
        acc = " / ".join(f"{a:.1%}" for a in d["robust_accuracy"])
        extra = d.get("robust_here_broken_by_torchattacks", "—")
        extra = extra if isinstance(extra, str) else " / ".join(map(str, extra))
        print(
            f"| {d['attack']} | {acc} | {d['mean_robust_accuracy']:.2%} | {d['median_s']:.1f} "
            f"| {d['time_vs_torchattacks']:.2f}× | {d['outside_ball']} | {extra} |"
        )
    for d in res["rows"]:
        for r, stages in enumerate(d.get("stages", [])):
            parts = [
                f"{s['stage']} {s['broken']}/{s['attacked']} in {s['seconds']:.1f} s"
                for s in stages
            ]
            print(f"\n{d['attack']}, round {r} stages (broken/attacked): " + ", ".join(parts))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="test points (the first n)")
    ap.add_argument(
        "--cases", default=DEFAULT_CASES, help="MODEL:NORM:EPS,... (default: %(default)s)"
    )
    ap.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="use this checkpoint (file or run directory) as model NAME instead of training it",
    )
    ap.add_argument(
        "--rounds", type=int, default=1, help="rounds per case, round r with seed + r (median time)"
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of every attack in the first round")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument(
        "--ta-full",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run torchattacks' attacks at the paper's 100 iterations",
    )
    ap.add_argument(
        "--short",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run robustscope's autoattack at torchattacks' 10 iterations",
    )
    ap.add_argument("--no-lite", action="store_true", help="skip autoattack-lite")
    ap.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    stdout = sys.stdout
    if args.json:  # the tables go to stderr, the JSON object alone to stdout
        sys.stdout = sys.stderr
    checkpoints = dict(item.split("=", 1) for item in args.checkpoint)
    info = describe("torchattacks")
    date = info["date"]
    print(f"robustscope AutoAttack benchmark — {date}")
    print(
        f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']} "
        f"({info['torch_threads']} threads), python {info['python']}, "
        f"torchattacks {info['torchattacks']}"
    )
    test = data.load("fashion-mnist", "test")
    x, y = test.x[: args.n].contiguous(), test.y[: args.n].long()
    report: dict[str, Any] = {"benchmark": "autoattack", "date": date, "machine": info, "cases": {}}
    models: dict[str, nn.Module] = {}
    t_start = time.perf_counter()
    for case in args.cases.split(","):
        name, norm, eps_text = case.split(":")
        eps = float(eps_text)
        if name not in models:
            models[name] = load_model(name, checkpoints)
        title = f"{name} {norm} ε={eps:g}"
        print(f"\n{title} ...", flush=True)
        res = bench_case(models[name], x, y, norm, eps, args)
        report["cases"][title] = res
        print_case(title, res, len(x))
    report["seconds"] = time.perf_counter() - t_start
    print(f"\ntotal {report['seconds']:.0f} s")
    if args.json:
        stdout.write(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
