"""Comparing studies: one self-contained page that sets two or more studies side by side.

``write_comparison(study_dirs, out)`` reads each study's results store (:func:`load_study`)
and writes ``<out>/compare.html`` (figures embedded as ``data:`` URIs, inline CSS, no script;
the report's pieces: :mod:`~robustscope.report.page`, :mod:`~robustscope.report.style`,
:func:`~robustscope.report.build.write_page`), the figures as ``<out>/figures/*.png`` and the
table of differences as ``<out>/differences.csv``.

The first study is the **reference**: every difference (Δ) is another study's number minus
the reference's. Each study has one colour in every figure
(:func:`~robustscope.report.style.study_color`), each model × method series one marker and
line style. The page holds:

* the trade-off frontiers overlaid: clean against robust accuracy, each study read at the
  reference's attack ε when it evaluated it (else at its own; the caption says so);
* robust accuracy against the attack ε, one panel per training ε;
* each probe's scalars against the training ε (probes that two or more studies ran);
* the differences. A *row* is one series (model × method,
  :func:`~robustscope.report.stats.series`) at one training ε (equal within the store's
  tolerance, :func:`~robustscope.studies.store.vocab.same_eps`); when every study has a
  single series and they differ (a model against another), rows match by the training ε
  alone (:func:`match_keys`). A *quantity* is the clean accuracy, the robust accuracy of an
  attack at an attack ε > 0, or a probe scalar. Each number is the mean over the seeds of
  the runs that trained (:meth:`StudyData.table`). Rows and quantities two or more studies
  share are compared; what not every study has is listed apart;
* the Findings side by side: every claim with each study's verdict (claims matched by their
  source and their rank among that source's claims), the rows whose verdicts differ marked.

Example::

    write_comparison(["runs/tradeoff-fmnist", "runs/mine"], "runs/compare")
    # runs/compare/compare.html, runs/compare/figures/*.png, runs/compare/differences.csv
"""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from robustscope.errors import RobustscopeError
from robustscope.io import write_bytes
from robustscope.report.build import add_figure, write_page
from robustscope.report.data import AttackColumn, StudyData, load_study
from robustscope.report.evidence import Verdict
from robustscope.report.findings import Finding
from robustscope.report.header import run_counts, spec_rows
from robustscope.report.page import (
    FigureRecord,
    esc,
    findings_table,
    nav_html,
    section_html,
    skip_html,
    table_html,
    verdict_cell,
)
from robustscope.report.panels import present
from robustscope.report.section import ReportContext
from robustscope.report.stats import attack_curve, main_robust_column, series
from robustscope.report.style import Palette, grid, plot_frontier, plot_vs_eps, study_color
from robustscope.studies.store.vocab import CLEAN_ACCURACY, STORE_FILE, find_eps, format_eps

__all__ = [
    "ComparedStudy",
    "Quantity",
    "differences",
    "display_names",
    "load_studies",
    "match_keys",
    "matched_findings",
    "probe_columns",
    "quantities",
    "render_comparison",
    "unmatched",
    "write_comparison",
]

PAGE = "compare.html"
CSV = "differences.csv"
#: a probe table longer than this is folded (``<details>``)
FOLD_ROWS = 40
FOOTER = (
    "<footer>Written by robustscope (robustscope compare). Figures are embedded; the same PNGs "
    f"are in figures/ beside this file and the differences in {CSV}.</footer>"
)


@dataclass(eq=False)
class ComparedStudy:
    """One study of a comparison.

    Attributes:
        name: its name on the page (the spec's name; the directory is added when two
            studies share a name).
        path: its directory.
        context: the study as its report reads it (finished runs that trained, Findings),
            at the attack ε of :attr:`frontier`.
        color: its colour in every figure.
    """

    name: str
    path: Path
    context: ReportContext
    color: str

    @property
    def data(self) -> StudyData:
        return self.context.data

    @property
    def table(self) -> pd.DataFrame:
        return self.context.table

    @property
    def frontier(self) -> AttackColumn | None:
        """The robust-accuracy column of its frontier (and of its robust-accuracy claim)."""
        return self.context.robust


