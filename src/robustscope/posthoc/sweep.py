"""A post-hoc sweep as wu2020 evaluate it: M1/M2/M3 at a grid of p on one trained model.

For every method m and percentage p the model Θ is transformed into Θ_{m,p}
(:mod:`robustscope.posthoc.wu2020`; p = 0 is Θ itself) and measured:

* **transferred** attacks (wu2020 Fig. 1): adversarial examples generated once on Θ, then
  the accuracy of every Θ_{m,p} on them against the largest allowed perturbation ε. An
  attack with a budget (FGSM, PGD) is run on Θ at each ε; a minimal-norm attack (DeepFool,
  C&W) is run once and its perturbation δ is clipped into each ε-ball (ℓ∞: every coordinate
  to [−ε, ε]; ℓ2: δ scaled down to norm ε) and into the input box — foolbox 3's
  ``clip_perturbation``, whose default attacks wu2020 ran;
* **adaptive** attacks (wu2020 Table 1): the minimal-norm attacks run again on each
  Θ_{m,p}; :func:`robustscope.attacks.scores.challenge_score` (mean ‖x_adv − x‖₂² of the
  successful attacks on correctly classified points, 0 for the others) of each, which
  Table 1 reports as the change from p = 0;
* **robust** accuracy under budget attacks re-run on each Θ_{m,p} (a study's evaluation
  attacks: the post-hoc points of the accuracy–robustness frontier);
* wu2020 eq. (4), the accuracy-independent robustness to random noise
  (:func:`robustscope.attacks.scores.accuracy_independent_robustness`), when a bound is given;
* the accuracy under the 15 common corruptions at each severity (:mod:`robustscope.corruptions`)
  when asked, every member on the same corrupted copies.

:func:`run_sweep` returns a :class:`SweepResult`, a probe result whose :meth:`~SweepResult.arrays`
(named by :func:`array_key`) are what a study stores.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from robustscope import attacks
from robustscope.attacks.base import attack_mode
from robustscope.attacks.scores import accuracy_independent_robustness, challenge_score
from robustscope.device import model_device
from robustscope.evaluation import accuracy
from robustscope.posthoc.base import TransformError, apply, create
from robustscope.posthoc.wu2020 import METHODS, check_percent
from robustscope.probes.base import ProbeData, ProbeResult
from robustscope.progress import ProgressBar

if TYPE_CHECKING:
    from robustscope.corruptions import CorruptionResult

__all__ = [
    "AttackSetting",
    "CorruptionSetting",
    "SweepResult",
    "array_key",
    "run_sweep",
    "transferred_examples",
]


@dataclass(frozen=True)
class AttackSetting:
    """One attack of a sweep: name, the ε grid (budget attacks and the transferred axis),
    the norm of the ε-balls, its parameters and its label in the results."""

    attack: str
    eps: tuple[float, ...] = (0.0,)
    norm: str = "linf"
    params: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def key(self) -> str:
        return self.label or f"{self.attack}-{self.norm}"


@dataclass(frozen=True)
class CorruptionSetting:
    """Which corruptions a sweep evaluates each member on (:mod:`robustscope.corruptions`)."""

    names: tuple[str, ...] | None = None
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    seed: int = 0


def array_key(quantity: str, label: str = "") -> str:
    """The name of one array of a :class:`SweepResult` (``clean_accuracy``,
    ``transferred/<label>``, ``transferred_eps/<label>``, ``robust/<label>``,
    ``robust_eps/<label>``, ``challenge/<label>``, ``challenge_points/<label>``, ``noise``,
    ``corruption_accuracy`` with ``corruption_types`` (indices into
    :data:`robustscope.corruptions.CORRUPTIONS`), ``corruption_severities`` and
    ``corruption_correct``, ``percents``,
    ``dropped``): the one place these names are made."""
    return f"{quantity}/{label}" if label else quantity


@dataclass(frozen=True)
class SweepResult(ProbeResult):
    """Every member Θ_{m,p} of a post-hoc sweep measured (module doc).

    Arrays are indexed ``[method, percent, ...]`` in the order of ``methods`` and
    ``percents`` (p = 0 is the original model, the same row for every method).

    Attributes:
        methods: the transforms (``m1``, ``m2``, ``m3``).
        percents: the p grid (ascending, starting at 0).
        n: test points evaluated.
        clean_accuracy: ``[M, P]``.
        dropped: ``[M, P]`` units (M1) or singular values (M2; M3: both) dropped.
        transferred: label → ``(ε grid, [M, P, E])`` accuracy on examples made on Θ.
        robust: label → ``(ε grid, [M, P, E])`` robust accuracy of the attack re-run on
            each member (over all points).
        challenge: label → ``[M, P]`` wu2020's challenge score of the minimal attack re-run
            on each member; ``challenge_points`` label → ``[M, P, n]`` its d_i per point (for
            paired comparisons with p = 0).
        noise: ``[M, P]`` wu2020 eq. (4) (None when not measured); ``noise_bound`` its C.
        corruption_names, corruption_severities: the corruption grid;
        corruption_accuracy: ``[M, P, T, S]`` accuracy under each corruption and severity
            (None when not measured); ``corruption_correct`` ``[M, P, 1 + T·S, n]`` uint8
            per-point correctness (clean first; :class:`~robustscope.corruptions.CorruptionResult`).
    """

    methods: tuple[str, ...]
    percents: tuple[float, ...]
    n: int
    clean_accuracy: np.ndarray
    dropped: np.ndarray
    transferred: dict[str, tuple[tuple[float, ...], np.ndarray]] = field(default_factory=dict)
    robust: dict[str, tuple[tuple[float, ...], np.ndarray]] = field(default_factory=dict)
    challenge: dict[str, np.ndarray] = field(default_factory=dict)
    challenge_points: dict[str, np.ndarray] = field(default_factory=dict)
    noise: np.ndarray | None = None
    noise_bound: float | None = None
    corruption_names: tuple[str, ...] = ()
    corruption_severities: tuple[int, ...] = ()
    corruption_accuracy: np.ndarray | None = None
    corruption_correct: np.ndarray | None = None

    def scalars(self) -> dict[str, float]:
        out = {"n": float(self.n), "members": float(len(self.methods) * len(self.percents))}
        if self.noise_bound is not None:
            out["noise_bound"] = float(self.noise_bound)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        out = {
            array_key("percents"): np.asarray(self.percents, dtype=np.float64),
            array_key("clean_accuracy"): self.clean_accuracy,
            array_key("dropped"): self.dropped,
        }
        for kind, table in (("transferred", self.transferred), ("robust", self.robust)):
            for label, (eps, acc) in table.items():
                out[array_key(kind, label)] = acc
                out[array_key(f"{kind}_eps", label)] = np.asarray(eps, dtype=np.float64)
        for label, score in self.challenge.items():
            out[array_key("challenge", label)] = score
        for label, points in self.challenge_points.items():
            out[array_key("challenge_points", label)] = points
        if self.noise is not None:
            out[array_key("noise")] = self.noise
        if self.corruption_accuracy is not None:
            from robustscope.corruptions import CORRUPTIONS

            out[array_key("corruption_accuracy")] = self.corruption_accuracy
            out[array_key("corruption_types")] = np.array(
                [CORRUPTIONS.index(t) for t in self.corruption_names], dtype=np.float64
            )
            out[array_key("corruption_severities")] = np.asarray(
                self.corruption_severities, dtype=np.float64
            )
        if self.corruption_correct is not None:
            out[array_key("corruption_correct")] = self.corruption_correct
        return out


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    with attack_mode(model):
        return accuracy(model, x, y, batch_size)


def _clip_perturbation(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    if norm == "linf":
        return delta.clamp(-eps, eps)
    flat = delta.reshape(len(delta), -1).norm(dim=1).clamp_min(1e-30)
    scale = (eps / flat).clamp(max=1.0)
    return delta * scale.reshape(-1, *([1] * (delta.dim() - 1)))


def transferred_examples(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    setting: AttackSetting,
    *,
    batch_size: int = 256,
    seed: int = 0,
) -> list[torch.Tensor]:
    """Adversarial examples of ``model`` at each ε of ``setting`` (module doc), on ``x``'s
    device: budget attacks run at each ε > 0; a minimal-norm attack runs once and its
    perturbation is clipped into each ε-ball and the box. ε = 0 gives ``x``."""
    cls = attacks.get(setting.attack)
    norm_kw = {"norm": setting.norm} if setting.norm in cls.norms else {}
    out: list[torch.Tensor] = []
    if cls.minimal_norm:
        atk = attacks.create(setting.attack, model, seed=seed, **norm_kw, **setting.params)
        pieces = [
            atk(x[s : s + batch_size], y[s : s + batch_size]) for s in range(0, len(x), batch_size)
        ]
        x_adv = torch.cat(pieces) if pieces else x.clone()
        delta = x_adv.to(x.device) - x
        for eps in setting.eps:
            out.append(atk.box.clamp(x + _clip_perturbation(delta, eps, setting.norm)))
        return out
    for eps in setting.eps:
        if eps == 0:
            out.append(x.clone())
            continue
        atk = attacks.create(setting.attack, model, eps=eps, seed=seed, **norm_kw, **setting.params)
        pieces = [
            atk(x[s : s + batch_size], y[s : s + batch_size]) for s in range(0, len(x), batch_size)
        ]
        out.append(torch.cat(pieces).to(x.device))
    return out


def _members(
    model: nn.Module,
    methods: Sequence[str],
    percents: Sequence[float],
    layer: str | None,
    data: ProbeData,
) -> Iterator[tuple[int, int, nn.Module, int]]:
    """``(method index, percent index, model, dropped)`` of every member, one at a time;
    p = 0 is ``model``."""
    for i, m in enumerate(methods):
        for j, p in enumerate(percents):
            if p == 0:
                yield i, j, model, 0
                continue
            t = apply(model, create(m, percent=p, layer=layer), data=data)
            details = t.transforms[-1].details
            parts = [details[k] for k in ("m1", "m2")] if m == "m3" else [details]
            dropped = sum(sum(d["dropped"].values()) for d in parts)
            yield i, j, t.model.eval(), dropped


def run_sweep(
    model: nn.Module,
    data: ProbeData,
    *,
    methods: Sequence[str] = METHODS,
    percents: Sequence[float] = (0, 1, 2, 3, 4, 5),
    layer: str | None = None,
    transferred: Sequence[AttackSetting] = (),
    adaptive: Sequence[AttackSetting] = (),
    robust: Sequence[AttackSetting] = (),
    noise_bound: float | None = None,
    noise_draws: int = 10,
    corruptions: CorruptionSetting | None = None,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = False,
) -> SweepResult:
    """Transform ``model`` by each method at each p and measure every member (module doc).

    Args:
        model: the trained model Θ (left untouched).
        data: ``test`` — the points every member is measured on; ``train`` — the training
            examples M1 counts unit activity on (needed for ``m1``/``m3``).
        methods: among ``m1``, ``m2``, ``m3``.
        percents: the p grid; 0 is added when missing (the reference row).
        layer: the transforms' layer (default: the penultimate fully connected layer).
        transferred: attacks whose examples, made on Θ, every member is evaluated on.
        adaptive: minimal-norm attacks re-run on each member for the challenge score.
        robust: budget attacks re-run on each member (robust accuracy at each ε).
        noise_bound: C of wu2020 eq. (4) (None: not measured), ``noise_draws`` per point.
        corruptions: evaluate every member under the common corruptions (None: not).
        batch_size, seed: of every attack and evaluation.
        progress: a progress bar over the members.
    """
    for m in methods:
        if m not in METHODS:
            raise TransformError(
                f"post-hoc sweep: unknown method {m!r}; the methods are {', '.join(METHODS)}"
            )
    if not methods:
        raise TransformError("post-hoc sweep: give at least one method (m1, m2, m3)")
    grid = sorted({0.0, *(check_percent(p, "sweep") for p in percents)})
    for s in (*transferred, *robust):
        if list(s.eps) != sorted(set(s.eps)):
            raise TransformError(
                f"post-hoc sweep: attack {s.key!r}: give its ε grid ascending without repeats"
            )
    for a in adaptive:
        if not attacks.get(a.attack).minimal_norm:
            raise TransformError(
                f"post-hoc sweep: the challenge score needs a minimal-norm attack (deepfool, "
                f"cw); {a.attack!r} is not one"
            )
    x, y = data.test
    device = model_device(model)
    x, y = x.to(device), y.to(device)
    model.eval()
    shape = (len(methods), len(grid))
    clean = np.full(shape, np.nan)
    dropped = np.zeros(shape)
    made = {
        s.key: transferred_examples(model, x, y, s, batch_size=batch_size, seed=seed)
        for s in transferred
    }
    trans = {s.key: np.full((*shape, len(s.eps)), np.nan) for s in transferred}
    rob = {s.key: np.full((*shape, len(s.eps)), np.nan) for s in robust}
    chal = {s.key: np.full(shape, np.nan) for s in adaptive}
    chal_points = {s.key: np.full((*shape, len(x)), np.nan) for s in adaptive}
    noise = np.full(shape, np.nan) if noise_bound is not None else None
    copies = None
    c_acc = None
    c_hits = None
    names: tuple[str, ...] = ()
    if corruptions is not None:
        from robustscope import corruptions as corr

        names = tuple(corruptions.names or corr.CORRUPTIONS)
        copies = corr.corrupted_copies(
            x, names=names, severities=corruptions.severities, seed=corruptions.seed
        )
        c_acc = np.full((*shape, len(names), len(corruptions.severities)), np.nan)
        c_hits = np.zeros((*shape, 1 + len(names) * len(corruptions.severities), len(x)), np.uint8)
    cache: dict[int, tuple[Any, ...]] = {}  # p = 0 is measured once, shared by every method
    members = _members(model, methods, grid, layer, data)
    with ProgressBar(progress, "post-hoc sweep", total=len(methods) * len(grid)) as bar:
        for i, j, member, n_dropped in members:
            dropped[i, j] = n_dropped
            if grid[j] == 0 and 0 in cache:
                row = cache[0]
            else:
                row = _measure(
                    member, x, y, made, transferred, robust, adaptive, noise_bound,
                    noise_draws, corruptions, copies, names, batch_size, seed,
                )  # fmt: skip
                if grid[j] == 0:
                    cache[0] = row
            acc, t_row, r_row, c_row, n_row, corr_row = row
            clean[i, j] = acc
            for k, v in t_row.items():
                trans[k][i, j] = v
            for k, v in r_row.items():
                rob[k][i, j] = v
            for k, (v, points) in c_row.items():
                chal[k][i, j] = v
                chal_points[k][i, j] = points
            if noise is not None:
                noise[i, j] = n_row
            if c_acc is not None and c_hits is not None:
                c_acc[i, j], c_hits[i, j] = corr_row
            bar.advance()
    return SweepResult(
        methods=tuple(methods),
        percents=tuple(grid),
        n=len(x),
        clean_accuracy=clean,
        dropped=dropped,
        transferred={s.key: (tuple(s.eps), trans[s.key]) for s in transferred},
        robust={s.key: (tuple(s.eps), rob[s.key]) for s in robust},
        challenge=chal,
        challenge_points=chal_points,
        noise=noise,
        noise_bound=noise_bound,
        corruption_names=names,
        corruption_severities=tuple(corruptions.severities) if corruptions else (),
        corruption_accuracy=c_acc,
        corruption_correct=c_hits,
    )


def _measure(
    member: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    made: dict[str, list[torch.Tensor]],
    transferred: Sequence[AttackSetting],
    robust: Sequence[AttackSetting],
    adaptive: Sequence[AttackSetting],
    noise_bound: float | None,
    noise_draws: int,
    corruptions: CorruptionSetting | None,
    copies: Any,
    names: tuple[str, ...],
    batch_size: int,
    seed: int,
) -> tuple[Any, ...]:
    acc = _accuracy(member, x, y, batch_size)
    t_row = {
        s.key: np.array([_accuracy(member, xa, y, batch_size) for xa in made[s.key]])
        for s in transferred
    }
    r_row = {}
    for s in robust:
        curve = attacks.evaluate(
            member, x, y, s.attack, list(s.eps), norm=s.norm, batch_size=batch_size,
            seed=seed, checks=False, **s.params,
        )  # fmt: skip
        r_row[s.key] = np.array(list(curve.robust_accuracy.values()))
    c_row = {}
    for s in adaptive:
        cls = attacks.get(s.attack)
        norm_kw = {"norm": s.norm} if s.norm in cls.norms else {}
        score = challenge_score(
            member, x, y, s.attack, batch_size=batch_size, seed=seed, **norm_kw, **s.params
        )
        c_row[s.key] = (score.score, np.asarray(score.per_point))
    n_row = math.nan
    if noise_bound is not None:
        n_row = accuracy_independent_robustness(
            member, x, y, noise_bound, draws=noise_draws, seed=seed, batch_size=batch_size
        ).score
    corr_row = None
    if corruptions is not None:
        from robustscope import corruptions as corr

        res: CorruptionResult = corr.evaluate(
            member, x, y, names=names, severities=corruptions.severities,
            seed=corruptions.seed, batch_size=batch_size, copies=copies,
        )  # fmt: skip
        corr_row = (np.array([res.accuracy[name] for name in names]), res.correct)
    return acc, t_row, r_row, c_row, n_row, corr_row
