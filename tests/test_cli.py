"""The command line, run as a user runs it (subprocesses), including a real SIGKILL + resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from robustscope import checkpoint

TRAIN = [
    "train",
    "--dataset",
    "digits",
    "--model",
    "smallcnn",
    "--batch-size",
    "16",
    "--lr",
    "0.05",
    "--seed",
    "3",
    "--device",
    "cpu",
    "--no-progress",
]


def run(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "robustscope", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}")
    return proc


def test_datasets_json_lists_every_dataset() -> None:
    rows = json.loads(run("datasets", "--json").stdout)
    names = {r["name"] for r in rows}
    assert {
        "fashion-mnist",
        "mnist",
        "mnist-5k",
        "digits",
        "cifar10",
        "cifar100",
        "svhn",
        "tsipras",
    } <= names
    digits = next(r for r in rows if r["name"] == "digits")
    assert digits["present"] is True


def test_models_json_counts_parameters() -> None:
    rows = json.loads(run("models", "--json", "--input-shape", "1,28,28").stdout)
    by_name = {r["name"]: r for r in rows}
    assert by_name["smallcnn"]["parameters"] == 3_274_634
    assert by_name["linear"]["parameters"] == 28 * 28 * 10 + 10


def test_train_then_eval_json(tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = json.loads(run(*TRAIN, "--epochs", "2", "--out", str(out), "--json").stdout)
    assert summary["finished"] is True and summary["epochs_completed"] == 2
    result = json.loads(run("eval", str(out), "--json").stdout)
    assert set(result) >= {"dataset", "n", "clean_accuracy", "loss"}
    assert result["dataset"] == "digits" and result["n"] == 500
    assert abs(result["clean_accuracy"] - summary["test_accuracy"]) < 1e-9
    assert result["clean_accuracy"] > 0.8
    by_file = json.loads(
        run("eval", str(out / "model.safetensors"), "--json", "--subset", "50").stdout
    )
    assert by_file["n"] == 50
    info = json.loads(run("info", str(out), "--json").stdout)
    assert info["model"]["name"] == "smallcnn" and info["dataset"] == "digits"


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    proc = run("train", "--out", str(tmp_path / "x"), "--model", "resnet9000", check=False)
    assert proc.returncode == 2
    assert "unknown model 'resnet9000'" in proc.stderr and "smallcnn" in proc.stderr
    assert "Traceback" not in proc.stderr
    pt = tmp_path / "w.pt"
    torch.save({"a": torch.zeros(1)}, pt)
    proc = run("eval", str(pt), check=False)
    assert (
        proc.returncode == 2 and "never unpickles" in proc.stderr and "Traceback" not in proc.stderr
    )
    proc = run("train", "--out", str(tmp_path / "y"), "--epochs", "0", check=False)
    assert proc.returncode == 2 and "--epochs" in proc.stderr


def test_sigkill_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    epochs = "6"
    straight = tmp_path / "straight"
    run(*TRAIN, "--epochs", epochs, "--out", str(straight))

    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "robustscope", *TRAIN, "--epochs", epochs, "--out", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    history = killed / "history.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if history.exists() and len(json.loads(history.read_text() or "[]")) >= 1:
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = checkpoint.read_meta(killed).extra["epochs_completed"]
    assert 1 <= done < int(epochs), f"the kill came too late to interrupt training ({done} epochs)"

    run(*TRAIN, "--epochs", epochs, "--out", str(killed), "--resume")
    a, _ = checkpoint.load(straight)
    b, meta = checkpoint.load(killed)
    assert meta.extra["finished"] is True
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
