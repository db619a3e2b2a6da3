"""Digital corruptions (Hendrycks & Dietterich 2019, "digital" group): contrast, elastic
transform, pixelate and JPEG compression.

Pixelate's two box resamplings are Pillow's, taken as matrices (Pillow resizes a float
identity image), so a whole batch is two matrix products; JPEG is Pillow's encoder and
decoder.
"""

from __future__ import annotations

import io
import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from robustscope.corruptions.constants import scaled

__all__ = [
    "box_resize_matrix",
    "contrast",
    "elastic_transform",
    "jpeg_compression",
    "jpeg_roundtrip",
    "pixelate",
]


def contrast(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``(x − μ)·c + μ`` with μ each image's per-channel mean, c = 0.75 … 0.15."""
    c = scaled("contrast", severity, *x.shape[2:])
    mean = x.mean(axis=(2, 3), keepdims=True, dtype=np.float64).astype(np.float32)
    return np.clip((x - mean) * np.float32(c) + mean, 0, 1)


def _affine_sources(
    rng: np.random.Generator, n: int, h: int, w: int, jitter: float
) -> tuple[np.ndarray, np.ndarray]:
    """Source coordinates (x, y), each ``[N, H, W]``, of a random affine warp: three
    points around the centre (±⌊min(H, W)/3⌋) moved by uniform ``±jitter`` pixels, the warp
    mapping them there, inverted to read each output pixel from the input."""
    cx, cy, sq = w // 2, h // 2, min(h, w) // 3
    src = np.array([[cx + sq, cy + sq], [cx + sq, cy - sq], [cx - sq, cy - sq]], dtype=np.float64)
    dst = src[None] + rng.uniform(-jitter, jitter, size=(n, 3, 2))
    design = np.concatenate([src, np.ones((3, 1))], axis=1)  # rows [x, y, 1]
    m = np.linalg.solve(np.broadcast_to(design, (n, 3, 3)), dst).transpose(0, 2, 1)  # [N, 2, 3]
    inv = np.linalg.inv(m[:, :, :2])
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    pts = np.stack([xx, yy], axis=0).reshape(1, 2, -1) - m[:, :, 2:]
    back = inv @ pts  # [N, 2, H·W]
    return back[:, 0].reshape(n, h, w), back[:, 1].reshape(n, h, w)


def _sample(
    x: torch.Tensor, sx: np.ndarray, sy: np.ndarray, *, align_corners: bool
) -> torch.Tensor:
    """Bilinear samples of ``x`` at pixel coordinates (sx, sy), mirrored outside:
    ``align_corners=True`` mirrors about the edge pixels' centres (OpenCV's
    BORDER_REFLECT_101), ``False`` about the image border (SciPy's ``reflect``)."""
    h, w = x.shape[2:]
    if align_corners:
        gx, gy = 2 * sx / max(w - 1, 1) - 1, 2 * sy / max(h - 1, 1) - 1
    else:
        gx, gy = (2 * sx + 1) / w - 1, (2 * sy + 1) / h - 1
    grid = torch.from_numpy(np.stack([gx, gy], axis=-1).astype(np.float32))
    return F.grid_sample(
        x, grid, mode="bilinear", padding_mode="reflection", align_corners=align_corners
    )


def elastic_transform(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A random affine warp (jitter 0.08 … 0.03 of the side, mirrored borders), then a
    smooth random displacement: each of dx, dy is uniform noise in [−1, 1] smoothed by a
    Gaussian (σ = 0 … 0.2 of the side, truncated at 3σ, mirrored) times α (0 … 0.1 of the
    side); bilinear sampling throughout. Severity 1 is the affine warp alone (α = 0)."""
    n, _, h, w = x.shape
    side = min(h, w)
    alpha, sigma, jitter = (f * side for f in scaled("elastic_transform", severity, h, w))
    t = torch.from_numpy(np.ascontiguousarray(x))
    sx, sy = _affine_sources(rng, n, h, w, jitter)
    t = _sample(t, sx, sy, align_corners=True)
    fields = []
    for _ in range(2):
        u = rng.uniform(-1, 1, size=(n, h, w))
        if sigma > 0:
            u = ndimage.gaussian_filter(u, sigma=(0, sigma, sigma), mode="reflect", truncate=3.0)
        fields.append(u * alpha)
    if alpha > 0:
        yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        t = _sample(t, xx + fields[0], yy + fields[1], align_corners=False)
    return np.clip(t.numpy(), 0, 1)


@lru_cache(maxsize=64)
def box_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]``: Pillow's BOX resampling of one axis from ``n_in`` to ``n_out``
    pixels (read off by resizing a 32-bit float identity image with Pillow).

    Example:
        >>> box_resize_matrix(4, 2)
        array([[0.5, 0.5, 0. , 0. ],
               [0. , 0. , 0.5, 0.5]], dtype=float32)
    """
    eye = Image.fromarray(np.eye(n_in, dtype=np.float32), mode="F")
    rows = np.asarray(eye.resize((n_out, n_in), Image.Resampling.BOX), dtype=np.float32)
    return np.ascontiguousarray(rows.T)


def pixelate(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Box down-sampling to ``⌊c·H⌋ × ⌊c·W⌋`` (c = 0.95 … 0.65) and box up-sampling back
    (Pillow's BOX filter, in float: no 8-bit rounding)."""
    c = scaled("pixelate", severity, *x.shape[2:])
    h, w = x.shape[2:]
    sh, sw = max(int(h * c), 1), max(int(w * c), 1)
    rows = box_resize_matrix(sh, h) @ box_resize_matrix(h, sh)
    cols = box_resize_matrix(sw, w) @ box_resize_matrix(w, sw)
    t = torch.from_numpy(np.ascontiguousarray(x))
    out = torch.from_numpy(rows) @ t @ torch.from_numpy(cols).T
    return np.clip(out.numpy(), 0, 1)


def jpeg_roundtrip(images: np.ndarray, quality: int) -> np.ndarray:
    """Each ``uint8`` image of ``[N, H, W]`` (grey) or ``[N, H, W, 3]`` (RGB) encoded as a
    baseline JPEG of ``quality`` and decoded, one Pillow call per image."""
    out = np.empty_like(images)
    for i, im in enumerate(images):
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        out[i] = np.asarray(Image.open(buf))
    return out


def _jpeg_grey_mosaic(images: np.ndarray, quality: int, chunk: int = 1024) -> np.ndarray:
    """:func:`jpeg_roundtrip` for greyscale ``[N, H, W]`` uint8, bit-identical and much
    faster: a greyscale JPEG codes every 8×8 block on its own (the DC difference between
    blocks is lossless) and pads a partial block by repeating the last row and column, so
    each image padded that way to a multiple of 8 and tiled into one large image comes back
    exactly as it would alone (tests/test_corruptions.py checks this)."""
    n, h, w = images.shape
    th, tw = 8 * math.ceil(h / 8), 8 * math.ceil(w / 8)
    tiles = np.pad(images, ((0, 0), (0, th - h), (0, tw - w)), mode="edge")
    out = np.empty_like(images)
    for start in range(0, n, chunk):
        part = tiles[start : start + chunk]
        k = len(part)
        cols = math.ceil(math.sqrt(k))
        rows = math.ceil(k / cols)
        full = np.zeros((rows * cols, th, tw), dtype=np.uint8)
        full[:k] = part
        mosaic = full.reshape(rows, cols, th, tw).transpose(0, 2, 1, 3).reshape(rows * th, -1)
        back = jpeg_roundtrip(mosaic[None], quality)[0]
        back = back.reshape(rows, th, cols, tw).transpose(0, 2, 1, 3).reshape(-1, th, tw)
        out[start : start + k] = back[:k, :h, :w]
    return out


def jpeg_compression(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Pillow JPEG at quality 80 … 40 (Pillow's default 4:2:0 chroma subsampling for colour)
    of the image rounded to 8 bits. Greyscale batches are coded as a mosaic
    (:func:`_jpeg_grey_mosaic`, same bytes as one image at a time); colour images one by one
    (the decoder's chroma up-sampling would read across tiles)."""
    quality = int(scaled("jpeg_compression", severity, *x.shape[2:]))
    q = np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)
    if x.shape[1] == 1:
        out = _jpeg_grey_mosaic(q[:, 0], quality)[:, None]
    else:
        out = jpeg_roundtrip(q.transpose(0, 2, 3, 1), quality).transpose(0, 3, 1, 2)
    return out.astype(np.float32) / 255
