"""Training data: phantom cases (dataset layout) -> model-grid inputs and grid-mm targets.

Inputs go through exactly the inference preprocessing (detection.preprocess.prepare_input). Spatial
augmentation moves the model grid itself (rotation up to ``max_rotation_deg``, shift up to ``max_shift_mm``), so
the landmarks never need resampling: their grid-mm targets follow from the moved grid's geometry. With
``orientation="any"`` the grid's axes relative to the volume are drawn from the whole orthogonal group (a uniform
random rotation, reflected half the time): the network then sees the anatomy in every orientation and handedness,
as a detector run in a fixed physical frame must for US, whose probe may point anywhere in that frame. Intensity
augmentation uses MONAI transforms on the normalized input; ``appearance="us"`` adds cheap US domain
randomization (:func:`us_appearance`). Each sample's randomness depends only on
(seed, epoch, index), whatever the number of processes.

MR domain randomization (``domain_randomization=True``, :class:`MRDomainRandomization`) replaces the mild
intensity augmentation with acquisitions and contrasts far wider than the phantom's and the real cases': simulated
clinical resolution (slices 1-6 mm along a random patient axis, in-plane 0.3-1.0 mm), bias field, random intensity
transfer curves (incl. inverted contrast), gamma, Rician noise, blur, field-of-view crops (incl. partial gland
coverage) and 8- to 16-bit storage, then the inference normalization again. It acts on the resampled grid, whose
axes are the patient's (up to the pose rotation), so "along a patient axis" is along a grid axis. Phantom cases that
carry their tissue labels (``mr_tissues.nrrd``) are, with probability ``tissue_intensities`` (off by default),
first re-rendered from them with per-tissue random intensities (:func:`tissue_intensities`, after SynthSeg, Billot
et al. 2023): every tissue a random mean and spread, so that contrasts that never occur are seen as well; the rest
of the chain then applies.

Samples are (input, grid-mm targets of all landmarks, channel): channel is -1 for whole-volume detectors, and for
local refinement the landmark the patch was centred near (the only output trained on that sample).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from LandmarkInitLib.detection.model_grid import ModelGrid
from LandmarkInitLib.detection.preprocess import normalize, prepare_input, prepare_patches
from LandmarkInitLib.geometry import VolumeGeometry
from LandmarkInitLib.io.datasets import PairedCase
from LandmarkInitLib.landmarks import LANDMARK_LABELS
from LandmarkInitResearch.phantom.tissues import TISSUES_FILE

# Spatial augmentation of the grid's orientation: "small" (up to max_rotation_deg) or "any" (the whole O(3));
# appearance: "basic" (MONAI gain/shift/gamma/noise) or "us" (+ us_appearance).
ORIENTATIONS = ("small", "any")
APPEARANCES = ("basic", "us")


@dataclass
class LoadedVolume:
    name: str
    image: object  # SimpleITK image
    geometry: VolumeGeometry
    landmarks_ras: np.ndarray  # L x 3
    tissues: object | None = None  # SimpleITK uint8 tissue labels on the image's grid (phantom MR), if written


def load_volumes(cases: list[PairedCase], modality: str, progress: bool = False) -> list[LoadedVolume]:
    import SimpleITK as sitk
    from tqdm import tqdm

    out = []
    cases = [case for case in cases if modality in case.images]  # a site case may hold the other modality only
    for case in tqdm(cases, desc=f"loading {modality}", disable=not progress, unit="case"):
        image = sitk.Cast(sitk.ReadImage(str(case.images[modality])), sitk.sitkFloat32)
        tissues = Path(case.folder or "") / TISSUES_FILE if modality == "mr" else None
        out.append(
            LoadedVolume(
                case.name,
                image,
                VolumeGeometry.from_sitk_image(image),
                case.landmarks(modality).ordered(LANDMARK_LABELS),
                sitk.ReadImage(str(tissues), sitk.sitkUInt8) if tissues and tissues.is_file() else None,
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
        domain_randomization: bool = False,
        orientation: str = "small",
        appearance: str = "basic",
        tissue_intensities: float = 0.0,
    ):
        if orientation not in ORIENTATIONS or appearance not in APPEARANCES:
            raise ValueError(f"orientation {orientation!r} / appearance {appearance!r}: unknown augmentation")
        self.volumes, self.grid, self.modality = volumes, grid, modality
        self.augment, self.seed = augment, seed
        self.max_rotation_deg, self.max_shift_mm = max_rotation_deg, max_shift_mm
        self.orientation, self.appearance = orientation, appearance
        self.epoch = 0
        self.tissue_intensities = tissue_intensities  # probability, for volumes with tissue labels
        if not augment:
            self._intensity = None
        elif domain_randomization:
            self._intensity = MRDomainRandomization(grid.spacing_mm)
        else:
            self._intensity = _intensity_augmentation()

    def random_pose(self, rng) -> np.ndarray:
        """The grid's rotation (or rotoreflection) relative to its frame, 4x4 with zero shift."""
        if self.orientation == "any":
            return random_orientation(rng)
        return random_rotation(rng, self.max_rotation_deg)

    def augment_intensity(self, x: torch.Tensor, rng) -> torch.Tensor:
        if self.appearance == "us":  # first, while the fan's background is still exactly 0
            x = torch.from_numpy(us_appearance(x.numpy(), rng))
        self._intensity.set_random_state(seed=int(rng.integers(2**31)))
        return torch.as_tensor(self._intensity(x), dtype=torch.float32)

    def maybe_from_tissues(self, x: np.ndarray, v: LoadedVolume, grid_geometry: VolumeGeometry, rng) -> np.ndarray:
        """The input re-rendered from the volume's tissue labels with per-tissue random intensities, with
        probability ``tissue_intensities`` (domain randomization and tissue labels only; no random draw otherwise,
        so that cases without labels are augmented as before)."""
        if not isinstance(self._intensity, MRDomainRandomization) or v.tissues is None or not self.tissue_intensities:
            return x
        if rng.random() >= self.tissue_intensities:
            return x
        return normalize(tissue_intensities(resample_labels(v.tissues, grid_geometry), rng)[None], "mr")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return len(self.volumes)

    def __getitem__(self, index):
        v = self.volumes[index]
        pose = None
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.augment:
            pose = self.random_pose(rng)
            pose[:3, 3] = rng.uniform(-self.max_shift_mm, self.max_shift_mm, 3)
        x, grid_geometry = prepare_input(v.image, v.geometry, self.grid, self.modality, pose=pose)
        x = torch.from_numpy(self.maybe_from_tissues(x[0], v, grid_geometry, rng))
        if self._intensity is not None:
            x = self.augment_intensity(x, rng)
        target = self.grid.ras_to_grid_mm(grid_geometry, v.landmarks_ras)
        return x, torch.as_tensor(target, dtype=torch.float32), -1


