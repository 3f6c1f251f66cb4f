"""Re-acquisitions of `evaluate-robustness` (LandmarkInitResearch/evaluation/reacquire.py) on small arrays with exact
answers: a permuted / flipped volume is the same physical image voxel for voxel, a scanner's series has its
slices along the right patient axis, reslicing and resampling keep the image where it was."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk

from LandmarkInitResearch.evaluation import reacquire


def oblique_image(rng, size=(5, 4, 3), pixel=np.int16):
    """A small volume with distinct values, unequal spacings and an oblique, left-handed direction."""
    image = sitk.GetImageFromArray(rng.permutation(np.prod(size)).reshape(size[::-1]).astype(pixel))
    image.SetSpacing((0.7, 1.1, 2.5))
    rotation = reacquire.rotation_matrix((0.3, -1.0, 0.5), 37.0) @ np.diag([1.0, -1.0, 1.0])
    image.SetDirection(rotation.ravel().tolist())
    image.SetOrigin((-12.5, 30.25, 7.0))
    return image


def world_values(image) -> dict:
    """Every voxel's world position (rounded to 1e-9 mm) -> its value."""
    array = sitk.GetArrayViewFromImage(image)
    out = {}
    for i, j, k in itertools.product(*[range(s) for s in image.GetSize()]):
        point = image.TransformIndexToPhysicalPoint((i, j, k))
        out[tuple(np.round(point, 9))] = array[k, j, i]
    return out


def test_the_variants_are_fourteen_distinct_storage_orders_without_the_native_one():
    names = [name for name, _, _ in reacquire.axis_variants()]
    assert len(names) == len(set(names)) == 14
    assert "+i+j+k" not in names
    assert {"-i-j-k", "+k+j+i", "-k-i-j", "-i+j+k", "+i-j+k", "+i+j-k"} <= set(names)


@pytest.mark.parametrize("name,order,flips", reacquire.axis_variants(), ids=lambda v: str(v))
def test_a_permuted_or_flipped_volume_is_the_same_physical_image(rng, name, order, flips):
    image = oblique_image(rng)
    variant = reacquire.permute_flip(image, order, flips)
    assert variant.GetSize() == tuple(image.GetSize()[o] for o in order)
    assert world_values(variant) == world_values(image)
    # one voxel by hand: new index n holds old index m at the same place
    n = (1, 2, 0)
    m = [0, 0, 0]
    for a, (o, f) in enumerate(zip(order, flips, strict=True)):
        m[o] = image.GetSize()[o] - 1 - n[a] if f else n[a]
    assert variant[n] == image[m]
    np.testing.assert_allclose(
        variant.TransformIndexToPhysicalPoint(n), image.TransformIndexToPhysicalPoint(m), atol=1e-12
    )


def test_a_sagittal_series_has_its_slices_along_r_and_rows_along_p(rng):
    image = oblique_image(rng, size=(12, 10, 8))
    sagittal = reacquire.clinical_series(image, "sagittal", inplane_mm=0.5, slice_mm=3.0)
    direction = np.array(sagittal.GetDirection()).reshape(3, 3)
    np.testing.assert_array_equal(reacquire.slice_normal_lps(sagittal), [-1, 0, 0])  # LPS -x = patient right
    np.testing.assert_array_equal(direction[:, 0], [0, 1, 0])  # i: posterior
    np.testing.assert_array_equal(direction[:, 1], [0, 0, -1])  # j: inferior
    assert sagittal.GetSpacing() == (0.5, 0.5, 3.0) and sagittal.GetPixelID() == sitk.sitkInt16
    np.testing.assert_array_equal(reacquire.slice_normal_lps(reacquire.clinical_series(image, "coronal")), [0, 1, 0])
    np.testing.assert_array_equal(reacquire.slice_normal_lps(reacquire.clinical_series(image, "axial")), [0, 0, 1])


