"""``robustscope robustify``: wu2020's post-hoc robustification of a checkpoint (issue 13).

One command, two modes (and a listing):

* ``--out NEW.safetensors`` writes one transformed checkpoint — wu2020's M1/M2/M3
  (``--method m1|m2|m3 --percent P [--layer NAME]``) or wen2020's spectral-norm clipping
  (``--method spectral_clip --bound B``) — by :func:`robustscope.posthoc.transform_checkpoint`,
  so its ``transforms`` metadata records the chain. It prints what was done (per layer: units
  or singular values dropped, M2's Frobenius norms, the clipped spectral norms) and the clean
  accuracy before and after on the first ``--n`` points of ``--split``.
* ``--sweep`` writes nothing: :func:`robustscope.posthoc.sweep.run_sweep` measures every
  method × p on the first ``--n`` points — clean accuracy, the accuracy on examples
  transferred from the original at each ε of an ℓ∞ grid (wu2020 Fig. 1), the challenge
  score of minimal ℓ2 attacks re-run on each member at p = 0 and its change from p = 0
  (wu2020 Table 1), and eq. (4) with ``--noise C``.
* ``--list-layers`` prints the model's fully connected layers, marking the default one.

M1 and M3 count unit activity on the first ``--train-n`` examples of the train split of the
checkpoint's dataset (or ``--dataset``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from robustscope.cli.options import (
    BatchSizeOpt,
    CheckpointArg,
    DataRootOpt,
    DatasetOpt,
    DeviceOpt,
    FirstNOpt,
    JsonFlag,
    SeedOpt,
    SplitOpt,
)
from robustscope.cli.output import Column, TableView, emit, fixed
from robustscope.errors import RobustscopeError

__all__ = ["robustify_cmd"]

#: the sweep's default p grid (wu2020 sweep p = 0, 1, ..., 5 %)
DEFAULT_PERCENTS = "0,1,2,3,4,5"
#: the transferred attacks' default ℓ∞ ε grid
DEFAULT_EPS = "0,0.05,0.1,0.2"
SPECTRAL = "spectral_clip"


def _names(value: str, option: str) -> list[str]:
    names = list(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    if not names:
        raise RobustscopeError(f"{option} expects comma-separated names, got {value!r}")
    return names


def _items(value: str, option: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise RobustscopeError(f"{option} expects comma-separated numbers such as 0,1,5")
    return items


def _check_method(name: str, allowed: Sequence[str], mode: str) -> None:
    if name in allowed:
        return
    if name == SPECTRAL:
        raise RobustscopeError(
            "--method spectral_clip has no p grid to sweep: write it with --out NEW.safetensors "
            "--bound B; --sweep compares m1, m2, m3"
        )
    raise RobustscopeError(f"--method: unknown method {name!r}; {mode} takes {', '.join(allowed)}")


def _refuse(given: dict[str, Any], why: str) -> None:
    extra = [flag for flag, value in given.items() if value not in (None, False)]
    if extra:
        raise RobustscopeError(f"{', '.join(extra)}: {why}")


# ----------------------------------------------------------------------------- --list-layers


def _list_layers(checkpoint_path: Path, as_json: bool) -> None:
    from torch import nn

    from robustscope import checkpoint
    from robustscope.posthoc.layers import select_linear

    model, meta = checkpoint.load(checkpoint_path)
    (default,) = select_linear(model, None, transform="m1")  # refuses a model without any
    rows = [
        {
            "name": name,
            "in_features": module.in_features,
            "out_features": module.out_features,
            "default": name == default,
        }
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
    ]
    source = str(checkpoint.resolve(checkpoint_path))
    found = {"checkpoint": source, "model": meta.model.name, "default": default, "layers": rows}
    view = TableView(
        [
            Column("layer", "name"),
            Column("in", "in_features"),
            Column("out", "out_features"),
            Column("", lambda r: "default" if r["default"] else ""),
        ],
        rows=rows,
        title=f"fully connected layers of {meta.model.name} (--layer NAME or all)",
    )
    emit(found, as_json, view)


# ----------------------------------------------------------------------------- data


def _train_data(
    meta: Any, name: str, dataset: str | None, train_n: int, data_root: Path | None
) -> tuple[Any, Any]:
    """The first ``train_n`` training examples M1/M3 count unit activity on."""
    from robustscope import data
    from robustscope.cli.measure import _dataset_params
    from robustscope.params import positive_int

    n = positive_int(train_n, "--train-n")
    ds = data.load(name, "train", root=data_root, **_dataset_params(meta, dataset)).head(n)
    return ds.x, ds.y


# ----------------------------------------------------------------------------- --out


def _layer_rows(name: str, details: dict[str, Any], bound: float | None) -> list[dict[str, Any]]:
    """One row per transformed layer of a transform's recorded details."""
    if name == "m3":
        return _layer_rows("m1", details["m1"], None) + _layer_rows("m2", details["m2"], None)
    if name == SPECTRAL:
        clipped = set(details["clipped"])
        assert bound is not None
        return [
            {
                "step": name,
                "layer": layer,
                "spectral_norm_before": sigma,
                "spectral_norm_after": min(sigma, bound),
                "clipped": layer in clipped,
            }
            for layer, sigma in details["norms_before"].items()
        ]
    if name == "m1":
        return [
            {
                "step": "m1",
                "layer": layer,
                "of": "units",
                "total": details["units"][layer],
                "dropped": k,
                "counted_on": details["counted_on"],
            }
            for layer, k in details["dropped"].items()
        ]
    return [
        {
            "step": "m2",
            "layer": layer,
            "of": "singular values",
            "total": details["singular_values"][layer],
            "dropped": k,
            "frobenius_before": details["frobenius_before"][layer],
            "frobenius_after": details["frobenius_after"][layer],
        }
        for layer, k in details["dropped"].items()
    ]


