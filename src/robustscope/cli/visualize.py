"""``robustscope visualize``: the visual evidence of tsipras2019 (§3: saliency, large-ε
examples, interpolation) and terzi2021 (inversion, effective images, t-SNE) for one or more
checkpoints side by side, as PNGs plus a JSON of the numbers behind them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import torch
import typer

from robustscope.cli.measure import Subject, load_subject
from robustscope.cli.options import (
    DataRootOpt,
    DatasetOpt,
    DeviceOpt,
    FirstNOpt,
    JsonFlag,
    SeedOpt,
    SplitOpt,
)
from robustscope.cli.output import emit, finite
from robustscope.errors import RobustscopeError
from robustscope.io import write_json
from robustscope.params import parse_eps, parse_real, positive_int

__all__ = ["WHAT", "visualize_cmd"]

#: what the command draws → (the papers' figure, default number of examples)
WHAT: dict[str, tuple[str, int]] = {
    "saliency": ("loss-gradient saliency, tsipras2019 Fig. 2", 8),
    "large-eps": ("large-ε targeted adversarial examples, tsipras2019 Fig. 3", 8),
    "interpolation": ("interpolation to the large-ε example, tsipras2019 Fig. 4", 4),
    "inversion": ("inversion of the representation, terzi2021 eq. 3, Figs. 1-2", 8),
    "effective": ("inversion and effective images, terzi2021 eqs. 3 and 10, Figs. 1-2", 8),
    "tsne": ("t-SNE of the representation, terzi2021 Fig. 6", 500),
}

CheckpointsArg = Annotated[
    list[Path],
    typer.Argument(
        metavar="CHECKPOINT...",
        help="checkpoint files or run directories; several are drawn side by side "
        "(e.g. a standard and a robust model)",
    ),
]


class Member(NamedTuple):
    """One checkpoint to draw: its label, model and the data it is measured on."""

    label: str
    path: Path
    subject: Subject


def _label(i: int, path: Path, meta: Any) -> str:
    training = meta.training or {}
    method = str(training.get("method") or "model")
    params = training.get("method_params") or {}
    eps = params.get("eps")
    tail = f" ε={eps}" if eps is not None and method != "standard" else ""
    norm = params.get("norm")
    tail += f" {norm}" if tail and norm else ""
    return f"{i + 1}. {method}{tail}"


def _members(
    paths: list[Path],
    dataset: str | None,
    split: str,
    n: int,
    data_root: Path | None,
    device: str,
) -> list[Member]:
    members: list[Member] = []
    for i, path in enumerate(paths):
        subject = load_subject(path, dataset, split, n, data_root, device)
        if members:
            first = members[0].subject.data
            if subject.data.name != first.name or subject.data.input_shape != first.input_shape:
                raise RobustscopeError(
                    f"{path} was trained on {subject.data.name!r} {subject.data.input_shape}, "
                    f"{members[0].path} on {first.name!r} {first.input_shape}: checkpoints "
                    "compared side by side must share the data (or pass --dataset)"
                )
        members.append(Member(_label(i, path, subject.meta), path, subject))
    return members


def _class(ds: Any, c: int) -> str:
    names = getattr(ds, "classes", ())
    return str(names[c]) if 0 <= c < len(names) else str(c)


def visualize_cmd(
    checkpoints: CheckpointsArg,
    out: Annotated[Path, typer.Option(help="folder for the PNGs and the JSON of numbers")],
    what: Annotated[
        str,
        typer.Option(help="saliency, large-eps, interpolation, inversion, effective or tsne"),
    ] = "saliency",
    n: FirstNOpt = None,
    eps: Annotated[
        str | None,
        typer.Option(help="large-ε radius (default: tsipras2019 Table 3 scaled to the input size)"),
    ] = None,
    norm: Annotated[str, typer.Option(help="linf or l2 (large-eps, interpolation)")] = "l2",
    steps: Annotated[
        int | None,
        typer.Option(help="PGD steps (default 100) or inversion iterations (default 500)"),
    ] = None,
    lr: Annotated[
        str | None, typer.Option(help="inversion: Adam's initial step size (default 0.05)")
    ] = None,
    beta: Annotated[
        str, typer.Option(help="effective: noise level β of Σ* = β F_w⁻¹ (terzi2021 eq. 10)")
    ] = "1e-8",
    target: Annotated[
        str, typer.Option(help="large-eps target class: next, runner-up or a class index")
    ] = "next",
    points: Annotated[int, typer.Option(help="interpolation: images along each path")] = 8,
    train_n: Annotated[
        int, typer.Option(help="effective: first N training examples of the weights' Fisher")
    ] = 500,
    dataset: DatasetOpt = None,
    split: SplitOpt = "test",
    seed: SeedOpt = 0,
    data_root: DataRootOpt = None,
    device: DeviceOpt = "auto",
    as_json: JsonFlag = False,
) -> None:
    """Draw saliency maps, large-ε examples, interpolations, inversions, effective images or
    a t-SNE of one or more checkpoints side by side on the first --n examples; write PNGs
    and WHAT.json (the numbers behind them) to --out and print their paths."""
    if what not in WHAT:
        raise RobustscopeError(f"--what {what!r} is unknown; choose one of: {', '.join(WHAT)}")
    count = positive_int(WHAT[what][1] if n is None else n, "--n")
    members = _members(checkpoints, dataset, split, count, data_root, device)
    ds = members[0].subject.data
    if what != "tsne":
        shape = tuple(ds.input_shape)
        if len(shape) != 3 or shape[0] not in (1, 3):
            raise RobustscopeError(
                f"--what {what} draws images; {ds.name!r} has inputs of shape {shape}; "
                "use --what tsne for vector data"
            )
    settings: dict[str, Any] = {
        "eps": None if eps is None else parse_eps(eps, "--eps"),
        "norm": norm,
        "steps": None if steps is None else positive_int(steps, "--steps"),
        "lr": None if lr is None else parse_real(lr, "--lr", minimum=0.0, strict=True),
        "beta": parse_real(beta, "--beta", minimum=0.0, strict=True),
        "target": int(target) if target.lstrip("-").isdigit() else target,
        "points": positive_int(points, "--points", minimum=2),
        "seed": seed,
    }
    if what == "effective":
        train_count = positive_int(train_n, "--train-n")
        settings["train"] = [
            load_subject(m.path, dataset, "train", train_count, data_root, device).data
            for m in members
        ]
    payload, files = DRAW[what](members, settings, out)
    payload = {
        "what": what,
        "figure": WHAT[what][0],
        "dataset": ds.name,
        "split": split,
        "n": len(ds.x),
        "checkpoints": [{"label": m.label, "path": str(m.path)} for m in members],
        **payload,
    }
    json_path = out / f"{what}.json"
    payload["files"] = [str(p) for p in [*files, json_path]]
    write_json(json_path, finite(payload))
    emit(payload, as_json, *payload["files"])


# ----------------------------------------------------------------------------- the drawings

Drawing = Callable[[list[Member], dict[str, Any], Path], tuple[dict[str, Any], list[Path]]]


def _quality(x: torch.Tensor, ref: torch.Tensor, box: Any) -> dict[str, list[float]]:
    from robustscope.visual import psnr, ssim

    width = box.width if box.bounded else 1.0
    return {
        "psnr": psnr(x, ref, data_range=width).tolist(),
        "ssim": ssim(x, ref, data_range=width).tolist(),
    }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _saliency(members: list[Member], s: dict[str, Any], out: Path) -> tuple[dict, list[Path]]:
    from robustscope.visual import saliency
    from robustscope.visual.figures import ImageRow, image_grid, save

    ds = members[0].subject.data
    rows = [ImageRow("original", ds.x, [_class(ds, int(c)) for c in ds.y])]
    numbers = {}
    for m in members:
        res = saliency(m.subject.model, ds.x, ds.y)
        caps = [f"ŷ={_class(ds, int(p))}" for p in res.predicted]
        rows.append(ImageRow(m.label, res.display, caps, kind="signed"))
        numbers[m.label] = res.to_dict()
    title = "∇ₓ loss at the true label, clipped to ±3σ (tsipras2019 Fig. 2)"
    path = save(image_grid(rows, title=title), out / "saliency.png")
    return {"models": numbers}, [path]


def _large_eps_all(members: list[Member], s: dict[str, Any]) -> dict[str, Any]:
    from robustscope.visual import large_eps_examples

    ds = members[0].subject.data
    return {
        m.label: large_eps_examples(
            m.subject.model,
            ds.x,
            ds.y,
            eps=s["eps"],
            norm=s["norm"],
            steps=s["steps"] or 100,
            target=s["target"],
        )
        for m in members
    }


def _large_eps(members: list[Member], s: dict[str, Any], out: Path) -> tuple[dict, list[Path]]:
    from robustscope.visual.figures import ImageRow, image_grid, save

    ds = members[0].subject.data
    results = _large_eps_all(members, s)
    rows = [ImageRow("original", ds.x, [_class(ds, int(c)) for c in ds.y])]
    for label, res in results.items():
        caps = [
            f"→{_class(ds, int(t))}: {_class(ds, int(p))} {float(q):.2f}"
            for t, p, q in zip(res.targets, res.predicted, res.target_prob, strict=True)
        ]
        rows.append(ImageRow(label, res.x_adv, caps))
    first = next(iter(results.values()))
    title = f"targeted PGD, {first.norm} ε={first.eps:.3g} (tsipras2019 Fig. 3)"
    path = save(image_grid(rows, title=title), out / "large-eps.png")
    return {"models": {k: r.to_dict() for k, r in results.items()}}, [path]


def _interpolation(members: list[Member], s: dict[str, Any], out: Path) -> tuple[dict, list[Path]]:
    from robustscope.visual import interpolation
    from robustscope.visual.figures import interpolation_strips, save

    ds = members[0].subject.data
    results = _large_eps_all(members, s)
    strips = {
        m.label: interpolation(m.subject.model, results[m.label], steps=s["points"])
        for m in members
    }
    first = next(iter(results.values()))
    title = f"x → large-ε example ({first.norm} ε={first.eps:.3g}); p = target's probability"
    fig = interpolation_strips(strips, examples=len(ds.x), class_names=ds.classes, title=title)
    path = save(fig, out / "interpolation.png")
    numbers = {
        label: {"large_eps": results[label].to_dict(), **strip.to_dict()}
        for label, strip in strips.items()
    }
    return {"models": numbers}, [path]


def _inversions(
    members: list[Member], s: dict[str, Any], out: Path, effective: bool
) -> tuple[dict, list[Path]]:
    from robustscope.visual import effective_images, invert
    from robustscope.visual.figures import ImageRow, image_grid, loss_curves, save
    from robustscope.visual.inversion import DEFAULT_LR

    ds = members[0].subject.data
    kw = {"steps": s["steps"] or 500, "lr": s["lr"] or DEFAULT_LR, "seed": s["seed"]}
    rows = [ImageRow("original", ds.x, [_class(ds, int(c)) for c in ds.y])]
    curves: dict[str, Any] = {}
    numbers: dict[str, Any] = {}
    for i, m in enumerate(members):
        model = m.subject.model
        with torch.no_grad():
            z = model.features(ds.x.to(m.subject.device)).detach()
        inv = invert(model, z, **kw)
        q = _quality(inv.x, ds.x, ds.box)
        caps = [f"{p:.1f} dB" for p in q["psnr"]]
        rows.append(ImageRow(f"{m.label}\nreconstruction", inv.x, caps))
        curves[f"{m.label}: eq. 3"] = inv.mean_loss
        entry: dict[str, Any] = {"inversion": {**inv.to_dict(), **q}}
        if effective:
            train = s["train"][i]
            eff = effective_images(model, ds.x, train=(train.x, train.y), beta=s["beta"], **kw)
            qe = _quality(eff.inversion.x, ds.x, ds.box)
            caps = [f"{p:.1f} dB" for p in qe["psnr"]]
            rows.append(ImageRow(f"{m.label}\neffective", eff.inversion.x, caps))
            curves[f"{m.label}: effective, eq. 10"] = eff.inversion.mean_loss
            entry["effective"] = {**eff.to_dict(), **qe, "train_n": len(train.x)}
        numbers[m.label] = entry
    what = "effective" if effective else "inversion"
    kind = "reconstructions and effective images" if effective else "reconstructions"
    title = f"{kind}, {kw['steps']} Adam steps, PSNR vs the original (terzi2021 Fig. 1)"
    grid = save(image_grid(rows, title=title), out / f"{what}.png")
    fig = loss_curves(curves, title="terzi2021 Fig. 2: mean L_inv per iteration")
    curve_path = save(fig, out / f"{what}-curves.png")
    summary = {
        label: {
            key: {
                "final_mean_loss": e[key]["mean_loss"][-1],
                "psnr_mean": _mean(e[key]["psnr"]),
                "ssim_mean": _mean(e[key]["ssim"]),
            }
            for key in e
        }
        for label, e in numbers.items()
    }
    return {"models": numbers, "summary": summary}, [grid, curve_path]


def _inversion(members: list[Member], s: dict[str, Any], out: Path) -> tuple[dict, list[Path]]:
    return _inversions(members, s, out, effective=False)


def _effective(members: list[Member], s: dict[str, Any], out: Path) -> tuple[dict, list[Path]]:
    return _inversions(members, s, out, effective=True)


def _tsne(members: list[Member], s: dict[str, Any], out: Path) -> tuple[dict, list[Path]]:
    from robustscope.visual import tsne_embedding
    from robustscope.visual.figures import save, tsne_scatter

    ds = members[0].subject.data
    res = tsne_embedding({m.label: m.subject.model for m in members}, ds.x, ds.y, seed=s["seed"])
    title = f"t-SNE of features(x), {len(ds.x)} {ds.name} examples (terzi2021 Fig. 6)"
    path = save(tsne_scatter(res, class_names=ds.classes, title=title), out / "tsne.png")
    return res.to_dict(), [path]


DRAW: dict[str, Drawing] = {
    "saliency": _saliency,
    "large-eps": _large_eps,
    "interpolation": _interpolation,
    "inversion": _inversion,
    "effective": _effective,
    "tsne": _tsne,
}
