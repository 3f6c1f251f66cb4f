"""3-D DSNT (Nibali et al. 2018) on the model grid, and the heatmap regularizers of Fang et al. 2023.

Coordinates are expectations of the grid-mm voxel-centre coordinates (model_grid.ModelGrid.axis_mm) under the
softmax-normalized heatmap, so they are millimetres directly and every distance below is isotropic in mm, even
on anisotropic grids. Axis order of the outputs is (x, y, z) = (I, J, K), the reverse of the tensor's (D, H, W).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from LandmarkInitLib.detection.model_grid import ModelGrid


def grid_axes(grid: ModelGrid, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Grid-mm coordinates of the voxel centres along x (W), y (H), z (D)."""
    return tuple(torch.tensor(grid.axis_mm(a), dtype=torch.float32, device=device) for a in range(3))


def spatial_softmax(raw: torch.Tensor) -> torch.Tensor:
    """(B, L, D, H, W) raw heatmaps -> probability maps summing to 1 over space."""
    b, n = raw.shape[:2]
    return F.softmax(raw.reshape(b, n, -1), dim=-1).reshape(raw.shape)


def dsnt(heatmaps: torch.Tensor, axes) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected coordinates (B, L, 3) and per-axis variances (B, L, 3), in mm and mm^2."""
    x, y, z = axes
    px = heatmaps.sum(dim=(2, 3))  # marginal over D, H -> (B, L, W)
    py = heatmaps.sum(dim=(2, 4))
    pz = heatmaps.sum(dim=(3, 4))
    mean = torch.stack([(px * x).sum(-1), (py * y).sum(-1), (pz * z).sum(-1)], dim=-1)
    var = torch.stack(
        [
            (px * (x - mean[..., 0:1]) ** 2).sum(-1),
            (py * (y - mean[..., 1:2]) ** 2).sum(-1),
            (pz * (z - mean[..., 2:3]) ** 2).sum(-1),
        ],
        dim=-1,
    )
    return mean, var


def euclidean_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over batch and landmarks of ||P_i - G_i|| (mm)."""
    return torch.linalg.vector_norm(pred - target, dim=-1).mean()


def variance_regularization(var_mm2: torch.Tensor, grid: ModelGrid, sigma_t_voxels: float = 1.0) -> torch.Tensor:
    """Nibali's variance term, sum_d (Var_d - sigma_t^2)^2, with variances in grid voxels^2 (as dsntnn, whose
    variances are in pixels^2), so that the paper's weights keep their scale; mean over batch and landmarks."""
    var_vox = var_mm2 / grid.spacing_mm**2
    return ((var_vox - sigma_t_voxels**2) ** 2).sum(-1).mean()


def distance_map_regularization(heatmaps: torch.Tensor, target: torch.Tensor, axes) -> torch.Tensor:
    """Fang et al. eq. 5: sum_j H_ij ||v_j - G_i|| in mm (expected distance of the heatmap mass from the
    ground truth), mean over batch and landmarks."""
    x, y, z = axes
    dx = (x[None, None, :] - target[..., 0:1]) ** 2  # (B, L, W)
    dy = (y[None, None, :] - target[..., 1:2]) ** 2
    dz = (z[None, None, :] - target[..., 2:3]) ** 2
    dist = torch.sqrt(dz[..., :, None, None] + dy[..., None, :, None] + dx[..., None, None, :] + 1e-12)
    return (heatmaps * dist).sum(dim=(2, 3, 4)).mean()


def gaussian_targets(target: torch.Tensor, axes, sigma_mm: float) -> torch.Tensor:
    """Gaussian heatmaps (peak 1) centred on the targets, for heatmap matching (Payer et al. 2016)."""
    x, y, z = axes
    gx = torch.exp(-((x[None, None, :] - target[..., 0:1]) ** 2) / (2 * sigma_mm**2))
    gy = torch.exp(-((y[None, None, :] - target[..., 1:2]) ** 2) / (2 * sigma_mm**2))
    gz = torch.exp(-((z[None, None, :] - target[..., 2:3]) ** 2) / (2 * sigma_mm**2))
    return gz[..., :, None, None] * gy[..., None, :, None] * gx[..., None, None, :]


def local_peak_expectation(raw: torch.Tensor, axes, radius_mm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoding of heatmap-matching outputs: the argmax voxel, refined by the expectation of the (non-negative)
    heatmap within ``radius_mm`` of it (per axis). Returns coordinates (B, L, 3) and the RMS radius (B, L) of that
    local mass. Uses only ops that export to ONNX."""
    x, y, z = axes
    b, n, d, h, w = raw.shape
    flat = raw.reshape(b, n, -1)
    idx = flat.argmax(dim=-1)  # (B, L)
    iz = torch.div(idx, h * w, rounding_mode="floor")
    iy = torch.div(idx - iz * h * w, w, rounding_mode="floor")
    ix = idx - iz * h * w - iy * w
    peak = torch.stack([x[ix], y[iy], z[iz]], dim=-1)  # (B, L, 3)
    wx = (torch.abs(x[None, None, :] - peak[..., 0:1]) <= radius_mm).float()
    wy = (torch.abs(y[None, None, :] - peak[..., 1:2]) <= radius_mm).float()
    wz = (torch.abs(z[None, None, :] - peak[..., 2:3]) <= radius_mm).float()
    window = wz[..., :, None, None] * wy[..., None, :, None] * wx[..., None, None, :]
    mass = torch.clamp(raw, min=0.0) * window + 1e-12 * window
    mass = mass / mass.sum(dim=(2, 3, 4), keepdim=True)
    coords, var = dsnt(mass, axes)
    return coords, torch.sqrt(var.sum(-1))