def _write(
    subject: Any,
    checkpoint_path: Path,
    transform: Any,
    train: tuple[Any, Any] | None,
    out: Path,
    split: str,
    batch_size: int,
    as_json: bool,
) -> None:
    from robustscope import checkpoint
    from robustscope.evaluation import evaluate_clean
    from robustscope.posthoc import transform_checkpoint
    from robustscope.probes.base import ProbeData

    model, _, ds, dev = subject
    source = checkpoint.resolve(checkpoint_path)
    before = evaluate_clean(model, ds, batch_size=batch_size, device=dev)
    probe_data = ProbeData(test=(ds.x, ds.y), train=train)
    written = transform_checkpoint(source, out, transform, data=probe_data)
    new_model, _ = checkpoint.load(out, device=dev)
    after = evaluate_clean(new_model, ds, batch_size=batch_size, device=dev)
    record = written.transforms[-1]
    bound = record["params"].get("bound")
    rows = _layer_rows(record["name"], record["details"], bound)
    found = {
        "checkpoint": str(source),
        "out": str(out),
        "method": record["name"],
        "params": record["params"],
        "layers": rows,
        "details": record["details"],
        "transforms": [t["name"] for t in written.transforms],
        "dataset": ds.name,
        "split": split,
        "n": len(ds),
        "train_n": len(train[0]) if train is not None else None,
        "clean_accuracy_before": before.accuracy,
        "clean_accuracy_after": after.accuracy,
    }
    if record["name"] == SPECTRAL:
        view = TableView(
            [
                Column("layer", "layer"),
                Column("σ_max before", "spectral_norm_before", fixed(4)),
                Column("σ_max after", "spectral_norm_after", fixed(4)),
                Column("clipped", "clipped"),
            ],
            rows=rows,
            title=f"spectral_clip (bound {bound:g}) on every Linear/Conv2d layer",
        )
    else:
        p = record["params"]["percent"]
        view = TableView(
            [
                Column("step", "step"),
                Column("layer", "layer"),
                Column("dropped", lambda r: f"{r['dropped']} of {r['total']} {r['of']}"),
                Column("‖W‖_F before", "frobenius_before", fixed(4)),
                Column("‖W‖_F after", "frobenius_after", fixed(4)),
            ],
            rows=rows,
            title=f"{record['name']} at p = {p:g} %"
            + (f" (unit activity on {len(train[0])} training examples)" if train else ""),
        )
    change = after.accuracy - before.accuracy
    emit(
        found,
        as_json,
        view,
        f"clean accuracy on {ds.name} {split} (n={len(ds)}): {before.accuracy:.4f} → "
        f"{after.accuracy:.4f} ({change:+.4f})",
        f"wrote {out} (transforms: {', '.join(found['transforms'])})",
    )


