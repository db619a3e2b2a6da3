"""The one composition point of layers that plug into earlier ones.

An earlier layer cannot import a later one (data → models → attacks → training → probes →
posthoc → studies), yet later layers extend earlier ones by registering entries in their
registries: :mod:`robustscope.posthoc` registers the ``spectral_clip`` training hook
(:mod:`robustscope.training.hooks`). Entry points that may meet such names — the CLI,
study executors, scripts — call :func:`load` once before they train or measure.
"""

from __future__ import annotations

import importlib

__all__ = ["PLUGINS", "load"]

PLUGINS: tuple[str, ...] = ("robustscope.posthoc",)
"""The modules :func:`load` imports, in order."""


def load() -> None:
    """Import every module of :data:`PLUGINS` (idempotent: a module is imported, and so
    registers its entries, once per process).

    Example:
        >>> load()
        >>> from robustscope.training import HOOKS
        >>> "spectral_clip" in HOOKS
        True
    """
    for name in PLUGINS:
        importlib.import_module(name)
