"""A review figure of an initialization, for a clinician: the US image with the edges of the MR mapped into it
(green contours) on the axial, sagittal and coronal planes through the centroid of the US landmarks, one row per
transform (before: identity; after the landmark fit; after the MI refinement if any), with the landmarks marked
and labelled, orientation letters, a 20 mm scale bar and a legend.

Only numpy, SimpleITK and VTK, so that it also runs inside Slicer (which bundles no matplotlib). Text is drawn by
VTK's FreeType text renderer (vtkTextRenderer) straight into an image: no render window, so no OpenGL context or
display is needed (batch runs on headless machines). The PNG is written by SimpleITK.

Planes are patient planes (RAS axes of the US header) shown as Slicer shows them: axial seen from the feet (patient
right on the left, anterior up), sagittal with anterior on the left, coronal with patient right on the left. The
MR edges are Canny edges of the MR resampled onto each plane through the row's transform, so they move with it;
no segmentation is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from LandmarkInitLib.fit.intensity import matrix_to_sitk
from LandmarkInitLib.fit.landmark_fit import apply_transform
from LandmarkInitLib.geometry import VolumeGeometry
from LandmarkInitLib.landmarks import LANDMARK_LABELS

US_COLOUR = (255, 140, 0)  # orange
MR_COLOUR = (0, 200, 255)  # cyan
EDGE_COLOUR = (60, 255, 60)  # green
TEXT_COLOUR = (0, 0, 0)
BACKGROUND = (255, 255, 255)
FIELD_MM, PX_PER_MM = 128, 3  # each panel shows 128 mm x 128 mm at 3 pixels per mm
PANEL = FIELD_MM * PX_PER_MM
MARGIN, GAP, HEADER, ROW_TITLE, LEGEND = 12, 12, 64, 30, 66
WIDTH = 2 * MARGIN + 3 * PANEL + 2 * GAP
PLANE_MM = 5.0  # landmarks closer than this to a plane are drawn on it
SCALE_MM = 20
EDGE_SIGMA_MM, EDGE_THRESHOLDS = 1.5, (0.02, 0.05)
ABBREVIATIONS = {"apex": "A", "bladder_neck": "BN", "posterior_median": "PM"}


@dataclass(frozen=True)
class Plane:
    name: str
    right: tuple  # RAS direction of the screen's +x
    up: tuple  # RAS direction of the screen's up
    letters: tuple  # patient direction at the left, right, top and bottom edges


PLANES = (  # Slicer's slice orientations
    Plane("Axial", (-1, 0, 0), (0, 1, 0), ("R", "L", "A", "P")),
    Plane("Sagittal", (0, -1, 0), (0, 0, 1), ("A", "P", "S", "I")),
    Plane("Coronal", (-1, 0, 0), (0, 0, 1), ("R", "L", "S", "I")),
)


def plane_geometry(plane: Plane, centre_ras) -> VolumeGeometry:
    """A one-voxel-thick grid on ``plane`` centred at ``centre_ras``: index i to the screen's right, j downwards, so
    that the numpy array [0] is the panel as shown."""
    right, down = np.array(plane.right, float), -np.array(plane.up, float)
    direction = np.column_stack([right, down, np.cross(right, down)])
    spacing = 1.0 / PX_PER_MM
    origin = np.asarray(centre_ras, float) - (right + down) * (PANEL - 1) / 2.0 * spacing
    return VolumeGeometry((PANEL, PANEL, 1), np.array([spacing, spacing, 1.0]), origin, direction)


def panel_position(geometry: VolumeGeometry, points_ras) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) pixel positions in a panel, and the distances (mm) from its plane, of RAS points."""
    ijk = geometry.ras_to_ijk_points(np.atleast_2d(points_ras))
    return ijk[:, [1, 0]], np.abs(ijk[:, 2])


def _resample(image, geometry: VolumeGeometry, transform=None, outside=0.0) -> np.ndarray:
    import SimpleITK as sitk

    reference = sitk.Image([int(s) for s in geometry.size_ijk], sitk.sitkFloat32)
    geometry.apply_to_sitk_image(reference)
    tx = transform if transform is not None else sitk.Transform()
    out = sitk.Resample(image, reference, tx, sitk.sitkLinear, outside, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)[0]


