"""The study report: self-contained HTML, embedded PNGs, figures on disk, escaping, findings."""

from __future__ import annotations

import base64
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustscope.report import StudyData, compute_findings, write_report

VOID = {"meta", "img", "br", "hr", "link", "input"}


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.images: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()


def _data(
    clean: list[float], robust: list[float], fisher: list[float], label: str = "cnn"
) -> StudyData:
    eps = [0.0, 0.05, 0.1]
    rows = []
    for seed in (0, 1):
        for e, c, r, f in zip(eps, clean, robust, fisher, strict=True):
            rows.append(
                {
                    "run_id": f"{e}-{seed}",
                    "label": f"{label} ε={e} seed={seed}",
                    "model": label,
                    "family": "pgd",
                    "method": "pgd" if e else "standard",
                    "eps": e,
                    "seed": seed,
                    "clean_accuracy": c + 0.01 * seed,
                    "pgd-linf/0/robust_accuracy": c,
                    "pgd-linf/0.05/robust_accuracy": r,
                    "pgd-linf/0.1/robust_accuracy": r / 2,
                    "input_fisher/frobenius_mean": f,
                    "cckl/value": 3.0 - 10 * e,
                }
            )
    table = pd.DataFrame(rows)
    history = pd.DataFrame(
        [
            {"run_id": r["run_id"], "epoch": ep, "test_accuracy": 0.5 + 0.1 * ep,
             "track/test/input_fisher_frobenius_mean": r["input_fisher/frobenius_mean"] * ep}
            for r in rows
            for ep in (1, 2)
        ]
    )  # fmt: skip

    def arrays(run_id: str, probe: str, key: str) -> np.ndarray | None:
        return None

    spec = {
        "name": "synthetic",
        "description": "a test",
        "evaluation": {"attacks": [{"attack": "pgd"}]},
    }
    return StudyData(spec, table, history, arrays, {"torch_version": "x"})


def test_report_is_self_contained_and_parses(tmp_path: Path) -> None:
    data = _data([0.9, 0.85, 0.8], [0.1, 0.5, 0.6], [2.0, 0.2, 0.1], label="cnn<script>")
    out = write_report(tmp_path, data)
    text = out.read_text()
    checker = _Checker()
    checker.feed(text)
    assert not checker.errors and checker.stack == []
    assert "<script>" not in text and "cnn&lt;script&gt;" in text
    assert checker.images
    for src in checker.images:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    files = sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
    assert {"frontier.png", "robust_vs_eps.png", "training.png", "probes.png"} <= set(files)
    assert len(checker.images) == len(files)
    assert "http://" not in text and "https://" not in text  # nothing external


def test_report_with_only_clean_metrics_skips_sections(tmp_path: Path) -> None:
    data = _data([0.9, 0.85, 0.8], [0.1, 0.5, 0.6], [2.0, 0.2, 0.1])
    data.table = data.table[
        ["run_id", "label", "model", "family", "method", "eps", "seed", "clean_accuracy"]
    ]
    data.history = pd.DataFrame()
    text = write_report(tmp_path, data).read_text()
    assert "Not measured in this study" in text and "not tested" in text


def test_findings_hold_and_fail() -> None:
    good = _data([0.9, 0.85, 0.8], [0.1, 0.5, 0.6], [2.0, 0.2, 0.1]).table
    f = {
        x.claim.split(" (")[0][:20]: x
        for x in compute_findings(good, "pgd-linf/0.05/robust_accuracy")
    }
    assert (
        f["clean accuracy decre"].holds is True
        and "90.5 → 85.5 → 80.5" in f["clean accuracy decre"].evidence
    )
    assert f["robust accuracy"].holds is True
    assert f["the input-Fisher nor"].holds is True
    assert f["the cross-class KL d"].holds is True
    assert f["predictions become l"].holds is None  # not measured
    bad = _data([0.8, 0.85, 0.9], [0.6, 0.5, 0.1], [0.2, 0.3, 0.25]).table
    g = {x.claim[:20]: x for x in compute_findings(bad, "pgd-linf/0.05/robust_accuracy")}
    assert (
        g["clean accuracy decre"].holds is False
        and "not monotone" in g["clean accuracy decre"].evidence
    )
    assert g["robust accuracy (pgd"].holds is False
    assert g["the input-Fisher nor"].holds is False


def test_report_renders_in_chromium(tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium to run this check)")
    out = write_report(tmp_path, _data([0.9, 0.85, 0.8], [0.1, 0.5, 0.6], [2.0, 0.2, 0.1]))
    shot = tmp_path / "shot.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
         "--window-size=1200,2000", out.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    import matplotlib.image

    img = matplotlib.image.imread(shot)
    assert img.std() > 0.01  # not blank
