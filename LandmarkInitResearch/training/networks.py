"""Networks of the five detection methods (Fang et al. 2023, Table 1), built from MONAI.

- dsnt, dsnt-var, dsnt-dist: 3-D U-Net (strided convolutions, LeakyReLU 0.2) -> one heatmap per landmark ->
  spatial softmax -> DSNT; the three differ only in the loss (none, variance, distance-map regularization).
- heatmap: the same U-Net trained to match Gaussian target heatmaps (Payer et al. 2016); decoded by the local
  expectation around the argmax.
- regression: MONAI Regressor (strided convolution encoder + fully connected head) predicting coordinates directly.
- g2l-global (Noothout et al. 2020): patch regression + classification FCNN (patch_votes.py), cells of 8 voxels.

Local refinement methods run on a fine patch centred near one landmark (training/data.py, LocalPatchDataset);
their networks still have one output per landmark, and patch i is read on output i (specialized heads on a shared
trunk: one file per modality instead of one network per landmark):
- g2l-local: Noothout's local FCNN, cells of 4 voxels.
- dsnt-local: the U-Net + DSNT with distance-map regularization of dsnt-dist.

Every model's forward returns (coordinates (B, L, 3) in grid mm, spread (B, L) in mm, raw maps); the exported
graph keeps the first two.
"""

from __future__ import annotations

import torch
from monai.networks.nets import Regressor, UNet

from LandmarkInitLib.detection.model_grid import ModelGrid
from LandmarkInitResearch.training.dsnt import dsnt, grid_axes, local_peak_expectation, spatial_softmax
from LandmarkInitResearch.training.methods import METHODS
from LandmarkInitResearch.training.patch_votes import PatchVoteNet

PATCH_VOTE_STRIDES = {"g2l-global": 8, "g2l-local": 4}
ACT = ("LeakyReLU", {"negative_slope": 0.2})


class HeatmapLandmarkNet(torch.nn.Module):
    def __init__(self, grid: ModelGrid, n_landmarks: int, channels, decode: str, peak_radius_mm: float = 6.0):
        super().__init__()
        self.unet = UNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=n_landmarks,
            channels=tuple(channels),
            strides=(2,) * (len(channels) - 1),
            num_res_units=1,
            act=ACT,
        )
        self.decode = decode
        self.peak_radius_mm = peak_radius_mm
        for name, axis in zip(("ax_x", "ax_y", "ax_z"), grid_axes(grid), strict=True):
            self.register_buffer(name, axis, persistent=False)

    @property
    def axes(self):
        return self.ax_x, self.ax_y, self.ax_z

    def forward(self, x):
        raw = self.unet(x)
        if self.decode == "dsnt":
            heatmaps = spatial_softmax(raw)
            coords, var = dsnt(heatmaps, self.axes)
            return coords, torch.sqrt(var.sum(-1)), heatmaps
        coords, spread = local_peak_expectation(raw, self.axes, self.peak_radius_mm)
        return coords, spread, raw


class RegressionLandmarkNet(torch.nn.Module):
    def __init__(self, grid: ModelGrid, n_landmarks: int, channels):
        super().__init__()
        self.n = n_landmarks
        self.net = Regressor(
            in_shape=(1, *grid.array_shape),
            out_shape=(n_landmarks * 3,),
            channels=tuple(channels),
            strides=(2,) * len(channels),
            num_res_units=1,
            act=ACT,
        )
        half = torch.tensor([(s - 1) / 2.0 * grid.spacing_mm for s in grid.shape_ijk], dtype=torch.float32)
        self.register_buffer("half_extent", half, persistent=False)

    def forward(self, x):
        # the head predicts coordinates scaled to the grid half-extent, so outputs start near the centre
        coords = self.net(x).reshape(-1, self.n, 3) * self.half_extent
        spread = torch.full(coords.shape[:2], float("nan"), dtype=coords.dtype, device=coords.device)
        return coords, spread, None


def build_model(method: str, grid: ModelGrid, n_landmarks: int = 3, channels=(16, 32, 64, 128)) -> torch.nn.Module:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    if method == "regression":
        return RegressionLandmarkNet(grid, n_landmarks, channels)
    if method in PATCH_VOTE_STRIDES:
        return PatchVoteNet(grid, n_landmarks, channels, PATCH_VOTE_STRIDES[method], ACT)
    return HeatmapLandmarkNet(grid, n_landmarks, channels, decode="peak" if method == "heatmap" else "dsnt")


class ExportWrapper(torch.nn.Module):
    """What goes into ONNX / TorchScript: input (1, 1, D, H, W) -> (coords, spread)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        coords, spread, _ = self.model(x)
        return coords, spread


class LocalExportWrapper(torch.nn.Module):
    """Local refinement: input (L, 1, D, H, W), patch i centred on landmark i's current estimate ->
    (coords (L, 3) in each patch's grid mm, spread (L)), read on output i of patch i."""

    def __init__(self, model: torch.nn.Module, n_landmarks: int):
        super().__init__()
        self.model = model
        self.register_buffer("eye", torch.eye(n_landmarks), persistent=False)

    def forward(self, x):
        coords, spread, _ = self.model(x)
        return (coords * self.eye[:, :, None]).sum(1), (spread * self.eye).sum(1)
