"""A page as a reader meets it: the system Chromium, driven by Playwright, opens an HTML file at
a given viewport width and reports what a reader would trip over (the browser tests of
tests/test_report.py and tests/test_compare.py use it through the ``chromium`` fixture of
conftest.py).

:func:`look` returns a :class:`Seen`: whether every ``<img>`` decoded (``naturalWidth`` > 0
after ``img.decode()``), the in-page links (``href="#…"``) without a target id, the console
errors, page errors and failed requests, what sticks out at that width, and the rows of the
Findings tables (``table.findings``: each row's claim, the text of its verdict cells,
``td.verdict``, and its cells not wholly in the viewport — a Findings row is read without
scrolling sideways).

"Sticks out" is read as a phone reader meets it: the document scrolls sideways (its
``scrollWidth`` exceeds the viewport), or an element outside a ``.scroll`` box (the boxes
that scroll wide tables sideways on purpose) reaches beyond the viewport, or a block's content
overflows its box.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
#: why the browser tests skip (the only reason they may)
NO_CHROMIUM = (
    f"the browser checks drive the system Chromium at {CHROMIUM}, which is absent (install "
    "Debian's chromium package; `make test` does so when run as root)"
)
#: a phone's viewport width (CSS pixels), and a laptop's
PHONE, DESKTOP = 390, 1280
VERDICTS = {"holds", "does not hold", "inconclusive", "not tested"}

_READ = r"""
async () => {
  const vw = document.documentElement.clientWidth;
  const images = await Promise.all([...document.images].map(async (img) => {
    let decoded = true;
    try { await img.decode(); } catch (e) { decoded = false; }
    return {decoded: decoded && img.complete && img.naturalWidth > 0, alt: img.alt.slice(0, 80)};
  }));
  const links = [...document.querySelectorAll('a[href^="#"]')].map(a => a.getAttribute('href'));
  const broken = links.filter(h => {
    const id = decodeURIComponent(h.slice(1));
    return !id || !document.getElementById(id);
  });
  const outside = [];
  for (const el of document.body.querySelectorAll('*')) {
    const box = el.closest('.scroll');
    if (box && box !== el) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    const style = getComputedStyle(el);
    const name = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
      (typeof el.className === 'string' && el.className ? '.' + el.className : '');
    const text = (el.textContent || '').trim().slice(0, 60);
    if (r.right > vw + 1 || r.left < -1) {
      outside.push(`${name} spans x ${Math.round(r.left)}..${Math.round(r.right)}: ${text}`);
    } else if (style.display !== 'inline' && style.overflowX === 'visible' &&
               el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) {
      outside.push(`${name} content ${el.scrollWidth}px > box ${el.clientWidth}px: ${text}`);
    }
  }
  const tables = [...document.querySelectorAll('table.findings')].map(t =>
    [...t.querySelectorAll('tbody > tr')].map(tr => {
      const offscreen = [...tr.cells].filter(td => {
        const r = td.getBoundingClientRect();
        return r.width === 0 || r.left < -1 || r.right > vw + 1;
      });
      return {
        claim: tr.cells[0].textContent.trim(),
        verdicts: [...tr.querySelectorAll('td.verdict')].map(td => td.textContent.trim()),
        offscreen: offscreen.map(td => (td.textContent || '').trim().slice(0, 40)),
      };
    }));
  return {
    width: vw, scrollWidth: document.documentElement.scrollWidth, images, links, broken,
    outside, tables,
  };
}
"""


@dataclass
class Seen:
    """What :func:`look` found on one page at one width."""

    width: int
    scroll_width: int
    images: list[dict[str, Any]]
    links: list[str]
    broken_links: list[str]
    outside: list[str]
    findings: list[list[dict[str, Any]]]
    errors: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Everything a reader would trip over at this width (empty: the page is fine)."""
        found = [f"image not decoded: {i['alt']!r}" for i in self.images if not i["decoded"]]
        found += [f"in-page link without a target: {h}" for h in self.broken_links]
        found += [f"console: {e}" for e in self.errors]
        if self.scroll_width > self.width + 1:
            found.append(f"the page scrolls sideways: {self.scroll_width}px in {self.width}px")
        found += [f"sticks out at {self.width}px: {o}" for o in self.outside]
        for table in self.findings:
            for row in table:
                odd = [v for v in row["verdicts"] if v not in VERDICTS]
                if not row["verdicts"] or odd:
                    found.append(f"claim {row['claim'][:60]!r}: verdict cells {row['verdicts']}")
                if row["offscreen"]:
                    found.append(
                        f"claim {row['claim'][:60]!r}: cells off screen (to read by scrolling "
                        f"sideways): {row['offscreen']}"
                    )
        return found


def look(browser: Any, page_file: Path, width: int) -> Seen:
    """Open ``page_file`` in ``browser`` (a Playwright ``Browser``) at ``width`` CSS pixels
    wide and read it (see the module doc)."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url[:80]}"))
    try:
        page.goto(page_file.resolve().as_uri(), wait_until="load")
        got = page.evaluate(_READ)
    finally:
        page.close()
    return Seen(
        width=int(got["width"]),
        scroll_width=int(got["scrollWidth"]),
        images=got["images"],
        links=got["links"],
        broken_links=got["broken"],
        outside=got["outside"],
        findings=got["tables"],
        errors=errors,
    )
