"""The ``transfer`` probe is transfer() of one model, flattened for a study's store."""

from __future__ import annotations

import pytest
import torch

from robustscope import models, probes
from robustscope.transfer import TransferError, transfer


def test_the_probe_is_transfer_of_the_one_model() -> None:
    torch.manual_seed(0)
    model = models.create("mlp", 10, (1, 8, 8), widths=[16]).eval()
    data = probes.ProbeData(test=(torch.rand(2, 1, 8, 8), torch.zeros(2, dtype=torch.long)))
    res = probes.run_probe(
        "transfer", model, data, source="digits", targets="mnist-5k", n_train=200, n_test=100,
        pgd_eps="0.5", pgd_steps=3,
    )  # fmt: skip
    ref = transfer(
        {"m": model}, "digits", ["mnist-5k"], n_train=200, n_test=100, pgd_eps=[0.5],
        pgd_norm="l2", pgd_steps=3,
    )  # fmt: skip
    cell = ref.cell("m", "mnist-5k")
    assert res.accuracy.tolist() == [cell.accuracy]
    assert res.distance.tolist() == [ref.distance("mnist-5k")]
    assert res.robust.shape == (1, 1) and res.robust[0, 0] == cell.robust[0.5]  # type: ignore[index]
    assert res.scalars()["per_target/mnist-5k"] == cell.accuracy
    assert res.to_json()["targets"] == "mnist-5k" and res.source == "digits"


def test_the_probe_needs_its_source() -> None:
    model = models.create("mlp", 10, (1, 8, 8), widths=[16])
    data = probes.ProbeData(test=(torch.rand(2, 1, 8, 8), torch.zeros(2, dtype=torch.long)))
    with pytest.raises(TransferError, match="source dataset"):
        probes.run_probe("transfer", model, data)
