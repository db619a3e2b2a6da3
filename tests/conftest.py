"""Shared fixtures. Each xdist worker uses one intra-op thread so two workers share 2 cores."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests never read or write the user's data cache and never download."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
    monkeypatch.delenv("ROBUSTSCOPE_DOWNLOAD", raising=False)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """The system Chromium driven by Playwright (no browser download): a headless ``Browser``
    for the browser checks (tests/pagecheck.py). Skips, saying why, only when the system
    Chromium is absent; Playwright itself is a dev dependency and must import."""
    from pagecheck import CHROMIUM, NO_CHROMIUM

    if not CHROMIUM.exists():
        pytest.skip(NO_CHROMIUM)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()
