"""The one composition point: later layers plugged into the registries of earlier ones.

An earlier layer never imports a later one (data → models → attacks → training → probes →
posthoc → studies), yet training runs code of a later layer by name: the tracking
measurements (``TrainConfig.track``, :mod:`robustscope.training.tracking`) include every
probe registered with ``tracked=True`` (:mod:`robustscope.probes`).

:func:`load` registers them, here and nowhere else; importing the probes registers nothing
in training. The CLI, the study executors (also inside Ray workers) and scripts call
it once before they train or measure; training refuses a name nobody registered with a
message that names this function.
"""

from __future__ import annotations

__all__ = ["load", "loaded"]

_LOADED = False


def load() -> None:
    """Register every tracked probe as a training measurement (idempotent).

    Example:
        >>> load()
        >>> from robustscope.training import available_measures
        >>> "input_fisher" in available_measures()
        True
    """
    global _LOADED
    if _LOADED:
        return
    from robustscope.probes.tracking import register_tracked_probes

    register_tracked_probes()
    _LOADED = True


def loaded() -> bool:
    """Whether :func:`load` has run in this process."""
    return _LOADED
