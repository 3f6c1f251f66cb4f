"""A review figure of an initialization: the US volume with the MR resampled into it (checkerboard), before
(identity) and after the landmark transform, on three orthogonal planes through the US landmarks, with the US
landmarks (orange) and the transformed MR landmarks (blue) drawn as crosses.

Only numpy, SimpleITK and VTK (for the PNG writer), so that it also runs inside Slicer.

Layout of the PNG: one row per transform (identity, then each given one), three columns: planes normal to the US
volume's K, J and I axes, through the centroid of the US landmarks, 128 mm wide, 2 pixels per mm.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from LandmarkInitLib.fit.intensity import matrix_to_sitk
from LandmarkInitLib.fit.landmark_fit import apply_transform
from LandmarkInitLib.geometry import VolumeGeometry

US_COLOUR = (255, 140, 0)
MR_COLOUR = (40, 120, 255)
FIELD_MM, PIXEL_MM, CHECKER_MM = 128, 1.0, 16


def display_geometry(us_geometry: VolumeGeometry, centre_ras) -> VolumeGeometry:
    n = int(FIELD_MM / PIXEL_MM)
    direction = us_geometry.direction_ras
    origin = np.asarray(centre_ras, float) - direction @ np.full(3, (n - 1) / 2.0 * PIXEL_MM)
    return VolumeGeometry((n, n, n), np.full(3, PIXEL_MM), origin, direction)


def _resample(image, geometry: VolumeGeometry, transform=None) -> np.ndarray:
    import SimpleITK as sitk

    reference = sitk.Image([int(s) for s in geometry.size_ijk], sitk.sitkFloat32)
    geometry.apply_to_sitk_image(reference)
    tx = transform if transform is not None else sitk.Transform()
    out = sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), reference, tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)  # [k, j, i]


def _to_uint8(array: np.ndarray) -> np.ndarray:
    values = array[array > 0]
    lo, hi = np.percentile(values, [1, 99]) if values.size else (0.0, 1.0)
    return (np.clip((array - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)


def _slices(volume: np.ndarray) -> list[np.ndarray]:
    """[k, j, i] -> the three central planes, each shown with its first index axis to the right."""
    c = volume.shape[0] // 2
    return [volume[c, :, :], volume[:, c, :], volume[:, :, c]]


def _draw_cross(rgb: np.ndarray, row: float, col: float, colour, size: int = 4) -> None:
    r, c = int(round(row)), int(round(col))
    h, w = rgb.shape[:2]
    for d in range(-size, size + 1):
        for rr, cc in ((r + d, c), (r, c + d)):
            if 0 <= rr < h and 0 <= cc < w:
                rgb[rr, cc] = colour


def _tiles(us8, mr8, display: VolumeGeometry, us_points, mr_points_in_us) -> list[np.ndarray]:
    n = display.size_ijk[0]
    kk, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    checker = ((kk // int(CHECKER_MM / PIXEL_MM)) + (jj // int(CHECKER_MM / PIXEL_MM))) % 2 == 0
    tiles = []
    planes = [(2, (1, 0)), (1, (2, 0)), (0, (2, 1))]  # (normal index axis, (row axis, column axis))
    for (normal, (row_axis, col_axis)), us_slice, mr_slice in zip(planes, _slices(us8), _slices(mr8), strict=True):
        grey = np.where(checker, us_slice, mr_slice)
        rgb = np.repeat(grey[..., None], 3, axis=2)
        for points, colour in ((us_points, US_COLOUR), (mr_points_in_us, MR_COLOUR)):
            ijk = display.ras_to_ijk_points(points)
            for p in ijk:
                if abs(p[normal] - (n // 2)) <= 3.0 / PIXEL_MM:  # within 3 mm of the plane
                    _draw_cross(rgb, p[row_axis], p[col_axis], colour)
        tiles.append(rgb[::-1])  # first row at the top of the image shows the highest index
    return tiles


def write_overlay_png(path, us_image, mr_image, us_points_ras, mr_points_ras, matrices: dict) -> Path:
    """``matrices``: {row name: MR->US RAS matrix}; identity is always the first row. Returns the PNG path."""
    import vtk
    from vtk.util import numpy_support

    us_geometry = VolumeGeometry.from_sitk_image(us_image)
    display = display_geometry(us_geometry, np.mean(us_points_ras, axis=0))
    us8 = _to_uint8(_resample(us_image, display))
    rows = []
    for matrix in [np.eye(4), *matrices.values()]:
        mr8 = _to_uint8(_resample(mr_image, display, matrix_to_sitk(matrix)))
        tiles = _tiles(us8, mr8, display, us_points_ras, apply_transform(matrix, mr_points_ras))
        gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
        rows.append(np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2]], axis=1))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    picture = np.concatenate(rows[:-1], axis=0).repeat(2, axis=0).repeat(2, axis=1)  # 0.5 mm per pixel on screen
    image = vtk.vtkImageData()
    image.SetDimensions(picture.shape[1], picture.shape[0], 1)
    # VTK images start at the bottom row
    flat = np.ascontiguousarray(picture[::-1]).reshape(-1, 3)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(flat, deep=True, array_type=vtk.VTK_UNSIGNED_CHAR))
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(image)
    writer.Write()
    return Path(path)
