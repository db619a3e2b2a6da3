"""Distributed data-parallel (DDP) training: process-group set-up and the rules the loop follows.

Launch::

    torchrun --nproc_per_node=2 --standalone -m robustscope train --out runs/a ...

:func:`init` detects a torchrun launch (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` in the
environment) and initialises the default process group: backend ``gloo`` on the CPU,
``nccl`` on CUDA with rank *r* on ``cuda:LOCAL_RANK``. In a single process every helper here
is a no-op (``world_size() == 1``, ``rank() == 0``, ``is_main()``), so the loop has one code
path.

Design of the training loop under DDP (:mod:`robustscope.training.loop`):

* **Same global batch.** ``batch_size`` is the *global* batch. Every rank draws the same
  per-epoch permutation and augmentation (the generator seeded by ``(seed, epoch)``), so
  every rank sees the same global batch; rank *r* takes the contiguous rows
  :func:`shard_bounds` gives it (``torch.tensor_split`` semantics: the first ``n % world``
  ranks get one row more, so a short last batch is handled too). Each rank's loss (the mean
  over its ``n_r`` rows) is multiplied by ``world · n_r / n`` before ``backward``; DDP averages
  the gradients over ranks, so the synchronised gradient is the gradient of the mean loss
  over the whole global batch — the single-process gradient up to float rounding. A rank
  whose shard is empty (a last batch shorter than the world size) runs the step on the
  batch's first row with weight 0, so that it still joins the gradient all-reduce.
* **What runs where.** The objective gets a thin module (:class:`StepModel`) that routes each
  forward pass: when gradients are enabled and the parameters require them (the training
  forward), through the ``DistributedDataParallel`` wrapper; otherwise — inside an inner
  attack, where :func:`robustscope.attacks.base.attack_mode` switches the parameters'
  ``requires_grad`` off, and under ``no_grad`` — on the plain, unwrapped module. Attack
  passes therefore never arm DDP's reducer (no parameter all-reduce, no "unfinished
  reduction" error), and ``find_unused_parameters`` is not needed. Each rank attacks its own
  shard. Evaluation, tracking and the catastrophic-overfitting detector use the plain module.
* **Randomness.** Model initialisation uses the run seed on every rank (DDP also broadcasts
  rank 0's weights). The objective's seed (random starts, noise) and the global RNG are
  offset by rank with :func:`rank_seed` — rank 0 keeps the single-process streams, the
  others get distinct ones — so the shards get independent random starts and the run is
  deterministic for a given world size. Adversarial runs therefore differ from a
  single-process run (other random starts); standard training does not.
* **Metrics.** Epoch sums (loss · n, correct, seen, extras · n) are all-reduced before the
  history row is made. Test evaluation and epoch callbacks run on every rank on identical
  weights with their own seeded generators, so their numbers — and any early-stop decision —
  agree on all ranks without communication and equal the single-process ones.
* **Files.** Only rank 0 writes (config, checkpoints, history, ``best.safetensors``), logs and
  shows progress; the ranks meet at a barrier after each save. The resume state holds the
  objective and RNG state of *every* rank (gathered to rank 0) and the world size; a resume
  must use the same world size, and each rank restores its own streams, so an interrupted
  DDP run resumes to the same weights as an uninterrupted one.
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from robustscope.data.box import Box
from robustscope.errors import TrainingError
from robustscope.models.base import declared_box

__all__ = [
    "StepModel",
    "all_gather_objects",
    "all_reduce_sum",
    "barrier",
    "cleanup",
    "init",
    "is_distributed",
    "is_main",
    "launched",
    "local_rank",
    "rank",
    "rank_seed",
    "shard_bounds",
    "world_size",
]


def launched() -> bool:
    """True when this process was started by torchrun (or an equivalent launcher)."""
    return all(k in os.environ for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"))


def is_distributed() -> bool:
    """True when a default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """True on rank 0 (and in a single process): the rank that writes files and logs.

    Also right before :func:`init` and after :func:`cleanup` in a torchrun worker (it then
    reads the launcher's ``RANK``), so the CLI can print once after training.
    """
    if is_distributed():
        return rank() == 0
    return not launched() or os.environ["RANK"] == "0"