@dataclass(frozen=True)
class Quantity:
    """One compared quantity: its name on the page, its kind (``accuracy`` or ``probe``) and
    each study's column of :meth:`StudyData.table` (None: the study did not measure it)."""

    name: str
    kind: str
    columns: tuple[str | None, ...]

    def shared(self) -> bool:
        return sum(c is not None for c in self.columns) >= 2


def display_names(names: Sequence[str], paths: Sequence[Path]) -> list[str]:
    """The studies' names on the page: each spec's name, with its directory's name (or, if that
    is shared too, its path) when two studies share a name.

    Example:
        >>> display_names(["smoke", "smoke", "mine"], [Path("a/x"), Path("b/y"), Path("z")])
        ['smoke (x)', 'smoke (y)', 'mine']
    """
    counts = Counter(names)
    out = [f"{n} ({p.name})" if counts[n] > 1 else n for n, p in zip(names, paths, strict=True)]
    again = Counter(out)
    return [f"{n} ({p})" if again[o] > 1 else o for n, p, o in zip(names, paths, out, strict=True)]


def load_studies(
    study_dirs: Sequence[str | Path], eval_eps: float | None = None
) -> list[ComparedStudy]:
    """Read the studies of a comparison (the first is the reference).

    Each is read at ``eval_eps`` when given, else at the reference's frontier ε when it
    evaluated its first attack there (else at its own default,
    :func:`~robustscope.report.stats.main_robust_column`).

    Raises:
        RobustscopeError: fewer than two directories, one given twice, or one that is not a
            study directory (no ``results.sqlite``).
    """
    paths = [Path(d) for d in study_dirs]
    if len(paths) < 2:
        got = ", ".join(str(p) for p in paths) or "none"
        raise RobustscopeError(
            f"compare needs two or more study directories, got {len(paths)} ({got}); give the "
            "reference first, then the studies to set beside it"
        )
    seen: dict[Path, Path] = {}
    for p in paths:
        if not p.is_dir():
            raise RobustscopeError(
                f"{p}: no such study directory; give folders that `robustscope study --out` wrote"
            )
        if not (p / STORE_FILE).is_file():
            raise RobustscopeError(
                f"{p}: not a study directory (no {STORE_FILE} in it); give folders that "
                "`robustscope study --out` wrote"
            )
        key = p.resolve()
        if key in seen:
            raise RobustscopeError(
                f"{p}: the same study is given twice (also as {seen[key]}); give each study once"
            )
        seen[key] = p
    datas = [load_study(p) for p in paths]
    names = display_names([d.name for d in datas], paths)
    out: list[ComparedStudy] = []
    for i, (name, path, data) in enumerate(zip(names, paths, datas, strict=True)):
        at = eval_eps
        if at is None and out and out[0].frontier is not None:
            ref_eps = out[0].frontier.eps
            at = ref_eps if main_robust_column(data, ref_eps) is not None else None
        out.append(ComparedStudy(name, path, ReportContext(data, at), study_color(i)))
    return out


# --- matching ---------------------------------------------------------------------------------

Row = tuple[str, float]  # (the series' match name, training ε — as the first study has it)


def _canonical(eps: float, seen: list[float]) -> float:
    """``eps`` as the first equal ε of ``seen`` (appended when new)."""
    found = find_eps(eps, seen)
    if found is None:
        seen.append(float(eps))
        return float(eps)
    return found


def match_keys(studies: Sequence[ComparedStudy]) -> list[dict[str, str]]:
    """Each study's series name → the name its rows are matched by: the series name itself,
    except when every study with a finished run has exactly one series and they are not all
    the same (a model against another): then one shared name, ``"<a> / <b>"``, and rows match
    by training ε alone."""
    names = [list(series(s.table)) for s in studies]
    live = [n for n in names if n]
    if len(live) >= 2 and all(len(n) == 1 for n in live) and len({n[0] for n in live}) > 1:
        shared = " / ".join(dict.fromkeys(n[0] for n in live))
        return [{x: shared for x in n} for n in names]
    return [{x: x for x in n} for n in names]


def _cells(studies: Sequence[ComparedStudy]) -> list[dict[Row, tuple[str, pd.DataFrame]]]:
    """Each study's runs by row (:func:`match_keys`, training ε shared across studies): the
    series name and its runs at that ε."""
    seen: list[float] = []
    out: list[dict[Row, tuple[str, pd.DataFrame]]] = []
    for st, keys in zip(studies, match_keys(studies), strict=True):
        cells: dict[Row, tuple[str, pd.DataFrame]] = {}
        for name, rows in series(st.table).items():
            for e, members in rows.groupby("eps", sort=True):
                cells[(keys[name], _canonical(float(e), seen))] = (name, members)
        out.append(cells)
    return out


