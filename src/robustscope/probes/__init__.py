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
from robustscope.probes.cckl import CCKLResult, cckl
from robustscope.probes.complexity import SpectralComplexityResult, spectral_complexity
from robustscope.probes.confidence import ConfidenceResult, confidence
from robustscope.probes.corruption import CorruptionsResult, corruptions
from robustscope.probes.effective import EffectiveInformationResult, effective_information
from robustscope.probes.fisher import FisherStats, input_fisher
from robustscope.probes.generalization import GeneralizationGapResult, generalization_gap
from robustscope.probes.margins import MarginsResult, MarginStats, margins
from robustscope.probes.noise import NoiseRobustnessResult, noise_robustness
from robustscope.probes.registry import (
    ProbeInfo,
    available_probes,
    get_probe,
    register_probe,
    run_probe,
)
from robustscope.probes.representation import (
    RepresentationFisherResult,
    representation_fisher,
)
from robustscope.probes.smoothness import LossVariationResult, loss_variation
from robustscope.probes.spectra import (
    LayerSpectrum,
    SpectraComparison,
    SpectraResult,
    compare_spectra,
    layer_spectra,
)
from robustscope.probes.taylor import TaylorSplitResult, taylor_split
from robustscope.probes.weights import (
    WeightInformationResult,
    WeightNormsResult,
    weight_information,
    weight_norms,
)
from robustscope.transfer.probe import TransferProbeResult, transfer_probe
from robustscope.visual.probe import (
    InversionProbeResult,
    VisualEvidenceResult,
    inversion_probe,
    visual_evidence_probe,
)

__all__ = [
    "CCKLResult",
    "ConfidenceResult",
    "CorruptionsResult",
    "EffectiveInformationResult",
    "FisherStats",
    "GeneralizationGapResult",
    "InversionProbeResult",
    "LayerSpectrum",
    "LossVariationResult",
    "MarginStats",
    "MarginsResult",
    "NoiseRobustnessResult",
    "ProbeData",
    "ProbeInfo",
    "ProbeResult",
    "RepresentationFisherResult",
    "SpectraComparison",
    "SpectraResult",
    "SpectralComplexityResult",
    "TaylorSplitResult",
    "TransferProbeResult",
    "VisualEvidenceResult",
    "WeightInformationResult",
    "WeightNormsResult",
    "available_probes",
    "cckl",
    "compare_spectra",
    "confidence",
    "corruptions",
    "effective_information",
    "generalization_gap",
    "get_probe",
    "input_fisher",
    "inversion_probe",
    "layer_spectra",
    "loss_variation",
    "margins",
    "noise_robustness",
    "register_probe",
    "representation_fisher",
    "run_probe",
    "spectral_complexity",
    "taylor_split",
    "transfer_probe",
    "visual_evidence_probe",
    "weight_information",
    "weight_norms",
]