def init(device: torch.device) -> bool:
    """Initialise the process group if launched by torchrun and not done yet.

    Args:
        device: the device the run asked for; CUDA selects ``nccl`` and ``cuda:LOCAL_RANK``.

    Returns:
        True when this call created the group (the caller then calls :func:`cleanup`).
    """
    if is_distributed() or not launched() or int(os.environ["WORLD_SIZE"]) <= 1:
        return False
    if not dist.is_available():
        raise TrainingError("torch.distributed is not available in this PyTorch build")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend)
    global _GROUPS
    _GROUPS += 1  # every rank creates its groups in the same order: the same count
    return True


#: process groups created by :func:`init` in this process (names the cleanup meeting's key, so
#: a second group in one process does not find the first one's counter already full)
_GROUPS = 0


def device_for_rank(device: torch.device) -> torch.device:
    """``cuda:LOCAL_RANK`` for a CUDA run under DDP, else ``device`` unchanged."""
    if device.type == "cuda" and is_distributed():
        return torch.device("cuda", local_rank())
    return device


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (and return it); unchanged in a single process."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` in a single process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def cleanup(*, sync: bool = True) -> None:
    """Destroy the process group (no-op when none exists).

    With ``sync`` all ranks first meet at a barrier: a rank tearing gloo down while another
    still uses it aborts the other ("terminate called without an active exception"). A gloo
    barrier alone is not enough — a rank may leave it and close its connections while a peer
    still drains the barrier's last messages (pytorch/gloo#155) — so the ranks then also meet
    on the rendezvous store, which is not a gloo connection, before any of them destroys the
    group. After an error, ``sync=False`` skips both, which the failed ranks might never
    reach.
    """
    if is_distributed():
        if sync:
            dist.barrier()
            _store_meeting(f"robustscope/cleanup/{_GROUPS}")  # a fresh key per group
        dist.destroy_process_group()


def _store_meeting(key: str, timeout: float = 60.0) -> None:
    """Every rank increments ``key`` on the default store, then waits until all have (at most
    ``timeout`` seconds). A store that went away means the others are done: go on."""
    try:
        store = dist.distributed_c10d._get_default_store()
        arrived = store.add(key, 1)
        deadline = time.monotonic() + timeout
        while arrived < world_size() and time.monotonic() < deadline:
            time.sleep(0.002)
            arrived = store.add(key, 0)
    except (RuntimeError, ValueError):
        return


def rank_seed(seed: int, r: int) -> int:
    """The seed of rank ``r``'s random streams: ``seed`` itself on rank 0, distinct otherwise."""
    if r == 0:
        return int(seed)
    return (int(seed) + r * 0x9E3779B97F4A7C15) % 2**63


def shard_bounds(n: int, world: int, r: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of a global batch of ``n`` rows that rank ``r`` of ``world`` takes.

    Contiguous, in rank order, sizes differing by at most one (the first ``n % world`` ranks
    take one row more): the shards of all ranks partition ``range(n)`` exactly.
    """
    if world < 1 or not 0 <= r < world:
        raise ValueError(f"rank {r} outside a world of {world}")
    base, extra = divmod(n, world)
    start = r * base + min(r, extra)
    return start, start + base + (1 if r < extra else 0)


class StepModel(nn.Module):
    """What the objective calls under DDP (or with ``--compile``): the plain module for
    attacks and gradient-free passes, the wrapped training forward for the rest.

    ``module`` is registered as the only child, so ``parameters()``, ``train()``/``eval()``
    and ``modules()`` act on the real model (as :func:`robustscope.attacks.base.attack_mode`
    expects); the wrappers are kept outside the module tree.
    """

    def __init__(self, module: nn.Module, train_forward: Any, attack_forward: Any) -> None:
        super().__init__()
        self.module = module
        self._wrappers = (train_forward, attack_forward)

    @property
    def input_box(self) -> Box | None:
        """The wrapped model's declared input box (what attacks inside the objective use)."""
        return declared_box(self.module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        train_forward, attack_forward = self._wrappers
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.module.parameters()):
            return train_forward(x)
        return attack_forward(x)