# ----------------------------------------------------------------------------- --sweep


def _nested(a: Any) -> Any:
    return a.tolist()


def _sweep_tables(found: dict[str, Any]) -> list[TableView]:
    from robustscope.studies.store.vocab import format_eps

    methods, percents = found["methods"], found["percents"]
    heads = [f"p = {p:g}" for p in percents]

    def by_method(fmt: Any) -> list[dict[str, Any]]:
        return [
            {"method": m, **{h: fmt(i, j) for j, h in enumerate(heads)}}
            for i, m in enumerate(methods)
        ]

    def grid(title: str, rows: list[dict[str, Any]], columns: Sequence[str]) -> TableView:
        return TableView(
            [Column("method", "method"), *(Column(h, h) for h in columns)],
            rows=rows,
            title=title,
            compact=True,
        )

    clean, dropped = found["clean_accuracy"], found["dropped"]
    tables = [
        grid(
            f"clean accuracy (dropped) on {found['dataset']} {found['split']}, n={found['n']}",
            by_method(lambda i, j: f"{clean[i][j]:.4f} ({int(dropped[i][j])})"),
            heads,
        )
    ]
    for label, t in found["transferred"].items():
        eps_heads = [f"ε = {format_eps(e)}" for e in t["eps"]]
        rows = [
            {
                "method": m,
                "p": f"{p:g}",
                **{h: f"{t['accuracy'][i][j][k]:.4f}" for k, h in enumerate(eps_heads)},
            }
            for i, m in enumerate(methods)
            for j, p in enumerate(percents)
        ]
        tables.append(
            TableView(
                [Column("method", "method"), Column("p", "p"), *(Column(h, h) for h in eps_heads)],
                rows=rows,
                title=f"accuracy on {label} (ℓ∞) examples of the original (wu2020 Fig. 1)",
                compact=True,
            )
        )
    for label, c in found["challenge"].items():
        score, change = c["score"], c["change"]
        cols = [heads[0], *(f"Δ {h}" for h in heads[1:])]
        rows = [
            {
                "method": m,
                cols[0]: f"{score[i][0]:.4g}",
                **{cols[j]: f"{change[i][j]:+.4g}" for j in range(1, len(heads))},
            }
            for i, m in enumerate(methods)
        ]
        tables.append(
            grid(
                f"challenge score of {label} (ℓ2): at p = 0, change (wu2020 Table 1)",
                rows,
                cols,
            )
        )
    if found["noise"] is not None:
        noise = found["noise"]["score"]
        tables.append(
            grid(
                f"wu2020 eq. 4: ℓ∞ noise of radius {found['noise']['bound']:g}",
                by_method(lambda i, j: f"{noise[i][j]:+.4f}"),
                heads,
            )
        )
    return tables


def _sweep(
    subject: Any,
    checkpoint_path: Path,
    methods: list[str],
    percents: list[float],
    layer: str | None,
    train: tuple[Any, Any] | None,
    transfer: list[str],
    eps: list[float],
    adaptive: list[str],
    noise: float | None,
    split: str,
    batch_size: int,
    seed: int,
    as_json: bool,
) -> None:
    from robustscope import checkpoint
    from robustscope.posthoc.layers import select_linear
    from robustscope.posthoc.sweep import AttackSetting, run_sweep
    from robustscope.probes.base import ProbeData

    model, _, ds, _ = subject
    transferred = [AttackSetting(a, tuple(eps), norm="linf", label=a) for a in transfer]
    challenged = [AttackSetting(a, norm="l2", label=a) for a in adaptive]
    result = run_sweep(
        model,
        ProbeData(test=(ds.x, ds.y), train=train),
        methods=methods,
        percents=percents,
        layer=layer,
        transferred=transferred,
        adaptive=challenged,
        noise_bound=noise,
        batch_size=batch_size,
        seed=seed,
        progress=not as_json and sys.stderr.isatty(),
    )
    found: dict[str, Any] = {
        "checkpoint": str(checkpoint.resolve(checkpoint_path)),
        "dataset": ds.name,
        "split": split,
        "n": result.n,
        "train_n": len(train[0]) if train is not None else None,
        "layers": select_linear(model, layer, transform=methods[0]),
        "methods": list(result.methods),
        "percents": list(result.percents),
        "axes": {
            "clean_accuracy": ["method", "percent"],
            "dropped": ["method", "percent"],
            "transferred.*.accuracy": ["method", "percent", "eps"],
            "challenge.*.score": ["method", "percent"],
            "challenge.*.change": ["method", "percent"],
            "noise.score": ["method", "percent"],
        },
        "clean_accuracy": _nested(result.clean_accuracy),
        "dropped": _nested(result.dropped),
        "transferred": {
            label: {"attack": label, "norm": "linf", "eps": list(e), "accuracy": _nested(acc)}
            for label, (e, acc) in result.transferred.items()
        },
        "challenge": {
            label: {
                "attack": label,
                "norm": "l2",
                "score": _nested(score),
                "change": _nested(score - score[:, :1]),  # percents[0] is p = 0
            }
            for label, score in result.challenge.items()
        },
        "noise": None
        if result.noise is None
        else {"bound": result.noise_bound, "norm": "linf", "score": _nested(result.noise)},
    }
    emit(found, as_json, *_sweep_tables(found))


