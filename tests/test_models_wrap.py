"""``models.wrap`` (issue 16 §2): any ``nn.Module`` as a lab model.

The wrapper is transparent: a custom module computing exactly what a registered model computes,
wrapped with the same normalization, gives the same numbers under every registered attack and
every registered probe (the cases come from the registries, so a new attack or probe is tested
here). Then the API's checks and a wrapped model's checkpoint (weights saved, the module
supplied again at load).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from robustscope import attacks, checkpoint, data, models, probes
from robustscope.attacks import ATTACKS
from robustscope.errors import CheckpointError, ModelError
from robustscope.models import Wrapped, wrap
from robustscope.probes.registry import PROBES

MEAN, STD = (0.3,), (0.4,)
N_TEST = 24

#: small budgets for every option an attack iterates on
ATTACK_BUDGET = {
    "steps": 3,
    "queries": 12,
    "restarts": 1,
    "n_target_classes": 2,
    "binary_steps": 2,
    "power_iters": 5,
    "refine_steps": 2,
}
#: small budgets for the probes; a probe missing here runs with its defaults
PROBE_OPTIONS: dict[str, dict[str, Any]] = {
    "corruptions": {"types": "gaussian_noise,contrast", "severities": "1,3"},
    "effective_information": {"max_examples": 6},
    "generalization_gap": {"attack": "pgd", "eps": 0.1, "steps": 2},
    "input_fisher": {"iters": 50},
    "inversion": {"n": 2, "steps": 3},
    "representation_fisher": {"probes": 4, "power_iters": 20},
    "taylor_split": {"n_pairs": 8},
    "transfer": {"source": "digits", "targets": "digits", "n_train": 60, "n_test": 30},
    "visual_evidence": {"n": 2, "steps": 3, "interpolation_steps": 2, "tsne_n": 12},
}


class Custom(nn.Module):
    """A user's module (no robustscope base class): a body and a classifier of its own."""

    def __init__(self, body: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.classifier = classifier

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.body(z))
        return out


@pytest.fixture(scope="module")
def digits() -> tuple[data.ArrayDataset, data.ArrayDataset]:
    return data.load("digits", "train").head(200), data.load("digits", "test").head(N_TEST)


@pytest.fixture(scope="module")
def pair(
    digits: tuple[data.ArrayDataset, data.ArrayDataset],
) -> tuple[models.Classifier, Wrapped]:
    """A registered ``cnn`` trained a little on digits, and a wrapped Custom module holding
    copies of its layers (so the two compute the same function with the same operations)."""
    train, _ = digits
    torch.manual_seed(0)
    ref = models.create("cnn", 10, (1, 8, 8), mean=MEAN, std=STD, width=0.25)
    opt = torch.optim.Adam(ref.parameters(), lr=0.01)
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(ref(train.x), train.y).backward()
        opt.step()
    ref.eval()
    custom = Custom(copy.deepcopy(ref.body), copy.deepcopy(ref.head))
    wrapped = wrap(custom, (1, 8, 8), 10, mean=MEAN, std=STD, features="body").eval()
    return ref, wrapped


def test_wrapped_computes_what_the_module_computes(
    pair: tuple[models.Classifier, Wrapped], digits: tuple[Any, Any]
) -> None:
    ref, wrapped = pair
    x = digits[1].x
    assert torch.equal(wrapped(x), wrapped.net((x - 0.3) / 0.4))
    assert torch.equal(wrapped(x), ref(x))
    assert torch.equal(wrapped.features(x), ref.features(x))
    # the default features: what the last nn.Linear (the classifier) receives
    default = wrap(wrapped.net, (1, 8, 8), 10, mean=MEAN, std=STD)
    assert (default.features_layer, default.features_at) == ("classifier", "input")
    assert torch.equal(default.features(x), ref.features(x))
    # gradients flow through the features hook as through the registered model
    xr = x[:3].clone().requires_grad_(True)
    (gw,) = torch.autograd.grad(wrapped.features(xr).sum(), xr)
    (gr,) = torch.autograd.grad(ref.features(xr).sum(), xr)
    assert torch.equal(gw, gr)
    assert models.declared_box(wrapped) == models.declared_box(ref)
    assert wrapped.spec.kwargs == {"module": f"{__name__}.Custom", "features": "body"}


@pytest.mark.parametrize(
    ("name", "norm"), [(n, norm) for n, cls in ATTACKS.items() for norm in cls.norms]
)
def test_every_attack_runs_on_a_wrapped_module(
    pair: tuple[models.Classifier, Wrapped], digits: tuple[Any, Any], name: str, norm: str
) -> None:
    if name.startswith("test-"):
        pytest.skip("registered by another test module")
    ref, wrapped = pair
    test = digits[1]
    budget = {k: v for k, v in ATTACK_BUDGET.items() if k in attacks.parameters(name)}
    eps = [0.0, 0.05, 0.2] if norm == "linf" else [0.0, 0.5, 1.5]
    curves = [
        attacks.evaluate(m, test.x, test.y, name, eps, norm=norm, seed=1, checks=False, **budget)
        for m in (ref, wrapped)
    ]
    assert curves[1].robust_accuracy == curves[0].robust_accuracy
    assert curves[1].clean_accuracy == curves[0].clean_accuracy > 0.3