def _rows(cells: list[dict[Row, tuple[str, pd.DataFrame]]]) -> list[Row]:
    """Every row of any study: series in order of first appearance, then ε ascending."""
    order: dict[str, int] = {}
    for c in cells:
        for name, _ in c:
            order.setdefault(name, len(order))
    rows = {r for c in cells for r in c}
    return sorted(rows, key=lambda r: (order[r[0]], r[1]))


def quantities(studies: Sequence[ComparedStudy]) -> list[Quantity]:
    """Clean accuracy, robust accuracy per (attack, attack ε > 0) and every probe scalar of any
    study, with each study's column (None where it did not measure it)."""
    n = len(studies)
    out = [
        Quantity(
            "clean accuracy",
            "accuracy",
            tuple(CLEAN_ACCURACY if present(s.table, CLEAN_ACCURACY) else None for s in studies),
        )
    ]
    seen: list[float] = []
    robust: dict[tuple[str, float], list[str | None]] = {}
    for i, st in enumerate(studies):
        for c in st.data.robust_columns():
            if c.eps > 0 and present(st.table, c.column):
                key = (c.label, _canonical(c.eps, seen))
                robust.setdefault(key, [None] * n)[i] = c.column
    first = studies[0].data.first_attack()
    for (label, eps), cols in sorted(robust.items(), key=lambda kv: (kv[0][0] != first, kv[0])):
        out.append(
            Quantity(f"robust accuracy, {label} at ε = {format_eps(eps)}", "accuracy", tuple(cols))
        )
    probes: dict[str, list[str | None]] = {}
    for i, st in enumerate(studies):
        for col in st.data.probes.columns:
            if present(st.table, str(col)):
                probes.setdefault(str(col), [None] * n)[i] = str(col)
    out.extend(Quantity(col, "probe", tuple(cols)) for col, cols in probes.items())
    return out


def _mean_at(cell: tuple[str, pd.DataFrame] | None, column: str | None) -> float:
    if cell is None or column is None or column not in cell[1].columns:
        return float("nan")
    values = cell[1][column].dropna()
    return float(values.mean()) if len(values) else float("nan")


def differences(studies: Sequence[ComparedStudy]) -> pd.DataFrame:
    """The table of differences, one line per (row, quantity) that two or more studies
    measured: ``series``, ``train_eps``, ``kind``, ``quantity``, each study's seed mean (a
    column named after the study) and ``Δ <name>`` (that study minus the reference) for each
    other study."""
    names = [s.name for s in studies]
    cells = _cells(studies)
    qs = [q for q in quantities(studies) if q.shared()]
    lines: list[dict[str, Any]] = []
    for row in _rows(cells):
        for q in qs:
            values = [_mean_at(c.get(row), col) for c, col in zip(cells, q.columns, strict=True)]
            if sum(v == v for v in values) < 2:
                continue
            line: dict[str, Any] = {
                "series": row[0],
                "train_eps": row[1],
                "kind": q.kind,
                "quantity": q.name,
            }
            line.update(zip(names, values, strict=True))
            line.update(
                {f"Δ {n}": v - values[0] for n, v in zip(names[1:], values[1:], strict=True)}
            )
            lines.append(line)
    columns = ["series", "train_eps", "kind", "quantity", *names, *(f"Δ {n}" for n in names[1:])]
    return pd.DataFrame(lines, columns=columns)


def _listed(flags: Sequence[bool], names: Sequence[str]) -> tuple[str, str]:
    return (
        ", ".join(n for n, f in zip(names, flags, strict=True) if f),
        ", ".join(n for n, f in zip(names, flags, strict=True) if not f),
    )


