"""The report is assembled from registered sections (issue 11 §5).

A section registered here, from a test module, appears in the report — on the page, in the
contents, in the Findings and in ``figures/`` — without the builder knowing it; a name or a
class registered twice is refused. Each test registers into a copy of the registry
(``sections`` fixture), so the built-in report seen by other tests is untouched.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pandas as pd
import pytest

from robustscope.registry import Registry
from robustscope.report import (
    SECTIONS,
    Finding,
    ReportContext,
    ReportError,
    Section,
    SectionFigure,
    StudyData,
    build,
    compute_findings,
    register_section,
    section,
    style,
    write_report,
)
from robustscope.report.evidence import Verdict
from robustscope.report.section import dedicated_probes, ordered_sections

BUILT_IN = [
    "findings",
    "tradeoff",
    "tsipras2019",
    "datasize",
    "training",
    "shi2020",
    "wen2020",
    "wu2020",
    "terzi2021",
    "weights",
    "checks",
    "numbers",
]
PAPERS = ("tsipras2019", "shi2020", "wen2020", "wu2020", "terzi2021")
TOY_CLAIM = "A toy claim holds on every study"


@pytest.fixture
def sections(monkeypatch: pytest.MonkeyPatch) -> Registry[Section]:
    """A copy of the section registry in place of the real one (and figures at 50 dpi)."""
    fresh: Registry[Section] = Registry("report section", error=ReportError)
    for name, entry in SECTIONS.items():
        fresh.register(name, entry)
    monkeypatch.setattr(section, "SECTIONS", fresh)
    monkeypatch.setattr(style, "DPI", 50)
    return fresh


def _study(novel: bool = True) -> StudyData:
    """Two finished runs (ε = 0 and 0.1) with a clean accuracy and a probe no section draws."""
    runs = [
        {"run_id": "a", "label": "m standard ε=0", "method": "standard", "family": "pgd"},
        {"run_id": "b", "label": "m pgd ε=0.1", "method": "pgd", "family": "pgd", "eps": 0.1},
    ]
    metrics = pd.DataFrame({"clean_accuracy": [0.9, 0.8]}, index=["a", "b"])
    probes = pd.DataFrame({"novel_probe/score": [1.0, 2.0]}, index=["a", "b"]) if novel else None
    return StudyData.from_frames(spec={"name": "toy"}, runs=runs, metrics=metrics, probes=probes)


class _Page:
    """Section ids in page order, the contents' links and the figure ids of a report."""

    def __init__(self, text: str) -> None:
        self.ids = re.findall(r'<section id="([^"]*)">', text)
        self.links = re.findall(r'<a href="([^"]*)">', text)
        self.figures = re.findall(r'<figure id="([^"]*)">', text)


def _page(out: Path, data: StudyData) -> tuple[str, _Page]:
    text = write_report(out, data).read_text()
    return text, _Page(text)


def _toy(name: str = "toy", order: int = 25, **attrs: object) -> type[Section]:
    """A section with one figure, some HTML and one finding, registered as ``name``."""

    class Toy(Section):
        """A toy capability: one line, one figure, one claim."""

        title = "A toy section"

        def figures(self, ctx: ReportContext) -> list[SectionFigure]:
            fig, (ax,) = style.grid(1)
            ax.plot([0.0, 1.0], [len(ctx.table)] * 2)
            return [
                SectionFigure("toy_fig", fig, "The toy's figure."),
                SectionFigure("no", None, ""),
            ]

        def html(self, ctx: ReportContext) -> str:
            return f"<p>{len(ctx.table)} runs seen by the toy.</p>"

        def findings(self, ctx: ReportContext) -> list[Finding]:
            return [Finding(TOY_CLAIM, "toy2025", Verdict.HOLDS, f"{len(ctx.table)} runs")]

    for key, value in attrs.items():
        setattr(Toy, key, value)
    return register_section(name, order=order)(Toy)


def test_built_in_sections_in_page_order() -> None:
    assert [s.id for s in ordered_sections()] == BUILT_IN
    assert sorted(SECTIONS.available()) == sorted(BUILT_IN)
    for s in ordered_sections():
        assert s.title and s.source  # every section names its paper or capability
    assert SECTIONS.available()["shi2020"].startswith("shi2020")
    assert SECTIONS.available()["wen2020"].startswith("wen2020")
    assert {"input_fisher", "margins", "weight_norms"} <= dedicated_probes()


