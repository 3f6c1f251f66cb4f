"""Training data: phantom cases (dataset layout) -> model-grid inputs and grid-mm targets.

Inputs go through exactly the inference preprocessing (detection.preprocess.prepare_input). Spatial
augmentation moves the model grid itself (rotation up to ``max_rotation_deg``, shift up to ``max_shift_mm``), so
the landmarks never need resampling: their grid-mm targets follow from the moved grid's geometry. Intensity
augmentation uses MONAI transforms on the normalized input. Each sample's randomness depends only on
(seed, epoch, index), whatever the number of processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from ..dataset import PairedCase
from ..detection.model_grid import ModelGrid
from ..detection.preprocess import prepare_input
from ..geometry import VolumeGeometry
from ..landmarks import LANDMARK_LABELS


@dataclass
class LoadedVolume:
    name: str
    image: object  # SimpleITK image
    geometry: VolumeGeometry
    landmarks_ras: np.ndarray  # L x 3


def load_volumes(cases: list[PairedCase], modality: str, progress: bool = False) -> list[LoadedVolume]:
    import SimpleITK as sitk
    from tqdm import tqdm

    out = []
    for case in tqdm(cases, desc=f"loading {modality}", disable=not progress, unit="case"):
        image = sitk.Cast(sitk.ReadImage(str(case.images[modality])), sitk.sitkFloat32)
        out.append(
            LoadedVolume(
                case.name,
                image,
                VolumeGeometry.from_sitk_image(image),
                case.landmarks(modality).ordered(LANDMARK_LABELS),
            )
        )
    return out


class LandmarkDataset(torch.utils.data.Dataset):
    def __init__(
        self,
        volumes: list[LoadedVolume],
        grid: ModelGrid,
        modality: str,
        *,
        augment: bool = False,
        seed: int = 0,
        max_rotation_deg: float = 8.0,
        max_shift_mm: float = 6.0,
    ):
        self.volumes, self.grid, self.modality = volumes, grid, modality
        self.augment, self.seed = augment, seed
        self.max_rotation_deg, self.max_shift_mm = max_rotation_deg, max_shift_mm
        self.epoch = 0
        self._intensity = _intensity_augmentation() if augment else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return len(self.volumes)

    def __getitem__(self, index):
        v = self.volumes[index]
        pose = None
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.augment:
            axis = rng.normal(size=3)
            angle = np.radians(rng.uniform(0.0, self.max_rotation_deg))
            pose = np.eye(4)
            pose[:3, :3] = Rotation.from_rotvec(axis / np.linalg.norm(axis) * angle).as_matrix()
            pose[:3, 3] = rng.uniform(-self.max_shift_mm, self.max_shift_mm, 3)
        x, grid_geometry = prepare_input(v.image, v.geometry, self.grid, self.modality, pose=pose)
        x = torch.from_numpy(x[0])
        if self._intensity is not None:
            self._intensity.set_random_state(seed=int(rng.integers(2**31)))
            x = torch.as_tensor(self._intensity(x), dtype=torch.float32)
        target = self.grid.ras_to_grid_mm(grid_geometry, v.landmarks_ras)
        return x, torch.as_tensor(target, dtype=torch.float32), index


def _intensity_augmentation():
    from monai.transforms import Compose, RandAdjustContrast, RandGaussianNoise, RandScaleIntensity, RandShiftIntensity

    return Compose(
        [
            RandScaleIntensity(factors=0.15, prob=0.8),
            RandShiftIntensity(offsets=0.05, prob=0.5),
            RandAdjustContrast(gamma=(0.75, 1.35), prob=0.5),
            RandGaussianNoise(std=0.03, prob=0.5),
        ]
    )
