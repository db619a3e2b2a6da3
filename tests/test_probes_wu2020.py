"""wu2020's eq. (4) as a probe: the same numbers as the attacks-layer function, stored as scalars."""

from __future__ import annotations

import pytest
import torch

from robustscope import models, probes
from robustscope.attacks.scores import accuracy_independent_robustness


def test_noise_robustness_probe_is_eq4() -> None:
    torch.manual_seed(0)
    net = models.create("mlp", 3, (1, 4, 4), widths=[16]).eval()
    x, y = torch.rand(60, 1, 4, 4), torch.randint(0, 3, (60,))
    data = probes.ProbeData(test=(x, y))
    res = probes.run_probe("noise_robustness", net, data, bound="0.5", draws=4, seed=3)
    ref = accuracy_independent_robustness(net, x, y, 0.5, draws=4, seed=3)
    assert res.score == ref.score and res.std_error == ref.std_error
    # the clean accuracy computed independently
    acc = float((net(x).argmax(1) == y).double().mean())
    assert res.clean_accuracy == pytest.approx(acc)
    assert res.scalars()["score"] == pytest.approx(res.noisy_accuracy - res.clean_accuracy)
    assert -1.0 <= res.score <= 1.0 and res.n == 60 and res.bound == 0.5