def test_a_section_registered_here_appears_in_the_report(
    sections: Registry[Section], tmp_path: Path
) -> None:
    data = _study()
    _, before = _page(tmp_path / "before", data)
    # checks: Findings only; datasize: only in studies with a training-set-size axis;
    # tsipras2019: only on its distribution; wu2020: only with a post-hoc sweep; terzi2021:
    # only with its probes
    assert before.ids == [
        s for s in BUILT_IN if s not in ("checks", "datasize", "tsipras2019", "wu2020", "terzi2021")
    ]

    _toy()
    text, page = _page(tmp_path / "after", data)
    assert page.ids == ["findings", "tradeoff", "toy", *before.ids[2:]]  # at its order, 25
    assert "#toy" in page.links and "A toy section" in text
    assert "fig-toy_fig" in page.figures and (tmp_path / "after/figures/toy_fig.png").is_file()
    assert not (tmp_path / "after/figures/no.png").exists()  # a None figure is skipped
    body = text.split('<section id="toy">', 1)[1].split("</section>", 1)[0]
    assert body.index("The toy&#x27;s figure.") < body.index("<p>2 runs seen by the toy.</p>")

    findings = compute_findings(data)
    assert [f.claim for f in findings].index(TOY_CLAIM) == 2  # after the trade-off's two
    assert findings[2] == Finding(TOY_CLAIM, "toy2025", Verdict.HOLDS, "2 runs")
    assert TOY_CLAIM in text.split('<section id="findings">', 1)[1].split("</section>", 1)[0]


def test_a_section_that_does_not_apply_is_left_off_the_page(
    sections: Registry[Section], tmp_path: Path
) -> None:
    _toy(applies=lambda self, ctx: False)
    text, page = _page(tmp_path, _study())
    assert "toy" not in page.ids and "#toy" not in page.links and "toy_fig" not in text
    assert TOY_CLAIM in text  # its claims still count


def test_a_section_that_draws_nothing_shows_its_note(
    sections: Registry[Section], tmp_path: Path
) -> None:
    _toy(figures=lambda self, ctx: [], html=lambda self, ctx: "", probes=("novel_probe",))
    text, _ = _page(tmp_path, _study())
    body = text.split('<section id="toy">', 1)[1].split("</section>", 1)[0]
    assert "Not measured in this study: the novel_probe probes did not run." in body


def test_sections_wait_for_a_finished_run(sections: Registry[Section], tmp_path: Path) -> None:
    _toy()
    _toy("toy_numbers", order=95, needs_runs=False)
    data = StudyData.from_frames(spec={"name": "e"}, runs=[{"run_id": "x", "status": "failed"}])
    text, page = _page(tmp_path, data)
    assert page.ids[-1] == "toy_numbers"
    toy = text.split('<section id="toy">', 1)[1].split("</section>", 1)[0]
    assert "No finished run yet" in toy and "runs seen" not in toy
    assert "<p>0 runs seen by the toy.</p>" in text  # the one that does not need runs
    assert [f.claim for f in compute_findings(data)] == ["Any claim"]


def test_a_probe_a_section_draws_gets_no_generic_figure(
    sections: Registry[Section], tmp_path: Path
) -> None:
    _, page = _page(tmp_path / "generic", _study())
    assert "fig-probe_novel_probe" in page.figures
    _toy(probes=("novel_probe",))
    _, page = _page(tmp_path / "own", _study())
    assert "fig-probe_novel_probe" not in page.figures
    assert not (tmp_path / "own/figures/probe_novel_probe.png").exists()


def test_a_name_or_a_class_registered_twice_is_refused(sections: Registry[Section]) -> None:
    original = sections.get("tradeoff")
    with pytest.raises(ReportError, match="'tradeoff' is registered twice"):
        _toy("tradeoff")
    assert sections.get("tradeoff") is original
    toy = _toy()
    with pytest.raises(ReportError, match="registered twice"):
        _toy()  # another class under the same name
    with pytest.raises(ReportError, match="already registered as 'toy'"):
        register_section("toy2", order=26)(toy)  # the same class under another name
    assert sorted(sections) == sorted([*BUILT_IN, "toy"])


def test_a_malformed_section_is_refused(sections: Registry[Section]) -> None:
    class Untitled(Section):
        """No title."""

    with pytest.raises(ReportError, match="title"):
        register_section("untitled", order=1)(Untitled)
    with pytest.raises(ReportError, match="int order"):
        _toy(order="25")  # type: ignore[arg-type]
    assert "untitled" not in sections and "toy" not in sections


def test_a_figure_name_used_twice_is_refused(sections: Registry[Section], tmp_path: Path) -> None:
    _toy("toy_a", order=25)
    _toy("toy_b", order=26)
    with pytest.raises(ReportError, match="figure named 'toy_fig' is already in the report"):
        write_report(tmp_path, _study())


def test_the_not_measured_notes() -> None:
    notes = {s.id: s.missing() for s in ordered_sections()}
    assert notes["shi2020"] == (
        "Not measured in this study: the input_fisher, cckl and taylor_split probes did not run."
    )
    assert notes["wen2020"] == (
        "Not measured in this study: the margins, confidence, generalization_gap and "
        "layer_spectra probes did not run."
    )
    assert notes["tradeoff"] == "Not measured in this study: no attack results."
    assert notes["weights"] == "Not measured in this study: no probe ran."


def test_the_builder_names_no_section() -> None:
    """build.py holds no per-paper code: no section id or paper in its code's strings, no
    paper in its text, no getattr."""
    source = inspect.getsource(build)
    tree = ast.parse(source)
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    strings = [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
    ]
    assert strings  # the check sees the code's strings
    for text in strings:
        words = set(re.findall(r"[a-z0-9_]+", text.lower()))
        assert not words & {*BUILT_IN, *PAPERS}, text
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert "getattr" not in names and not any(p in source for p in PAPERS)
