"""The ``robustscope`` command line: a thin typer layer over the Python API.

Every command that takes a CHECKPOINT accepts a checkpoint file or a run
directory; ``--json`` prints one JSON object for scripts. Errors print one line
naming what is wrong and how to fix it, and exit with status 2.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.table import Table

from robustscope.errors import RobustscopeError
from robustscope.params import parse_eps_list, parse_ints, parse_number
from robustscope.training.config import TrainConfig

app = typer.Typer(
    name="robustscope",
    help="A laboratory for the robustness–accuracy trade-off of neural networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out_console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

# training defaults live in TrainConfig; the CLI shows the same ones
_DEFAULT: dict[str, Any] = {k: f.default for k, f in TrainConfig.model_fields.items()}

JsonFlag = Annotated[bool, typer.Option("--json", help="print one JSON object instead of a table")]
DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N")]


def _finite(obj: Any) -> Any:
    """``obj`` with NaN and ±inf floats as None: strict JSON (as ``ProbeResult.to_json``)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _print_json(obj: Any) -> None:
    """One JSON document on stdout; non-finite numbers are written as null."""
    sys.stdout.write(json.dumps(_finite(obj), indent=2, default=str, allow_nan=False) + "\n")


def _parse_kv(items: list[str], option: str) -> dict[str, Any]:
    """``["width=2", "widths=[64, 32]"]`` → ``{"width": 2, "widths": [64, 32]}`` (YAML values)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RobustscopeError(f"{option} expects KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return out


def _parse_nested(items: list[str], option: str) -> dict[str, dict[str, Any]]:
    """``["pgd.eps=0.1", "pgd.steps=20"]`` → ``{"pgd": {"eps": 0.1, "steps": 20}}``."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in _parse_kv(items, option).items():
        name, sep, field = key.partition(".")
        if not sep or not name or not field:
            raise RobustscopeError(f"{option} expects NAME.KEY=VALUE, got key {key!r}")
        out.setdefault(name, {})[field] = value
    return out


def _number(text: str | None, option: str) -> float | None:
    """An optional number option (``0.03`` or ``8/255``); None stays None."""
    return None if text is None else parse_number(text, option)


@app.command("datasets")
def datasets_cmd(
    as_json: JsonFlag = False,
    download: Annotated[
        str | None, typer.Option(help="download (and verify) this dataset into the cache")
    ] = None,
) -> None:
    """List the datasets, whether each is present on this machine, and where."""
    from robustscope import data

    if download:
        path = data.fetch(download)
        err_console.print(f"{download}: files verified in {path}")
    rows = data.available()
    if as_json:
        _print_json([dataclasses.asdict(r) for r in rows])
        return
    table = Table("dataset", "present", "location", "description")
    for r in rows:
        where = r.location if r.present else "not found"
        table.add_row(r.name, "yes" if r.present else "no", where, r.description)
    out_console.print(table)
    if not all(r.present for r in rows):
        out_console.print(
            "Missing datasets: `robustscope datasets --json` lists the folders searched; "
            "the README's Data section says how to get each."
        )


@app.command("models")
def models_cmd(
    input_shape: Annotated[
        str | None, typer.Option(help="count parameters for this input shape, e.g. 3,32,32")
    ] = None,
    num_classes: Annotated[int, typer.Option(help="number of classes for the counts")] = 10,
    as_json: JsonFlag = False,
) -> None:
    """List the architectures with parameter counts and notes."""
    from robustscope import models

    shape = tuple(parse_ints(input_shape, "--input-shape")) if input_shape else None
    rows: list[dict[str, Any]] = []
    for entry in models.entries():
        use = shape or entry.default_input_shape
        try:
            n: int | str = models.count_parameters(models.create(entry.name, num_classes, use))
        except RobustscopeError as exc:
            n = f"n/a ({exc})" if as_json else "n/a"
        rows.append(
            {"name": entry.name, "input_shape": list(use), "parameters": n, "notes": entry.notes}
        )
    if as_json:
        _print_json(rows)
        return
    table = Table("model", "input shape", "parameters", "notes")
    for r in rows:
        count = r["parameters"]
        table.add_row(
            str(r["name"]),
            "×".join(map(str, r["input_shape"])),
            f"{count:,}" if isinstance(count, int) else str(count),
            str(r["notes"]),
        )
    out_console.print(table)


