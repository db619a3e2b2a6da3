"""Corruption speed: all 75 corrupted copies (15 types × 5 severities) of N Fashion-MNIST
test images with ``robustscope.corruptions``, per type and in total (target, issue 13:
< 60 s for N = 10,000 on 2 CPU cores), against a naive per-image NumPy/SciPy/Pillow floor
written here for four representative types (gaussian_noise, glass_blur, zoom_blur,
jpeg_compression), timed in the same run on ``--floor-n`` images and compared per image.

    .venv/bin/python benchmarks/bench_corruptions.py [--n 10000] [--floor-n 500] [--threads 2] [--json]

The machine description is printed with the figures.
"""

from __future__ import annotations

import argparse
import io
import json
import time

import numpy as np
import torch
from machine import describe
from PIL import Image
from scipy import ndimage

from robustscope import data
from robustscope.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from robustscope.corruptions.constants import scaled

# --- the naive floor: one image at a time, the obvious NumPy/SciPy/Pillow code ----------


def naive_gaussian_noise(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma = scaled("gaussian_noise", severity, *img.shape)
    return np.clip(img + rng.normal(scale=sigma, size=img.shape), 0, 1)


def naive_glass_blur(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma, dist, passes = scaled("glass_blur", severity, *img.shape)
    h, w = img.shape
    out = np.floor(ndimage.gaussian_filter(img, sigma, mode="nearest") * 255) / 255
    for _ in range(passes):
        for r in range(h - dist, dist, -1):
            for c in range(w - dist, dist, -1):
                dy, dx = rng.integers(-dist, dist, size=2)
                out[r, c] = out[r + dy, c + dx]
    return np.clip(ndimage.gaussian_filter(out, sigma, mode="nearest"), 0, 1)


def naive_zoom_blur(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    top = scaled("zoom_blur", severity, *img.shape)
    h = img.shape[0]
    acc = img.copy()
    factors = 1 + 0.01 * np.arange(round((top - 1) / 0.01) + 1)
    for z in factors:
        crop = int(np.ceil(h / z))
        t = (h - crop) // 2
        big = ndimage.zoom(img[t : t + crop, t : t + crop], z, order=1)
        trim = (big.shape[0] - h) // 2
        acc += big[trim : trim + h, trim : trim + h]
    return np.clip(acc / (len(factors) + 1), 0, 1)


def naive_jpeg(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    quality = scaled("jpeg_compression", severity, *img.shape)
    buf = io.BytesIO()
    Image.fromarray(np.rint(img * 255).astype(np.uint8)).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue()))).astype(np.float32) / 255


NAIVE = {
    "gaussian_noise": naive_gaussian_noise,
    "glass_blur": naive_glass_blur,
    "zoom_blur": naive_zoom_blur,
    "jpeg_compression": naive_jpeg,
}


def time_ours(x: torch.Tensor) -> dict[str, float]:
    out = {}
    for name in CORRUPTIONS:
        t0 = time.perf_counter()
        for s in SEVERITIES:
            corrupt(x, name, s, seed=0)
        out[name] = time.perf_counter() - t0
        print(f"  {name:18s} {out[name]:6.2f} s", flush=True)
    return out


def time_naive(x: torch.Tensor) -> dict[str, float]:
    imgs = x[:, 0].double().numpy()
    out = {}
    for name, fn in NAIVE.items():
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        for s in SEVERITIES:
            for img in imgs:
                fn(img, s, rng)
        out[name] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="test images corrupted (all 75 copies)")
    ap.add_argument("--floor-n", type=int, default=500, help="images for the naive per-image floor")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = data.load("fashion-mnist", "test").x[: args.n].contiguous()
    n = len(x)
    print(f"robustscope.corruptions: 75 copies of {n} Fashion-MNIST test images", flush=True)
    ours = time_ours(x)
    total = sum(ours.values())
    print(f"  total {total:.2f} s (target < 60 s for 10,000)")
    floor_x = x[: args.floor_n]
    print(f"naive per-image floor on {len(floor_x)} images ...", flush=True)
    naive = time_naive(floor_x)
    rows = []
    for name, t in naive.items():
        per_ours = ours[name] / n * 1e3
        per_naive = t / len(floor_x) * 1e3
        rows.append(
            {
                "type": name,
                "ours_ms_per_image": per_ours,
                "naive_ms_per_image": per_naive,
                "speed_up": per_naive / per_ours,
            }
        )
    print(f"{'type':18s} {'ours ms/img':>12s} {'naive ms/img':>13s} {'naive/ours':>11s}")
    for r in rows:
        print(
            f"{r['type']:18s} {r['ours_ms_per_image']:12.4f} {r['naive_ms_per_image']:13.4f} "
            f"{r['speed_up']:10.1f}×"
        )
    slowest = sorted(ours.items(), key=lambda kv: -kv[1])[:3]
    print("slowest:", ", ".join(f"{k} {v:.2f} s" for k, v in slowest))
    info = describe("numpy")
    print("machine:", info)
    if args.json:
        print(
            json.dumps(
                {"n": n, "per_type_s": ours, "total_s": total, "floor": rows, "machine": info}
            )
        )


if __name__ == "__main__":
    main()
