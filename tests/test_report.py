"""The study report: StudyData, findings, summary rows, the self-contained HTML and its PNGs.

The report is built from synthetic studies: ``_study(good=True)`` follows every claim of
the papers (clean accuracy falls with ε, robust accuracy rises, Fisher norm drops, ...),
``_study(good=False)`` reverses every trend, so each finding must read True on the first
and False on the second.
"""

from __future__ import annotations

import base64
import math
import struct
from html.parser import HTMLParser
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pagecheck import DESKTOP, PHONE, look
from robustscope.report import (
    Finding,
    StudyData,
    compute_findings,
    load_study,
    summarize,
    summary_rows,
    write_report,
)
from robustscope.report.data import natural_key
from robustscope.report.evidence import Verdict
from robustscope.report.findings import spearman
from robustscope.report.sections import datasize
from robustscope.report.sections.wen2020 import derived_columns
from robustscope.report.stats import by_eps, main_robust_column, series
from robustscope.studies.store.vocab import ATTACK_RESULT_COLUMNS

EPS = [0.0, 0.05, 0.1, 0.2]
SEEDS = [0, 1]
LAYERS = ["body.0", "body.2", "body.10", "head"]
ATTACK_EPS = [0.0, 0.05, 0.1, 0.2]
VOID = {"meta", "img", "br", "hr", "link", "input", "col", "wbr", "source"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: a deterministic standard-normal "sample" (its 400 quantiles): exact, monotone statistics
NORMAL_QUANTILES = np.array([NormalDist().inv_cdf((k + 0.5) / 400) for k in range(400)])


def _attack_row(
    rid: str, label: str, eps: float, quantity: str, value: float, attack: str = "pgd"
) -> dict[str, Any]:
    """One row of the long attack-results frame (``Store.attack_results_long()``)."""
    row = {"run_id": rid, "label": label, "attack": attack, "norm": "linf", "params": "{}",
           "attack_eps": eps, "quantity": quantity, "value": value, "n": 100,
           "escalates": None}  # fmt: skip
    assert list(row) == list(ATTACK_RESULT_COLUMNS)
    return row


def _study(good: bool = True, *, label: str = "cnn", failed: bool = True) -> StudyData:
    """A synthetic study: one model, PGD at ε ∈ EPS × 2 seeds, every probe the report reads.

    ``s`` is the strength rank of ε (0..3) when ``good``, reversed otherwise, so every
    quantity moves with ``s`` the way the papers say (good) or the opposite way (bad)."""
    rng = np.random.default_rng(0)
    runs, metrics, probes, history = [], {}, {}, []
    attacks: list[dict[str, Any]] = []
    flags: list[dict[str, Any]] = []
    arrays: dict[tuple[str, str, str], np.ndarray] = {}
    for i, eps in enumerate(EPS):
        s = i if good else len(EPS) - 1 - i
        for seed in SEEDS:
            rid = f"r{i}s{seed}"
            method = "standard" if eps == 0 else "pgd"
            runs.append(
                {
                    "run_id": rid,
                    "label": f"{label} {method} ε={eps:g} seed={seed}",
                    "model": label,
                    "method": method,
                    "family": "pgd",
                    "eps": eps,
                    "norm": "linf",
                    "seed": seed,
                    "status": "done",
                    "train_time_s": 10.0 + i,
                }
            )
            jitter = 0.002 * seed
            m = {"clean_accuracy": 0.9 - 0.05 * s + jitter, "train_time_s": 10.0 + i}
            for a in ATTACK_EPS:
                acc = m["clean_accuracy"] if a == 0 else 0.25 + 0.2 * s - a + jitter
                attacks.append(_attack_row(rid, "pgd-linf", a, "robust_accuracy", acc))
                on_correct = acc / m["clean_accuracy"]
                attacks.append(
                    _attack_row(rid, "pgd-linf", a, "robust_accuracy_on_correct", on_correct)
                )
                if a > 0:
                    cw = acc - 0.01
                    attacks.append(
                        _attack_row(rid, "cw-linf-linf", a, "robust_accuracy", cw, "cw-linf")
                    )
            if not good and i == len(EPS) - 1:
                flags.append({"run_id": rid, "label": "pgd-linf", "flag": "zero_gradients",
                              "message": "3 points have zero gradients", "value": 3.0})  # fmt: skip
            metrics[rid] = m
            p = {
                "input_fisher/frobenius_mean": 10.0 if s == 0 else 1.0 / (s + 1),
                "input_fisher/spectral_mean": 8.0 if s == 0 else 0.8 / (s + 1),
                "cckl/value": (9.0 - 1.5 * s if good else [5.0, 9.0, 4.0, 8.0][i]) + jitter,
                "taylor_split/g1_mean": 0.3 if s == 0 else 0.05 - 0.01 * s,
                "taylor_split/g2_mean": 1.0 - 0.1 * s,
                "margins/test/margin_mean": 6.0 - 1.2 * s,
                "margins/test/margin_std": 4.0 - 0.8 * s,
                "margins/test/loss_mean": 0.5 - 0.05 * s,
                "margins/train/loss_mean": 0.2 + 0.08 * s,
                "margins/test/error_rate": 0.1 + 0.05 * s,
                "margins/train/error_rate": 0.05 + 0.05 * s,
                "generalization_gap/train_loss": 0.2 + 0.08 * s,
                "generalization_gap/test_loss": 0.5 - 0.05 * s,
                "generalization_gap/loss_gap": 0.3 - 0.13 * s,
                "generalization_gap/train_error": 0.05 + 0.05 * s,
                "generalization_gap/test_error": 0.1 + 0.05 * s,
                "generalization_gap/error_gap": 0.05 + 0.0 * s,
                "confidence/mean_max_prob": 0.95 - 0.1 * s,
                "loss_variation/mean": 0.5 - 0.1 * s,
                "loss_variation/std": 0.4 - 0.05 * s,
                "confidence/ece": 0.02 + 0.01 * s,
                "weight_norms/l2_total": 12.0 - s,
                "weight_norms/l1_total": 3000.0 - 100 * s,
                "weight_information/log_variance_mean": -2.0 + 0.3 * s,
                "representation_fisher/lambda_max_mean": 5.0 / (s + 1),
                "novel_probe/score": 1.0 + s * s,
                "novel_probe/n": 100.0,
            }
            for k, layer in enumerate(LAYERS):
                key = "approx_std" if layer == "body.2" else "std"
                p[f"layer_spectra/{layer}/{key}"] = 0.8 + 0.1 * k - 0.1 * s
                p[f"weight_norms/l2/{layer}.weight"] = 3.0 + k - 0.2 * s
                arrays[(rid, "layer_spectra", f"{layer}/singular_values")] = np.sort(
                    rng.gamma(2.0, 1.0 / (1 + s), size=20 + 10 * k)
                )[::-1]
            probes[rid] = p
            margin = (6.0 - 1.2 * s) + (4.0 - 0.8 * s) * NORMAL_QUANTILES
            p_true = 1 / (1 + np.exp(-margin))
            loss = -np.log(p_true)
            for split in ("test", "train"):
                edges = np.linspace(-20, 20, 81)
                arrays[(rid, "margins", f"{split}/margin_edges")] = edges
                arrays[(rid, "margins", f"{split}/margin_hist")] = np.histogram(
                    np.clip(margin, -20, 20), edges
                )[0]
            edges = np.linspace(0, 1, 21)
            arrays[(rid, "margins", "test/p_true_edges")] = edges
            arrays[(rid, "margins", "test/p_true_hist")] = np.histogram(p_true, edges)[0]
            edges = np.linspace(0, 10, 51)
            arrays[(rid, "margins", "test/loss_edges")] = edges
            arrays[(rid, "margins", "test/loss_hist")] = np.histogram(np.clip(loss, 0, 10), edges)[
                0
            ]
            arrays[(rid, "margins", "test/loss")] = loss
            arrays[(rid, "margins", "test/correct")] = margin > 0
            edges = np.linspace(0, 1, 16)
            arrays[(rid, "confidence", "confidence_edges")] = edges
            arrays[(rid, "confidence", "confidence_hist")] = np.histogram(
                np.maximum(p_true, 1 - p_true), edges
            )[0]
            for epoch in (1, 2, 3, 4):
                acc = 0.5 + 0.1 * epoch - 0.05 * s
                fisher = (0.5 * epoch if good else 3.0 - 0.5 * epoch) * (1 if s == 0 else 0.1)
                history.append(
                    {
                        "run_id": rid,
                        "epoch": epoch,
                        "test_accuracy": acc,
                        "track/test/clean_accuracy": acc,
                        "track/test/input_fisher_frobenius_mean": fisher,
                        "track/test/cckl_value": (2.0 + epoch if good else 6.0 - epoch) - s,
                        "test_loss": 1.0 - 0.1 * epoch,
                        "train_loss": 1.2 - 0.15 * epoch,
                    }
                )
    if failed:
        runs.append(
            {
                "run_id": "bad",
                "label": f"{label} pgd ε=0.3 seed=0",
                "model": label,
                "method": "pgd",
                "family": "pgd",
                "eps": 0.3,
                "seed": 0,
                "status": "failed",
                "error": "RuntimeError: <b>diverged</b>\ntraceback ...",
            }
        )
    spec = {
        "name": "synthetic",
        "description": "A synthetic study: 4 epochs on 1,000 images (budget).",
        "reproduces": "shi2020 Figs. 3–4; wen2020 Figs. 3–5",
        "dataset": "digits",
        "models": [{"model": label}],
        "methods": [{"method": "pgd", "eps": EPS, "params": {"steps": 10}}],
        "seeds": SEEDS,
        "train": {"epochs": 4, "track": ["clean", "input_fisher"]},
        "evaluation": {
            "n": 100,
            "attacks": [
                {"attack": "pgd", "norm": "linf", "eps": ATTACK_EPS, "params": {"steps": 20}},
                {"attack": "cw-linf", "norm": "linf", "eps": ATTACK_EPS[1:]},
            ],
        },
        "probes": {"n": 100, "train_n": 100, "run": [{"name": "margins"}]},
    }
    return StudyData.from_frames(
        spec=spec,
        runs=runs,
        metrics=pd.DataFrame.from_dict(metrics, orient="index"),
        history=pd.DataFrame(history),
        probes=pd.DataFrame.from_dict(probes, orient="index"),
        arrays=arrays,
        provenance={"torch_version": "2.x", "host": "test"},
        info={"created": 1.7e9},
        attacks=pd.DataFrame(attacks),
        flags=pd.DataFrame(flags) if flags else None,
    )


class _Checker(HTMLParser):
    """Well-formedness: every non-void element closed in order; collects images and ids."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.images: list[str] = []
        self.figure_ids: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src") or "")
        if tag == "figure":
            self.figure_ids.append(a.get("id") or "")
        if tag == "script" or tag == "link" or any(k.startswith("on") for k in a):
            self.errors.append(f"active or external content: <{tag} {a}>")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            self.errors.append(f"end tag of void element </{tag}>")
        elif not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}>, open: {self.stack[-3:]}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(text: str) -> _Checker:
    checker = _Checker()
    checker.feed(text)
    checker.close()
    return checker


def _png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk (which must come first), checking the CRC."""
    import zlib

    assert png[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", png[8:16])
    assert kind == b"IHDR" and length == 13
    body = png[16 : 16 + length]
    (crc,) = struct.unpack(">I", png[16 + length : 20 + length])
    assert zlib.crc32(kind + body) == crc
    assert png.endswith(b"IEND\xaeB`\x82")
    width, height = struct.unpack(">II", body[:8])
    return width, height


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The report of the full synthetic study (figures at 50 dpi to keep the tests fast), with
    a configuration hash in its provenance as a real study has."""
    from robustscope.report import style

    out = tmp_path_factory.mktemp("study")
    (out / "figures").mkdir()
    (out / "figures" / "stale.png").write_bytes(PNG_SIGNATURE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(style, "DPI", 50)
        data = _study(label="cnn<script>alert(1)</script>")
        data.provenance["config_hash"] = "0123456789abcdef" * 4  # one unbreakable word
        path = write_report(out, data)
    return out, path.read_text(encoding="utf-8")


# --- the HTML --------------------------------------------------------------------------------


def test_report_is_well_formed_and_self_contained(full_report: tuple[Path, str]) -> None:
    out, text = full_report
    assert (out / "report.html").is_file()
    checker = _parse(text)
    assert checker.errors == [] and checker.stack == []
    assert text.startswith("<!DOCTYPE html>")
    lowered = text.lower()
    for external in ("http://", "https://", "<script", "<link", 'src="/', "url("):
        assert external not in lowered
    assert "<style>" in text


def test_every_image_is_an_embedded_png_matching_its_file(full_report: tuple[Path, str]) -> None:
    out, text = full_report
    checker = _parse(text)
    assert len(checker.images) == len(checker.figure_ids) >= 10
    files = {p.name for p in (out / "figures").glob("*.png")}
    assert "stale.png" not in files  # the figures folder is the report's own
    names = []
    for src, fid in zip(checker.images, checker.figure_ids, strict=True):
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        width, height = _png_size(png)
        assert width > 100 and height > 100
        name = fid.removeprefix("fig-")
        names.append(name)
        assert (out / "figures" / f"{name}.png").read_bytes() == png
    assert set(names) == {n.removesuffix(".png") for n in files}
    expected = {
        "frontier",
        "robust_vs_attack_eps",
        "training",
        "shi2020",
        "wen2020_gaps",
        "wen2020_margins",
        "wen2020_confidence",
        "wen2020_spectra_std",
        "singular_values",
        "weights",
        "probe_novel_probe",
    }
    assert expected <= set(names)


def test_report_escapes_labels_and_errors(full_report: tuple[Path, str]) -> None:
    _, text = full_report
    assert "<script>" not in text and "alert(1)</script>" not in text
    assert "cnn&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<b>diverged</b>" not in text and "&lt;b&gt;diverged&lt;/b&gt;" in text
    text_only = "".join(_parse(text).text)
    assert "cnn<script>alert(1)</script> pgd ε=0.1 seed=1" in text_only  # shown as text


def test_report_sections_and_numbers(full_report: tuple[Path, str]) -> None:
    _, text = full_report
    for sid in ("findings", "tradeoff", "training", "shi2020", "wen2020", "weights", "numbers"):
        assert f'<section id="{sid}">' in text
    assert "Not measured in this study" not in text
    assert "A synthetic study: 4 epochs on 1,000 images (budget)." in text
    assert "shi2020 Figs. 3–4; wen2020 Figs. 3–5" in text
    assert "9 (8 done, 1 failed)" in text  # run count by status
    assert "torch_version 2.x" in text
    # the all-numbers tables hold the raw values (4 significant digits)
    assert ">0.902<" in text  # clean accuracy of ε=0 seed 1
    assert "novel_probe/score" in text


def test_missing_sections_are_skipped(tmp_path: Path) -> None:
    full = _study(failed=False)
    data = StudyData.from_frames(
        spec={"name": "clean-only"},
        runs=full.runs,
        metrics=full.metrics[["clean_accuracy"]],
    )
    text = write_report(tmp_path, data).read_text()
    checker = _parse(text)
    assert checker.errors == [] and checker.stack == []
    assert text.count('class="skip"') == 5  # trade-off, training, shi2020, wen2020, weights
    assert checker.images == [] and list((tmp_path / "figures").glob("*.png")) == []
    findings = compute_findings(data)
    assert findings[0].holds is True  # clean accuracy still falls
    assert all(f.holds is None for f in findings[1:])
    assert "not tested here" in text


def test_report_without_finished_runs(tmp_path: Path) -> None:
    data = StudyData.from_frames(
        spec={"name": "empty"},
        runs=[{"run_id": "x", "label": "x", "status": "failed", "error": "boom"}],
    )
    text = write_report(tmp_path, data).read_text()
    assert _parse(text).errors == []
    assert "No finished run yet" in text and "boom" in text
    assert summary_rows(data)[0]["status"] == "failed"
    assert math.isnan(summary_rows(data)[0]["clean"])


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_report_in_a_real_browser(full_report: tuple[Path, str], chromium: Any, width: int) -> None:
    """The system Chromium opens the report as a reader does, on a laptop and on a phone:
    every image decodes, every in-page link has its target, nothing is logged as an error,
    nothing but the wide tables' own scroll boxes is wider than the screen, and the Findings
    table lists every claim in order with its verdict in view."""
    out, text = full_report
    seen = look(chromium, out / "report.html", width)
    assert seen.problems() == []
    assert len(seen.images) == text.count("<img ") >= 10
    assert len(seen.links) == text.count('<li><a href="#') >= 7  # the contents
    expected = compute_findings(_study(label="cnn<script>alert(1)</script>"))
    (table,) = seen.findings
    assert [(r["claim"], r["verdicts"]) for r in table] == [
        (f.claim, [str(f.verdict)]) for f in expected
    ]


def test_the_browser_checks_catch_what_they_look_for(chromium: Any, tmp_path: Path) -> None:
    """The checks fail where they should: a broken image, a link to a missing anchor, a box
    wider than a phone outside a scroll box, a verdict outside the four, a console error."""
    from robustscope.report.page import document, findings_table

    bad = tmp_path / "bad.html"
    row = '<tr><td class="l">a claim</td><td class="l verdict">probably</td></tr>'
    body = (
        '<nav><ol><li><a href="#nowhere">x</a></li></ol></nav>'
        '<img alt="broken" src="data:image/png;base64,AAAA">'
        '<div style="width:900px">wide</div>' + findings_table(("claim", "verdict"), [row])
        + '<img alt="missing" src="missing.png">'
    )  # fmt: skip
    bad.write_text(document("bad", body))
    problems = look(chromium, bad, PHONE).problems()
    assert any("image not decoded: 'broken'" in p for p in problems)
    assert any("link without a target: #nowhere" in p for p in problems)
    assert any("scrolls sideways" in p for p in problems)
    assert any(p.startswith(f"sticks out at {PHONE}px: div") for p in problems)
    assert any("verdict cells ['probably']" in p for p in problems)
    assert any(p.startswith("console:") for p in problems)  # the missing file


# --- findings --------------------------------------------------------------------------------


def _by_claim(findings: list[Finding]) -> dict[str, Finding]:
    return {f.claim.split(" (")[0]: f for f in findings}


#: the terzi2021 section's claims (the weights section's terzi2021 claims are tested here)
REGIME_CLAIMS = (
    "Under ℓ2 adversarial training",
    "The ℓ1 norm of the weights of adversarially trained linear",
    "With more model capacity",
    "The test loss falls as ε grows while",
)
TERZI_NEW = (
    "terzi2021 eq. 8", "terzi2021 Table 1", "terzi2021 Figs. 3", "terzi2021 Fig. 1",
    "terzi2021 Fig. 2",
)  # fmt: skip


def _unsized(findings: list[Finding]) -> list[Finding]:
    """The findings without the training-set-size claims: this synthetic study has one size,
    so those are "not tested here" (tests/test_datasize.py checks them on sized studies)."""
    sized = [f for f in findings if f.paper == datasize.PAPER]
    assert len(sized) == 2 and all(f.holds is None for f in sized)
    # Nor is it on tsipras2019's distribution: the theory section's claim is not tested.
    theory = [f for f in findings if f.paper == "tsipras2019 Thm. 2.1"]
    assert len(theory) == 1 and theory[0].holds is None
    # Nor has it a post-hoc sweep (tests/test_report_wu2020.py checks those claims) or the
    # effective information (tests/test_report_terzi2021.py).
    later = [f for f in findings if f.paper.startswith(("wu2020", *TERZI_NEW))]
    assert len(later) == 11 and all(f.holds is None for f in later)
    # Claims restricted to the regime their paper states (issue 15 §5): ℓ2 training at
    # ε > 1, linear classifiers, a capacity axis, CIFAR-10/100 — none of which this has.
    later += [f for f in findings if f.claim.startswith(REGIME_CLAIMS)]
    assert len(later) == 15 and all(f.verdict is Verdict.UNTESTED for f in later[-4:])
    return [
        f
        for f in findings
        if f.paper not in (datasize.PAPER, "tsipras2019 Thm. 2.1") and f not in later
    ]


def test_findings_hold_on_a_study_following_the_papers() -> None:
    findings = compute_findings(_study(good=True))
    assert len(findings) >= 20
    untested = [f.claim for f in _unsized(findings) if f.holds is not True]
    assert untested == []
    f = _by_claim(findings)
    clean = f["Clean accuracy decreases as the training ε grows"]
    assert clean.evidence.startswith(
        "cnn · pgd: 90.1 → 85.1 → 80.1 → 75.1 % at ε = 0, 0.05, 0.1, 0.2; slope -74.3 ["
    )
    robust = f["Robust accuracy"]
    assert "pgd-linf at ε = 0.1" in robust.claim  # middle training ε evaluated by the attack
    assert "15.1 → 35.1 → 55.1 → 75.1 %" in robust.evidence
    fisher = next(x for x in findings if x.claim.startswith("The input-Fisher norm"))
    assert "standard 10 vs 0.5 at ε = 0.05 (20× lower" in fisher.evidence
    assert "0.25 at ε = 0.2 (40× lower" in fisher.evidence
    spectra = next(x for x in findings if x.claim.startswith("Singular values spread less"))
    assert "ε = 0.05 vs 0.2: STD lower in 4 of 4 layers" in spectra.evidence


def test_findings_fail_on_a_study_contradicting_the_papers() -> None:
    findings = compute_findings(_study(good=False))
    held = [f.claim for f in _unsized(findings) if f.holds is not False]
    assert held == []
    f = _by_claim(findings)
    clean = f["Clean accuracy decreases as the training ε grows"]
    assert clean.verdict is Verdict.FAILS and "slope 74.3 [" in clean.evidence
    masking = findings[-1]
    assert masking.holds is False and "zero_gradients" in masking.evidence


def test_findings_at_a_chosen_eval_eps_and_one_noisy_member() -> None:
    data = _study(good=True)
    robust = next(x for x in compute_findings(data, eval_eps=0.2) if "Robust" in x.claim)
    assert "ε = 0.2" in robust.claim and robust.holds is True
    # one member off the trend no longer flips the verdict: the slope along ε is read
    data.metrics.loc[["r2s0", "r2s1"], "clean_accuracy"] = 0.86
    clean = compute_findings(data)[0]
    assert clean.verdict is Verdict.HOLDS and "85.1 → 86.0 → 75.1" in clean.evidence


def test_derived_columns_match_per_example_counts() -> None:
    data = _study(good=True, failed=False)
    t = derived_columns(data, data.table())
    for rid in t.index:
        loss = data.array(rid, "margins", "test/loss")
        correct = data.array(rid, "margins", "test/correct")
        assert loss is not None and correct is not None
        p = np.exp(-loss)
        direct = float(((p >= 0.1) & (p < 0.9)).mean())
        assert t.loc[rid, "derived/p_true_middle"] == pytest.approx(direct, abs=1e-12)
        assert t.loc[rid, "derived/wrong_loss_mean"] == pytest.approx(loss[~correct].mean())
        rms = math.hypot(
            t.loc[rid, "margins/test/margin_mean"], t.loc[rid, "margins/test/margin_std"]
        )
        assert t.loc[rid, "derived/margin_rms"] == pytest.approx(rms)


def _spearman_reference(x: list[float], y: list[float]) -> float:
    """Spearman's ρ by explicit loops: average ranks (ties share their mean rank), then
    Pearson's correlation of the ranks."""

    def ranks(v: list[float]) -> list[float]:
        out = []
        for a in v:
            below = sum(1 for b in v if b < a)
            equal = sum(1 for b in v if b == a)
            out.append(below + (equal + 1) / 2)
        return out

    rx, ry = ranks(x), ranks(y)
    n = len(rx)
    mx, my = sum(rx) / n, sum(ry) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return cov / math.sqrt(vx * vy)


def test_spearman_matches_a_loop_reference() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        x = rng.integers(0, 5, size=9).astype(float)  # ties
        y = x + rng.normal(size=9)
        expected = _spearman_reference(list(x), list(y))
        assert spearman(x, y) == pytest.approx(expected, abs=1e-12)
    assert spearman(np.arange(5.0), np.arange(5.0) ** 3) == pytest.approx(1.0)
    assert spearman(np.arange(5.0), -np.arange(5.0)) == pytest.approx(-1.0)
    assert math.isnan(spearman(np.ones(4), np.arange(4.0)))


# --- data helpers and summary ----------------------------------------------------------------


def test_series_borrow_the_standard_run_and_seed_statistics() -> None:
    rows: list[dict[str, Any]] = [
        {"run_id": "s", "model": "m", "method": "standard", "family": "pgd", "eps": 0.0,
         "seed": 0},
        {"run_id": "p", "model": "m", "method": "pgd", "family": "pgd", "eps": 0.1, "seed": 0},
        {"run_id": "t0", "model": "m", "method": "trades", "family": "trades", "eps": 0.1,
         "seed": 0},
        {"run_id": "t1", "model": "m", "method": "trades", "family": "trades", "eps": 0.1,
         "seed": 1},
    ]  # fmt: skip
    metrics = pd.DataFrame({"clean_accuracy": [0.9, 0.8, 0.7, 0.75]}, index=["s", "p", "t0", "t1"])
    data = StudyData.from_frames(runs=rows, metrics=metrics)
    groups = series(data.table())
    assert list(groups) == ["m · pgd", "m · trades"]
    assert list(groups["m · trades"].index) == ["s", "t0", "t1"]  # ε = 0 borrowed
    stats = by_eps(groups["m · trades"], "clean_accuracy")
    assert stats.loc[0.1, "mean"] == pytest.approx(0.725)
    assert (stats.loc[0.1, "lo"], stats.loc[0.1, "hi"], stats.loc[0.1, "n"]) == (0.7, 0.75, 2)
    assert stats.loc[0.1, "std"] == pytest.approx(np.std([0.7, 0.75], ddof=1))


def test_robust_columns_eps_matching_and_layer_order() -> None:
    rows = [
        _attack_row("r", "pgd-linf", 0.1, "robust_accuracy", 0.3),
        _attack_row("r", "pgd-linf", 0.0, "robust_accuracy", 0.9),
        _attack_row("r", "pgd-linf", 8 / 255, "robust_accuracy", 0.7),
        _attack_row("r", "cw", 0.1, "robust_accuracy", 0.2),
        _attack_row("r", "pgd-linf", 0.1, "robust_accuracy_on_correct", 0.33),
    ]
    data = StudyData.from_frames(runs=[{"run_id": "r", "eps": 0.1}], attacks=pd.DataFrame(rows))
    found = data.robust_columns()
    assert [(c.label, c.eps) for c in found] == [
        ("cw", 0.1), ("pgd-linf", 0.0), ("pgd-linf", 8 / 255), ("pgd-linf", 0.1)
    ]  # fmt: skip
    assert [c.column for c in found][:3] == [
        "cw/0.1/robust_accuracy", "pgd-linf/0/robust_accuracy", "pgd-linf/0.0313725/robust_accuracy",
    ]  # fmt: skip
    assert [c.column for c in data.robust_columns(on_correct=True)] == [
        "pgd-linf/0.1/robust_accuracy_on_correct"
    ]
    table = data.table()
    assert table.loc["r", "pgd-linf/0.0313725/robust_accuracy"] == 0.7
    # ε given as 0.0313725 (six digits, as printed) finds the exact 8/255 of the store
    assert data.first_attack() == "cw"  # no spec: the first label found
    data.spec["evaluation"] = {"attacks": [{"attack": "pgd", "norm": "linf"}]}
    picked = main_robust_column(data, 0.0313725)
    assert picked is not None and (picked.label, picked.eps) == ("pgd-linf", 8 / 255)
    assert main_robust_column(data, 0.05) is None
    names = ["head", "body.10", "body.2", "body.0"]
    assert sorted(names, key=natural_key) == ["body.0", "body.2", "body.10", "head"]
    data = _study(failed=False)
    main = main_robust_column(data)
    assert main is not None and main.column == "pgd-linf/0.1/robust_accuracy"
    at = main_robust_column(data, 0.2)
    assert at is not None and (at.label, at.eps, at.quantity) == (
        "pgd-linf",
        0.2,
        "robust_accuracy",
    )
    assert main_robust_column(data, 0.3) is None


def test_summary_rows() -> None:
    rows = summary_rows(_study(good=True))
    assert len(rows) == 9
    first = rows[0]
    assert list(first) == ["label", "status", "clean", "pgd-linf ε=0.05", "pgd-linf ε=0.1",
                           "pgd-linf ε=0.2", "Fisher ‖F‖_F"]  # fmt: skip
    assert first["label"] == "cnn standard ε=0 seed=0" and first["status"] == "done"
    assert first["clean"] == pytest.approx(0.9)
    assert first["pgd-linf ε=0.1"] == pytest.approx(0.15)
    assert first["pgd-linf ε=0.05"] == pytest.approx(0.2)
    assert first["Fisher ‖F‖_F"] == 10.0
    failed = next(r for r in rows if r["status"] == "failed")
    assert math.isnan(failed["clean"]) and math.isnan(failed["Fisher ‖F‖_F"])
    assert math.isnan(failed["pgd-linf ε=0.1"])
    summary = summarize(_study(good=True))
    assert summary.rows == rows and summary.attack == "pgd-linf"
    assert summary.robust == {"pgd-linf ε=0.05": 0.05, "pgd-linf ε=0.1": 0.1, "pgd-linf ε=0.2": 0.2}


def test_load_study_from_the_store(tmp_path: Path) -> None:
    from robustscope.studies import AttackFlag, AttackResult, open_store

    spec = {"name": "tiny", "description": "tiny & quick"}
    margins = np.array([0.5, -1.0, 2.0])
    with open_store(tmp_path, create=True) as st:
        st.add_study("tiny", spec)
        for rid, eps, clean in (("a", 0.0, 0.9), ("b", 0.1, 0.8)):
            method = "standard" if eps == 0 else "pgd"
            config = {"label": f"mlp {method} ε={eps:g}", "model": "mlp", "family": "pgd"}
            st.upsert_run(rid, "tiny", config, method=method, eps=eps, seed=0)
            st.add_history(rid, [{"epoch": 1, "test_accuracy": clean - 0.1}])
            st.add_metrics(rid, {"clean_accuracy": clean})
            flag = (AttackFlag("zero_gradients", "2 points"),) if eps else ()
            st.set_attack_results(
                rid,
                [AttackResult("pgd-linf", "pgd", "linf", {}, 100, (0.0, 0.1), (clean, eps),
                              (1.0, eps / clean), flag)],
            )  # fmt: skip
            st.add_probe(
                rid, "margins", "all", {"test/margin_mean": 2.0 - eps}, {"test/margin": margins}
            )
            st.add_provenance(rid, {"torch_version": "9.9"})
            st.set_status(rid, "done", train_time_s=1.0)
    data = load_study(tmp_path)
    assert data.name == "tiny" and sorted(data.done_ids()) == ["a", "b"]
    assert data.metrics.loc["b", "clean_accuracy"] == pytest.approx(0.8)
    assert data.probes.loc["a", "margins/test/margin_mean"] == pytest.approx(2.0)
    assert list(data.history["run_id"]) == ["a", "b"]
    arr = data.array("b", "margins", "test/margin")
    assert arr is not None and np.array_equal(arr, margins)
    assert data.array("a", "margins", "nope") is None
    assert data.provenance.get("torch_version") == "9.9"
    table = data.table()
    assert list(table["label"]) == ["mlp standard ε=0", "mlp pgd ε=0.1"]
    assert list(table["family"]) == ["pgd", "pgd"]
    assert table["pgd-linf/0.1/robust_accuracy"].tolist() == [0.0, 0.1]
    assert table["pgd-linf/flag/zero_gradients"].fillna(0).tolist() == [0.0, 1.0]
    assert summary_rows(data)[1]["pgd-linf ε=0.1"] == 0.1
    text = write_report(tmp_path).read_text()  # data=None: read from the store
    assert _parse(text).errors == [] and "mlp pgd ε=0.1" in text and "tiny &amp; quick" in text
    findings = compute_findings(data)
    assert findings[0].evidence.startswith("mlp · pgd: 90.0 → 80.0 %")
    assert findings[1].claim.startswith("Robust accuracy (pgd-linf at ε = 0.1)")
    assert findings[-1].holds is False and findings[-1].evidence == "mlp pgd ε=0.1: zero_gradients"
    assert "Gradient-masking warnings" in text


def test_load_study_without_a_store(tmp_path: Path) -> None:
    from robustscope.errors import RobustscopeError

    with pytest.raises(RobustscopeError, match="results"):
        load_study(tmp_path)
