"""The ``inversion`` probe: inversion and effective images of a few test points, flattened."""

from __future__ import annotations

import numpy as np
import torch

from robustscope import data, models, probes
from robustscope.visual import invert, psnr


def test_inversion_probe_stores_curves_metrics_and_images() -> None:
    torch.manual_seed(0)
    model = models.create("mlp", 10, (1, 8, 8), widths=[32]).eval()
    te, tr = data.load("digits", "test"), data.load("digits", "train").head(60)
    pd = probes.ProbeData(test=(te.x[:10], te.y[:10]), train=(tr.x, tr.y))
    res = probes.run_probe("inversion", model, pd, n=4, steps=40, seed=1)
    assert res.loss_curve.shape == (41,) and res.effective_curve.shape == (41,)
    assert res.loss_curve[-1] < res.loss_curve[0]  # the inversion lowers L_inv
    assert res.originals.shape == res.reconstructions.shape == res.effective.shape == (4, 1, 8, 8)
    assert res.noise_once.shape == (4, 1, 8, 8) and res.noise_once_curve.shape == (41,)
    with torch.no_grad():  # the noise-once result is scored with the ORIGINAL weights
        z0 = model.features(te.x[:4])
        once = model.features(torch.from_numpy(res.noise_once))
    np.testing.assert_allclose(
        res.noise_once_loss, (z0 - once).norm(dim=1).double().numpy(), rtol=1e-5
    )
    assert np.array_equal(res.originals, te.x[:4].numpy())
    with torch.no_grad():
        z = model.features(te.x[:4])
    ref = invert(model, z, input_shape=(1, 8, 8), steps=40, seed=1)
    np.testing.assert_allclose(res.reconstructions, ref.x.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(res.psnr, psnr(ref.x, te.x[:4]).double().numpy(), rtol=1e-6)
    s = res.scalars()
    assert s["psnr_mean"] == np.mean(res.psnr) and s["n"] == 4
    assert "originals" in res.arrays() and "loss_curve" in res.arrays()


def test_visual_evidence_probe_stores_saliency_large_eps_and_tsne() -> None:
    from robustscope.visual import large_eps_examples, saliency

    torch.manual_seed(0)
    model = models.create("mlp", 10, (1, 8, 8), widths=[32]).eval()
    te = data.load("digits", "test")
    pd = probes.ProbeData(test=(te.x[:40], te.y[:40]))
    res = probes.run_probe("visual_evidence", model, pd, n=5, steps=10, tsne_n=30)
    assert res.images.shape == res.saliency.shape == res.large_eps.shape == (5, 1, 8, 8)
    assert res.saliency.min() >= 0 and res.saliency.max() <= 1
    np.testing.assert_allclose(res.saliency, saliency(model, te.x[:5], te.y[:5]).display.numpy())
    ref = large_eps_examples(model, te.x[:5], te.y[:5], norm="l2", steps=10)
    np.testing.assert_allclose(res.large_eps, ref.x_adv.numpy(), atol=1e-6)
    assert res.eps == ref.eps
    assert (
        float(np.linalg.norm((res.large_eps - res.images).reshape(5, -1), axis=1).max())
        <= res.eps + 1e-4
    )
    assert res.interpolation_target_prob.shape == (5, 8)  # 8 points from the image to x_adv
    np.testing.assert_allclose(res.interpolation_target_prob[:, -1], res.target_prob, atol=1e-5)
    assert res.tsne.shape == (30, 2) and res.tsne_labels.shape == (30,)
