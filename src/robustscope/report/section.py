"""Report sections: the registry the report is assembled from.

A :class:`Section` is one part of the page and the claims of one paper or capability: its
figures, the text after them, and its :class:`~robustscope.report.findings.Finding` s. Each
lives in a module of its own (:mod:`robustscope.report.sections`) and registers itself with
``@register_section(name, order=N)``; the builder (:func:`robustscope.report.write_report`) walks
:func:`ordered_sections` and knows no section by name. A new paper adds a section by
writing a module and importing it from :mod:`robustscope.report.sections` (or from its own
code, before the report is written) — nothing else changes.

How the builder uses a section (in ascending :attr:`Section.order`, ties by id):

1. :meth:`Section.applies` False: the section is left off the page (its findings still
   count: they say "not tested here" themselves);
2. :attr:`Section.needs_runs` and no run finished: the note "No finished run yet" ("No
   finished run trained" when every finished run collapsed);
3. otherwise the body is the drawn :meth:`Section.figures` (those not None), then
   :meth:`Section.html`; an empty body becomes the note :meth:`Section.missing` (which
   says when it is because no model has a training ε).

The Findings of the report are every section's :meth:`Section.findings`, in section order
(:attr:`ReportContext.findings`, :func:`compute_findings`).

Example:
    >>> from robustscope.report import StudyData
    >>> class Note(Section):
    ...     '''The lab: the number of finished runs.'''
    ...     title = "A note"
    ...     def html(self, ctx: ReportContext) -> str:
    ...         return f"<p>{len(ctx.table)} finished run(s).</p>"
    >>> note = Note()
    >>> note.source, note.missing()
    ('The lab: the number of finished runs.', 'Not measured in this study: nothing to show.')
    >>> note.html(ReportContext(StudyData.from_frames(runs=[{"run_id": "a"}])))
    '<p>1 finished run(s).</p>'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar, TypeVar

import pandas as pd
from matplotlib.figure import Figure

from robustscope.errors import RobustscopeError
from robustscope.registry import Registry, first_line
from robustscope.report.data import NO_EPS, AttackColumn, StudyData
from robustscope.report.evidence import Samples
from robustscope.report.findings import Finding, not_tested
from robustscope.report.stats import main_robust_column, series
from robustscope.report.style import Palette

__all__ = [
    "SECTIONS",
    "ReportContext",
    "ReportError",
    "Section",
    "SectionFigure",
    "compute_findings",
    "dedicated_probes",
    "ordered_sections",
    "register_section",
]


class ReportError(RobustscopeError):
    """A report section is malformed or registered twice."""


@dataclass(frozen=True)
class SectionFigure:
    """One figure a section draws: the file stem (``figures/<name>.png``), the figure (None
    when the study lacks its data: nothing is shown) and its caption."""

    name: str
    figure: Figure | None
    caption: str


@dataclass(eq=False)
class ReportContext:
    """What the sections of one report read: the study and what is derived from it once.

    Attributes:
        data: the study.
        eval_eps: the attack ε of the frontier and of the robust-accuracy claim (None: see
            :func:`robustscope.report.stats.main_robust_column`).
        used: the ``table`` columns some figure drew (figures add theirs; the weights
            section tabulates the probe scalars no section drew).
    """

    data: StudyData
    eval_eps: float | None = None
    used: set[str] = field(default_factory=set)

    @cached_property
    def table(self) -> pd.DataFrame:
        """The finished runs that trained, with every scalar (:meth:`StudyData.table`)."""
        return self.data.table()

    def points(self, run_id: str, column: str) -> Samples | None:
        """The per-point values behind a cell of :attr:`table`
        (:meth:`StudyData.points`): what the Findings' intervals resample."""
        return self.data.points(run_id, column)

    @cached_property
    def palette(self) -> Palette:
        """One colour per training ε and one marker per series, for every figure."""
        names = list(series(self.table))
        return Palette(self.table["eps"] if len(self.table) else [], names)

    @cached_property
    def robust(self) -> AttackColumn | None:
        """The robust-accuracy column of the frontier and of the robust-accuracy claim."""
        return main_robust_column(self.data, self.eval_eps, self.table)

    @cached_property
    def findings(self) -> list[Finding]:
        """Every registered section's findings, in section order (one "not tested" finding
        when no run finished, or none that finished trained). A section's
        :meth:`Section.findings` must not read this."""
        if not len(self.table):
            none = "no finished run" if not self.data.done_ids() else "no finished run trained"
            return [not_tested("Any claim", "—", none)]
        return [f for section in ordered_sections() for f in section.findings(self)]


