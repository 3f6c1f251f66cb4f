"""Noothout et al. 2020: a fully convolutional network that, for every patch ("cell") of its output grid, regresses
the displacement from the patch centre to each landmark and classifies whether the landmark lies in that patch.
The landmark estimate is the average of the patches' votes (centre + displacement), each weighted by the patch's
posterior probability.

Patch centres are model_grid.ModelGrid.cell_centres_mm (grid mm, mean of the voxel centres a cell covers);
displacements and votes are grid mm too, so decoding needs no geometry beyond the model grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks import ResidualUnit

from LandmarkInitLib.detection.model_grid import ModelGrid

EPS = 1e-6


def cell_centres(grid: ModelGrid, stride: int) -> torch.Tensor:
    """(3, Dc, Hc, Wc) grid-mm centres (x, y, z) of the output cells of a network with total ``stride``."""
    cx, cy, cz = (torch.tensor(grid.cell_centres_mm(stride, a), dtype=torch.float32) for a in range(3))
    z, y, x = torch.meshgrid(cz, cy, cx, indexing="ij")
    return torch.stack([x, y, z])


def decode_votes(centres: torch.Tensor, displacement: torch.Tensor, logits: torch.Tensor):
    """Posterior-weighted average of the votes.

    centres (3, Dc, Hc, Wc), displacement (B, L, 3, Dc, Hc, Wc) in mm, logits (B, L, Dc, Hc, Wc).
    Returns the estimate (B, L, 3) in grid mm and the spread (B, L): RMS distance of the weighted votes from it.
    """
    votes = (centres[None, None] + displacement).flatten(3)  # (B, L, 3, C)
    weights = torch.sigmoid(logits).flatten(2)  # (B, L, C)
    weights = weights / (weights.sum(-1, keepdim=True) + EPS)
    estimate = (votes * weights[:, :, None]).sum(-1)
    spread = torch.sqrt((((votes - estimate[..., None]) ** 2).sum(2) * weights).sum(-1) + EPS)
    return estimate, spread


class PatchVoteNet(torch.nn.Module):
    """Strided residual encoder (MONAI ResidualUnits, LeakyReLU 0.2) to cells of ``stride`` voxels, then two 1x1x1
    heads: displacements (3 per landmark, in units of the cell size) and presence logits (1 per landmark)."""

    def __init__(self, grid: ModelGrid, n_landmarks: int, channels, stride: int, act):
        super().__init__()
        n_down = stride.bit_length() - 1
        if 2**n_down != stride or n_down > len(channels):
            raise ValueError(f"stride {stride} must be a power of two with at most {len(channels)} halvings")
        for a in range(3):
            grid.cell_centres_mm(stride, a)  # raises if the grid does not divide into cells
        layers, previous = [], 1
        for level, width in enumerate(channels):
            layers.append(
                ResidualUnit(
                    3, previous, width, strides=2 if level < n_down else 1, subunits=2, act=act, norm="INSTANCE"
                )
            )
            previous = width
        self.encoder = torch.nn.Sequential(*layers)
        self.displacement = torch.nn.Conv3d(previous, 3 * n_landmarks, 1)
        self.presence = torch.nn.Conv3d(previous, n_landmarks, 1)
        self.n, self.cell_mm = n_landmarks, stride * grid.spacing_mm
        self.register_buffer("centres", cell_centres(grid, stride), persistent=False)

    def forward(self, x):
        features = self.encoder(x)
        b = x.shape[0]
        cells = self.centres.shape[1:]
        displacement = self.displacement(features).reshape(b, self.n, 3, *cells) * self.cell_mm
        logits = self.presence(features)
        coords, spread = decode_votes(self.centres, displacement, logits)
        return coords, spread, (displacement, logits)


def presence_labels(centres: torch.Tensor, target: torch.Tensor, cell_mm: float) -> torch.Tensor:
    """1 where the landmark (B, L, 3 grid mm) lies inside the cell (half-open on the upper faces), else 0."""
    offset = target[:, :, :, None, None, None] - centres[None, None]  # (B, L, 3, Dc, Hc, Wc)
    half = cell_mm / 2.0
    return ((offset >= -half) & (offset < half)).all(dim=2).float()


def patch_vote_loss(model_out, target: torch.Tensor, centres: torch.Tensor, cell_mm: float, weight: float = 1.0):
    """Noothout's joint loss: presence BCE (positives up-weighted by the number of cells, since one cell in
    hundreds holds the landmark) + ``weight`` x the vote error of every patch (mm, divided by the cell size).
    Added here: the error of the decoded estimate itself, so that the posteriors are also trained for what the
    average needs (a few hundred cells with small posteriors otherwise still carry weight in it)."""
    coords, _, (displacement, logits) = model_out
    labels = presence_labels(centres, target, cell_mm)
    n_cells = float(labels[0, 0].numel())
    bce = F.binary_cross_entropy_with_logits(logits, labels, pos_weight=torch.tensor(n_cells))
    votes = centres[None, None] + displacement
    vote_error = torch.linalg.vector_norm(votes - target[:, :, :, None, None, None], dim=2)  # (B, L, cells)
    estimate_error = torch.linalg.vector_norm(coords - target, dim=-1)
    return bce + weight * vote_error.mean() / cell_mm + estimate_error.mean() / cell_mm