def test_a_clinical_series_keeps_a_smooth_image_where_it_was_and_blurs_only_across_slices():
    """A linear ramp along S is unchanged by linear interpolation and by a symmetric blur along S (axial slices)
    or across it (sagittal, coronal: the blur is along R or A), up to the integer rounding, away from the edges."""
    size = (40, 40, 30)
    s = np.arange(size[2], dtype=np.float32) * 10.0 - 150.0  # intensity = 10 x the LPS z (S) coordinate
    image = sitk.GetImageFromArray(np.broadcast_to(s[:, None, None], size[::-1]).copy())
    image.SetOrigin((-20.0, -20.0, -15.0))
    for orientation in reacquire.SERIES_DIRECTIONS_LPS:
        series = reacquire.clinical_series(image, orientation, inplane_mm=0.55, slice_mm=3.0, pixel_id=sitk.sitkInt16)
        array = sitk.GetArrayFromImage(series)
        kji = np.indices(array.shape).reshape(3, -1).T
        m = np.array(series.GetDirection()).reshape(3, 3) * np.array(series.GetSpacing())[None, :]
        world = kji[:, ::-1] @ m.T + np.array(series.GetOrigin())
        inside = np.all(np.abs(world) < np.array([20.0, 20.0, 15.0]) - 6.0, axis=1)
        assert inside.sum() > 1000
        np.testing.assert_allclose(array.reshape(-1)[inside], np.rint(10.0 * world[inside, 2]), atol=1.0)
        # the series covers the volume: its voxel edges reach the volume's corners
        half = np.abs(m).sum(axis=1) / 2.0  # half a voxel along x, y, z (the series' axes are patient axes)
        assert np.all(world.min(axis=0) - half <= np.array([-20.5, -20.5, -15.5]) + 1e-9)
        assert np.all(world.max(axis=0) + half >= np.array([19.5, 19.5, 14.5]) - 1e-9)


def test_an_oblique_reslice_and_a_new_spacing_keep_the_image_where_it_was():
    """A Gaussian blob's centre of mass stays at its world position (within a tenth of a voxel)."""
    size = (30, 26, 22)
    centre = np.array([14.6, 3.0, 19.4])  # world (LPS) mm: the middle of the volume
    image = sitk.GaussianSource(
        sitk.sitkFloat32,
        size,
        sigma=(3.0,) * 3,
        mean=centre.tolist(),
        scale=200,
        origin=(3.0, -7.0, 11.0),
        spacing=(0.8,) * 3,
    )

    def centre_of_mass(img):
        array = sitk.GetArrayFromImage(img).astype(float)
        kji = np.indices(array.shape).reshape(3, -1).T
        ijk = (kji[:, ::-1] * array.reshape(-1, 1)).sum(axis=0) / array.sum()
        return np.array(img.TransformContinuousIndexToPhysicalPoint(ijk.tolist()))

    np.testing.assert_allclose(centre_of_mass(image), centre, atol=0.05)
    resliced = reacquire.oblique_reslice(image, 20.0)
    direction = np.array(resliced.GetDirection()).reshape(3, 3)
    assert np.degrees(np.arccos((np.trace(direction) - 1) / 2)) == pytest.approx(20.0)
    assert resliced.GetSpacing() == pytest.approx((0.8, 0.8, 0.8))
    np.testing.assert_allclose(centre_of_mass(resliced), centre, atol=0.08)
    coarse = reacquire.isotropic(sitk.Cast(image, sitk.sitkUInt8), 1.0)
    assert coarse.GetPixelID() == sitk.sitkUInt8 and coarse.GetSpacing() == (1.0, 1.0, 1.0)
    np.testing.assert_allclose(centre_of_mass(coarse), centre, atol=0.08)


@pytest.mark.parametrize("axis, after", [(0, False), (1, True), (2, True), (2, False)])
def test_a_larger_field_of_view_keeps_every_voxel_where_it_was_and_adds_background(rng, axis, after):
    image = oblique_image(rng)
    image = sitk.Add(image, 5)  # background (minimum) 5, not 0
    larger = reacquire.larger_field_of_view(image, axis, after, mm=5.0)
    added = int(round(5.0 / image.GetSpacing()[axis]))  # 7, 5 or 2 voxels
    size = list(image.GetSize())
    size[axis] += added
    assert list(larger.GetSize()) == size and larger.GetSpacing() == image.GetSpacing()
    assert larger.GetDirection() == image.GetDirection()
    old, new = world_values(image), world_values(larger)
    assert {p: new[p] for p in old} == old
    assert {new[p] for p in new.keys() - old.keys()} == {5}
    # the new voxels lie on the named side: beyond the last voxel of the axis, or before the first
    first_new = [0, 0, 0]
    first_new[axis] = image.GetSize()[axis] if after else 0
    index = [0, 0, 0]
    index[axis] = image.GetSize()[axis] if after else -added
    np.testing.assert_allclose(
        larger.TransformIndexToPhysicalPoint(first_new),
        image.TransformContinuousIndexToPhysicalPoint([float(v) for v in index]),
        atol=1e-9,
    )
    side = "after" if after else "before"
    assert reacquire.field_of_view_name(axis, after, 5.0) == f"+5 mm {side} axis {'ijk'[axis]}"