def random_rotation(rng, max_deg: float) -> np.ndarray:
    axis = rng.normal(size=3)
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_rotvec(axis / np.linalg.norm(axis) * np.radians(rng.uniform(0.0, max_deg))).as_matrix()
    return pose


def random_orientation(rng) -> np.ndarray:
    """A 4x4 pose whose 3x3 part is uniform over the orthogonal group O(3): a uniform random rotation (Haar
    measure), composed with a reflection of the grid's I axis half the time."""
    pose = np.eye(4)
    pose[:3, :3] = Rotation.random(random_state=rng).as_matrix()
    if rng.random() < 0.5:
        pose[:3, 0] *= -1.0
    return pose


def us_appearance(x: np.ndarray, rng) -> np.ndarray:
    """Cheap US domain randomization on a normalized B-mode input (values 0-1, exact 0 outside the fan, which
    stays 0): overall gain, a TGC-like exponential ramp along a random direction (the probe's depth axis is
    unknown in a freely oriented grid), a dynamic-range (log-compression) change as a power law, multiplicative
    speckle-like noise correlated over about a voxel, and blur. Not modelled here: reverberation, side lobes,
    shadows, other probe geometries (they need the phantom generator)."""
    from scipy.ndimage import gaussian_filter

    x = np.asarray(x, dtype=np.float32)
    fan = x > 0
    y = x.astype(np.float64)
    y = y ** rng.uniform(0.6, 1.6)  # dynamic range: a power law on the log-compressed display values
    y = y * rng.uniform(0.7, 1.4)  # gain
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    k, j, i = np.meshgrid(*[np.linspace(-1.0, 1.0, n) for n in y.shape[-3:]], indexing="ij")
    ramp = direction[0] * k + direction[1] * j + direction[2] * i
    y = y * np.exp(rng.uniform(-0.5, 0.5) * ramp)  # TGC
    if rng.random() < 0.7:
        noise = gaussian_filter(rng.normal(size=y.shape[-3:]), rng.uniform(0.5, 1.2))
        noise /= max(float(noise.std()), 1e-6)
        y = y * np.exp(rng.uniform(0.0, 0.3) * noise)  # speckle-like, multiplicative
    if rng.random() < 0.3:
        sigma = rng.uniform(0.3, 1.0)
        y = np.stack([gaussian_filter(c, sigma) for c in y.reshape(-1, *y.shape[-3:])]).reshape(y.shape)
    return np.where(fan, np.clip(y, 0.0, 1.0), 0.0).astype(np.float32)