def half_resolution(geometry: VolumeGeometry) -> VolumeGeometry:
    """The same plane with pixels twice as large (edges are found at this resolution: 4 times faster, and the
    lines come out two screen pixels wide)."""
    spacing = geometry.spacing * np.array([2.0, 2.0, 1.0])
    origin = geometry.origin_ras + geometry.direction_ras[:, :2] @ (geometry.spacing[:2] / 2.0)
    return VolumeGeometry((PANEL // 2, PANEL // 2, 1), spacing, origin, geometry.direction_ras)


def _window(array: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((array - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)


def _percentiles(image) -> tuple[float, float]:
    """1st and 99th percentile of the non-zero voxels (every other voxel along each axis: enough, and fast)."""
    import SimpleITK as sitk

    values = sitk.GetArrayViewFromImage(image)[::2, ::2, ::2]
    values = values[values > 0]
    return tuple(np.percentile(values, [1, 99])) if values.size else (0.0, 1.0)


def mr_edges(mr_plane: np.ndarray, window: tuple[float, float], spacing: float) -> np.ndarray:
    """Boolean edge map of an MR plane resampled with NaN outside the MR volume: Canny edges of the windowed
    image (sigma EDGE_SIGMA_MM), without the border of the MR field of view (not anatomy)."""
    import SimpleITK as sitk

    outside = np.isnan(mr_plane)
    image = sitk.GetImageFromArray(_window(np.where(outside, window[0], mr_plane), *window))
    image.SetSpacing([spacing] * 2)
    edges = sitk.GetArrayFromImage(sitk.CannyEdgeDetection(image, *EDGE_THRESHOLDS, [EDGE_SIGMA_MM**2] * 2)) > 0
    if outside.any():
        near = sitk.BinaryDilate(
            sitk.GetImageFromArray(outside.astype(np.uint8)), [int(np.ceil(3 * EDGE_SIGMA_MM / spacing))] * 2
        )
        edges &= sitk.GetArrayViewFromImage(near) == 0
    return edges


class _Canvas:
    """An RGB uint8 picture with text (VTK FreeType) and simple marks."""

    def __init__(self, height: int, width: int):
        import vtkmodules.vtkRenderingFreeType  # noqa: F401  (registers the FreeType text renderer)
        from vtkmodules.vtkRenderingCore import vtkTextRenderer

        self.rgb = np.empty((height, width, 3), np.uint8)
        self.rgb[:] = BACKGROUND
        self._renderer = vtkTextRenderer()
        self._cache = {}

    def text_image(self, text: str, size: int, bold: bool = False) -> np.ndarray:
        """Coverage (0..1) of the rendered text, rows top to bottom."""
        key = (text, size, bold)
        if key not in self._cache:
            self._cache[key] = self._render_text(text, size, bold)
        return self._cache[key]

    def _render_text(self, text: str, size: int, bold: bool) -> np.ndarray:
        from vtkmodules.util.numpy_support import vtk_to_numpy
        from vtkmodules.vtkCommonDataModel import vtkImageData
        from vtkmodules.vtkRenderingCore import vtkTextProperty

        prop = vtkTextProperty()
        prop.SetFontFamilyToArial()
        prop.SetFontSize(size)
        prop.SetBold(bold)
        prop.SetColor(1.0, 1.0, 1.0)
        image, dims = vtkImageData(), [0, 0]
        if not self._renderer.RenderString(prop, text, image, dims, 72):
            return np.zeros((1, 1), np.float32)
        nx, ny, _ = image.GetDimensions()
        rgba = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(ny, nx, -1)
        return rgba[: dims[1], : dims[0], -1][::-1].astype(np.float32) / 255.0

    def text(self, x, y, text, size=16, colour=TEXT_COLOUR, bold=False, anchor="left", outline=None) -> int:
        """Draw ``text`` with its top at row y; x is its left edge (or centre / right edge, by ``anchor``).
        ``outline``: a colour drawn one pixel around the letters (readable on any image). Returns the width."""
        alpha = self.text_image(text, size, bold)
        h, w = alpha.shape
        x = int(round(x - {"left": 0, "centre": w / 2, "right": w}[anchor]))
        y = int(round(y))
        if outline is not None:
            padded = np.pad(alpha, 1)
            halo = np.max([np.roll(np.roll(padded, dy, 0), dx, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
            self._blend(x - 1, y - 1, halo, outline)
        self._blend(x, y, alpha, colour)
        return w

    def _blend(self, x, y, alpha, colour) -> None:
        h, w = alpha.shape
        H, W = self.rgb.shape[:2]
        y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + h, H), min(x + w, W)
        if y0 >= y1 or x0 >= x1:
            return
        a = alpha[y0 - y : y1 - y, x0 - x : x1 - x, None]
        region = self.rgb[y0:y1, x0:x1].astype(np.float32)
        self.rgb[y0:y1, x0:x1] = (region * (1 - a) + np.asarray(colour, np.float32) * a + 0.5).astype(np.uint8)


def _disc(rgb, row, col, radius, colour, ring: float | None = None) -> None:
    """A filled disc, or a ring of width ``ring``, centred at (row, col)."""
    h, w = rgb.shape[:2]
    r0, r1 = max(int(row - radius - 1), 0), min(int(row + radius + 2), h)
    c0, c1 = max(int(col - radius - 1), 0), min(int(col + radius + 2), w)
    if r0 >= r1 or c0 >= c1:
        return
    rr, cc = np.mgrid[r0:r1, c0:c1]
    d = np.hypot(rr - row, cc - col)
    inside = d <= radius if ring is None else (d <= radius) & (d >= radius - ring)
    rgb[r0:r1, c0:c1][inside] = colour


def _cross(rgb, row, col, size, colour, width=2) -> None:
    """An x-shaped cross centred at (row, col), ``width`` pixels thick."""
    h, w = rgb.shape[:2]
    r0, r1 = max(int(row - size - width), 0), min(int(row + size + width + 1), h)
    c0, c1 = max(int(col - size - width), 0), min(int(col + size + width + 1), w)
    if r0 >= r1 or c0 >= c1:
        return
    rr, cc = np.mgrid[r0:r1, c0:c1]
    dr, dc = rr - row, cc - col
    on_diagonal = np.minimum(np.abs(dr - dc), np.abs(dr + dc)) < width * 0.71  # distance to a diagonal < width/2
    rgb[r0:r1, c0:c1][on_diagonal & (np.maximum(np.abs(dr), np.abs(dc)) <= size)] = colour


def _landmark_marks(canvas, panel, top, left, geometry, labels, us_points, mr_points) -> None:
    """US landmarks: orange rings; MR landmarks mapped into the US: cyan crosses; each labelled, if within
    PLANE_MM of the plane."""
    for points, colour, is_us in ((us_points, US_COLOUR, True), (mr_points, MR_COLOUR, False)):
        positions, distances = panel_position(geometry, points)
        for label, (row, col), distance in zip(labels, positions, distances, strict=True):
            if distance > PLANE_MM or not (0 <= row < PANEL and 0 <= col < PANEL):
                continue
            if is_us:
                _disc(panel, row, col, 9, (0, 0, 0), ring=4)
                _disc(panel, row, col, 8, colour, ring=2)
            else:
                _cross(panel, row, col, 7, (0, 0, 0), width=4)
                _cross(panel, row, col, 6, colour, width=2)
            name = ABBREVIATIONS.get(label, label)
            # US labels up and right of the ring, MR labels down and right of the cross: both stay readable
            # when the two coincide
            canvas.text(left + col + 11, top + row + (-22 if is_us else 6), name, 15, colour, True, outline=(0, 0, 0))


def _orientation_and_scale(canvas, top, left, plane: Plane) -> None:
    white, black = (255, 255, 255), (0, 0, 0)
    on_left, on_right, on_top, at_bottom = plane.letters
    mid = PANEL / 2
    canvas.text(left + 4, top + mid - 8, on_left, 15, white, True, outline=black)
    canvas.text(left + PANEL - 4, top + mid - 8, on_right, 15, white, True, "right", outline=black)
    canvas.text(left + mid, top + 3, on_top, 15, white, True, "centre", outline=black)
    canvas.text(left + mid, top + PANEL - 20, at_bottom, 15, white, True, "centre", outline=black)
    # scale bar, bottom right
    length = SCALE_MM * PX_PER_MM
    x1, y = left + PANEL - 10, top + PANEL - 14
    canvas.rgb[y - 2 : y + 4, x1 - length - 1 : x1 + 1] = black
    canvas.rgb[y - 1 : y + 3, x1 - length : x1] = white
    canvas.text(x1 - length / 2, y - 22, f"{SCALE_MM} mm", 14, white, True, "centre", outline=black)


def _legend(canvas, top) -> None:
    x, y = MARGIN, top + 8
    panel = canvas.rgb
    _disc(panel, y + 9, x + 9, 9, (0, 0, 0), ring=4)
    _disc(panel, y + 9, x + 9, 8, US_COLOUR, ring=2)
    x += 24 + canvas.text(x + 24, y, "US landmark (detected)", 16)
    x += 20
    _cross(panel, y + 9, x + 9, 7, (0, 0, 0), width=4)
    _cross(panel, y + 9, x + 9, 6, MR_COLOUR, width=2)
    x += 24 + canvas.text(x + 24, y, "MR landmark mapped into the US", 16)
    x += 20
    panel[y + 8 : y + 11, x : x + 22] = EDGE_COLOUR
    x += 28 + canvas.text(x + 28, y, "MR edges mapped into the US", 16)
    canvas.text(
        MARGIN,
        y + 26,
        f"A apex, BN bladder neck, PM posterior median; landmarks are shown on a plane when within {PLANE_MM:g} mm "
        "of it. Planes through the centre of the US landmarks.",
        15,
    )


def figure_height(n_rows: int) -> int:
    return HEADER + n_rows * (ROW_TITLE + PANEL) + (n_rows - 1) * GAP + LEGEND


def row_top(row: int) -> int:
    """Top pixel row of the panels of figure row ``row`` (0: before)."""
    return HEADER + row * (ROW_TITLE + PANEL + GAP) + ROW_TITLE


def column_left(column: int) -> int:
    return MARGIN + column * (PANEL + GAP)


def render(us_image, mr_image, us_points_ras, mr_points_ras, matrices: dict, labels=None) -> np.ndarray:
    """The figure as an RGB array (rows top to bottom). ``matrices``: {row title: MR->US RAS matrix}, shown after
    the identity row; ``labels``: of the points (both sets in the same order), default LANDMARK_LABELS."""
    import SimpleITK as sitk

    us_points = np.asarray(us_points_ras, float)
    labels = LANDMARK_LABELS if labels is None else labels
    centre = us_points.mean(axis=0)
    geometries = [plane_geometry(p, centre) for p in PLANES]
    us_float, mr_float = sitk.Cast(us_image, sitk.sitkFloat32), sitk.Cast(mr_image, sitk.sitkFloat32)
    us_planes = [_resample(us_float, g) for g in geometries]
    nonzero = np.concatenate([p[p > 0] for p in us_planes])
    us_window = tuple(np.percentile(nonzero, [1, 99])) if nonzero.size else (0.0, 1.0)
    mr_window = _percentiles(mr_image)

    rows = [("Before: MR as acquired (no transform)", np.eye(4)), *matrices.items()]
    canvas = _Canvas(figure_height(len(rows)), WIDTH)
    canvas.text(MARGIN, 6, "MR mapped onto the US: MR edges (green) over the US image", 20, bold=True)
    for column, plane in enumerate(PLANES):
        canvas.text(column_left(column) + PANEL / 2, 38, plane.name, 18, bold=True, anchor="centre")
    for r, (title, matrix) in enumerate(rows):
        mr_points = apply_transform(matrix, np.asarray(mr_points_ras, float))
        distance = float(np.mean(np.linalg.norm(mr_points - us_points, axis=1)))
        top = row_top(r)
        canvas.text(MARGIN, top - ROW_TITLE + 6, title, 18, bold=True)
        canvas.text(
            WIDTH - MARGIN,
            top - ROW_TITLE + 8,
            f"US to mapped MR landmarks: mean {distance:.1f} mm",
            16,
            anchor="right",
        )
        transform = matrix_to_sitk(matrix)
        for column, (geometry, us_plane, plane) in enumerate(zip(geometries, us_planes, PLANES, strict=True)):
            grey = (_window(us_plane, *us_window) * 255 + 0.5).astype(np.uint8)
            panel = np.repeat(grey[..., None], 3, axis=2)
            half = half_resolution(geometry)
            edges = mr_edges(_resample(mr_float, half, transform, np.nan), mr_window, half.spacing[0])
            panel[edges.repeat(2, axis=0).repeat(2, axis=1)] = EDGE_COLOUR
            left = column_left(column)
            canvas.rgb[top : top + PANEL, left : left + PANEL] = panel
            view = canvas.rgb[top : top + PANEL, left : left + PANEL]
            _landmark_marks(canvas, view, top, left, geometry, labels, us_points, mr_points)
            _orientation_and_scale(canvas, top, left, plane)
    _legend(canvas, figure_height(len(rows)) - LEGEND)
    return canvas.rgb


def write_overlay_png(path, us_image, mr_image, us_points_ras, mr_points_ras, matrices: dict, labels=None) -> Path:
    """The figure of :func:`render` as a PNG file. Returns its path."""
    import SimpleITK as sitk

    picture = render(us_image, mr_image, us_points_ras, mr_points_ras, matrices, labels)
    # SimpleITK's PNG writer: faster than vtkPNGWriter's default compression, and smaller files
    sitk.WriteImage(sitk.GetImageFromArray(picture, isVector=True), str(path), imageIO="PNGImageIO")
    return Path(path)
