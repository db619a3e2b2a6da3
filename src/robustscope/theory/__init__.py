"""Closed-form and synthetic results (tsipras2019, "Robustness may be at odds with accuracy").

* :mod:`robustscope.theory.tsipras` — the distribution of eq. (3): exact standard and robust
  accuracy of linear classifiers, the averaged, robust-feature and Bayes classifiers, the
  trade-off frontier over linear classifiers, Theorems 2.1 and 2.2.
* :mod:`robustscope.theory.linear` — binary linear classifiers fitted on samples, with the exact
  inner maximisation of ℓ∞ adversarial training.
* :mod:`robustscope.theory.binary_mnist` — App. E: linear models on binary MNIST 5 vs 7.
"""
