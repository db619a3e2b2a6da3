"""Adversarial-training epoch time: robustscope's methods vs minimal hand-written PyTorch loops.

For each method (``pgd``, ``trades``, ``fgsm-rs``, ``free``) one epoch of robustscope's
``train`` is compared with a hand-written loop doing the same work on the same data, model
(same seed, same initial weights), batch size and optimizer (SGD, momentum 0.9, weight decay
5e-4, constant learning rate):

* PGD-AT floor: per batch, ``model.eval()``; a uniform random start in the ε-ball; ``steps``
  times (``requires_grad_``, CE, ``torch.autograd.grad``, sign step of ``2.5 ε / steps``,
  clamp to ball ∩ [0, 1]); ``model.train()``; CE at x_adv, ``zero_grad``, backward, step.
* TRADES floor: per batch, ``model.eval()``; the clean prediction (no grad); start
  ``x + 0.001·N(0, I)``; ``steps`` KL steps as above; ``model.train()``;
  ``CE(f(x), y) + β · KL(f(x) ‖ f(x′))`` (batchmean), ``zero_grad``, backward, step.
* FGSM-RS floor: a uniform random start, one sign step of ``1.25 ε``, projection, CE step.
* free floor: each batch replayed ``replays`` times; each replay one forward/backward at
  ``clamp(x + δ)`` giving the weight and δ gradients, an SGD step, and
  ``δ ← clamp(δ + ε·sign(∇δ), −ε, ε)``; δ persists across replays and batches.

robustscope's figure is its loop's own ``train_time_s`` (batches only: data order,
objective, backward, step, running metrics; the per-epoch test evaluation is excluded). The
floor is timed the same way (data order + batches). img/s is *epoch images* / epoch time for
both (robustscope's own ``images_per_s`` counts free AT's replays as images). Before timing,
a counting pass over two batches prints, per batch, the model forwards, backward passes
through the logits and optimizer steps of both contenders, so a reader can check that the
work is equal. Rounds interleave every contender (their order alternates between rounds);
medians are reported.

    python benchmarks/bench_training.py --dataset fashion-mnist --model smallcnn --n 1000

Target (issue): robustscope time / floor time ≤ 1.1 for pgd and trades.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from machine import describe, summary
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from robustscope import data, models
from robustscope.data.dataset import ArrayDataset
from robustscope.training import TrainConfig, build_model, train

TARGET = 1.1
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4

# --- hand-written floors -----------------------------------------------------------------


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0)


def floor_pgd(model, x, y, opt, gen, a) -> None:
    """One PGD-AT step (Madry et al.): eval-mode PGD from a random start, then a CE step."""
    eps, alpha = a.eps, 2.5 * a.eps / a.steps
    model.eval()
    x_adv = _project(x + (2 * torch.rand(x.shape, generator=gen) - 1) * eps, x, eps)
    for _ in range(a.steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = _project(x_adv.detach() + alpha * grad.sign(), x, eps)
    model.train()
    loss = F.cross_entropy(model(x_adv), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def floor_trades(model, x, y, opt, gen, a) -> None:
    """One TRADES step: eval-mode KL attack from x + 0.001·N(0, I), then CE + β·KL."""
    eps, alpha = a.eps, 2.5 * a.eps / a.steps
    model.eval()
    with torch.no_grad():
        p_clean = F.softmax(model(x), dim=1)
    x_adv = _project(x + 0.001 * torch.randn(x.shape, generator=gen), x, eps)
    for _ in range(a.steps):
        x_adv.requires_grad_(True)
        kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), p_clean, reduction="sum")
        (grad,) = torch.autograd.grad(kl, x_adv)
        x_adv = _project(x_adv.detach() + alpha * grad.sign(), x, eps)
    model.train()
    logits = model(x)
    adv_logits = model(x_adv)
    kl = F.kl_div(F.log_softmax(adv_logits, dim=1), F.softmax(logits, dim=1), reduction="batchmean")
    loss = F.cross_entropy(logits, y) + a.beta * kl
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def floor_fgsm_rs(model, x, y, opt, gen, a) -> None:
    """One FGSM-RS step (Wong et al. 2020): random start, one sign step of 1.25 ε, CE step."""
    eps = a.eps
    model.eval()
    x_adv = _project(x + (2 * torch.rand(x.shape, generator=gen) - 1) * eps, x, eps)
    x_adv.requires_grad_(True)
    loss = F.cross_entropy(model(x_adv), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x_adv)
    x_adv = _project(x_adv.detach() + 1.25 * eps * grad.sign(), x, eps)
    model.train()
    loss = F.cross_entropy(model(x_adv), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


class FloorFree:
    """Free AT (Shafahi et al. 2019): ``replays`` steps per batch, one backward for both."""

    def __init__(self) -> None:
        self.delta: torch.Tensor | None = None

    def __call__(self, model, x, y, opt, gen, a) -> None:
        if self.delta is None:
            self.delta = torch.zeros_like(x)
        n = len(x)
        for _ in range(a.replays):
            delta = self.delta[:n].clone().requires_grad_(True)
            loss = F.cross_entropy(model((x + delta).clamp(0.0, 1.0)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self.delta[:n] = (delta.detach() + a.eps * delta.grad.sign()).clamp(-a.eps, a.eps)


FLOORS: dict[str, Callable[[], Callable[..., None]]] = {
    "pgd": lambda: floor_pgd,
    "trades": lambda: floor_trades,
    "fgsm-rs": lambda: floor_fgsm_rs,
    "free": FloorFree,
}


def floor_epoch(method: str, config: TrainConfig, ds: ArrayDataset, a, seed: int) -> float:
    """One epoch of the hand-written loop; returns its time in seconds (batches only)."""
    model = build_model(config, ds)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    step = FLOORS[method]()
    gen = torch.Generator().manual_seed(seed)
    model.train()
    t0 = time.perf_counter()
    perm = torch.randperm(len(ds), generator=gen)
    for i in range(0, len(ds), a.batch_size):
        idx = perm[i : i + a.batch_size]
        step(model, ds.x[idx], ds.y[idx], opt, gen, a)
    return time.perf_counter() - t0


# --- robustscope ---------------------------------------------------------------------------


def method_params(method: str, a) -> dict:
    if method == "pgd":
        return {"eps": a.eps, "steps": a.steps}
    if method == "trades":
        return {"eps": a.eps, "steps": a.steps, "beta": a.beta}
    if method == "fgsm-rs":
        return {"eps": a.eps}
    if method == "free":
        return {"eps": a.eps, "replays": a.replays}
    raise SystemExit(f"unknown method {method!r}")


def make_config(method: str, a) -> TrainConfig:
    return TrainConfig(
        dataset=a.dataset,
        model=a.model,
        epochs=1,
        batch_size=a.batch_size,
        lr=LR,
        momentum=MOMENTUM,
        weight_decay=WEIGHT_DECAY,
        schedule="constant",
        device="cpu",
        augment="none",
        method=method,
        method_params=method_params(method, a),
    )


def ours_epoch(config: TrainConfig, ds: ArrayDataset, test_ds: ArrayDataset) -> float:
    result = train(config, None, progress=False, log=None, datasets=(ds, test_ds))
    return float(result.history[0]["train_time_s"])


# --- work accounting -------------------------------------------------------------------------


def count_work(fn: Callable[[], object], batches: int) -> dict[str, float]:
    """Model forwards (with / without autograd), backward passes through the logits and
    optimizer steps that ``fn`` performs, per batch (forwards of a single image — the
    1-image test set robustscope evaluates after the epoch, untimed — are not counted)."""
    counts = {"forward (grad)": 0, "forward (no grad)": 0, "backward": 0, "optimizer steps": 0}

    def on_backward(grad: torch.Tensor) -> None:
        counts["backward"] += 1

    def on_forward(module: nn.Module, inputs: object, output: object) -> None:
        if not isinstance(module, models.Classifier) or not isinstance(output, torch.Tensor):
            return
        if len(output) == 1:  # robustscope's 1-image test evaluation, outside the timed region
            return
        if output.requires_grad:
            counts["forward (grad)"] += 1
            output.register_hook(on_backward)
        else:
            counts["forward (no grad)"] += 1

    def on_step(*_: object) -> None:
        counts["optimizer steps"] += 1

    h1 = nn.modules.module.register_module_forward_hook(on_forward)
    h2 = register_optimizer_step_post_hook(on_step)
    try:
        fn()
    finally:
        h1.remove()
        h2.remove()
    return {k: v / batches for k, v in counts.items()}


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--model", default="smallcnn")
    ap.add_argument("--n", type=int, default=1000, help="training images per epoch")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--steps", type=int, default=10, help="PGD / TRADES attack steps")
    ap.add_argument("--beta", type=float, default=6.0, help="TRADES β")
    ap.add_argument("--replays", type=int, default=8, help="free AT replays per batch")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--methods", default="pgd,trades,fgsm-rs,free")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    for m in methods:
        if m not in FLOORS:
            raise SystemExit(f"unknown method {m!r}; choose from {', '.join(FLOORS)}")

    train_ds = data.load(a.dataset, "train").head(a.n)
    test_ds = data.load(a.dataset, "test").head(1)
    small = train_ds.head(2 * a.batch_size)
    configs = {m: make_config(m, a) for m in methods}
    n = len(train_ds)

    # work accounting (two batches each; not timed) and warm-up
    work: dict[str, dict[str, dict[str, float]]] = {}
    for m in methods:
        work[m] = {
            "robustscope": count_work(lambda m=m: ours_epoch(configs[m], small, test_ds), 2),
            "floor": count_work(lambda m=m: floor_epoch(m, configs[m], small, a, 0), 2),
        }

    ours: dict[str, list[float]] = {m: [] for m in methods}
    floor: dict[str, list[float]] = {m: [] for m in methods}
    for r in range(a.rounds):
        for m in methods:
            contenders = [
                (ours[m], lambda m=m: ours_epoch(configs[m], train_ds, test_ds)),
                (floor[m], lambda m=m, r=r: floor_epoch(m, configs[m], train_ds, a, r)),
            ]
            if r % 2:
                contenders.reverse()
            for times, run in contenders:
                times.append(run())

    med_ours = {m: statistics.median(ours[m]) for m in methods}
    med_floor = {m: statistics.median(floor[m]) for m in methods}
    rows = []
    for m in methods:
        row = {
            "method": m,
            "params": method_params(m, a),
            "robustscope_time_s": ours[m],
            "floor_time_s": floor[m],
            "median_robustscope_images_per_s": n / med_ours[m],
            "median_floor_images_per_s": n / med_floor[m],
            "time_ratio_robustscope_over_floor": med_ours[m] / med_floor[m],
            "work_per_batch": work[m],
        }
        if "pgd" in methods and m != "pgd":
            row["robustscope_time_vs_pgd"] = med_ours[m] / med_ours["pgd"]
            row["floor_time_vs_pgd"] = med_floor[m] / med_floor["pgd"]
        rows.append(row)
    report = {
        "benchmark": "adversarial-training epoch time",
        "dataset": a.dataset,
        "model": a.model,
        "parameters": models.count_parameters(build_model(configs[methods[0]], train_ds)),
        "n": n,
        "batch_size": a.batch_size,
        "eps": a.eps,
        "steps": a.steps,
        "rounds": a.rounds,
        "machine": summary(describe()),
        "target_time_ratio": TARGET,
        "methods": rows,
    }
    if a.json:
        print(json.dumps(report, indent=2))
        return

    print(
        f"{a.model} on {a.dataset}: n={n}, batch {a.batch_size}, eps {a.eps}, steps {a.steps}, "
        f"beta {a.beta}, replays {a.replays}, {a.rounds} rounds"
    )
    print(f"machine: {report['machine']}")
    print()
    print("work per batch (counting pass, 2 batches): robustscope | floor")
    keys = list(next(iter(work.values()))["floor"])
    print(f"  {'method':<8} " + "  ".join(f"{k:>17}" for k in keys))
    for m in methods:
        cells = [f"{work[m]['robustscope'][k]:>7g} | {work[m]['floor'][k]:<7g}" for k in keys]
        print(f"  {m:<8} " + "  ".join(f"{c:>17}" for c in cells))
    print()
    header = (
        f"| {'method':<8} | robustscope img/s | floor img/s | time robustscope/floor "
        f"| epoch time vs pgd (rs / floor) |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for row in rows:
        ratio = row["time_ratio_robustscope_over_floor"]
        verdict = ""
        if row["method"] in ("pgd", "trades"):
            verdict = " ✓" if ratio <= TARGET else " ✗"
        vs = "—"
        if "robustscope_time_vs_pgd" in row:
            vs = f"{row['robustscope_time_vs_pgd']:.2f}× / {row['floor_time_vs_pgd']:.2f}×"
        print(
            f"| {row['method']:<8} | {row['median_robustscope_images_per_s']:17.1f} "
            f"| {row['median_floor_images_per_s']:11.1f} | {ratio + 0:20.3f}{verdict:2} "
            f"| {vs:>30} |"
        )
    print()
    for m in methods:
        print(
            f"  {m:<8} epoch s  robustscope {[round(t, 2) for t in ours[m]]}  "
            f"floor {[round(t, 2) for t in floor[m]]}"
        )
    print(f"target: time robustscope/floor ≤ {TARGET} for pgd and trades")


if __name__ == "__main__":
    main()