# ----------------------------------------------------------------------------- the command


def robustify_cmd(
    checkpoint_path: CheckpointArg,
    method: Annotated[
        str | None,
        typer.Option(
            help="m1, m2, m3 (wu2020) or spectral_clip; with --sweep a comma list of m1, m2, "
            "m3 (default there: m1,m2,m3)"
        ),
    ] = None,
    percent: Annotated[
        str | None,
        typer.Option(
            help="p ∈ [0, 100): the share of units / singular values to drop; with --sweep a "
            f"comma list (default there: {DEFAULT_PERCENTS})"
        ),
    ] = None,
    layer: Annotated[
        str | None,
        typer.Option(
            help="the fully connected layer to transform (--list-layers), or 'all' "
            "(default: the penultimate one)"
        ),
    ] = None,
    bound: Annotated[
        str | None,
        typer.Option(help="spectral_clip: the bound on every layer's spectral norm, e.g. 1.5"),
    ] = None,
    train_n: Annotated[
        int, typer.Option(help="M1/M3 count unit activity on the first N training examples")
    ] = 5000,
    out: Annotated[
        Path | None, typer.Option(help="write the robustified checkpoint to this .safetensors")
    ] = None,
    sweep: Annotated[
        bool,
        typer.Option(
            "--sweep", help="evaluate every method × p without writing (wu2020 Fig. 1, Table 1)"
        ),
    ] = False,
    transfer: Annotated[
        str | None,
        typer.Option(
            help="--sweep: attacks made once on the original and transferred to every member, "
            "e.g. fgsm,deepfool"
        ),
    ] = None,
    eps: Annotated[
        str | None,
        typer.Option(help=f"--sweep: the ℓ∞ ε grid of --transfer (default: {DEFAULT_EPS})"),
    ] = None,
    adaptive: Annotated[
        str | None,
        typer.Option(
            help="--sweep: minimal ℓ2 attacks re-run on each member for the challenge score, "
            "e.g. deepfool,cw"
        ),
    ] = None,
    noise: Annotated[
        str | None,
        typer.Option(help="--sweep: wu2020 eq. 4 with uniform ℓ∞ noise of this radius C"),
    ] = None,
    list_layers: Annotated[
        bool,
        typer.Option("--list-layers", help="print the fully connected layers and stop"),
    ] = False,
    dataset: DatasetOpt = None,
    split: SplitOpt = "test",
    n: FirstNOpt = 500,
    batch_size: BatchSizeOpt = 256,
    seed: SeedOpt = 0,
    data_root: DataRootOpt = None,
    device: DeviceOpt = "auto",
    as_json: JsonFlag = False,
) -> None:
    """wu2020's post-hoc robustification: write a robustified checkpoint (--out) or evaluate
    a grid of methods × p (--sweep)."""
    from robustscope import attacks, checkpoint
    from robustscope.cli.measure import load_subject
    from robustscope.params import parse_eps_list, parse_real
    from robustscope.posthoc import METHODS, create
    from robustscope.posthoc.layers import select_linear

    if list_layers:
        _refuse({"--out": out, "--sweep": sweep}, "--list-layers only lists the layers")
        _list_layers(checkpoint_path, as_json)
        return
    if out is not None and sweep:
        raise RobustscopeError(
            "--out and --sweep: --out writes one robustified checkpoint, --sweep evaluates a "
            "grid without writing; give one of them"
        )
    if out is None and not sweep:
        raise RobustscopeError(
            "pass --out NEW.safetensors (write a robustified checkpoint) or --sweep (evaluate "
            "methods × p), or --list-layers"
        )
    sweep_only = {"--transfer": transfer, "--eps": eps, "--adaptive": adaptive, "--noise": noise}
    if out is not None:
        _refuse(sweep_only, "options of --sweep, which evaluates without writing; drop them")
        if method is None:
            raise RobustscopeError("--out needs --method m1|m2|m3|spectral_clip")
        methods = _names(method, "--method")
        if len(methods) > 1:
            raise RobustscopeError(
                f"--out writes one transform, got --method {method}: give one method (compare "
                "several with --sweep)"
            )
        name = methods[0]
        _check_method(name, (*METHODS, SPECTRAL), "--out")
        if name == SPECTRAL:
            _refuse(
                {"--percent": percent, "--layer": layer},
                "spectral_clip clips every Linear/Conv2d layer to --bound; it takes neither",
            )
            if bound is None:
                raise RobustscopeError("--method spectral_clip needs --bound B (B > 0)")
            transform = create(SPECTRAL, bound=bound)
        else:
            _refuse({"--bound": bound}, f"--bound is spectral_clip's; {name} takes --percent")
            if percent is None:
                raise RobustscopeError(f"--method {name} needs --percent P (P in [0, 100))")
            percents = _items(percent, "--percent")
            if len(percents) > 1:
                raise RobustscopeError(
                    f"--out writes one transform, got --percent {percent}: give one p "
                    "(compare several with --sweep)"
                )
            transform = create(name, percent=percents[0], layer=layer)
        if out.suffix != ".safetensors":
            raise RobustscopeError(
                f"--out {out}: name a .safetensors file, e.g. robust.safetensors"
            )
        if out.resolve() == checkpoint.resolve(checkpoint_path).resolve():
            raise RobustscopeError(
                f"--out {out} is the source checkpoint: write the robustified one beside it"
            )
        subject = load_subject(checkpoint_path, dataset, split, n, data_root, device)
        if name != SPECTRAL:
            select_linear(subject.model, layer, transform=name)  # a clear error before the work
        train = None
        if getattr(transform, "needs_data", False):
            train = _train_data(subject.meta, subject.data.name, dataset, train_n, data_root)
        _write(subject, checkpoint_path, transform, train, out, split, batch_size, as_json)
        return

    _refuse({"--bound": bound}, "--bound is spectral_clip's, which --sweep does not take")
    if eps is not None and transfer is None:
        raise RobustscopeError("--eps is the ε grid of --transfer: pass --transfer ATTACKS too")
    methods = _names(method or ",".join(METHODS), "--method")
    for m in methods:
        _check_method(m, METHODS, "--sweep")
    grid_p = []
    for p in _items(percent or DEFAULT_PERCENTS, "--percent"):
        for m in methods:
            create(m, percent=p, layer=layer)  # refuses p outside [0, 100) with its message
        grid_p.append(parse_real(p, "--percent"))
    transfers = _names(transfer, "--transfer") if transfer is not None else []
    adaptives = _names(adaptive, "--adaptive") if adaptive is not None else []
    for a in (*transfers, *adaptives):
        attacks.get(a)  # an unknown attack lists the valid ones
    grid = sorted(set(parse_eps_list(eps or DEFAULT_EPS, "--eps")))
    bound_c = parse_real(noise, "--noise", minimum=0.0, strict=True) if noise is not None else None
    subject = load_subject(checkpoint_path, dataset, split, n, data_root, device)
    select_linear(subject.model, layer, transform=methods[0])
    train = None
    if {"m1", "m3"} & set(methods):
        train = _train_data(subject.meta, subject.data.name, dataset, train_n, data_root)
    _sweep(
        subject, checkpoint_path, methods, grid_p, layer, train, transfers, grid,
        adaptives, bound_c, split, batch_size, seed, as_json,
    )  # fmt: skip