def unmatched(studies: Sequence[ComparedStudy]) -> pd.DataFrame:
    """What only some of the studies have: model × method series at a training ε, attack
    evaluations and probes (a probe once when every scalar of it is missing in the same
    studies). Columns ``what``, ``name``, ``in``, ``not in``."""
    names = [s.name for s in studies]
    cells = _cells(studies)
    lines: list[dict[str, str]] = []

    def add(what: str, name: str, flags: Sequence[bool]) -> None:
        if all(flags):
            return
        where, missing = _listed(flags, names)
        lines.append({"what": what, "name": name, "in": where, "not in": missing})

    for row in _rows(cells):
        add(
            "model × method",
            f"{row[0]} at training ε = {format_eps(row[1])}",
            [row in c for c in cells],
        )
    qs = quantities(studies)
    for q in qs:
        if q.kind == "accuracy":
            add("evaluation", q.name, [c is not None for c in q.columns])
    by_probe: dict[str, list[Quantity]] = {}
    for q in qs:
        if q.kind == "probe":
            by_probe.setdefault(q.name.split("/", 1)[0], []).append(q)
    for probe, members in by_probe.items():
        patterns = {tuple(c is not None for c in q.columns) for q in members}
        if len(patterns) == 1:
            (flags,) = patterns
            add("probe", f"{probe} ({len(members)} scalar(s))", flags)
        else:
            for q in members:
                add("probe scalar", q.name, [c is not None for c in q.columns])
    return pd.DataFrame(lines, columns=["what", "name", "in", "not in"])


def matched_findings(
    studies: Sequence[ComparedStudy],
) -> list[list[Finding | None]]:
    """Every claim of any study with each study's finding of it (None: that study's report
    does not list it). Claims are matched by their source and their rank among that source's
    claims (a claim's text may name a study's own ε); the reference's order first."""
    keyed: list[dict[tuple[str, int], Finding]] = []
    order: list[tuple[str, int]] = []
    for st in studies:
        ranks: Counter[str] = Counter()
        mine: dict[tuple[str, int], Finding] = {}
        for f in st.context.findings:
            key = (f.paper, ranks[f.paper])
            ranks[f.paper] += 1
            mine[key] = f
            if key not in order:
                order.append(key)
        keyed.append(mine)
    return [[mine.get(key) for mine in keyed] for key in order]


# --- figures ----------------------------------------------------------------------------------


def _palette(studies: Sequence[ComparedStudy]) -> Palette:
    """Markers and line styles by series name (the same series looks the same in every
    study); the colours are the studies'."""
    names = [n for s in studies for n in series(s.table)]
    return Palette([], names)


def _study_handles(
    studies: Sequence[ComparedStudy], note: Callable[[ComparedStudy], str] | None = None
) -> list[Line2D]:
    return [
        Line2D([], [], color=s.color, lw=2.5, label=s.name + (f" ({note(s)})" if note else ""))
        for s in studies
    ]


def fig_frontiers(studies: Sequence[ComparedStudy], palette: Palette) -> Figure | None:
    """Clean against robust accuracy (each study's :attr:`ComparedStudy.frontier`), one point
    per series and training ε (seed means; bars span the seeds), one colour per study."""
    fig, (ax,) = grid(1, width=7.6, height=5.4)
    drawn: list[ComparedStudy] = []
    for st in studies:
        robust = st.frontier
        if robust is None or not present(st.table, CLEAN_ACCURACY):
            continue
        if plot_frontier(
            ax, series(st.table), robust.column, palette,
            line_color=st.color, point_color=st.color, label_color=st.color,
        ):  # fmt: skip
            drawn.append(st)
    if not drawn:
        return None

    def read_at(s: ComparedStudy) -> str:
        assert s.frontier is not None
        return f"{s.frontier.label} at ε = {format_eps(s.frontier.eps)}"

    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_title("Robustness–accuracy trade-off: one point per training ε, one colour per study")
    ax.legend(
        handles=_study_handles(drawn, read_at) + palette.series_handles(), fontsize=8, loc="best"
    )
    ax.margins(0.12)
    return fig


def _attack_curve(
    st: ComparedStudy, members: pd.DataFrame
) -> list[tuple[float, float, float, float]]:
    """(attack ε, mean, min, max) of the study's frontier attack over ``members``; the attack
    ε = 0 point is the clean accuracy when the attack did not evaluate it."""
    label = st.frontier.label if st.frontier is not None else st.data.first_attack()
    return attack_curve(
        members, {c.eps: c.column for c in st.data.robust_columns() if c.label == label}
    )


