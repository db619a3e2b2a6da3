"""robustscope — a laboratory for the robustness–accuracy trade-off of neural networks.

Layers (each uses only those listed before it)::

    data → models → attacks → training → probes → posthoc/theory → studies → report

Conventions: inputs live in pixel space (float32, NCHW, values in [0, 1]);
normalization is the model's first layer; every entry point takes a seed.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
