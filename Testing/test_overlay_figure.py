"""The review figure (report.png): a synthetic MR ball and US block at known RAS positions, so that every mark
can be checked against positions worked out here from Slicer's slice orientations, not from the figure's code."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from LandmarkInitLib.geometry import ras_to_lps
from LandmarkInitLib.pipeline import overlay_figure as fig

BALL_MM = 20.0
US_CENTRE = np.array([10.0, 25.0, -5.0])  # RAS
MR_SHIFT = np.array([6.0, 4.0, -3.0])  # the MR ball sits here relative to the US centre before the fit
OFFSETS = np.array([[0.0, 4.0, -15.0], [0.0, 4.0, 15.0], [0.0, -8.0, 0.0]])  # apex, bladder neck, posterior median
# screen (right, up) of each panel as RAS directions, from Slicer's axial, sagittal and coronal slice orientations
SCREEN = {"Axial": ((-1, 0, 0), (0, 1, 0)), "Sagittal": ((0, -1, 0), (0, 0, 1)), "Coronal": ((-1, 0, 0), (0, 0, 1))}
CENTRE_PX = (fig.PANEL - 1) / 2.0


def volume(array, centre_ras, spacing=1.0):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing([spacing] * 3)
    half = (np.array(array.shape[::-1]) - 1) / 2.0 * spacing
    image.SetOrigin([float(v) for v in ras_to_lps(centre_ras) - half])  # identity direction (LPS)
    return image


@pytest.fixture(scope="module")
def inputs():
    """A US block centred on US_CENTRE; an MR ball (inside a 120 mm MR volume) at US_CENTRE + MR_SHIFT; landmarks
    around both centres; the fit that moves the MR ball onto the US centre."""
    k, j, i = np.mgrid[:120, :120, :120] - 59.5
    mr = volume(np.where(np.sqrt(i**2 + j**2 + k**2) <= BALL_MM, 800.0, 100.0).astype(np.float32), US_CENTRE + MR_SHIFT)
    us = volume(np.random.default_rng(5).integers(60, 200, (100, 100, 100)).astype(np.uint8), US_CENTRE)
    fit = np.eye(4)
    fit[:3, 3] = -MR_SHIFT
    return us, mr, US_CENTRE + OFFSETS, US_CENTRE + MR_SHIFT + OFFSETS, {"After landmark fit": fit}


@pytest.fixture(scope="module")
def figure(inputs):
    """Rows: before (identity) and after the fit."""
    us, mr, us_points, mr_points, rows = inputs
    return fig.render(us, mr, us_points, mr_points, rows), us_points, mr_points


def panel(picture, row, column):
    top, left = fig.row_top(row), fig.column_left(column)
    return picture[top : top + fig.PANEL, left : left + fig.PANEL]


def expected_pixel(name, ras):
    """(row, column) of a RAS point in a panel centred at US_CENTRE, worked out from the screen directions, and
    its distance from the plane."""
    right, up = (np.array(v, float) for v in SCREEN[name])
    d = np.asarray(ras, float) - US_CENTRE
    return CENTRE_PX - fig.PX_PER_MM * (d @ up), CENTRE_PX + fig.PX_PER_MM * (d @ right), abs(d @ np.cross(right, up))


def colour_pixels(image, colour):
    return np.argwhere(np.all(image == np.array(colour, np.uint8), axis=-1))


def test_the_figure_is_wide_enough_to_read_and_has_a_row_per_transform(figure):
    picture, *_ = figure
    assert picture.shape == (fig.figure_height(2), fig.WIDTH, 3) and 1100 <= fig.WIDTH <= 1300
    assert fig.figure_height(3) - fig.figure_height(2) == fig.PANEL + fig.ROW_TITLE + fig.GAP


def test_the_mr_edges_are_the_ball_and_move_with_the_transform(figure):
    """The ball's outline is drawn where the ball is: at the MR's own position before, on the US centre after;
    nothing else is drawn (the border of the MR volume, inside the panels, is not an edge)."""
    picture, *_ = figure
    for column, name in enumerate(SCREEN):
        for row, shift in ((0, MR_SHIFT), (1, np.zeros(3))):
            edges = colour_pixels(panel(picture, row, column), fig.EDGE_COLOUR)
            centre_row, centre_col, depth = expected_pixel(name, US_CENTRE + shift)
            radius = fig.PX_PER_MM * np.sqrt(BALL_MM**2 - depth**2)
            distances = np.hypot(edges[:, 0] - centre_row, edges[:, 1] - centre_col)
            assert len(edges) > 1.5 * np.pi * radius, (name, row)  # an outline two pixels wide (marks cover some)
            assert np.abs(distances - radius).max() < 4.0, (name, row, distances.min(), distances.max())
            # a least-squares circle through the edge pixels: x^2 + y^2 = a x + b y + c, centre (a / 2, b / 2)
            a, b, c = np.linalg.lstsq(np.column_stack([edges, np.ones(len(edges))]), (edges**2).sum(1), rcond=None)[0]
            np.testing.assert_allclose([a / 2, b / 2], [centre_row, centre_col], atol=1.0)
            assert abs(np.sqrt(c + (a / 2) ** 2 + (b / 2) ** 2) - radius) < 1.5


def test_the_landmarks_near_each_plane_are_marked_and_labelled(figure):
    picture, us_points, mr_points = figure
    for column, name in enumerate(SCREEN):
        for row, mr_shown in ((0, mr_points), (1, us_points)):  # after the fit the MR landmarks are on the US ones
            view = panel(picture, row, column)
            for points, colour, radius in ((us_points, fig.US_COLOUR, 8), (mr_shown, fig.MR_COLOUR, 6)):
                for label, p in zip(("A", "BN", "PM"), points, strict=True):
                    r, c, depth = expected_pixel(name, p)
                    near = view[int(r) - radius - 1 : int(r) + radius + 3, int(c) - radius - 1 : int(c) + radius + 3]
                    marked = np.all(near == np.array(colour, np.uint8), axis=-1).sum()
                    # the label is drawn beside the mark, in its colour (anti-aliased text: some pixels exactly)
                    beside = view[max(int(r) - 24, 0) : int(r) + 26, int(c) + 10 : int(c) + 40]
                    labelled = np.all(beside == np.array(colour, np.uint8), axis=-1).sum()
                    if depth <= fig.PLANE_MM:
                        assert marked >= 10 and labelled >= 5, (name, row, label, marked, labelled)
                    else:
                        assert marked == 0, (name, row, label)
    # the sagittal plane holds all three; the axial plane only the posterior median, the coronal apex and bladder neck
    assert [expected_pixel("Sagittal", p)[2] for p in us_points] == [0, 0, 0]


def test_the_scale_bar_is_twenty_millimetres_and_every_panel_is_oriented(figure):
    picture, *_ = figure
    white = np.array([255, 255, 255], np.uint8)
    for row in (0, 1):
        for column, name in enumerate(SCREEN):
            view = panel(picture, row, column)
            bar_row = fig.PANEL - 13
            right_half = fig.PANEL // 2 + 20  # clear of the bottom orientation letter
            runs = right_half + np.flatnonzero(np.all(view[bar_row, right_half:] == white, axis=-1))
            assert len(runs) == runs.max() - runs.min() + 1 == fig.SCALE_MM * fig.PX_PER_MM  # one unbroken bar
            assert runs.max() > fig.PANEL - 20  # bottom right
            # orientation letters: white text at the four edges' middles
            mid = fig.PANEL // 2
            for box in (view[mid - 10 : mid + 12, :20], view[mid - 10 : mid + 12, -20:], view[:22, mid - 8 : mid + 8]):
                assert np.all(box == white, axis=-1).sum() >= 8, name


def test_rows_and_columns_are_titled(figure):
    picture, *_ = figure
    # the titles are the given strings: drawn alone at the same place they give the same pixels
    canvas = fig._Canvas(picture.shape[0], picture.shape[1])
    titles = ("Before: MR as acquired (no transform)", "After landmark fit")
    for row, title in enumerate(titles):
        y = fig.row_top(row) - fig.ROW_TITLE + 6
        width = canvas.text(fig.MARGIN, y, title, 18, bold=True)
        region = (slice(y, y + 24), slice(fig.MARGIN, fig.MARGIN + width))
        assert (canvas.rgb[region] < 128).sum() > 50
        np.testing.assert_array_equal(picture[region], canvas.rgb[region])
    # column titles above the panels, the row's landmark distance at the right: dark text there
    for column in range(3):
        centre = fig.column_left(column) + fig.PANEL // 2
        assert (picture[36:60, centre - 40 : centre + 40] < 100).all(axis=-1).sum() > 50
    for row, distance in ((0, np.linalg.norm(MR_SHIFT)), (1, 0.0)):
        y = fig.row_top(row) - fig.ROW_TITLE + 8
        text = f"US to mapped MR landmarks: mean {distance:.1f} mm"
        width = canvas.text(fig.WIDTH - fig.MARGIN, y, text, 16, anchor="right")
        region = (slice(y, y + 22), slice(fig.WIDTH - fig.MARGIN - width, fig.WIDTH - fig.MARGIN))
        np.testing.assert_array_equal(picture[region], canvas.rgb[region])
    # a legend under the panels
    legend = picture[fig.figure_height(2) - fig.LEGEND :]
    for colour in (fig.US_COLOUR, fig.MR_COLOUR, fig.EDGE_COLOUR):
        assert len(colour_pixels(legend, colour)) >= 10
    assert (legend < 100).all(axis=-1).sum() > 500


def test_the_png_is_the_rendered_figure(inputs, figure, tmp_path):
    picture, *_ = figure
    path = tmp_path / "report.png"
    assert fig.write_overlay_png(path, *inputs) == path
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(path))), picture)
