"""Comparing studies (``robustscope compare``): two tiny real studies — the ``smoke`` preset
and a variant trained with another seed and another ε grid — set side by side; the page's
numbers are the stores' numbers; bad inputs are one clear line with exit status 2; the page
and both reports pass the browser checks (tests/pagecheck.py)."""

from __future__ import annotations

import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from pagecheck import DESKTOP, PHONE, look
from robustscope.cli import app, main
from robustscope.report import ReportContext, StudyData, compute_findings, load_study, write_report
from robustscope.report.compare import (
    ComparedStudy,
    differences,
    display_names,
    load_studies,
    matched_findings,
    unmatched,
)
from robustscope.report.page import fmt
from robustscope.studies import load_spec, open_store, preset, run_study

SMOKE = preset("smoke")


def _variant() -> Any:
    """The smoke study with seed 1 and ε ∈ {0, 0.05}: its ε = 0 run matches the reference's,
    its ε = 0.05 run matches nothing (nor does the reference's ε = 0.1)."""
    raw = SMOKE.model_dump(mode="json")
    raw["name"] = "smoke-b"
    raw["seeds"] = [1]
    raw["methods"][0]["eps"] = [0.0, 0.05]
    return load_spec(raw)


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two real studies, each with its report (figures at 50 dpi to keep the tests fast)."""
    from robustscope.report import style

    root = tmp_path_factory.mktemp("studies")
    a, b = root / "a", root / "b"
    run_study(SMOKE, a, device="cpu", progress=False, echo=None)
    run_study(_variant(), b, device="cpu", progress=False, echo=None)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(style, "DPI", 50)
        write_report(a)
        write_report(b)
    return a, b


@pytest.fixture(scope="module")
def compared(studies: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``robustscope compare a b --out <dir>``: the page's folder."""
    from robustscope.report import style

    out = tmp_path_factory.mktemp("compare")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(style, "DPI", 50)
        result = CliRunner().invoke(app, ["compare", *map(str, studies), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().replace("\n", "") == str(out / "compare.html")
    return out


class _Tables(HTMLParser):
    """Every ``<table>`` of a page as rows of cell texts, and the ``<section>`` ids."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self.sections: list[str] = []
        self.scripts = 0
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "section":
            self.sections.append(dict(attrs).get("id") or "")
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _tables(text: str) -> _Tables:
    parsed = _Tables()
    parsed.feed(text)
    return parsed


def _table(parsed: _Tables, head: list[str]) -> list[dict[str, str]]:
    """The rows (as dicts) of the first table whose header row starts with ``head``."""
    for table in parsed.tables:
        if table and table[0][: len(head)] == head:
            return [dict(zip(table[0], row, strict=True)) for row in table[1:]]
    raise AssertionError(f"no table headed {head}")


# --- the page -----------------------------------------------------------------------------


def test_the_page_names_both_studies_and_holds_every_part(compared: Path) -> None:
    text = (compared / "compare.html").read_text(encoding="utf-8")
    parsed = _tables(text)
    assert text.startswith("<!DOCTYPE html>") and parsed.scripts == 0
    assert "Comparing 2 studies" in text and "The reference is smoke:" in text
    studies = _table(parsed, ["", "smoke", "smoke-b"])
    assert {r[""]: (r["smoke"], r["smoke-b"]) for r in studies}["seeds"] == ("0", "1")
    assert parsed.sections == ["frontiers", "robust", "probes", "differences", "findings"]
    figures = sorted(p.name for p in (compared / "figures").glob("*.png"))
    assert figures == ["frontiers.png", "probe_input_fisher.png", "robust_vs_attack_eps.png"]
    assert text.count('src="data:image/png;base64,') == 3


def test_the_differences_are_the_stores_numbers(studies: tuple[Path, Path], compared: Path) -> None:
    """Each cell of the differences equals what the two stores hold (as the page prints
    numbers), and the CSV holds them to the last digit."""
    a, b = studies
    store: dict[str, dict[str, float]] = {}
    for name, path in (("smoke", a), ("smoke-b", b)):
        with open_store(path) as st:
            runs = st.runs_table().set_index("run_id")
            (standard,) = runs.index[runs["eps"] == 0]  # the one run both studies share
            values = {"clean accuracy": float(st.metrics_table().loc[standard, "clean_accuracy"])}
            rob = st.robustness_table()
            for _, r in rob[(rob["run_id"] == standard) & (rob["attack_eps"] > 0)].iterrows():
                key = f"robust accuracy, {r['label']} at ε = {r['attack_eps']:g}"
                values[key] = float(r["robust_accuracy"])
            probes = st.probes_table().loc[standard]
            values.update({str(k): float(v) for k, v in probes.items()})
        store[name] = values
    assert len(store["smoke"]) == 3 + 8  # clean, PGD at ε 0.1 and 0.2, input_fisher's 8
    parsed = _tables((compared / "compare.html").read_text(encoding="utf-8"))
    head = ["series", "train ε", "quantity", "smoke", "smoke-b", "Δ smoke-b"]
    accuracy, probe = (t for t in parsed.tables if t and t[0] == head)
    rows = [dict(zip(head, r, strict=True)) for r in accuracy[1:] + probe[1:]]
    assert [r["quantity"] for r in rows] == list(store["smoke"])
    for r in rows:
        assert (r["series"], r["train ε"]) == ("mlp32 · pgd", "0")
        ref, other = store["smoke"][r["quantity"]], store["smoke-b"][r["quantity"]]
        assert (r["smoke"], r["smoke-b"], r["Δ smoke-b"]) == (
            fmt(ref),
            fmt(other),
            fmt(other - ref),
        )
    csv = pd.read_csv(compared / "differences.csv")
    assert list(csv["quantity"]) == list(store["smoke"])
    for _, r in csv.iterrows():
        ref, other = store["smoke"][r["quantity"]], store["smoke-b"][r["quantity"]]
        assert (r["smoke"], r["smoke-b"]) == (pytest.approx(ref), pytest.approx(other))
        assert r["Δ smoke-b"] == pytest.approx(other - ref)
    missing = _table(parsed, ["what", "name", "in", "not in"])
    assert missing == [
        {"what": "model × method", "name": "mlp32 · pgd at training ε = 0.05", "in": "smoke-b",
         "not in": "smoke"},
        {"what": "model × method", "name": "mlp32 · pgd at training ε = 0.1", "in": "smoke",
         "not in": "smoke-b"},
    ]  # fmt: skip


def test_the_findings_are_each_studys_own(studies: tuple[Path, Path]) -> None:
    compared = load_studies(studies)
    own = [compute_findings(load_study(p), eval_eps=0.1) for p in studies]
    matched = matched_findings(compared)
    assert len(matched) == len(own[0]) == len(own[1])
    for found, mine, theirs in zip(matched, *own, strict=True):
        assert found[0] is not None and found[1] is not None
        assert (found[0].claim, found[0].verdict) == (mine.claim, mine.verdict)
        assert (found[1].claim, found[1].verdict) == (theirs.claim, theirs.verdict)


def test_a_study_beside_its_copy_differs_by_nothing(
    studies: tuple[Path, Path], tmp_path: Path
) -> None:
    a, _ = studies
    copy = tmp_path / "a2"
    shutil.copytree(a, copy)
    both = load_studies([a, copy])
    assert [s.name for s in both] == ["smoke (a)", "smoke (a2)"]
    diffs = differences(both)
    assert len(diffs) == 2 * (3 + 8)  # both training ε match
    assert (diffs["Δ smoke (a2)"] == 0).all()
    assert unmatched(both).empty
    for first, second in matched_findings(both):
        assert first is not None and second is not None and first.verdict == second.verdict


def _tiny(name: str, models: dict[str, list[float]]) -> ComparedStudy:
    """A hand-made study: per model, clean accuracies at training ε 0 and 0.1."""
    runs, clean = [], {}
    for model, accuracies in models.items():
        for eps, acc in zip((0.0, 0.1), accuracies, strict=True):
            rid = f"{name}-{model}-{eps:g}"
            method = "standard" if eps == 0 else "pgd"
            runs.append({"run_id": rid, "model": model, "method": method, "family": "pgd",
                         "eps": eps})  # fmt: skip
            clean[rid] = acc
    metrics = pd.DataFrame({"clean_accuracy": clean})
    data = StudyData.from_frames(spec={"name": name}, runs=runs, metrics=metrics)
    return ComparedStudy(name, Path(name), ReportContext(data), "#000000")


def test_one_model_against_another_is_matched_by_training_eps() -> None:
    ref, mine = _tiny("ref", {"cnn": [0.9, 0.8]}), _tiny("mine", {"import": [0.7, 0.75]})
    diffs = differences([ref, mine])
    assert list(diffs["series"]) == ["cnn · pgd / import · pgd"] * 2
    assert list(diffs["train_eps"]) == [0.0, 0.1]
    assert diffs["Δ mine"].tolist() == pytest.approx([-0.2, -0.05])
    assert unmatched([ref, mine]).empty
    # several models in a study: matched by name, the others listed apart
    two = _tiny("two", {"cnn": [0.85, 0.7], "import": [0.6, 0.5]})
    diffs = differences([ref, two])
    assert list(diffs["series"]) == ["cnn · pgd"] * 2
    assert diffs["Δ two"].tolist() == pytest.approx([-0.05, -0.1])
    assert list(unmatched([ref, two])["name"]) == [
        "import · pgd at training ε = 0", "import · pgd at training ε = 0.1"
    ]  # fmt: skip


def test_display_names_tell_studies_apart() -> None:
    paths = [Path("x/run"), Path("y/run"), Path("z")]
    assert display_names(["s", "s", "t"], paths) == ["s (x/run)", "s (y/run)", "t"]


# --- bad inputs ---------------------------------------------------------------------------


def _main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``robustscope <args>`` through the console entry point: exit status and stderr."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["robustscope", *args])
        with pytest.raises(SystemExit) as stop:
            main()
    return int(stop.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (["a"], "compare needs two or more study directories, got 1"),
        (["a", "empty"], "empty: not a study directory (no results.sqlite in it)"),
        (["a", "nowhere"], "nowhere: no such study directory"),
        (["a", "a"], "the same study is given twice"),
        (["a", "b", "--out", "a"], "is a study directory (it holds results.sqlite)"),
        (["a", "b", "--eval-eps", "-1"], "--eval-eps must be finite and ≥ 0"),
    ],
)
def test_bad_inputs_are_one_clear_line_with_status_2(
    studies: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    given: list[str],
    message: str,
) -> None:
    a, b = studies
    (tmp_path / "empty").mkdir()
    where = {"a": str(a), "b": str(b), "empty": str(tmp_path / "empty")}
    args = [where.get(g, str(tmp_path / g) if g == "nowhere" else g) for g in given]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    status, err = _main(["compare", *args], capsys)
    flat = " ".join(err.split())
    assert status == 2 and message in flat and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_no_study_at_all_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    status, err = _main(["compare", "--out", "x"], capsys)
    assert status == 2 and "Missing argument 'STUDY_DIR...'" in err


# --- in a real browser ------------------------------------------------------------------------


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_the_page_and_the_reports_in_a_real_browser(
    studies: tuple[Path, Path], compared: Path, chromium: Any, width: int
) -> None:
    """The comparison page and both reports, on a laptop and on a phone: images decode, links
    land, no console error, nothing wider than the screen but the tables' scroll boxes, and
    every claim listed with each study's verdict."""
    seen = look(chromium, compared / "compare.html", width)
    assert seen.problems() == []
    assert len(seen.images) == 3 and len(seen.links) == 5
    (table,) = seen.findings
    matched = matched_findings(load_studies(studies))
    assert [r["verdicts"] for r in table] == [
        [str(f.verdict) if f else "not tested" for f in found] for found in matched
    ]
    for study in studies:
        report = look(chromium, study / "report.html", width)
        assert report.problems() == []
        (claims,) = report.findings
        assert [r["claim"] for r in claims] == [
            f.claim for f in compute_findings(load_study(study))
        ]
