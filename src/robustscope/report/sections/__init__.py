"""The report's built-in sections, one module each; importing this package registers them
(:func:`robustscope.report.section.register_section`) in page order:

====  ===========  ============================================================
10    findings     every section's claims in one table
20    tradeoff     the frontier, robust accuracy vs the attack's ε (the trade-off's claims)
25    tsipras2019  the exact linear frontier, Theorems 2.1/2.2, binary MNIST (tsipras studies)
27    datasize     accuracy vs the training-set size (tsipras2019 Figs. 1, 6, 7; sized studies)
30    training     training curves (shi2020 Figs. 3–4)
40    shi2020      Fisher information, CCKL and the G1 share (shi2020's claims)
50    wen2020      gaps, margins, confidence, singular values (wen2020's claims)
60    weights      weights (terzi2021's and tsipras2019's claims) and every other probe
70    checks       the gradient-masking check (Findings only, not on the page)
90    numbers      all numbers
====  ===========  ============================================================

A new section is a new module here (imported below) or anywhere else that is imported
before the report is written; the orders leave room between the built-in ones.
"""

from __future__ import annotations

from robustscope.report.sections import (
    checks,
    datasize,
    findings,
    numbers,
    shi2020,
    terzi2021,
    tradeoff,
    training,
    tsipras2019,
    weights,
    wen2020,
    wu2020,
)

__all__ = [
    "checks",
    "datasize",
    "findings",
    "numbers",
    "shi2020",
    "terzi2021",
    "tradeoff",
    "training",
    "tsipras2019",
    "weights",
    "wen2020",
    "wu2020",
]
