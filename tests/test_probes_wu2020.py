"""wu2020's eq. (4) as a probe: the same numbers as the attacks-layer function, stored as scalars."""

from __future__ import annotations

import numpy as np
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


def test_corruptions_probe_stores_a_self_describing_table() -> None:
    from robustscope import corruptions as corr
    from robustscope.probes.corruption import corruption_table

    torch.manual_seed(0)
    net = models.create("mlp", 3, (1, 8, 8), widths=[16]).eval()
    x, y = torch.rand(30, 1, 8, 8), torch.randint(0, 3, (30,))
    data = probes.ProbeData(test=(x, y))
    res = probes.run_probe(
        "corruptions", net, data, types="fog,contrast,pixelate", severities="2,5", seed=4
    )
    ref = corr.evaluate(net, x, y, names=("fog", "contrast", "pixelate"), severities=(2, 5), seed=4)
    assert res.result() == ref
    arrays, scalars = res.arrays(), res.scalars()
    assert arrays["accuracy"].shape == (3, 2)
    hits = arrays["correct"]  # clean, then type-major, severity-minor
    assert hits.shape == (1 + 3 * 2, 30) and hits.dtype == np.uint8
    assert hits[0].mean() == pytest.approx(ref.clean_accuracy)
    assert hits[1:].mean(1).reshape(3, 2) == pytest.approx(arrays["accuracy"])
    back = corruption_table(
        scalars["clean_accuracy"], arrays["accuracy"], arrays["types"], arrays["severities"],
        int(scalars["n"]), 4, correct=hits,
    )  # fmt: skip
    assert back.correct is not None and (back.correct == hits).all()
    assert back == ref
    assert scalars["per_type/fog"] == pytest.approx(sum(ref.accuracy["fog"]) / 2)
    assert scalars["category/weather"] == pytest.approx(sum(ref.accuracy["fog"]) / 2)
    assert scalars["mean_accuracy"] == pytest.approx(ref.mean_accuracy())
    with pytest.raises(Exception, match="unknown corruption 'smog'"):
        probes.run_probe("corruptions", net, data, types="smog")
