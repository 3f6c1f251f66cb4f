"""DSNT grid convention and losses with exact values (cf. dsntnn's tests), gradients, and ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from LandmarkInitLib.detection.model_grid import ModelGrid
from LandmarkInitLib.geometry import VolumeGeometry
from LandmarkInitResearch.training.dsnt import (
    distance_map_regularization,
    dsnt,
    euclidean_loss,
    gaussian_targets,
    grid_axes,
    local_peak_expectation,
    spatial_softmax,
    variance_regularization,
)

GRID = ModelGrid((6, 5, 4), 2.0)  # W=6 (x), H=5 (y), D=4 (z)


def one_hot(i, j, k, grid=GRID, dtype=torch.float32):
    h = torch.zeros((1, 1, *grid.array_shape), dtype=dtype)
    h[0, 0, k, j, i] = 1.0
    return h


def test_axis_coordinates_are_voxel_centres_in_mm_about_the_grid_centre():
    np.testing.assert_array_equal(GRID.axis_mm(0), [-5.0, -3.0, -1.0, 1.0, 3.0, 5.0])
    np.testing.assert_array_equal(GRID.axis_mm(1), [-4.0, -2.0, 0.0, 2.0, 4.0])
    np.testing.assert_array_equal(GRID.axis_mm(2), [-3.0, -1.0, 1.0, 3.0])
    # relation to dsntnn's normalized coordinates (2k + 1) / n - 1
    n = 6
    normalized = (2 * np.arange(n) + 1) / n - 1
    np.testing.assert_allclose(GRID.axis_mm(0), normalized * n * GRID.spacing_mm / 2)


def test_one_hot_heatmap_gives_that_voxel_exactly_in_xyz_order():
    coords, var = dsnt(one_hot(5, 1, 0), grid_axes(GRID))
    # x from W index 5, y from H index 1, z from D index 0: three different values, so any swap of axes fails
    np.testing.assert_array_equal(coords[0, 0].numpy(), [5.0, -2.0, -3.0])
    np.testing.assert_array_equal(var[0, 0].numpy(), [0.0, 0.0, 0.0])


def test_two_voxel_heatmap_gives_midpoint_and_variance():
    h = 0.5 * (one_hot(0, 2, 1) + one_hot(2, 2, 1))
    coords, var = dsnt(h, grid_axes(GRID))
    np.testing.assert_allclose(coords[0, 0].numpy(), [-3.0, 0.0, -1.0])
    np.testing.assert_allclose(var[0, 0].numpy(), [4.0, 0.0, 0.0])  # half a mass 2 mm on each side


def test_uniform_softmax_is_the_grid_centre():
    coords, var = dsnt(spatial_softmax(torch.zeros((2, 3, *GRID.array_shape))), grid_axes(GRID))
    np.testing.assert_allclose(coords.numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(var[0, 0].numpy(), [np.mean(GRID.axis_mm(a) ** 2) for a in range(3)], rtol=1e-6)


def test_grid_mm_maps_to_ras_on_a_flipped_anisotropic_volume():
    volume = VolumeGeometry(
        (11, 21, 7),
        np.array([0.5, 0.25, 3.0]),
        np.array([10.0, 20.0, -5.0]),
        np.array([[-1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]]),
    )  # I->L, J->inferior, K->anterior
    grid = ModelGrid((4, 4, 4), 1.5)
    g = grid.geometry_for(volume)
    centre = volume.ijk_to_ras_points([5.0, 10.0, 3.0])  # centre of the volume extent
    np.testing.assert_allclose(grid.grid_mm_to_ras(g, [[0.0, 0.0, 0.0]])[0], centre)
    # +1.5 mm along grid x is one voxel along the volume's I axis direction (-R), in mm
    np.testing.assert_allclose(grid.grid_mm_to_ras(g, [[1.5, 0.0, 0.0]])[0], centre + [-1.5, 0.0, 0.0])
    np.testing.assert_allclose(grid.grid_mm_to_ras(g, [[0.0, 3.0, -0.75]])[0], centre + [0.0, -0.75, -3.0])
    np.testing.assert_allclose(grid.ras_to_grid_mm(g, grid.grid_mm_to_ras(g, [[1, 2, 3.0]])), [[1, 2, 3.0]], atol=1e-12)
    np.testing.assert_array_equal(g.spacing, [1.5, 1.5, 1.5])  # isotropic model grid on an anisotropic volume


def test_losses_exact_values():
    axes = grid_axes(GRID)
    h = one_hot(1, 1, 1)
    target = torch.tensor([[[0.0, 0.0, 0.0]]])  # voxel (1,1,1) is at (-3, -2, -1) mm
    assert float(distance_map_regularization(h, target, axes)) == pytest.approx(np.sqrt(9 + 4 + 1), rel=1e-6)
    coords, var = dsnt(h, axes)
    assert float(euclidean_loss(coords, target)) == pytest.approx(np.sqrt(14), rel=1e-6)
    # variance 0 everywhere, target 1 voxel^2 per axis: (0 - 1)^2 * 3
    assert float(variance_regularization(var, GRID, sigma_t_voxels=1.0)) == pytest.approx(3.0)
    two = 0.5 * (one_hot(0, 2, 1) + one_hot(2, 2, 1))  # variance 4 mm^2 = 1 voxel^2 along x
    _, var2 = dsnt(two, axes)
    assert float(variance_regularization(var2, GRID, sigma_t_voxels=1.0)) == pytest.approx(2.0)


def test_gaussian_target_peaks_at_the_landmark_and_local_peak_decoding():
    axes = grid_axes(GRID)
    target = torch.tensor([[[1.0, 0.0, -1.0]]])  # a voxel centre
    g = gaussian_targets(target, axes, sigma_mm=2.0)
    assert float(g.max()) == pytest.approx(1.0)
    assert tuple(np.argwhere(g[0, 0].numpy() == g.max().item())[0]) == (1, 2, 3)  # (k, j, i)
    coords, spread = local_peak_expectation(g, axes, radius_mm=2.5)
    np.testing.assert_allclose(coords[0, 0].numpy(), [1.0, 0.0, -1.0], atol=1e-6)
    assert 0 < float(spread[0, 0]) < np.sqrt(3) * 2.0  # within the 3x3x3-voxel window
    coords, _ = local_peak_expectation(one_hot(5, 4, 3), axes, radius_mm=2.5)  # peak in a corner
    np.testing.assert_allclose(coords[0, 0].numpy(), [5.0, 4.0, 3.0], atol=1e-6)


def test_gradients_of_dsnt_and_regularizers():
    axes = tuple(a.double() for a in grid_axes(GRID))
    raw = torch.randn((1, 2, *GRID.array_shape), dtype=torch.float64, requires_grad=True)
    target = torch.randn((1, 2, 3), dtype=torch.float64)

    def f(r):
        h = spatial_softmax(r)
        c, v = dsnt(h, axes)
        return c.sum() + v.sum() + distance_map_regularization(h, target, axes) + variance_regularization(v, GRID)

    assert torch.autograd.gradcheck(f, (raw,), eps=1e-6, atol=1e-5)
    # the coordinate moves towards a voxel whose raw score increases
    h = spatial_softmax(raw)
    c, _ = dsnt(h, axes)
    c[0, 0, 0].backward()
    grad = raw.grad[0, 0].sum(dim=(0, 1)).numpy()  # summed over D, H: per x position
    assert grad[-1] > 0 > grad[0]


def test_dsnt_exports_to_onnx_with_the_same_values(tmp_path):
    import onnxruntime as ort

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for name, a in zip(("x", "y", "z"), grid_axes(GRID), strict=True):
                self.register_buffer(name, a)

        def forward(self, raw):
            coords, var = dsnt(spatial_softmax(raw), (self.x, self.y, self.z))
            peak, _ = local_peak_expectation(raw, (self.x, self.y, self.z), 2.5)
            return coords, var, peak

    raw = torch.randn((1, 3, *GRID.array_shape)) * 3
    raw[0, 1] = -50.0
    raw[0, 1, 2, 3, 4] = 50.0  # landmark 1: a sharp peak at voxel (i, j, k) = (4, 3, 2)
    path = tmp_path / "dsnt.onnx"
    torch.onnx.export(Head(), (raw,), str(path), input_names=["raw"], opset_version=17, dynamo=False)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"raw": raw.numpy()})
    expected = [t.numpy() for t in Head()(raw)]
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, atol=1e-5)
    np.testing.assert_allclose(got[0][0, 1], [3.0, 2.0, 1.0], atol=1e-5)
