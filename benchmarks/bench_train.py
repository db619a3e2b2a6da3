"""Training-loop throughput: robustscope's loop vs a minimal hand-written PyTorch loop.

Both train the same architecture (same seed, same initial weights) on the same
in-memory data with the same batch size and optimizer (SGD, momentum 0.9,
weight decay 5e-4), one epoch per round; rounds alternate between the two and
the medians of images/s are compared. robustscope's figure is the epoch time
its loop measures around the batches (data order, objective, backward, step,
running loss/accuracy); its per-epoch test evaluation is excluded, as the hand
loop has none.

    python benchmarks/bench_train.py --dataset fashion-mnist --model smallcnn --n 10000

Target (issue 2): ratio ≥ 0.95.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from machine import describe, summary

from robustscope import data, models
from robustscope.training import TrainConfig, build_model, train


def hand_loop(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bs: int, seed: int
) -> float:
    """One epoch of the simplest correct loop; returns images/s."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    perm = torch.randperm(len(x), generator=g)
    for i in range(0, len(x), bs):
        idx = perm[i : i + bs]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return len(x) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--model", default="smallcnn")
    ap.add_argument("--n", type=int, default=10_000, help="training images per epoch")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    train_ds = data.load(args.dataset, "train").head(args.n)
    test_ds = data.load(args.dataset, "test").head(1)
    config = TrainConfig(
        dataset=args.dataset,
        model=args.model,
        epochs=1,
        batch_size=args.batch_size,
        lr=0.01,
        momentum=0.9,
        weight_decay=5e-4,
        device="cpu",
        augment="none",
    )
    ours: list[float] = []
    floor: list[float] = []
    # warm-up round of each, not counted
    train(config, None, progress=False, log=None, datasets=(train_ds, test_ds))
    hand_loop(build_model(config, train_ds), train_ds.x, train_ds.y, args.batch_size, 0)
    for r in range(args.rounds):
        result = train(config, None, progress=False, log=None, datasets=(train_ds, test_ds))
        ours.append(result.history[0]["images_per_s"])
        floor.append(
            hand_loop(build_model(config, train_ds), train_ds.x, train_ds.y, args.batch_size, r)
        )
    med_ours, med_floor = statistics.median(ours), statistics.median(floor)
    report = {
        "benchmark": "train-loop throughput",
        "dataset": args.dataset,
        "model": args.model,
        "parameters": models.count_parameters(build_model(config, train_ds)),
        "n": len(train_ds),
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "threads": args.threads,
        "robustscope_images_per_s": ours,
        "hand_loop_images_per_s": floor,
        "median_robustscope": med_ours,
        "median_hand_loop": med_floor,
        "ratio": med_ours / med_floor,
        "machine": summary(describe()),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"{args.model} on {args.dataset} (n={len(train_ds)}, batch {args.batch_size}, {args.threads} threads, {args.rounds} rounds)"
        )
        print(f"  robustscope loop : median {med_ours:8.0f} img/s  {[round(v) for v in ours]}")
        print(f"  hand-written loop: median {med_floor:8.0f} img/s  {[round(v) for v in floor]}")
        print(f"  ratio robustscope / hand-written = {med_ours / med_floor:.3f}  (target ≥ 0.95)")


if __name__ == "__main__":
    main()