@app.command("train")
def train_cmd(
    out: Annotated[Path, typer.Option(help="run directory (checkpoints, history, config)")],
    dataset: Annotated[
        str, typer.Option(help="dataset name (robustscope datasets)")
    ] = "fashion-mnist",
    dataset_param: Annotated[
        list[str] | None,
        typer.Option("--dataset-param", help="dataset option KEY=VALUE, repeatable"),
    ] = None,
    model: Annotated[str, typer.Option(help="architecture (robustscope models)")] = "cnn",
    model_kwarg: Annotated[
        list[str] | None,
        typer.Option("--model-kwarg", help="architecture option KEY=VALUE, repeatable"),
    ] = None,
    method: Annotated[
        str,
        typer.Option(help="training objective: standard, pgd, trades, fgsm-rs, free, mixed, noise"),
    ] = "standard",
    method_param: Annotated[
        list[str] | None,
        typer.Option("--method-param", help="objective option KEY=VALUE, repeatable"),
    ] = None,
    eps: Annotated[
        str | None, typer.Option(help="objective's ε in pixel units, e.g. 0.1 or 8/255")
    ] = None,
    norm: Annotated[str | None, typer.Option(help="objective's norm: linf or l2")] = None,
    steps: Annotated[int | None, typer.Option(help="steps of the inner attack")] = None,
    step_size: Annotated[
        str | None, typer.Option(help="step of the inner attack, e.g. 2/255")
    ] = None,
    beta: Annotated[str | None, typer.Option(help="TRADES weight β of the KL term")] = None,
    sigma: Annotated[str | None, typer.Option(help="noise: Gaussian standard deviation")] = None,
    replays: Annotated[int | None, typer.Option(help="free AT: replays m of each batch")] = None,
    attack_mode: Annotated[
        str | None, typer.Option(help="model mode during the inner attack: eval or train")
    ] = None,
    epochs: int = _DEFAULT["epochs"],
    lr: float = _DEFAULT["lr"],
    batch_size: int = _DEFAULT["batch_size"],
    optimizer: Annotated[str, typer.Option(help="sgd or adam")] = _DEFAULT["optimizer"],
    momentum: float = _DEFAULT["momentum"],
    nesterov: bool = False,
    weight_decay: float = _DEFAULT["weight_decay"],
    schedule: Annotated[
        str, typer.Option(help="constant, multistep, cosine or onecycle")
    ] = _DEFAULT["schedule"],
    milestones: Annotated[str | None, typer.Option(help="multistep epochs, e.g. 80,120")] = None,
    gamma: float = _DEFAULT["gamma"],
    seed: int = _DEFAULT["seed"],
    device: DeviceOpt = "auto",
    augment: Annotated[
        str | None, typer.Option(help="none or crop_flip (default: per dataset)")
    ] = None,
    normalize: Annotated[
        bool, typer.Option(help="dataset mean/std as the model's first layer")
    ] = True,
    train_subset: Annotated[
        int | None, typer.Option(help="use the first N training examples")
    ] = None,
    test_subset: Annotated[
        int | None, typer.Option(help="evaluate on the first N test examples")
    ] = None,
    data_root: Annotated[Path | None, typer.Option(help="folder holding the dataset files")] = None,
    resume: Annotated[
        bool, typer.Option(help="continue the run in --out from its last epoch")
    ] = False,
    stop_after_epochs: Annotated[
        int | None, typer.Option(help="stop (resumably) after N epochs in this call")
    ] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    track: Annotated[str | None, typer.Option(help="measurements to track, e.g. clean,pgd")] = None,
    track_every: Annotated[int, typer.Option(help="track every N epochs")] = _DEFAULT[
        "track_every"
    ],
    track_n: Annotated[int, typer.Option(help="size of the fixed tracking subsets")] = _DEFAULT[
        "track_n"
    ],
    track_param: Annotated[
        list[str] | None,
        typer.Option("--track-param", help="tracking option NAME.KEY=VALUE, e.g. pgd.eps=0.1"),
    ] = None,
    co_detect: Annotated[
        bool, typer.Option(help="detect catastrophic overfitting (PGD vs FGSM accuracy)")
    ] = False,
    early_stop: Annotated[
        bool,
        typer.Option(help="stop at catastrophic overfitting; keep best.safetensors"),
    ] = False,
    spectral_clip: Annotated[
        float | None,
        typer.Option(help="clip every conv/linear layer's operator norm to C after each epoch"),
    ] = None,
    co_batch: Annotated[
        int, typer.Option(help="held-out batch of the detector (first N test points)")
    ] = _DEFAULT["co_batch"],
    co_param: Annotated[
        list[str] | None,
        typer.Option("--co-param", help="detector option KEY=VALUE (eps, steps, drop, ...)"),
    ] = None,
    amp: Annotated[
        bool, typer.Option(help="bf16 autocast for the training step (CUDA only)")
    ] = False,
    channels_last: Annotated[
        bool, typer.Option(help="channels-last memory format for images")
    ] = False,
    compile_model: Annotated[
        bool, typer.Option("--compile", help="torch.compile the training forward")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Train a model; a checkpoint is written to --out after every epoch.

    Distributed data-parallel: ``torchrun --nproc_per_node=N -m robustscope train ...``
    (--batch-size is the global batch; only rank 0 writes and prints).
    """
    from robustscope.training import train

    method_params = _parse_kv(method_param or [], "--method-param")
    convenience = {
        "eps": _number(eps, "--eps"),
        "norm": norm,
        "steps": steps,
        "step_size": _number(step_size, "--step-size"),
        "beta": _number(beta, "--beta"),
        "sigma": _number(sigma, "--sigma"),
        "replays": replays,
        "attack_mode": attack_mode,
    }
    for key, value in convenience.items():
        if value is None:
            continue
        if key in method_params:
            flag = "--" + key.replace("_", "-")
            raise RobustscopeError(f"{flag} and --method-param {key}=... both given; keep one")
        method_params[key] = value
    try:
        config = TrainConfig(
            dataset=dataset,
            data_root=str(data_root) if data_root else None,
            dataset_params=_parse_kv(dataset_param or [], "--dataset-param"),
            model=model,
            model_kwargs=_parse_kv(model_kwarg or [], "--model-kwarg"),
            method=method,
            method_params=method_params,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            optimizer=optimizer,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay,
            schedule=schedule,
            milestones=parse_ints(milestones, "--milestones"),
            gamma=gamma,
            seed=seed,
            device=device,
            augment=augment,
            normalize=normalize,
            train_subset=train_subset,
            test_subset=test_subset,
            track=[t for t in (track or "").replace(" ", "").split(",") if t],
            track_every=track_every,
            track_n=track_n,
            track_params=_parse_nested(track_param or [], "--track-param"),
            co_detect=co_detect,
            early_stop=early_stop,
            spectral_clip=spectral_clip,
            co_batch=co_batch,
            co_params=_parse_kv(co_param or [], "--co-param"),
            amp=amp,
            channels_last=channels_last,
            compile=compile_model,
        )
    except ValidationError as exc:
        raise RobustscopeError(_validation_message(exc)) from None
    result = train(
        config,
        out,
        resume=resume,
        progress=progress and sys.stderr.isatty(),
        stop_after_epochs=stop_after_epochs,
    )
    from robustscope.training import distributed

    if not distributed.is_main():
        return
    summary = {
        "run_dir": str(result.run_dir),
        "epochs_completed": result.completed_epochs,
        "finished": result.finished,
        "stop_reason": result.stop_reason,
        **{k: result.final.get(k) for k in ("test_accuracy", "test_loss", "train_accuracy")},
    }
    if as_json:
        _print_json(summary)
    else:
        acc = result.final.get("test_accuracy")
        acc_text = f"{acc:.4f}" if acc is not None else "n/a"
        if result.finished:
            state = "finished" + (f" ({result.stop_reason})" if result.stop_reason else "")
        elif result.stop_reason:
            state = f"stopped early ({result.stop_reason})"
        else:
            state = "stopped (resume with --resume)"
        out_console.print(
            f"{state}: {result.completed_epochs} epoch(s); clean test accuracy {acc_text}; "
            f"run directory {result.run_dir}"
        )


@app.command("eval")
def eval_cmd(
    checkpoint_path: Annotated[
        Path, typer.Argument(metavar="CHECKPOINT", help="checkpoint file or run directory")
    ],
    dataset: Annotated[
        str | None, typer.Option(help="dataset (default: the one trained on)")
    ] = None,
    split: str = "test",
    subset: Annotated[int | None, typer.Option(help="evaluate on the first N examples")] = None,
    batch_size: int = 1000,
    data_root: Annotated[Path | None, typer.Option(help="folder holding the dataset files")] = None,
    device: DeviceOpt = "auto",
    as_json: JsonFlag = False,
) -> None:
    """Clean accuracy and loss of a checkpoint on a dataset."""
    from robustscope import checkpoint
    from robustscope.device import resolve_device
    from robustscope.evaluation import evaluate_clean

    dev = resolve_device(device)
    model, _, ds = _model_and_data(checkpoint_path, dataset, split, subset, data_root, dev)
    result = evaluate_clean(model, ds, batch_size=batch_size, device=dev)
    name = ds.name
    payload = {
        "dataset": result.dataset,
        "split": result.split,
        "n": result.n,
        "clean_accuracy": result.accuracy,
        "loss": result.loss,
        "checkpoint": str(checkpoint.resolve(checkpoint_path)),
    }
    if as_json:
        _print_json(payload)
    else:
        out_console.print(
            f"{name} ({split}, n={result.n}): clean accuracy {result.accuracy:.4f}, "
            f"loss {result.loss:.4f}"
        )


@app.command("attacks")
def attacks_cmd(as_json: JsonFlag = False) -> None:
    """List the attacks."""
    from robustscope import attacks

    rows = attacks.available()
    if as_json:
        _print_json(rows)
        return
    table = Table("attack", "description")
    for name, doc in rows.items():
        table.add_row(name, doc)
    out_console.print(table)


@app.command("attack")
def attack_cmd(
    checkpoint_path: Annotated[
        Path, typer.Argument(metavar="CHECKPOINT", help="checkpoint file or run directory")
    ],
    attack: Annotated[str, typer.Option(help="attack name (robustscope attacks)")] = "pgd",
    norm: Annotated[str, typer.Option(help="linf or l2")] = "linf",
    eps: Annotated[
        str, typer.Option(help="comma-separated radii, e.g. 0,0.05,0.1 or 0,8/255,16/255")
    ] = "0,0.05,0.1",
    steps: Annotated[int | None, typer.Option(help="iterations (attack default if unset)")] = None,
    restarts: Annotated[
        int | None, typer.Option(help="random restarts (attack default if unset)")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="attack parameter KEY=VALUE, repeatable")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="dataset (default: the one trained on)")
    ] = None,
    split: str = "test",
    n: Annotated[int | None, typer.Option(help="attack the first N examples")] = 1000,
    batch_size: int = 256,
    seed: int = 0,
    checks: Annotated[bool, typer.Option(help="run the gradient-masking checks")] = True,
    warm_start: Annotated[
        bool,
        typer.Option(
            help="ε-continuation: attack each ε from the previous ε's final iterate "
            "(attacks that take a start point, e.g. pgd)"
        ),
    ] = True,
    data_root: Annotated[Path | None, typer.Option(help="folder holding the dataset files")] = None,
    device: DeviceOpt = "auto",
    as_json: JsonFlag = False,
) -> None:
    """Clean and robust accuracy of a checkpoint under an attack at several ε."""
    from robustscope import attacks
    from robustscope.device import resolve_device

    dev = resolve_device(device)
    model, _, ds = _model_and_data(checkpoint_path, dataset, split, n, data_root, dev)
    params = _parse_kv(param or [], "--param")
    if steps is not None:
        params["steps"] = steps
    if restarts is not None:
        params["restarts"] = restarts
    curve = attacks.evaluate(
        model,
        ds.x,
        ds.y,
        attack,
        parse_eps_list(eps, "--eps"),
        norm=norm,
        batch_size=batch_size,
        seed=seed,
        checks=checks,
        progress=sys.stderr.isatty() and not as_json,
        warm_start=warm_start,
        **params,
    )
    if as_json:
        _print_json(curve.to_dict())
        return
    table = Table(
        "ε",
        "robust accuracy",
        "on correctly classified",
        title=(
            f"{attack} ({norm}) on {ds.name} {split}, n={curve.n}: clean accuracy {curve.clean_accuracy:.4f}"
        ),
    )
    on_correct = curve.robust_accuracy_on_correct
    for e, acc in curve.robust_accuracy.items():
        table.add_row(f"{e:g}", f"{acc:.4f}", f"{on_correct[e]:.4f}")
    out_console.print(table)
    for flag in curve.flags:
        err_console.print(f"[yellow]warning ({flag.name}):[/yellow] {flag.message}")


@app.command("probes")
def probes_cmd(as_json: JsonFlag = False) -> None:
    """List the probes (diagnostic measurements) and their options."""
    from robustscope import probes

    rows: dict[str, dict[str, Any]] = {
        name: {"description": doc, "options": list(probes.get_probe(name).options)}
        for name, doc in probes.available_probes().items()
    }
    if as_json:
        _print_json(rows)
        return
    table = Table("probe", "description", "options")
    for name, row in rows.items():
        table.add_row(name, str(row["description"]), ", ".join(row["options"]))
    out_console.print(table)


@app.command("probe")
def probe_cmd(
    checkpoint_path: Annotated[
        Path, typer.Argument(metavar="CHECKPOINT", help="checkpoint file or run directory")
    ],
    probe: Annotated[
        str, typer.Option(help="probe name(s), comma-separated (robustscope probes)")
    ] = "input_fisher",
    opt: Annotated[
        list[str] | None,
        typer.Option(
            "--opt",
            help="probe option KEY=VALUE (all probes) or NAME.KEY=VALUE (one probe), repeatable",
        ),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="dataset (default: the one trained on)")
    ] = None,
    n: Annotated[int | None, typer.Option(help="probe the first N test examples")] = 1000,
    train_n: Annotated[
        int, typer.Option(help="first N training examples for probes comparing splits (0: none)")
    ] = 1000,
    data_root: Annotated[Path | None, typer.Option(help="folder holding the dataset files")] = None,
    device: DeviceOpt = "auto",
    arrays: Annotated[
        bool, typer.Option(help="with --json, also print the per-example arrays and histograms")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Measure a checkpoint with one or more probes (input_fisher, cckl, margins, ...)."""
    from robustscope import data, probes
    from robustscope.device import resolve_device

    dev = resolve_device(device)
    names = [p for p in probe.replace(" ", "").split(",") if p]
    infos = [probes.get_probe(name) for name in names]
    options: dict[str, dict[str, Any]] = {name: {} for name in names}
    for key, value in _parse_kv(opt or [], "--opt").items():
        name, sep, field = key.rpartition(".")
        targets = [name] if sep else names
        if sep and name not in options:
            raise RobustscopeError(f"--opt {key}: {name!r} is not among --probe {probe}")
        for target in targets:
            options[target][field] = value
    model, meta, test = _model_and_data(checkpoint_path, dataset, "test", n, data_root, dev)
    train = None
    if train_n > 0 or any("train" in info.splits for info in infos):
        if train_n <= 0:
            raise RobustscopeError(f"--probe {probe} compares train and test; pass --train-n N > 0")
        params = meta.training.get("dataset_params", {}) if dataset in (None, meta.dataset) else {}
        ds = data.load(test.name, "train", root=data_root, **params).head(train_n)
        train = (ds.x, ds.y)
    probe_data = probes.ProbeData(test=(test.x, test.y), train=train)
    results = {name: probes.run_probe(name, model, probe_data, **options[name]) for name in names}
    if as_json:
        out = {}
        for name, result in results.items():
            j = result.to_json()
            if not arrays:
                j.pop("arrays", None)
            out[name] = j
        _print_json({"checkpoint": str(checkpoint_path), "n_test": len(test.x), "probes": out})
        return
    for name, result in results.items():
        table = Table("quantity", "value", title=f"{name} on {test.name} test, n={len(test.x)}")
        for key, value in result.scalars().items():
            table.add_row(key, f"{value:.6g}")
        out_console.print(table)


@app.command("presets")
def presets_cmd(as_json: JsonFlag = False) -> None:
    """List the built-in study presets (robustscope study --preset NAME)."""
    from robustscope.studies.presets import DEFAULT_PRESET, PRESETS

    rows = {
        name: {
            "default": name == DEFAULT_PRESET,
            "dataset": spec.get("dataset", ""),
            "reproduces": spec.get("reproduces", ""),
            "description": spec.get("description", ""),
        }
        for name, spec in sorted(PRESETS.items())
    }
    if as_json:
        _print_json(rows)
        return
    table = Table("preset", "dataset", "reproduces", "description")
    for name, row in rows.items():
        label = f"{name} (default)" if row["default"] else name
        table.add_row(label, row["dataset"], row["reproduces"], row["description"])
    out_console.print(table)


@app.command("study")
def study_cmd(
    preset: Annotated[
        str | None,
        typer.Option(help="built-in preset (robustscope presets); default tradeoff-fmnist"),
    ] = None,
    spec: Annotated[Path | None, typer.Option(help="a study spec YAML file")] = None,
    out: Annotated[
        Path | None, typer.Option(help="study directory (default runs/<preset or spec name>)")
    ] = None,
    executor: Annotated[str, typer.Option(help="local or ray")] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (ray executor; default: local Ray)")
    ] = None,
    device: DeviceOpt = "auto",
    report: Annotated[bool, typer.Option(help="write the HTML report at the end")] = True,
    progress: Annotated[bool, typer.Option(help="show training progress bars")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Run (or resume) a study: train the family, attack and probe every member, report."""
    from robustscope.studies import presets, runner
    from robustscope.studies import spec as spec_mod

    if preset and spec:
        raise RobustscopeError("give --preset or --spec, not both")
    study = spec_mod.load_spec(spec) if spec else presets.preset(preset or presets.DEFAULT_PRESET)
    summary = runner.run_study(
        study,
        out,
        executor=executor,  # type: ignore[arg-type]
        address=address,
        device=device,
        progress=progress and sys.stderr.isatty() and not as_json,
        echo=None if as_json else (lambda line: err_console.print(line, soft_wrap=True)),
    )
    report_path = None
    if report:
        from robustscope.report import write_report

        report_path = write_report(summary.out)
    if as_json:
        _print_json(
            {
                "out": str(summary.out),
                "planned": summary.planned,
                "skipped": summary.skipped,
                "done": summary.done,
                "failed": summary.failed,
                "held": summary.held,
                "seconds": summary.seconds,
                "report": str(report_path) if report_path else None,
            }
        )
    else:
        _show_summary(summary.out)
        if report_path:
            out_console.print(f"report: {report_path}")
    if summary.failed:
        raise SystemExit(1)


def _summary_rows(study_dir: Path) -> list[dict[str, Any]]:
    from robustscope.report import load_study, summary_rows

    return summary_rows(load_study(study_dir))


def _show_summary(study_dir: Path) -> None:
    from robustscope.report import load_study, summarize
    from robustscope.studies.store.vocab import format_eps

    summary = summarize(load_study(study_dir))
    rows = summary.rows
    if not rows:
        out_console.print(f"{study_dir}: no finished runs yet")
        return
    keys = list(rows[0].keys())
    if all(r.get("status") == "done" for r in rows):
        keys.remove("status")
    # the robust-accuracy columns share one attack: name it once, in the title
    heads = {k: k for k in keys}
    title = str(study_dir)
    if summary.attack is not None:
        title += f" — robust accuracy under {summary.attack}"
        heads.update({k: f"ε={format_eps(eps)}" for k, eps in summary.robust.items()})
    table = Table(*(heads[k] for k in keys), title=title, box=box.SIMPLE_HEAD, padding=(0, 1))
    for row in rows:
        table.add_row(
            *(f"{row[k]:.3f}" if isinstance(row[k], float) else str(row[k]) for k in keys)
        )
    out_console.print(table)


@app.command("show")
def show_cmd(
    study_dir: Annotated[
        Path, typer.Argument(metavar="STUDY_DIR", help="e.g. runs/tradeoff-fmnist")
    ],
    as_json: JsonFlag = False,
) -> None:
    """Print a study's summary table (one row per run)."""
    if as_json:
        _print_json(_summary_rows(study_dir))
        return
    _show_summary(study_dir)


@app.command("report")
def report_cmd(
    study_dir: Annotated[
        Path, typer.Argument(metavar="STUDY_DIR", help="e.g. runs/tradeoff-fmnist")
    ],
) -> None:
    """Write STUDY_DIR/report.html (figures embedded) and the figures as PNGs beside it."""
    from robustscope.report import write_report

    out_console.print(str(write_report(study_dir)))


@app.command("export")
def export_cmd(
    study_dir: Annotated[
        Path, typer.Argument(metavar="STUDY_DIR", help="e.g. runs/tradeoff-fmnist")
    ],
    format: Annotated[str, typer.Option("--format", help="csv or parquet")] = "csv",
    out: Annotated[Path | None, typer.Option(help="folder (default STUDY_DIR/export)")] = None,
) -> None:
    """Export every table of a study's results store as CSV or Parquet files."""
    from robustscope.studies import export

    for path in export(study_dir, format=format, out=out):
        out_console.print(str(path))


def _model_and_data(
    checkpoint_path: Path,
    dataset: str | None,
    split: str,
    subset: int | None,
    data_root: Path | None,
    device: Any,
) -> tuple[Any, Any, Any]:
    """Load a checkpoint and the dataset to evaluate it on (default: the one it was trained on)."""
    from robustscope import checkpoint, data

    model, meta = checkpoint.load(checkpoint_path, device=device)
    name = dataset or meta.dataset
    if not name:
        raise RobustscopeError(
            f"{checkpoint_path}: the checkpoint records no dataset; pass --dataset NAME"
        )
    # the dataset options trained with (e.g. tsipras' d) apply when the dataset is the recorded one
    params = meta.training.get("dataset_params", {}) if dataset in (None, meta.dataset) else {}
    ds = data.load(name, split, root=data_root, **params).head(subset)
    if ds.input_shape != meta.model.input_shape:
        raise RobustscopeError(
            f"dataset {name!r} has inputs {ds.input_shape} but the model expects "
            f"{meta.model.input_shape}; pass a matching --dataset"
        )
    if ds.box != meta.model.box:
        raise RobustscopeError(
            f"dataset {name!r} declares the input box {ds.box} but the model "
            f"({checkpoint_path}) was built for {meta.model.box}; pass a matching --dataset"
        )
    return model, meta, ds


@app.command("info")
def info_cmd(
    checkpoint_path: Annotated[
        Path, typer.Argument(metavar="CHECKPOINT", help="checkpoint file or run directory")
    ],
    as_json: JsonFlag = False,
) -> None:
    """Show a checkpoint's metadata (architecture, dataset, training, metrics, versions)."""
    from robustscope import checkpoint

    meta = checkpoint.read_meta(checkpoint_path)
    d = meta.to_dict()
    if as_json:
        _print_json(d)
        return
    for key, value in d.items():
        out_console.print(f"[bold]{key}[/bold]: {json.dumps(value, default=str)}")


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "configuration"
        parts.append(f"--{field.replace('_', '-')}: {err['msg']}")
    return "invalid options: " + "; ".join(parts)


def main() -> None:
    """Console entry point: run the app, turning robustscope errors into one-line messages."""
    from robustscope import plugins

    try:
        plugins.load()
        app()
    except RobustscopeError as exc:
        err_console.print(f"[bold red]error:[/bold red] {exc}", soft_wrap=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        err_console.print("interrupted; completed epochs are saved (resume with --resume)")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
