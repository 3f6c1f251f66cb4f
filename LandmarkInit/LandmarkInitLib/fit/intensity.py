"""Intensity-based rigid MR-to-US registration with SimpleITK (Mattes mutual information), and the moments
initializer: the refinement the landmarks are meant to start, and the non-landmark alternatives they are
compared with.

Conventions: our matrices map MR RAS points to US RAS points ("to parent" of MR_to_US). SimpleITK registers in
LPS and its transforms map fixed (US) physical points to moving (MR) ones, so
``sitk_transform = LPS * inverse(matrix) * LPS`` and back (geometry.convert_matrix_ras_lps).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from LandmarkInitLib.errors import IntensityRegistrationError
from LandmarkInitLib.geometry import convert_matrix_ras_lps, to_parent_ras_from_sitk_transform


@dataclass
class IntensityResult:
    matrix: np.ndarray  # MR RAS -> US RAS
    metric: float  # final Mattes MI (negative: lower is better)
    iterations: int
    stop: str
    seconds: float


def matrix_to_sitk(matrix, centre_lps=(0.0, 0.0, 0.0)):
    """MR->US RAS matrix -> SimpleITK Euler3DTransform (US LPS -> MR LPS) rotating about ``centre_lps``:
    x -> R (x - c) + c + t, so t = t0 + R c - c for the same mapping x -> R x + t0."""
    import SimpleITK as sitk

    m = convert_matrix_ras_lps(np.linalg.inv(np.asarray(matrix, float)))
    c = np.asarray(centre_lps, float)
    tx = sitk.Euler3DTransform()
    tx.SetCenter([float(v) for v in c])
    tx.SetMatrix([float(v) for v in m[:3, :3].ravel()])
    tx.SetTranslation([float(v) for v in m[:3, 3] + m[:3, :3] @ c - c])
    return tx


def sitk_to_matrix(tx) -> np.ndarray:
    """Any SimpleITK linear transform (US LPS -> MR LPS) -> MR->US RAS matrix."""
    return to_parent_ras_from_sitk_transform(tx)


def fan_mask(us_image):
    """The imaged region of a B-mode volume (non-zero, small holes closed): where US intensities mean something."""
    import SimpleITK as sitk

    mask = sitk.Cast(us_image > 0, sitk.sitkUInt8)
    return sitk.BinaryMorphologicalClosing(mask, [2, 2, 2])


def moments_initialization(mr_image, us_image) -> np.ndarray:
    """SimpleITK CenteredTransformInitializer (MOMENTS): align the intensity centres of mass, no rotation."""
    import SimpleITK as sitk

    tx = sitk.CenteredTransformInitializer(
        sitk.Cast(us_image, sitk.sitkFloat32),
        sitk.Cast(mr_image, sitk.sitkFloat32),
        sitk.Euler3DTransform(),
        sitk.CenteredTransformInitializerFilter.MOMENTS,
    )
    return sitk_to_matrix(tx)


def register_rigid_mi(
    mr_image,
    us_image,
    initial_matrix=None,
    *,
    iterations: int = 100,
    sampling: float = 0.1,
    seed: int = 1,
    threads: int | None = None,
) -> IntensityResult:
    """Rigid Mattes-MI registration of MR (moving) to US (fixed, restricted to its fan), two resolution levels,
    started from ``initial_matrix`` (MR RAS -> US RAS; identity if None). Deterministic for a given seed and
    thread count (``seed`` must be positive: ITK reads 0 as "seed from the wall clock")."""
    import SimpleITK as sitk

    if seed < 1:
        raise ValueError(f"the metric sampling seed must be a positive integer, not {seed} (0 means wall clock in ITK)")

    t0 = time.perf_counter()
    fixed = sitk.Cast(us_image, sitk.sitkFloat32)
    moving = sitk.Cast(mr_image, sitk.sitkFloat32)
    # rotate about the US volume's centre, so that rotation and translation steps are on comparable scales
    centre = fixed.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in fixed.GetSize()])
    initial = matrix_to_sitk(np.eye(4) if initial_matrix is None else initial_matrix, centre)

    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(sampling, seed)
    method.SetMetricFixedMask(fan_mask(us_image))
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=0.01, numberOfIterations=iterations, relaxationFactor=0.6
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([4, 2])
    method.SetSmoothingSigmasPerLevel([2.0, 1.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    method.SetInitialTransform(initial, inPlace=False)
    if threads:
        method.SetNumberOfThreads(threads)
    try:
        final = method.Execute(fixed, moving)
    except RuntimeError as e:
        reason = "the volumes do not overlap" if "do not sufficiently overlap" in str(e) else str(e).splitlines()[-1]
        raise IntensityRegistrationError(
            f"MI registration stopped: {reason[:200]} (at the start, or after the optimizer moved the MR away from the "
            "US fan); keep the landmark transform (run without --refine) or start from a closer transform"
        ) from None
    return IntensityResult(
        sitk_to_matrix(final),
        float(method.GetMetricValue()),
        int(method.GetOptimizerIteration()),
        method.GetOptimizerStopConditionDescription(),
        time.perf_counter() - t0,
    )