class LocalPatchDataset(LandmarkDataset):
    """Patches on the (fine) local grid, one per case and landmark, centred at the true landmark plus a random
    offset (uniform direction, radius uniform up to ``max_offset_mm``): the errors a global stage leaves.
    Offsets are drawn for validation too (fixed, as the epoch stays 0) so that validation measures refinement."""

    def __init__(
        self,
        volumes,
        grid,
        modality,
        *,
        augment=False,
        seed=0,
        max_rotation_deg=8.0,
        max_offset_mm=10.0,
        domain_randomization=False,
        orientation="small",
        appearance="basic",
        tissue_intensities=0.0,
    ):
        super().__init__(
            volumes,
            grid,
            modality,
            augment=augment,
            seed=seed,
            max_rotation_deg=max_rotation_deg,
            domain_randomization=domain_randomization,
            orientation=orientation,
            appearance=appearance,
            tissue_intensities=tissue_intensities,
        )
        self.max_offset_mm = max_offset_mm
        self.n_landmarks = len(LANDMARK_LABELS)

    def __len__(self):
        return len(self.volumes) * self.n_landmarks

    def __getitem__(self, index):
        v = self.volumes[index // self.n_landmarks]
        channel = index % self.n_landmarks
        rng = np.random.default_rng([self.seed, self.epoch, index])
        direction = rng.normal(size=3)
        offset = direction / np.linalg.norm(direction) * rng.uniform(0.0, self.max_offset_mm)
        pose = self.random_pose(rng) if self.augment else None
        x, (geometry,) = prepare_patches(
            v.image, v.geometry, self.grid, v.landmarks_ras[channel] + offset, self.modality, poses=[pose]
        )
        x = torch.from_numpy(self.maybe_from_tissues(x[0], v, geometry, rng))
        if self._intensity is not None:
            x = self.augment_intensity(x, rng)
        target = self.grid.ras_to_grid_mm(geometry, v.landmarks_ras)
        return x, torch.as_tensor(target, dtype=torch.float32), channel


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


class MRDomainRandomization:
    """MR acquisition and contrast randomization of one normalized grid array (channel-first, [1, D, H, W]);
    ``set_random_state(seed)`` then call, like a MONAI transform. Probabilities and ranges are class attributes."""

    SLICE_MM = (1.0, 6.0)
    IN_PLANE_MM = (0.3, 1.0)
    BITS = (8, 16)
    P_RESOLUTION, P_BIAS, P_CURVE, P_INVERT, P_GAMMA, P_NOISE, P_BLUR, P_CROP = 0.8, 0.5, 0.4, 0.1, 0.5, 0.5, 0.2, 0.3

    def __init__(self, spacing_mm: float):
        from monai.transforms import RandBiasField, RandGaussianSmooth, RandHistogramShift, RandRicianNoise

        self.spacing_mm = spacing_mm
        self.rng = np.random.default_rng(0)
        self.bias = RandBiasField(degree=3, coeff_range=(0.0, 0.4), prob=1.0)
        self.curve = RandHistogramShift(num_control_points=(4, 10), prob=1.0)
        self.noise = RandRicianNoise(prob=1.0, std=0.08, relative=True, sample_std=True)
        self.blur = RandGaussianSmooth(sigma_x=(0.3, 1.0), sigma_y=(0.3, 1.0), sigma_z=(0.3, 1.0), prob=1.0)

    def set_random_state(self, seed: int):
        self.rng = np.random.default_rng(seed)
        for i, t in enumerate((self.bias, self.curve, self.noise, self.blur)):
            t.set_random_state(seed=(seed + 7919 * (i + 1)) % 2**31)
        return self

    def __call__(self, x):
        from LandmarkInitLib.detection.preprocess import normalize

        rng = self.rng
        x = np.asarray(x, dtype=np.float32).copy()
        x -= x.min()  # non-negative, as MR magnitudes (bias field, Rician noise)
        if rng.random() < self.P_RESOLUTION:
            spacing = np.full(3, rng.uniform(*self.IN_PLANE_MM))
            spacing[rng.integers(3)] = rng.uniform(*self.SLICE_MM)  # the slice axis: any patient axis
            x[0] = simulate_resolution(x[0], spacing, self.spacing_mm)
        if rng.random() < self.P_BIAS:
            x = np.asarray(self.bias(x + 1e-3))
        if rng.random() < self.P_CURVE:
            x = np.asarray(self.curve(x))
        if rng.random() < self.P_INVERT:
            x = x.max() - x  # a contrast that never occurs: dark fat, bright muscle
        if rng.random() < self.P_GAMMA:
            lo, hi = x.min(), x.max()
            x = lo + (hi - lo) * ((x - lo) / max(hi - lo, 1e-6)) ** rng.uniform(0.5, 2.0)
        if rng.random() < self.P_NOISE:
            x = np.asarray(self.noise(x))
        if rng.random() < self.P_BLUR:
            x = np.asarray(self.blur(x))
        if rng.random() < self.P_CROP:
            x[0] = crop_field_of_view(x[0], rng)
        x[0] = quantize(x[0], int(rng.integers(self.BITS[0], self.BITS[1] + 1)))
        return normalize(x, "mr")


PADDING_LABEL = 255  # outside the volume: the scanner's padding, darkest after synthesis


def resample_labels(labels, grid_geometry: VolumeGeometry) -> np.ndarray:
    """Nearest-neighbour resampling of a SimpleITK label image onto ``grid_geometry``: uint8 [k, j, i],
    PADDING_LABEL outside the volume."""
    import SimpleITK as sitk

    reference = sitk.Image([int(n) for n in grid_geometry.size_ijk], sitk.sitkUInt8)
    grid_geometry.apply_to_sitk_image(reference)
    out = sitk.Resample(labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, PADDING_LABEL, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(out)


def tissue_intensities(labels: np.ndarray, rng) -> np.ndarray:
    """SynthSeg-style image from tissue labels: each label a mean uniform in [0, 1] and a Gaussian spread uniform
    in [0, 0.1], independent of any real contrast; the padding 0; then a Gaussian blur of 0.3-1 voxel (partial
    volume). float32, same shape."""
    from scipy import ndimage

    n = int(labels.max()) + 1
    means, spreads = rng.uniform(0.0, 1.0, n), rng.uniform(0.0, 0.1, n)
    x = means[labels] + spreads[labels] * rng.standard_normal(labels.shape)
    x[labels == PADDING_LABEL] = 0.0
    return ndimage.gaussian_filter(x, rng.uniform(0.3, 1.0)).astype(np.float32)


def simulate_resolution(array: np.ndarray, spacing_mm, grid_spacing_mm: float) -> np.ndarray:
    """``array`` (D, H, W on grid axes K, J, I) as acquired with voxels ``spacing_mm`` (along I, J, K) and
    resampled back: along each axis whose spacing exceeds the grid's, a box average over the voxel's width,
    sampled once per voxel width, then linear interpolation back to the grid. Axes at or below the grid spacing are
    untouched, and nothing mixes values across axes (one linear operator per axis)."""
    out = np.asarray(array, dtype=np.float32)
    for axis_ijk, s in enumerate(spacing_mm):
        factor = float(s) / grid_spacing_mm
        if factor <= 1.0 + 1e-6:
            continue
        axis = 2 - axis_ijk
        out = np.moveaxis(
            np.tensordot(_resolution_operator(out.shape[axis], factor), np.moveaxis(out, axis, 0), 1), 0, axis
        )
    return out.astype(np.float32)


def _resolution_operator(n: int, factor: float) -> np.ndarray:
    """n x n matrix: box average of width ``factor`` voxels, samples every ``factor`` voxels, linear back."""
    idx = np.arange(n, dtype=float)
    half = max(1, int(round(factor))) // 2
    box = np.zeros((n, n))
    for i in range(n):
        box[i, max(0, i - half) : min(n, i + half + 1)] = 1.0
    box /= box.sum(axis=1, keepdims=True)
    samples = np.arange(0.0, n - 1 + 1e-6, factor)
    if len(samples) < 2:
        return np.full((n, n), 1.0 / n)
    eye = np.eye(n)
    down = np.stack([np.interp(samples, idx, eye[:, j]) for j in range(n)], axis=1)  # samples x n
    up = np.stack([np.interp(idx, samples, np.eye(len(samples))[:, j]) for j in range(len(samples))], axis=1)
    return up @ down @ box


def crop_field_of_view(array: np.ndarray, rng) -> np.ndarray:
    """A smaller field of view: on each axis, with probability 1/2, up to 35 % of the extent cut away from one
    side (set to the darkest value: the scanner's padding). May cut through the gland and hide a landmark."""
    out = array.copy()
    fill = float(array.min())
    for axis in range(3):
        if rng.random() < 0.5:
            n = out.shape[axis]
            cut = int(rng.uniform(0.0, 0.35) * n)
            if cut:
                index = [slice(None)] * 3
                index[axis] = slice(0, cut) if rng.random() < 0.5 else slice(n - cut, n)
                out[tuple(index)] = fill
    return out


def quantize(array: np.ndarray, bits: int) -> np.ndarray:
    """Integer storage with ``bits`` bits over the array's range: at most 2**bits distinct values."""
    lo, hi = float(array.min()), float(array.max())
    if hi <= lo:
        return array.astype(np.float32)
    levels = 2**bits - 1
    return (np.round((array - lo) / (hi - lo) * levels) / levels * (hi - lo) + lo).astype(np.float32)