def _comparable(result: probes.ProbeResult) -> dict[str, float]:
    """Scalars keyed without the wrapper's ``net.`` (layer names) and its classifier name."""
    out = {}
    for key, value in result.scalars().items():
        out[key.replace("net.", "").replace("classifier", "head")] = value
    return out


@pytest.mark.parametrize("name", PROBES.names())
def test_every_probe_runs_on_a_wrapped_module(
    pair: tuple[models.Classifier, Wrapped], digits: tuple[Any, Any], name: str
) -> None:
    ref, wrapped = pair
    train, test = digits
    probe_data = probes.ProbeData(test=(test.x, test.y), train=(train.x[:60], train.y[:60]))
    options = PROBE_OPTIONS.get(name, {})
    got = _comparable(probes.run_probe(name, wrapped, probe_data, **dict(options)))
    want = _comparable(probes.run_probe(name, ref, probe_data, **dict(options)))
    assert got.keys() == want.keys() and got
    for key, value in want.items():
        both_nan = math.isnan(value) and math.isnan(got[key])
        assert both_nan or np.isclose(got[key], value, rtol=1e-5, atol=1e-7), (key, got[key], value)


# ----------------------------------------------------------------------------- the API's checks


def _net() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.ReLU(), nn.Linear(6, 3))


def test_wrap_refuses_what_does_not_fit() -> None:
    with pytest.raises(ModelError, match=r"returns \(2, 3\).*num_classes=4"):
        wrap(_net(), (1, 4, 4), 4)
    with pytest.raises(ModelError, match=r"fails on a batch of shape \(2, 1, 5, 5\)"):
        wrap(_net(), (1, 5, 5), 3)
    with pytest.raises(ModelError, match=r"input_shape must be a sequence.*wrap\(module, input"):
        wrap(_net(), 3, (1, 4, 4))  # type: ignore[arg-type]  # create's order
    with pytest.raises(ModelError, match=r"'fc' is not a layer.*'0', '1', '2', '3'"):
        wrap(_net(), (1, 4, 4), 3, features="fc")
    with pytest.raises(ModelError, match=r"has no nn\.Linear.*features="):
        wrap(nn.Sequential(nn.Conv2d(1, 3, 4), nn.Flatten()), (1, 4, 4), 3)
    with pytest.raises(ModelError, match="normalization mean has 2 values"):
        wrap(_net(), (1, 4, 4), 3, mean=[0.1, 0.2])
    unused = Custom(nn.Flatten(), nn.Linear(16, 3))
    unused.spare = nn.Linear(2, 2)  # registered, never called by forward
    with pytest.raises(ModelError, match="never called 'spare'"):
        wrap(unused, (1, 4, 4), 3, features="spare")


def test_wrap_keeps_the_module_and_its_mode() -> None:
    net = _net().train()
    model = wrap(net, (16,), 3, box="0,1")
    assert model.net is net and model.training and net.training
    assert models.declared_box(model) == data.UNIT
    vectors = wrap(_net(), (16,), 3)
    assert models.declared_box(vectors) == data.UNBOUNDED


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_of_a_wrapped_module_needs_the_module_again(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = wrap(_net(), (1, 4, 4), 3, mean=[0.5], std=[0.2], features="2", box="0,1")
    path = checkpoint.save(tmp_path / "w.safetensors", model, {"dataset": "mine"})
    meta = checkpoint.read_meta(path)
    assert meta.model.name == models.WRAPPED
    assert meta.extra["architecture"] == checkpoint.WRAPPED_NOTE
    with pytest.raises(
        CheckpointError, match=r"torch\.nn\.modules\.container\.Sequential.*module="
    ):
        checkpoint.load(path)
    loaded, _ = checkpoint.load(path, module=_net())
    x = torch.rand(4, 1, 4, 4)
    assert isinstance(loaded, Wrapped) and not loaded.training
    assert torch.equal(loaded(x), model.eval()(x))
    assert torch.equal(loaded.features(x), model.features(x))
    assert loaded.spec == model.spec
    wrong = nn.Sequential(nn.Flatten(), nn.Linear(16, 5), nn.ReLU(), nn.Linear(5, 3))
    with pytest.raises(CheckpointError, match=r"shape mismatch.*net\.1\.weight"):
        checkpoint.load(path, module=wrong)
    lab = checkpoint.save(tmp_path / "lab.safetensors", models.create("linear", 3, (1, 4, 4)))
    with pytest.raises(CheckpointError, match="only for checkpoints of wrapped modules"):
        checkpoint.load(lab, module=_net())
    with pytest.raises(ModelError, match="not in the registry"):
        models.from_spec(meta.model)
    with pytest.raises(ModelError, match="reserved"):
        models.register(models.WRAPPED)
