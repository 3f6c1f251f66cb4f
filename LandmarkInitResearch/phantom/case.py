"""One synthetic MR/TRUS case: anatomy -> both images, gland masks, landmarks and the ground truth.

Pairing: MR world = anatomy moved by the patient's position in the scanner (rigid M); US world = anatomy moved
by a random rigid G (rotation up to 30 degrees about a random axis, translation up to 30 mm per axis), then
deformed by the probe (at most 10 mm). The ground-truth rigid MR-to-US transform is T = G M^-1; US landmarks
and the US gland mask follow the full mapping (rigid + deformation), so T(MR landmark) lies within the
deformation bound of the US landmark.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from LandmarkInitLib.fit.landmark_fit import apply_transform
from LandmarkInitLib.geometry import VolumeGeometry
from LandmarkInitLib.landmarks import LANDMARK_LABELS
from LandmarkInitResearch.phantom.anatomy import Anatomy, _rounded, sample_parameters
from LandmarkInitResearch.phantom.gland_shapes import read_gland_shape
from LandmarkInitResearch.phantom.mr import EndorectalCoil, MRParameters, render_mr
from LandmarkInitResearch.phantom.tissues import sample_properties
from LandmarkInitResearch.phantom.ultrasound import USArtifacts, USParameters, in_field_of_view, render_us

GENERATOR_VERSION = "1.0"


@dataclass
class PhantomOptions:
    probe: str = "mixed"  # "end-fire", "side-fire" or "mixed"
    partial_fraction: float = 0.15  # fraction of cases with the probe deliberately aimed off the gland
    # largest lateral offset (mm) of the rectum, and so of the probe, from the posterior median; wider than the
    # anatomical default only as training data in which the rectum does not give away the landmark
    rectum_lateral_mm: float = 4.0
    # TRUS acquisition settings: "standard", or a scanner of ultrasound.SCANNERS (settings no shipped model saw)
    us_scanner: str = "standard"
    # fraction of cases whose MR was acquired with an inflated endorectal coil (mr.EndorectalCoil)
    endorectal_coil_fraction: float = 0.0
    # fraction of cases whose US has side lobes and reverberation (ultrasound.USArtifacts)
    us_artifacts_fraction: float = 0.0
    # fraction of cases whose gland has the shape of one of these real gland masks (gland_shapes.py), drawn at random
    gland_mask_fraction: float = 0.0
    gland_masks: list[str] = field(default_factory=list)


@dataclass
class PhantomCase:
    name: str
    mr_image: np.ndarray
    mr_gland: np.ndarray
    mr_geometry: VolumeGeometry
    mr_tissues: np.ndarray  # uint8 tissue labels (tissues.Tissue) on the MR grid: per-tissue training intensities
    us_image: np.ndarray
    us_gland: np.ndarray
    us_geometry: VolumeGeometry
    mr_landmarks: np.ndarray  # 3 x 3, RAS, LANDMARK_LABELS order
    us_landmarks: np.ndarray
    mr_to_us: np.ndarray  # 4 x 4, rigid part of the ground truth, MR RAS -> US RAS
    meta: dict


def case_name(index: int) -> str:
    return f"case_{index:04d}"


def generate_case(seed: int, index: int, options: PhantomOptions | None = None) -> PhantomCase:
    """Deterministic in (seed, index): the same pair gives identical arrays on any machine and worker."""
    options = options or PhantomOptions()
    t0 = time.perf_counter()
    anatomy_rng, props_rng, mr_rng, us_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence([seed, index]).spawn(4)
    )
    # own streams, so that cases without a coil, artifacts or a real gland shape are what they were before these options
    coil_rng, artifact_rng, shape_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence([seed, index]).spawn(7)[4:]
    )
    shape = None
    if options.gland_masks and shape_rng.random() < options.gland_mask_fraction:
        shape = read_gland_shape(options.gland_masks[shape_rng.integers(len(options.gland_masks))])
    anatomy = Anatomy(
        sample_parameters(anatomy_rng, rectum_lateral_mm=options.rectum_lateral_mm, gland_shape=shape), shape
    )
    props = sample_properties(props_rng)
    mr_params = MRParameters.sample(mr_rng)
    probe = None if options.probe == "mixed" else options.probe
    us_params = USParameters.sample(
        us_rng, probe=probe, partial_fraction=options.partial_fraction, scanner=options.us_scanner
    )
    coil = EndorectalCoil.sample(coil_rng) if coil_rng.random() < options.endorectal_coil_fraction else None
    artifacts = (
        USArtifacts.sample(artifact_rng, us_params.probe)
        if artifact_rng.random() < options.us_artifacts_fraction
        else None
    )
    mr_image, mr_gland, mr_geometry, mr_tissues = render_mr(anatomy, props, mr_params, mr_rng, coil)
    us_image, us_gland, us_geometry, deformation, probe_pose = render_us(anatomy, props, us_params, us_rng, artifacts)

    anatomy_landmarks = np.array([anatomy.landmarks[label] for label in LANDMARK_LABELS])
    m = mr_params.anatomy_to_world()
    g = us_params.anatomy_to_world()
    mr_landmarks = apply_transform(m, anatomy_landmarks)
    us_landmarks = deformation.forward(apply_transform(g, anatomy_landmarks))
    mr_to_us = g @ np.linalg.inv(m)

    residual = np.linalg.norm(us_landmarks + deformation(us_landmarks) - apply_transform(g, anatomy_landmarks), axis=1)
    if residual.max() > 1e-6:
        raise RuntimeError(f"deformation inversion did not converge ({residual.max():.2g} mm)")
    gland_us_world = us_geometry.ijk_to_ras_points(np.argwhere(us_gland)[:, ::-1].astype(float))
    in_fov = in_field_of_view(probe_pose, us_params, us_landmarks)
    gland_in_fov = (
        float(np.mean(in_field_of_view(probe_pose, us_params, gland_us_world))) if len(gland_us_world) else 0.0
    )
    displacement = np.linalg.norm(deformation(us_landmarks), axis=1)

    meta = {
        "generator": "LandmarkInit synthetic prostate MR/TRUS phantom",
        "generator_version": GENERATOR_VERSION,
        "synthetic": True,
        "seed": int(seed),
        "index": int(index),
        "probe": us_params.probe,
        "partial_view": us_params.partial_view,
        "us_scanner": options.us_scanner,
        "gland_fraction_in_us_field_of_view": round(gland_in_fov, 4),
        "landmarks_in_us_field_of_view": {lb: bool(v) for lb, v in zip(LANDMARK_LABELS, in_fov, strict=True)},
        "landmark_deformation_mm": {
            lb: round(float(v), 4) for lb, v in zip(LANDMARK_LABELS, displacement, strict=True)
        },
        "rigid_rotation_deg": round(
            float(np.degrees(np.arccos(np.clip((np.trace(mr_to_us[:3, :3]) - 1) / 2, -1, 1)))), 4
        ),
        "anatomy": anatomy.describe(),  # its gland_shape names the real gland mask, if one was used
        "mr": _rounded(asdict(mr_params)),
        "endorectal_coil": None if coil is None else _rounded(asdict(coil)),
        "us_artifacts": None if artifacts is None else _rounded(asdict(artifacts)),
        "us": _rounded(asdict(us_params)),
        "generation_seconds": round(time.perf_counter() - t0, 3),
    }
    return PhantomCase(
        case_name(index),
        mr_image,
        mr_gland,
        mr_geometry,
        mr_tissues,
        us_image,
        us_gland,
        us_geometry,
        mr_landmarks,
        us_landmarks,
        mr_to_us,
        meta,
    )
