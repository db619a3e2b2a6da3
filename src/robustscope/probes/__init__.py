"""Diagnostics: every measurement of the five papers as an exact, fast probe.

A probe is a pure function measuring a (model, data) pair and returning a typed
result (:class:`ProbeResult`); each is registered by name (:func:`available_probes`,
:func:`run_probe`) for ``robustscope probe``, training's tracking hook
(``--track NAME``) and studies. Probes that need only logits accept any ``nn.Module``
mapping pixel-space inputs to logits; those needing representations use
``model.features(x)``.
"""

from __future__ import annotations

# importing the probe modules registers them
from robustscope.probes.base import ProbeData, ProbeResult
from robustscope.probes.fisher import FisherStats, input_fisher
from robustscope.probes.registry import (
    ProbeInfo,
    available_probes,
    get_probe,
    register_probe,
    run_probe,
)
from robustscope.probes.tracking import register_tracked_probes

register_tracked_probes()

__all__ = [
    "FisherStats",
    "ProbeData",
    "ProbeInfo",
    "ProbeResult",
    "available_probes",
    "get_probe",
    "input_fisher",
    "register_probe",
    "run_probe",
]