def fig_robust_curves(studies: Sequence[ComparedStudy], palette: Palette) -> Figure | None:
    """Robust accuracy against the attack ε, one panel per training ε (of any study), one
    curve per study and series (the study's frontier attack; bands span the seeds)."""
    cells = _cells(studies)
    panels = sorted({e for c in cells for _, e in c})
    curves: dict[float, list[tuple[ComparedStudy, str, list[Any], int]]] = {}
    for st, c in zip(studies, cells, strict=True):
        for (_, e), (name, members) in c.items():
            curve = _attack_curve(st, members)
            if curve:
                curves.setdefault(e, []).append((st, name, curve, len(members)))
    panels = [e for e in panels if e in curves]
    if not panels:
        return None
    fig, axes = grid(len(panels), cols=min(3, len(panels)), width=4.6, height=3.7)
    for ax, e in zip(axes, panels, strict=True):
        for st, name, curve, n in curves[e]:
            x = [p[0] for p in curve]
            ax.plot(
                x, [100 * p[1] for p in curve], color=st.color, ls=palette.linestyle(name),
                marker=palette.marker(name), ms=4,
            )  # fmt: skip
            if n > 1:
                ax.fill_between(
                    x, [100 * p[2] for p in curve], [100 * p[3] for p in curve],
                    color=st.color, alpha=0.12, lw=0,
                )  # fmt: skip
        ax.set_title(f"training ε = {format_eps(e)}", fontsize=10)
        ax.set_xlabel("attack ε (pixel units)", fontsize=8)
        ax.set_ylabel("robust accuracy (%)", fontsize=8)
        ax.set_ylim(-2, 102)

    def attack(s: ComparedStudy) -> str:
        return str(s.frontier.label if s.frontier is not None else s.data.first_attack())

    shown = [s for s in studies if any(s is c[0] for e in panels for c in curves[e])]
    axes[0].legend(
        handles=_study_handles(shown, attack) + palette.series_handles(), fontsize=7,
        loc="upper right",
    )  # fmt: skip
    return fig


def probe_columns(studies: Sequence[ComparedStudy], probe: str, limit: int = 9) -> list[str]:
    """The scalars of ``probe`` that two or more studies measured and that vary across the runs
    of one of them at least — a count such as ``n``, constant within each study, is left out
    (at most ``limit``, in the order the studies list them)."""
    out = []
    for q in quantities(studies):
        if q.kind != "probe" or not q.name.startswith(f"{probe}/") or not q.shared():
            continue
        if any(
            s.table[c].dropna().nunique() > 1 for s, c in zip(studies, q.columns, strict=True) if c
        ):
            out.append(q.name)
    return out[:limit]


def fig_probe(studies: Sequence[ComparedStudy], probe: str, palette: Palette) -> Figure | None:
    """One panel per scalar of ``probe`` (:func:`probe_columns`) against the training ε, one
    line per study and series (seed means; bars span the seeds)."""
    cols = probe_columns(studies, probe)
    if not cols:
        return None
    fig, axes = grid(len(cols), cols=3, width=4.3, height=3.4)
    for ax, col in zip(axes, cols, strict=True):
        for st in studies:
            if col in st.table.columns:
                plot_vs_eps(
                    ax, series(st.table), col, palette, line_color=st.color, point_color=st.color
                )
        ax.set_title(col.split("/", 1)[1], fontsize=10)
    axes[0].legend(handles=_study_handles(studies) + palette.series_handles(), fontsize=7)
    fig.suptitle(f"probe {probe}: scalars against the training ε", fontsize=10)
    return fig


# --- the page ---------------------------------------------------------------------------------


def _swatch(st: ComparedStudy) -> str:
    return f'<span class="swatch" style="background:{esc(st.color)}"></span>{esc(st.name)}'


def _studies_table(studies: Sequence[ComparedStudy]) -> str:
    """What each study ran (the report header's rows), one column per study."""
    rows: dict[str, dict[str, str]] = {}
    for st in studies:
        cells = [("directory", str(st.path)), *spec_rows(st.data.spec)]
        if st.data.spec.get("description"):
            cells.insert(1, ("description", str(st.data.spec["description"])))
        cells.append(("runs", run_counts(st.data)))
        robust = st.frontier
        cells.append(
            (
                "frontier read at",
                "—" if robust is None else f"{robust.label} at ε = {format_eps(robust.eps)}",
            )
        )
        for what, text in cells:
            rows.setdefault(what, {})[st.name] = text
    frame = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=[s.name for s in studies])
    return table_html(frame.fillna(""), index=True)


