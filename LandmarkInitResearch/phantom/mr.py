"""T2-weighted-like MR rendering of a phantom anatomy.

Steps: tissue labels on the output grid -> per-tissue signal with texture -> thick-slice acquisition (slice
profile blur along K, sampling at the slice positions, linear interpolation back onto the grid) -> endorectal coil
receive profile (cases with a coil) -> smooth multiplicative bias field -> Rician noise (magnitude of complex
Gaussian noise) -> int16. The tissue labels are returned too (training: per-tissue random intensities).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from LandmarkInitLib.geometry import VolumeGeometry
from LandmarkInitResearch.phantom.anatomy import Anatomy, AnatomyParameters
from LandmarkInitResearch.phantom.textures import polynomial_field, smooth_noise
from LandmarkInitResearch.phantom.tissues import GLAND_TISSUES, N_TISSUES, Tissue, TissueProperties

# Output grid: 0.8 mm isotropic, as the mu-RegPro challenge data (120 x 128 x 128 there); acquisition is
# simulated with thick slices along K (the slice-select direction), then resampled onto this grid.
MR_SPACING_MM = 0.8
MR_SIZE_IJK = (128, 128, 96)


@dataclass
class MRParameters:
    world_euler_deg: tuple[float, float, float]  # patient position in the scanner (anatomy -> MR world)
    world_translation: tuple[float, float, float]
    oblique_euler_deg: tuple[float, float, float]  # slice angulation of the grid
    grid_offset_mm: tuple[float, float, float]  # grid centre minus gland centre (MR world)
    slice_thickness_mm: float
    noise_fraction: float
    bias_strength: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> MRParameters:
        u = rng.uniform
        return cls(
            world_euler_deg=tuple(u(-4.0, 4.0, 3)),
            world_translation=tuple(u(-25.0, 25.0, 3)),
            oblique_euler_deg=(u(-18.0, 18.0), u(-6.0, 6.0), u(-6.0, 6.0)),
            grid_offset_mm=(u(-10.0, 10.0), u(-10.0, 10.0), u(-6.0, 6.0)),
            slice_thickness_mm=u(2.5, 4.0),
            noise_fraction=u(0.02, 0.06),
            bias_strength=u(0.08, 0.2),
        )

    def anatomy_to_world(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = Rotation.from_euler("xyz", self.world_euler_deg, degrees=True).as_matrix()
        m[:3, 3] = self.world_translation
        return m


@dataclass
class EndorectalCoil:
    """An inflated endorectal coil, in MR only (TRUS is done without it). The balloon widens the rectal lumen and
    thins its wall; the rectum moves back to keep its gap to the gland. The gland is not compressed (a real balloon
    flattens its posterior side): the landmarks stay where they are. The balloon holds air (signal void) or fluid
    (bright); the coil in its anterior wall multiplies the signal by 1 + gain / (1 + (d / depth)^2), d the
    distance from the coil (a segment along the rectum), the bright posterior flare of uncorrected coil images."""

    balloon_radius_mm: float
    wall_mm: float
    fluid: bool
    gain: float
    depth_mm: float

    HALF_LENGTH_MM = 20.0

    @classmethod
    def sample(cls, rng: np.random.Generator) -> EndorectalCoil:
        return cls(
            balloon_radius_mm=rng.uniform(12.0, 18.0),
            wall_mm=rng.uniform(1.5, 2.5),
            fluid=bool(rng.random() < 0.5),
            gain=rng.uniform(1.0, 6.0),
            depth_mm=rng.uniform(15.0, 35.0),
        )

    def anatomy_parameters(self, params: AnatomyParameters) -> AnatomyParameters:
        return replace(params, rectum_lumen_radius=self.balloon_radius_mm, rectum_wall_mm=self.wall_mm)

    def receive_profile(self, anatomy: Anatomy, points: np.ndarray) -> np.ndarray:
        """Signal factor at anatomy-frame points (N x 3) of ``anatomy`` (the one with the balloon)."""
        coil = anatomy.rectum_centre - anatomy.rectum_normal * anatomy.params.rectum_lumen_radius
        rel = points - coil
        s = np.clip(rel @ anatomy.rectum_axis, -self.HALF_LENGTH_MM, self.HALF_LENGTH_MM)
        d = np.linalg.norm(rel - np.outer(s, anatomy.rectum_axis), axis=1)
        return 1.0 + self.gain / (1.0 + (d / self.depth_mm) ** 2)


def mr_geometry(params: MRParameters) -> VolumeGeometry:
    """Oblique axial grid, index axes ordered like a DICOM axial series: I to patient left, J to posterior,
    K to superior (right-handed), then tilted by the slice angulation."""
    dicom_axial = np.diag([-1.0, -1.0, 1.0])
    direction = Rotation.from_euler("xyz", params.oblique_euler_deg, degrees=True).as_matrix() @ dicom_axial
    spacing = np.full(3, MR_SPACING_MM)
    centre_world = params.anatomy_to_world()[:3, 3] + np.asarray(params.grid_offset_mm)
    half = (np.asarray(MR_SIZE_IJK) - 1) / 2.0
    origin = centre_world - direction @ (spacing * half)
    return VolumeGeometry(MR_SIZE_IJK, spacing, origin, direction)


def grid_points_ras(geometry: VolumeGeometry) -> np.ndarray:
    """RAS of every voxel centre, in numpy array order (K, J, I), as an (N, 3) array."""
    k, j, i = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in geometry.array_shape], indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1)
    return geometry.ijk_to_ras_points(ijk)


def render_mr(
    anatomy: Anatomy,
    props: TissueProperties,
    params: MRParameters,
    rng: np.random.Generator,
    coil: EndorectalCoil | None = None,
):
    """Returns (int16 image [k, j, i], uint8 gland mask, geometry, uint8 tissue labels [k, j, i])."""
    if coil is not None:
        anatomy = Anatomy(coil.anatomy_parameters(anatomy.params), anatomy.gland_shape)
        if coil.fluid:  # an air-filled balloon keeps the lumen's signal void
            mr = props.mr.copy()
            mr[Tissue.RECTAL_LUMEN] = props.mr[Tissue.URINE]
            props = replace(props, mr=mr)
    geometry = mr_geometry(params)
    world = grid_points_ras(geometry)
    to_world = params.anatomy_to_world()
    anatomy_points = (world - to_world[:3, 3]) @ to_world[:3, :3]  # inverse rigid, row vectors
    shape = geometry.array_shape
    labels = anatomy.labels_at(anatomy_points).reshape(shape)
    gland = (anatomy.gland_sdf(anatomy_points) <= 0.0).reshape(shape).astype(np.uint8)

    fine_amp = np.full(N_TISSUES, 0.05, np.float32)
    coarse_amp = np.zeros(N_TISSUES, np.float32)
    for tissue, fine, coarse in [
        (Tissue.TRANSITION_ZONE, 0.10, 0.18),
        (Tissue.BPH_NODULE, 0.10, 0.2),
        (Tissue.PERIPHERAL_ZONE, 0.08, 0.06),
        (Tissue.SEMINAL_VESICLE, 0.35, 0.1),
        (Tissue.RECTAL_LUMEN, 0.4, 0.8),
        (Tissue.FAT, 0.06, 0.1),
        (Tissue.MUSCLE, 0.08, 0.05),
        (Tissue.BONE, 0.1, 0.2),
    ]:
        fine_amp[tissue], coarse_amp[tissue] = fine, coarse
    v = MR_SPACING_MM
    signal = props.mr[labels] * (
        1.0
        + fine_amp[labels] * smooth_noise(rng, shape, 0.9 / v)
        + coarse_amp[labels] * smooth_noise(rng, shape, 3.0 / v)
    )
    signal = np.maximum(signal, 0.0).astype(np.float32)
    signal = _thick_slice_acquisition(signal, params.slice_thickness_mm / MR_SPACING_MM)
    if coil is not None:
        signal *= coil.receive_profile(anatomy, anatomy_points).reshape(shape).astype(np.float32)

    kk, jj, ii = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape]
    bias = polynomial_field(rng, [ii[None, None, :], jj[None, :, None], kk[:, None, None]], 3, params.bias_strength)
    signal *= bias

    gland_level = float(np.mean(props.mr[list(GLAND_TISSUES)]))
    sigma = params.noise_fraction * gland_level
    re = signal + rng.normal(0.0, sigma, shape).astype(np.float32)
    im = rng.normal(0.0, sigma, shape).astype(np.float32)
    image = np.sqrt(re * re + im * im)
    return np.clip(np.rint(image), 0, 32767).astype(np.int16), gland, geometry, labels


def _thick_slice_acquisition(volume: np.ndarray, thickness_voxels: float) -> np.ndarray:
    """Slice profile (Gaussian, FWHM = slice thickness) along K, sampled every slice thickness, then
    linearly interpolated back to the original K spacing, as a scanner's thick slices resampled to a grid."""
    in_plane = ndimage.gaussian_filter(volume, (0.0, 0.5, 0.5))
    profiled = ndimage.gaussian_filter1d(in_plane, thickness_voxels / 2.355, axis=0, mode="nearest")
    nk = volume.shape[0]
    slices = _interpolate_axis0(profiled, np.arange(0.0, nk - 1 + 1e-6, thickness_voxels))
    return _interpolate_axis0(slices, np.arange(nk) / thickness_voxels)


def _interpolate_axis0(volume: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``volume`` at fractional indices ``positions`` along axis 0 (clamped)."""
    positions = np.clip(positions, 0, volume.shape[0] - 1)
    k0 = np.floor(positions).astype(int)
    k1 = np.minimum(k0 + 1, volume.shape[0] - 1)
    w = (positions - k0).astype(np.float32)[:, None, None]
    return (1.0 - w) * volume[k0] + w * volume[k1]
