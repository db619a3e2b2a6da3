"""Distributed data-parallel training: 2 CPU ranks (gloo) launched by torchrun as subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustscope import checkpoint
from robustscope.training import distributed

# 253 = 4 · 63 + 1: a global batch of 63 splits 32/31 over 2 ranks, and the last batch
# (1 row) leaves rank 1 with an empty shard — the uneven cases of the sharding rule
COMMON = [
    "--dataset", "digits", "--model", "mlp", "--epochs", "2", "--batch-size", "63",
    "--train-subset", "253", "--test-subset", "200", "--device", "cpu", "--no-progress",
]  # fmt: skip
PGD = ["--method", "pgd", "--eps", "0.1", "--steps", "2"]
RUN_FILES = {"config.json", "history.json", "model.safetensors", "train_state.safetensors"}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _run(args: list[str], nproc: int) -> subprocess.CompletedProcess[str]:
    if nproc > 1:
        launcher = ["-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--standalone"]
    else:
        launcher = []
    cmd = [sys.executable, *launcher, "-m", "robustscope", "train", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, f"{cmd}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def _weights(run: Path) -> dict[str, torch.Tensor]:
    model, _ = checkpoint.load(run)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _history(run: Path) -> list[dict[str, float]]:
    return json.loads((run / "history.json").read_text())  # type: ignore[no-any-return]


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("n", [0, 1, 2, 5, 63, 64, 100])
def test_shards_partition_each_global_batch(n: int, world: int) -> None:
    bounds = [distributed.shard_bounds(n, world, r) for r in range(world)]
    rows = [i for lo, hi in bounds for i in range(lo, hi)]
    assert rows == list(range(n))  # contiguous, in rank order, every row exactly once
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == [len(t) for t in torch.tensor_split(torch.arange(n), world)]


def test_shard_bounds_rejects_bad_rank() -> None:
    with pytest.raises(ValueError):
        distributed.shard_bounds(10, 2, 2)


def test_helpers_are_no_ops_in_one_process() -> None:
    assert not distributed.is_distributed()
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    t = torch.tensor([1.0, 2.0])
    assert distributed.all_reduce_sum(t) is t and t.tolist() == [1.0, 2.0]
    assert distributed.all_gather_objects({"a": 1}) == [{"a": 1}]
    distributed.barrier()
    distributed.cleanup()
    assert distributed.rank_seed(5, 0) == 5 and distributed.rank_seed(5, 1) != 5


def test_ddp_reproduces_single_process(tmp_path: Path) -> None:
    """2 ranks × their shard of each global batch ≡ one process with the global batch."""
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    proc = _run([*COMMON, "--out", str(ddp)], nproc=2)
    _run([*COMMON, "--out", str(single)], nproc=1)

    diff = _max_diff(_weights(ddp), _weights(single))
    print(f"max |w_ddp - w_single| = {diff:.3g}")
    a, b = _weights(ddp), _weights(single)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    ha, hb = _history(ddp), _history(single)
    assert len(ha) == len(hb) == 2
    for ra, rb in zip(ha, hb, strict=True):
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-5)
        assert ra["train_accuracy"] == pytest.approx(rb["train_accuracy"], abs=1e-3)
        assert ra["test_accuracy"] == pytest.approx(rb["test_accuracy"], abs=1e-3)
        assert ra["test_loss"] == pytest.approx(rb["test_loss"], rel=1e-4)

    # only rank 0 wrote: the run files, no temporaries or duplicates
    assert {p.name for p in ddp.iterdir()} == RUN_FILES
    assert {p.name for p in tmp_path.iterdir()} == {"ddp", "single"}
    # logs and the final summary appear once
    assert proc.stderr.count("epoch 1/2") == 1 and proc.stderr.count("epoch 2/2") == 1
    assert proc.stdout.count("finished: 2 epoch(s)") == 1


def test_ddp_adversarial_and_resume(tmp_path: Path) -> None:
    """PGD-AT on 2 ranks trains (finite losses); weights differ from a single process by
    design (each rank draws its own random starts). Stopping after epoch 1 and resuming
    gives the same weights as the uninterrupted 2-rank run (per-rank states restored)."""
    full, parts = tmp_path / "full", tmp_path / "parts"
    _run([*COMMON, *PGD, "--out", str(full)], nproc=2)
    hist = _history(full)
    assert len(hist) == 2
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in hist)

    first = _run([*COMMON, *PGD, "--out", str(parts), "--stop-after-epochs", "1"], nproc=2)
    assert "stopped (resume with --resume)" in first.stdout
    assert len(_history(parts)) == 1
    # a resume with another number of processes is refused (per-rank streams), nothing changed
    cmd = [sys.executable, "-m", "robustscope", "train", *COMMON, *PGD, "--out", str(parts)]
    refused = subprocess.run(
        [*cmd, "--resume"], capture_output=True, text=True, env=_env(), timeout=300
    )
    assert refused.returncode != 0
    assert "same number of processes" in refused.stderr + refused.stdout
    assert len(_history(parts)) == 1
    _run([*COMMON, *PGD, "--out", str(parts), "--resume"], nproc=2)

    a, b = _weights(full), _weights(parts)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert _history(parts)[-1]["train_loss"] == pytest.approx(hist[-1]["train_loss"], rel=1e-12)
    assert {p.name for p in parts.iterdir()} == RUN_FILES