def _shown(frame: pd.DataFrame) -> pd.DataFrame:
    """The differences as the page shows them: ε as the store prints it, no ``kind``."""
    out = frame.drop(columns=["kind"]).rename(columns={"train_eps": "train ε"})
    out["train ε"] = [format_eps(e) for e in out["train ε"]]
    return out


def _differences_html(studies: Sequence[ComparedStudy], diffs: pd.DataFrame) -> str:
    ref = studies[0].name
    parts = [
        f"<p>Each number is the mean over the seeds of one model × method at one training ε; "
        f"each Δ is that study minus the reference, {esc(ref)}. Accuracies are fractions of the "
        "evaluated test points (robust accuracy over all of them). Only the rows and quantities "
        f"that two or more studies measured are here; the full numbers are in {CSV}.</p>"
    ]
    if any(k != v for keys in match_keys(studies) for k, v in keys.items()):
        parts.append(
            "<p>Each study has one model × method and they differ, so their rows are matched by "
            "the training ε alone (the series column names both).</p>"
        )
    acc = diffs[diffs["kind"] == "accuracy"]
    parts.append("<h3>Accuracy</h3>")
    parts.append(
        table_html(_shown(acc), index=False) if len(acc) else skip_html("No accuracy in common.")
    )
    probes = diffs[diffs["kind"] == "probe"]
    if len(probes):
        table = table_html(_shown(probes), index=False)
        opened = " open" if len(probes) <= FOLD_ROWS else ""
        parts.append(
            f"<h3>Probe scalars</h3><details{opened}><summary>{len(probes)} line(s)</summary>"
            f"{table}</details>"
        )
    missing = unmatched(studies)
    parts.append("<h3>Not matched</h3>")
    if len(missing):
        parts.append(
            "<p>What not every study has (a line above needs two studies that have it):</p>"
            + table_html(missing, index=False)
        )
    else:
        parts.append(
            "<p>Every model × method, training ε, evaluation and probe is in every study.</p>"
        )
    return "".join(parts)


def _findings_html(studies: Sequence[ComparedStudy]) -> str:
    names = [s.name for s in studies]
    rows, differ = [], 0
    matched = matched_findings(studies)
    for found in matched:
        first = next(f for f in found if f is not None)
        verdicts = [Verdict.UNTESTED if f is None else f.verdict for f in found]
        differs = len(set(verdicts)) > 1
        differ += differs
        evidence = "".join(
            f"<p><b>{esc(n)}</b>: "
            + (
                "not in its report"
                if f is None
                else (f"(read as: {esc(f.claim)}) " if f.claim != first.claim else "")
                + esc(f.evidence)
            )
            + "</p>"
            for n, f in zip(names, found, strict=True)
        )
        mark = ' class="differs"' if differs else ""
        rows.append(
            f"<tr{mark}>"
            f'<td class="l claim">{esc(first.claim)}</td>'
            f'<td class="l" data-label="source">{esc(first.paper)}</td>'
            + "".join(verdict_cell(v, n) for v, n in zip(verdicts, names, strict=True))
            + '<td class="l"><details><summary>evidence by study</summary>'
            f"{evidence}</details></td></tr>"
        )
    intro = (
        f"<p>{len(matched)} claim(s); the verdicts differ on {differ} (marked at the left). Each "
        "study's verdict is its report's (the statistical rule is stated there); a claim a "
        "study's report does not list is not tested there.</p>"
    )
    return intro + findings_table(("claim", "source", *names, "evidence"), rows)


