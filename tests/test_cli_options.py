"""The command line's shared parts, in process: the one printer (strict JSON or tables), the
shared option definitions, and ``train``'s options derived from TrainConfig (help, values
reaching the configuration, ``--config``, errors naming the flag)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, get_args, get_origin

import pytest
import typer
from typer.testing import CliRunner

import robustscope.training
from robustscope.cli import app, main
from robustscope.cli.fields import FIELDS, SHORTCUTS
from robustscope.cli.options import SHARED
from robustscope.cli.output import Column, TableView, emit, fixed
from robustscope.training import TrainConfig

TINY = ["--dataset", "digits", "--model", "mlp", "--model-kwarg", "widths=[8]"]
TINY += ["--train-subset", "64", "--test-subset", "32", "--device", "cpu", "--no-progress"]


def _strict(text: str) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


# ----------------------------------------------------------------------------- the printer


@dataclass
class Row:
    name: str
    accuracy: float
    eps: list[float]


def test_json_is_strict_for_every_shape(capsys: pytest.CaptureFixture[str]) -> None:
    nan, inf = float("nan"), float("inf")
    result = {
        "rows": [Row("a", nan, [0.1, inf]), Row("b", 0.5, [-inf])],
        "nested": {"t": (nan, 1.0), "ok": 2, "text": "NaN"},
    }
    emit(result, True, lambda: pytest.fail("the human form is built only without --json"))
    out = capsys.readouterr().out
    assert _strict(out) == {
        "rows": [
            {"name": "a", "accuracy": None, "eps": [0.1, None]},
            {"name": "b", "accuracy": 0.5, "eps": [None]},
        ],
        "nested": {"t": [None, 1.0], "ok": 2, "text": "NaN"},
    }


def test_tables_show_rows_columns_and_lines(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [Row("pgd", 0.123456, [0.1]), Row("fgsm", float("nan"), [])]
    view = TableView(
        [
            Column("attack", "name"),
            Column("accuracy", "accuracy", fixed(2)),
            Column("radii", lambda r: len(r["eps"])),
        ],
        title="two attacks",
    )
    emit(rows, False, view, None, "a line", lambda: "a lazy line")
    out = capsys.readouterr().out
    assert "two attacks" in out
    assert re.search(r"attack\s*┃\s*accuracy\s*┃\s*radii", out)
    assert re.search(r"pgd\s*│\s*0\.12\s*│\s*1", out)
    assert re.search(r"fgsm\s*│\s*nan\s*│\s*0", out)
    assert out.rstrip().splitlines()[-2:] == ["a line", "a lazy line"]
    # a mapping name → value reads as rows with the keys name and value; given rows win
    emit({"pgd": "projected"}, False, TableView([Column("a", "name"), Column("d", "value")]))
    assert re.search(r"pgd\s*│\s*projected", capsys.readouterr().out)
    emit({"ignored": 1}, False, TableView([Column("q", "name")], rows={"given": 2}))
    out = capsys.readouterr().out
    assert "given" in out and "ignored" not in out


def test_cli_json_listings_are_strict(tmp_path: Path) -> None:
    for command in ("attacks", "probes", "presets"):
        result = CliRunner().invoke(app, [command, "--json"])
        assert result.exit_code == 0, result.output
        assert isinstance(_strict(result.stdout), dict) and _strict(result.stdout)
        table = CliRunner().invoke(app, [command])
        assert table.exit_code == 0 and "┃" in table.stdout


# ----------------------------------------------------------------------------- shared options


def test_shared_options_have_one_definition() -> None:
    group: Any = typer.main.get_command(app)
    helps: dict[str, set[str]] = {}
    for command in group.commands.values():
        for param in command.params:
            helps.setdefault(str(param.name), set()).add(str(getattr(param, "help", None)))
    shared = ["dataset", "data_root", "device", "seed", "batch_size", "as_json", "split"]
    for name in [*shared, "checkpoint_path", "study_dir"]:
        assert len(helps[name]) == 1, (name, helps[name])
    assert helps["n"] == helps["subset"]  # --n and --subset: the first N examples
    assert len(group.commands["eval"].params) > 5 and "train" in group.commands


# ----------------------------------------------------------------------------- train's options


def test_train_help_lists_every_field_with_its_description() -> None:
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "240"})
    assert result.exit_code == 0, result.output
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.stdout).split())
    for name, info in TrainConfig.model_fields.items():
        flag = FIELDS[name].flag
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), flag
        if name in SHARED:  # documented once, by the shared option (cli.options)
            continue
        assert info.description, f"TrainConfig.{name} has no description (its --help text)"
        assert " ".join(info.description.split()) in text, name
    for shortcut in SHORTCUTS.values():
        assert shortcut.flag in text
    # the flags that existed before the options were derived
    for flag in ("--no-normalize", "--nesterov", "--compile", "--no-progress", "--resume"):
        assert flag in text


def _sample(name: str, info: Any) -> tuple[list[str], Any]:
    """Command-line arguments giving field ``name`` a value other than its default, and the
    value the configuration should then hold."""
    option = FIELDS[name]
    tp = info.annotation
    if get_origin(tp) is not None and type(None) in get_args(tp):
        tp = next(a for a in get_args(tp) if a is not type(None))
    default = info.get_default(call_default_factory=True)
    if tp is bool:
        stem = option.flag.removeprefix("--")
        return [f"--no-{stem}" if default else f"--{stem}"], not default
    if tp is int:
        return [option.flag, str((default or 2) + 1)], (default or 2) + 1
    if tp is float:
        return [option.flag, "1/8"], 0.125
    if tp is str:
        return [option.flag, "other"], "other"
    if get_origin(tp) is list and get_args(tp) == (int,):
        return [option.flag, "3, 2"], [2, 3]
    if get_origin(tp) is list:
        return [option.flag, "a, b,a"], ["a", "b"]
    if get_origin(tp) is dict and get_origin(get_args(tp)[1]) is dict:
        return [option.flag, "a.k=8/255", option.flag, "a.n=[1, 2]"], {
            "a": {"k": "8/255", "n": [1, 2]}
        }
    if get_origin(tp) is dict:
        return [option.flag, "k=1", option.flag, "name-x=x"], {"k": 1, "name_x": "x"}
    choices = get_args(tp)  # a Literal
    return [option.flag, str(choices[-1])], choices[-1]


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> list[tuple[TrainConfig, dict[str, Any]]]:
    """Replaces training: records the configuration ``robustscope train`` builds."""
    calls: list[tuple[TrainConfig, dict[str, Any]]] = []

    def fake_train(config: TrainConfig, out: Path, **kw: Any) -> Any:
        calls.append((config, {"out": out, **kw}))
        final = {"test_accuracy": 0.5}
        return SimpleNamespace(
            run_dir=out, completed_epochs=1, finished=True, stop_reason=None, final=final
        )

    monkeypatch.setattr(robustscope.training, "train", fake_train)
    return calls


def test_every_field_option_reaches_the_config(
    trained: list[tuple[TrainConfig, dict[str, Any]]], tmp_path: Path
) -> None:
    for name, info in TrainConfig.model_fields.items():
        args, want = _sample(name, info)
        result = CliRunner().invoke(app, ["train", "--out", str(tmp_path), "--json", *args])
        assert result.exit_code == 0, (name, args, result.output, result.exception)
        config, _ = trained.pop()
        assert getattr(config, name) == want, (name, args)
        default = TrainConfig()
        others = {k for k in TrainConfig.model_fields if getattr(config, k) != getattr(default, k)}
        assert others == {name}, (name, others)  # the option sets its field and no other
        assert _strict(result.stdout)["finished"] is True


def test_shortcuts_fill_method_params(
    trained: list[tuple[TrainConfig, dict[str, Any]]], tmp_path: Path
) -> None:
    args = ["--eps", "8/255", "--norm", "l2", "--steps", "3", "--step-size", "1/255"]
    args += ["--beta", "6", "--sigma", "0.25", "--replays", "4", "--attack-mode", "train"]
    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path), *args])
    assert result.exit_code == 0, result.output
    assert trained[-1][0].method_params == {
        "eps": 8 / 255,
        "norm": "l2",
        "steps": 3,
        "step_size": 1 / 255,
        "beta": 6.0,
        "sigma": 0.25,
        "replays": 4,
        "attack_mode": "train",
    }
    assert "finished: 1 epoch(s); clean test accuracy 0.5000" in result.stdout
    assert set(SHORTCUTS) == {"eps", "norm", "steps", "step_size", "beta", "sigma", "replays"} | {
        "attack_mode"
    }


def test_config_file_with_options_given_on_top(
    trained: list[tuple[TrainConfig, dict[str, Any]]], tmp_path: Path
) -> None:
    file = tmp_path / "pgd.yaml"
    file.write_text(
        "dataset: digits\nmodel: mlp\nmodel_kwargs: {widths: [8]}\nepochs: 4\n"
        "method: pgd\nmethod_params: {eps: 0.1, steps: 5}\ntrack_params: {pgd: {steps: 3}}\n"
    )
    args = ["train", "--out", str(tmp_path / "r"), "--config", str(file), "--epochs", "2"]
    args += ["--eps", "0.2", "--track-param", "pgd.eps=0.05", "--seed", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    config = trained[-1][0]
    assert (config.dataset, config.model, config.model_kwargs) == ("digits", "mlp", {"widths": [8]})
    assert config.epochs == 2 and config.seed == 0  # given: they win, even at their default
    assert config.method_params == {"eps": 0.2, "steps": 5}  # key by key
    assert config.track_params == {"pgd": {"steps": 3, "eps": 0.05}}
    assert config.lr == TrainConfig().lr  # neither in the file nor given: the default


def test_derived_options_round_trip_into_config_json(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", *TINY, "--epochs", "1", "--out", str(out), "--json"]
    args += ["--weight-decay", "0.001", "--schedule", "multistep", "--milestones", "2,3"]
    args += ["--gamma", "1/2", "--lr", "1/20", "--no-normalize", "--eval-batch-size", "7"]
    args += ["--method", "noise", "--sigma", "0.1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["weight_decay"] == 0.001 and saved["schedule"] == "multistep"
    assert saved["milestones"] == [2, 3] and saved["gamma"] == 0.5 and saved["lr"] == 0.05
    assert saved["normalize"] is False and saved["eval_batch_size"] == 7
    assert saved["method_params"] == {"sigma": 0.1} and saved["model_kwargs"] == {"widths": [8]}
    assert _strict(result.stdout)["epochs_completed"] == 1
    # a run's config.json is a --config file: the same configuration again
    again = tmp_path / "again"
    result = CliRunner().invoke(
        app, ["train", "--config", str(out / "config.json"), "--out", str(again)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((again / "config.json").read_text()) == saved


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--epochs", "0"],
            "invalid options: --epochs: Input should be greater than or equal to 1",
        ),
        (["--lr", "fast"], "--lr must be a number such as 0.1 or 8/255, got 'fast'"),
        (["--momentum", "1"], "--momentum: Input should be less than 1"),
        (["--spectral-clip", "-1"], "--spectral-clip: Input should be greater than 0"),
        (["--milestones", "2,x"], "--milestones expects comma-separated integers"),
        (["--milestones", "0"], "--milestones: milestones are epoch numbers ≥ 1"),
        (["--schedule", "weekly"], "--schedule: Input should be 'constant', 'multistep'"),
        (["--optimizer", "lion"], "--optimizer: Input should be 'sgd' or 'adam'"),
        (["--schedule", "multistep"], "invalid options: schedule 'multistep' needs milestones"),
        (["--model-kwarg", "oops"], "--model-kwarg expects KEY=VALUE, got 'oops'"),
        (["--track-param", "pgd=3"], "--track-param expects NAME.KEY=VALUE"),
        (["--eps", "x"], "--eps must be a number such as 0.1 or 8/255, got 'x'"),
        (["--eps", "0.1", "--method-param", "eps=0.2"], "--eps and --method-param eps="),
        (["--config", "missing.yaml"], "--config missing.yaml: cannot read it"),
        (["--config", "broken.yaml"], "--config broken.yaml: cannot read it (while parsing"),
    ],
)
def test_invalid_values_name_the_flag(
    args: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    trained: list[tuple[TrainConfig, dict[str, Any]]],
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.yaml").write_text("epochs: [1,\n")  # a YAML error spans several lines
    monkeypatch.setattr(sys, "argv", ["robustscope", "train", "--out", "run", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and not trained
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    assert "--configuration" not in err and "Traceback" not in err


def test_config_file_errors_name_the_file(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    trained: list[tuple[TrainConfig, dict[str, Any]]],
    tmp_path: Path,
) -> None:
    file = tmp_path / "c.yaml"
    for content, given, message in [
        ("epochs: 0\n", [], f"{file}: epochs: Input should be greater than or equal to 1"),
        ("epochs: 0\n", ["--epochs", "-1"], "--epochs: Input should be greater than or equal"),
        ("epoch: 3\n", [], f"{file}: epoch: Extra inputs are not permitted"),
        ("- 1\n", [], f"--config {file}: expected a mapping of TrainConfig fields"),
    ]:
        file.write_text(content)
        argv = ["robustscope", "train", "--out", str(tmp_path / "r"), "--config", str(file)]
        monkeypatch.setattr(sys, "argv", [*argv, *given])
        with pytest.raises(SystemExit) as exit_:
            main()
        err = " ".join(capsys.readouterr().err.split())
        assert exit_.value.code == 2 and message in err, (content, err)
    assert not trained


def test_the_app_itself_loads_the_plugins(tmp_path: Path) -> None:
    """Invoked without main() (as CliRunner or another program does), the app still plugs the
    tracked probes into training: a fresh interpreter trains with --track input_fisher."""
    code = (
        "from typer.testing import CliRunner\n"
        "from robustscope.cli import app\n"
        "r = CliRunner().invoke(app, ['train', '--dataset', 'digits', '--model', 'mlp',"
        " '--epochs', '1', '--train-subset', '64', '--test-subset', '32', '--track',"
        f" 'input_fisher', '--track-n', '16', '--device', 'cpu', '--no-progress', '--out',"
        f" {str(tmp_path / 'run')!r}])\n"
        "print(r.exit_code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.stdout.strip().splitlines()[-1] == "0", proc.stdout + proc.stderr
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert any(k.startswith("track/test/input_fisher_") for k in history[0])
