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


# Independent numpy versions of the formulas, on random heatmaps (float64 throughout).
X_MM, Y_MM, Z_MM = (GRID.axis_mm(a) for a in range(3))
ZZ, YY, XX = np.meshgrid(Z_MM, Y_MM, X_MM, indexing="ij")  # (D, H, W) like the tensors


def numpy_softmax(raw):
    e = np.exp(raw - raw.max(axis=(2, 3, 4), keepdims=True))
    return e / e.sum(axis=(2, 3, 4), keepdims=True)


def numpy_moments(p):
    grids = (XX, YY, ZZ)
    mean = np.stack([(p * g).sum(axis=(2, 3, 4)) for g in grids], axis=-1)
    var = np.stack(
        [(p * (g - mean[..., a, None, None, None]) ** 2).sum(axis=(2, 3, 4)) for a, g in enumerate(grids)], axis=-1
    )
    return mean, var


def test_grid_axes_are_float32_on_the_requested_device():
    for axis, a in zip((X_MM, Y_MM, Z_MM), grid_axes(GRID), strict=True):
        assert a.dtype == torch.float32
        np.testing.assert_array_equal(a.numpy(), axis)
    assert {a.device.type for a in grid_axes(GRID, device="meta")} == {"meta"}


def test_softmax_moments_and_regularizers_match_numpy_on_random_heatmaps():
    rng = np.random.default_rng(7)
    raw = rng.normal(0.0, 2.0, (2, 3, *GRID.array_shape))
    target = rng.normal(0.0, 3.0, (2, 3, 3))
    p = numpy_softmax(raw)
    h = spatial_softmax(torch.tensor(raw))
    np.testing.assert_allclose(h.numpy(), p, rtol=1e-12)
    axes = tuple(a.double() for a in grid_axes(GRID))
    coords, var = dsnt(h, axes)
    mean_np, var_np = numpy_moments(p)
    np.testing.assert_allclose(coords.numpy(), mean_np, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(var.numpy(), var_np, rtol=1e-12, atol=1e-12)
    dist = np.sqrt(
        (XX - target[..., 0, None, None, None]) ** 2
        + (YY - target[..., 1, None, None, None]) ** 2
        + (ZZ - target[..., 2, None, None, None]) ** 2
    )
    expected = (p * dist).sum(axis=(2, 3, 4)).mean()
    assert float(distance_map_regularization(h, torch.tensor(target), axes)) == pytest.approx(expected, rel=1e-9)
    var_vox = var_np / GRID.spacing_mm**2
    expected = ((var_vox - 1.5**2) ** 2).sum(axis=-1).mean()
    assert float(variance_regularization(var, GRID, sigma_t_voxels=1.5)) == pytest.approx(expected, rel=1e-12)
    assert float(variance_regularization(var, GRID)) == pytest.approx(((var_vox - 1.0) ** 2).sum(-1).mean(), rel=1e-12)


def test_euclidean_loss_is_the_mean_distance_per_landmark():
    pred = torch.tensor([[[3.0, 4.0, 0.0], [1.0, 1.0, 1.0]], [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]])
    target = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 1.0, 3.0]], [[1.0, 2.0, 4.0], [0.0, 0.0, -6.0]]])
    assert float(euclidean_loss(pred, target)) == pytest.approx((5.0 + 2.0 + 1.0 + 6.0) / 4)


def test_gaussian_targets_exact():
    target = np.array([[[1.0, 2.0, -1.0], [-2.5, 0.5, 2.0]]])
    g = gaussian_targets(torch.tensor(target), tuple(a.double() for a in grid_axes(GRID)), sigma_mm=1.5)
    for landmark, (tx, ty, tz) in enumerate(target[0]):
        expected = np.exp(-((XX - tx) ** 2 + (YY - ty) ** 2 + (ZZ - tz) ** 2) / (2 * 1.5**2))
        np.testing.assert_allclose(g[0, landmark].numpy(), expected, rtol=1e-12)


def numpy_local_peak(raw, radius):
    coords, spreads = np.zeros(raw.shape[:2] + (3,)), np.zeros(raw.shape[:2])
    for b in range(raw.shape[0]):
        for n in range(raw.shape[1]):
            k, j, i = np.unravel_index(np.argmax(raw[b, n]), raw[b, n].shape)
            window = (
                (np.abs(XX - X_MM[i]) <= radius) & (np.abs(YY - Y_MM[j]) <= radius) & (np.abs(ZZ - Z_MM[k]) <= radius)
            )
            mass = np.where(window, np.maximum(raw[b, n], 0.0) + 1e-12, 0.0)
            mass = mass / mass.sum()
            mean = [(mass * g).sum() for g in (XX, YY, ZZ)]
            coords[b, n] = mean
            spreads[b, n] = np.sqrt(sum((mass * (g - m) ** 2).sum() for g, m in zip((XX, YY, ZZ), mean, strict=True)))
    return coords, spreads


@pytest.mark.parametrize("radius", [2.5, 4.0])
def test_local_peak_expectation_matches_numpy(radius):
    rng = np.random.default_rng(11)
    raw = rng.normal(0.0, 1.0, (2, 3, *GRID.array_shape))
    raw[0, 0, 3, 4, 5] = 9.0  # a peak in the far corner (k, j, i): the window is cut by the grid edge
    raw[1, 2, 0, 0, 0] = 9.0  # and in the near corner
    raw[0, 1, 2, 1, 3] = 9.0  # inside
    coords, spread = local_peak_expectation(torch.tensor(raw), tuple(a.double() for a in grid_axes(GRID)), radius)
    expected_coords, expected_spread = numpy_local_peak(raw, radius)
    np.testing.assert_allclose(coords.numpy(), expected_coords, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(spread.numpy(), expected_spread, rtol=1e-9, atol=1e-9)


def test_regularizers_stay_finite_where_the_distance_or_the_mass_is_zero():
    axes = tuple(a.double() for a in grid_axes(GRID))
    # all the mass on the target's own voxel: distance 0, kept off sqrt(0) (and its infinite gradient) by 1e-12
    h = one_hot(1, 1, 1, dtype=torch.float64).requires_grad_(True)
    loss = distance_map_regularization(h, torch.tensor([[[-3.0, -2.0, -1.0]]], dtype=torch.float64), axes)
    assert loss.item() == pytest.approx(1e-6, rel=1e-9)
    loss.backward()
    assert torch.isfinite(h.grad).all()
    # a one-hot peak in a corner: the tiny mass added to the rest of its window keeps the spread positive and small
    _, spread = local_peak_expectation(one_hot(5, 4, 3, dtype=torch.float64), axes, radius_mm=2.5)
    assert 0 < float(spread[0, 0]) < 1e-4