def render_comparison(
    studies: Sequence[ComparedStudy], now: _dt.datetime
) -> tuple[str, list[FigureRecord], pd.DataFrame]:
    """The page's HTML body, its figures and the table of differences."""
    palette = _palette(studies)
    figures: list[FigureRecord] = []
    owner = "robustscope compare"

    def figure(name: str, fig: Figure | None, caption: str) -> str:
        return (
            ""
            if fig is None
            else add_figure(figures, name, fig, caption, owner=owner, page="comparison")
        )

    reads = {
        (s.frontier.label, format_eps(s.frontier.eps)) for s in studies if s.frontier is not None
    }
    note = (
        ""
        if len(reads) <= 1
        else " The studies are read at different attacks or ε (see the legend): their robust "
        "accuracies are not measured alike."
    )
    sections: list[tuple[str, str, str]] = []
    frontier = figure(
        "frontiers",
        fig_frontiers(studies, palette),
        "Clean against robust accuracy, one colour per study and one marker per model × method; "
        "one point per training ε (seed mean; bars span the seeds, min–max), joined in ε order."
        + note,
    )
    sections.append(
        (
            "frontiers",
            "Trade-off frontiers",
            frontier or skip_html("No study has both a clean and a robust accuracy."),
        )
    )
    curves = figure(
        "robust_vs_attack_eps",
        fig_robust_curves(studies, palette),
        "Robust accuracy against the attack's ε, one panel per training ε, one colour per study "
        "(each study's frontier attack; bands span the seeds). Robust accuracy is over all "
        "evaluated test points.",
    )
    sections.append(
        (
            "robust",
            "Robust accuracy against the attack ε",
            curves or skip_html("No attack results."),
        )
    )
    probe_names = list(
        dict.fromkeys(
            q.name.split("/", 1)[0] for q in quantities(studies) if q.kind == "probe" and q.shared()
        )
    )
    drawn = "".join(
        figure(
            f"probe_{p}",
            fig_probe(studies, p, palette),
            f"Probe {p}: its scalars that two or more studies measured and that vary, against "
            "the training ε; one colour per study, one marker per model × method (seed means; "
            "bars span the seeds).",
        )
        for p in probe_names
    )
    sections.append(
        (
            "probes",
            "Probes against the training ε",
            drawn or skip_html("No probe scalar that two of the studies measured varies."),
        )
    )
    diffs = differences(studies)
    sections.append(("differences", "Differences", _differences_html(studies, diffs)))
    sections.append(("findings", "Findings side by side", _findings_html(studies)))
    names = ", ".join(s.name for s in studies)
    legend = " ".join(_swatch(s) for s in studies)
    written = now.strftime("%Y-%m-%d %H:%M %Z").strip()
    header = (
        f"<header><h1>Comparing {len(studies)} studies</h1>"
        f'<p class="desc">{esc(names)}. The reference is {esc(studies[0].name)}: each Δ is '
        "another study's number minus the reference's, at the same model × method and training "
        f"ε.</p><p>{legend}</p>"
        + _studies_table(studies)
        + f'<p class="na">page written {esc(written)}</p>'
        + nav_html((sid, title) for sid, title, _ in sections)
        + "</header>"
    )
    body = header + "".join(section_html(*s) for s in sections) + FOOTER
    return body, figures, diffs


def write_comparison(
    study_dirs: Sequence[str | Path], out: str | Path, *, eval_eps: float | None = None
) -> Path:
    """Write ``<out>/compare.html`` (one self-contained page), ``<out>/figures/*.png`` and
    ``<out>/differences.csv`` comparing the studies (the first is the reference); return the
    page's path.

    Args:
        study_dirs: two or more study directories.
        out: the folder to write (created; not a study directory, whose ``figures/`` is its
            report's).
        eval_eps: the attack ε of the frontiers and robust-accuracy claims (default: the
            reference's, :func:`~robustscope.report.stats.main_robust_column`).

    Raises:
        RobustscopeError: see :func:`load_studies`; ``out`` is a study directory.
    """
    out = Path(out)
    if (out / STORE_FILE).exists():
        raise RobustscopeError(
            f"{out}: is a study directory (it holds {STORE_FILE}); write the comparison to a "
            "folder of its own, e.g. --out runs/compare"
        )
    studies = load_studies(study_dirs, eval_eps)
    now = _dt.datetime.now().astimezone()
    body, records, diffs = render_comparison(studies, now)
    title = "Comparing " + ", ".join(s.name for s in studies) + " — robustscope"
    out.mkdir(parents=True, exist_ok=True)
    write_bytes(out / CSV, diffs.to_csv(index=False).encode("utf-8"))
    return write_page(out / PAGE, title, body, records)
