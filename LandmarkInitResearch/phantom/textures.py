"""Smooth random fields: tissue texture, bias fields, and their deterministic generation."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def smooth_noise(rng: np.random.Generator, shape, sigma_voxels, dtype=np.float32) -> np.ndarray:
    """Gaussian white noise smoothed with a Gaussian kernel, rescaled to unit standard deviation."""
    field = rng.standard_normal(shape, dtype=np.float32)
    field = ndimage.gaussian_filter(field, sigma_voxels, mode="reflect")
    std = float(field.std())
    return (field / (std if std > 0 else 1.0)).astype(dtype)


def polynomial_field(rng: np.random.Generator, coords: list[np.ndarray], order: int, scale: float) -> np.ndarray:
    """exp(sum of random monomials up to ``order`` of normalized coordinates in [-1, 1]) (a bias field)."""
    out = np.zeros(np.broadcast_shapes(*[c.shape for c in coords]), dtype=np.float32)
    for i in range(order + 1):
        for j in range(order + 1 - i):
            for k in range(order + 1 - i - j):
                if i + j + k == 0:
                    continue
                out += np.float32(rng.normal(0.0, scale)) * coords[0] ** i * coords[1] ** j * coords[2] ** k
    return np.exp(out)