class Section:
    """Base class of the report's sections (see the module doc for how they are used).

    Subclasses set ``title`` (and what else they need) and override what they have;
    :func:`register_section` gives them their ``id`` and ``order``. The first line of the
    class docstring names the paper or capability the section belongs to (:attr:`source`,
    and what ``SECTIONS.available()`` lists).

    Attributes:
        id: the registered name and the HTML anchor (``<section id=...>``).
        order: the place on the page and in the Findings (ascending; ties by id).
        title: the heading.
        probes: the probes whose scalars it draws (no generic figure is made for them).
        needs_runs: show "No finished run yet" instead of the body before any run finished.
        lacking: what the study lacks when the section applies but drew nothing (default:
            that its ``probes`` did not run); see :meth:`missing`.
    """

    id: ClassVar[str] = ""
    order: ClassVar[int] = 0
    title: ClassVar[str] = ""
    probes: ClassVar[tuple[str, ...]] = ()
    needs_runs: ClassVar[bool] = True
    lacking: ClassVar[str] = ""

    @property
    def source(self) -> str:
        """The paper(s) or capability the section belongs to (its docstring's first line)."""
        return first_line(type(self))

    def missing(self, ctx: ReportContext | None = None) -> str:
        """The note shown when the section applies but drew nothing (with ``ctx``: also when
        the study's finished runs all lack a training ε, :data:`~.data.NO_EPS`)."""
        if ctx is not None and len(ctx.table) and not series(ctx.table):
            return f"Not shown: {NO_EPS}."
        reason = self.lacking or "nothing to show"
        if not self.lacking and self.probes:
            names = ", ".join(self.probes[:-1]) + " and " if len(self.probes) > 1 else ""
            reason = f"the {names}{self.probes[-1]} probes did not run"
        return f"Not measured in this study: {reason}."

    def applies(self, ctx: ReportContext) -> bool:
        """Whether the section is on the page of this study (default: always)."""
        return True

    def figures(self, ctx: ReportContext) -> list[SectionFigure]:
        """The section's figures, in page order (a None figure is skipped)."""
        return []

    def html(self, ctx: ReportContext) -> str:
        """HTML shown after the figures (every piece of data escaped)."""
        return ""

    def findings(self, ctx: ReportContext) -> list[Finding]:
        """The claims of the section's paper checked on this study."""
        return []

    def __repr__(self) -> str:
        return f"<section {self.id!r}: {self.title}>"


SECTIONS: Registry[Section] = Registry("report section", error=ReportError)
"""The report's sections by id (filled by :mod:`robustscope.report.sections`)."""

S = TypeVar("S", bound=type[Section])


def register_section(name: str, *, order: int) -> Callable[[S], S]:
    """Class decorator: register an instance of a :class:`Section` subclass as ``name`` (its
    ``id``) at place ``order``. A name registered twice, a class registered twice and a
    class without a ``title`` are refused (:class:`ReportError`)."""

    def deco(cls: S) -> S:
        if cls.__dict__.get("id"):
            raise ReportError(
                f"{cls.__name__} is already registered as {cls.id!r}; register one class "
                f"per section (it cannot also be {name!r})"
            )
        if not cls.title or not isinstance(order, int) or isinstance(order, bool):
            raise ReportError(
                f"section {name!r} ({cls.__name__}): set the class attribute title (a "
                f"non-empty string) and register it with an int order, got {order!r}"
            )
        SECTIONS.register(name, cls())
        cls.id, cls.order = name, order
        return cls

    return deco


def ordered_sections() -> list[Section]:
    """The registered sections in page order (``order``, then ``id``)."""
    return sorted((s for _, s in SECTIONS.items()), key=lambda s: (s.order, s.id))


def dedicated_probes() -> set[str]:
    """The probes some registered section draws (:attr:`Section.probes`)."""
    return {p for s in ordered_sections() for p in s.probes}


def compute_findings(data: StudyData, *, eval_eps: float | None = None) -> list[Finding]:
    """The findings of a study: every registered section's claims, in section order.

    Args:
        data: the study.
        eval_eps: attack ε at which the robust-accuracy claim is read (default: see
            :func:`robustscope.report.stats.main_robust_column`).

    Example::

        for f in compute_findings(data):
            print(f.claim, f.verdict, f.evidence)
    """
    return ReportContext(data, eval_eps).findings
