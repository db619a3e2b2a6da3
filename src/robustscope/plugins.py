"""The one composition point: later layers plugged into the registries of earlier ones.

An earlier layer never imports a later one (data → models → attacks → training → probes →
posthoc → studies), yet training runs code of later layers by name:

* tracking measurements (``TrainConfig.track``, :mod:`robustscope.training.tracking`) —
  every probe registered with ``tracked=True`` (:mod:`robustscope.probes`);
* epoch hooks (:mod:`robustscope.training.hooks`) — ``spectral_clip``
  (:func:`robustscope.posthoc.spectral_clip_hook`).

:func:`load` registers them, here and nowhere else; importing those packages registers
nothing in training. The CLI, the study executors (also inside Ray workers) and scripts call
it once before they train or measure; training refuses a name nobody registered with a
message that names this function.
"""

from __future__ import annotations

__all__ = ["load", "loaded"]

_LOADED = False


def load() -> None:
    """Register every later layer's training measurements and hooks (idempotent).

    Example:
        >>> load()
        >>> from robustscope.training import HOOKS, available_measures
        >>> "spectral_clip" in HOOKS and "input_fisher" in available_measures()
        True
    """
    global _LOADED
    if _LOADED:
        return
    from robustscope.posthoc import spectral_clip_hook
    from robustscope.probes.tracking import register_tracked_probes
    from robustscope.training.hooks import HOOKS

    HOOKS.register(
        "spectral_clip",
        spectral_clip_hook,
        doc="clip every layer's spectral norm after each epoch (wen2020)",
    )
    register_tracked_probes()
    _LOADED = True


def loaded() -> bool:
    """Whether :func:`load` has run in this process."""
    return _LOADED
