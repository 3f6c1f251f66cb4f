"""IJK / RAS / LPS conventions, exact values on non-identity, anisotropic, flipped geometry, and volume IO
through Slicer's volumes logic, cross-checked against SimpleITK reading the same files."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from LandmarkInitLib.errors import LandmarkFileError
from LandmarkInitLib.geometry import VolumeGeometry, convert_matrix_ras_lps, lps_to_ras, ras_to_lps
from LandmarkInitLib.io.volumes import load_volume, save_volume

# A flipped, anisotropic grid: I runs to patient Left (-R), J to Anterior, K to Inferior (-S).
FLIPPED = VolumeGeometry(
    size_ijk=(4, 5, 6),
    spacing=np.array([0.5, 0.8, 3.0]),
    origin_ras=np.array([10.0, -20.0, 30.0]),
    direction_ras=np.array([[-1.0, 0, 0], [0, 1, 0], [0, 0, -1]]),
)


def test_ras_lps_exact_values():
    np.testing.assert_array_equal(ras_to_lps([1.0, 2.0, 3.0]), [-1.0, -2.0, 3.0])
    np.testing.assert_array_equal(lps_to_ras([[1.0, -2.0, 3.0]]), [[-1.0, 2.0, 3.0]])
    m = np.eye(4)
    m[:3, 3] = [5, 6, 7]
    np.testing.assert_array_equal(convert_matrix_ras_lps(m)[:3, 3], [-5, -6, 7])


def test_ijk_to_ras_exact_values_on_flipped_anisotropic_grid():
    # voxel centre (0,0,0) is the origin; one step along each index axis moves by spacing along its direction
    np.testing.assert_array_equal(FLIPPED.ijk_to_ras_points([0, 0, 0]), [10.0, -20.0, 30.0])
    np.testing.assert_array_equal(FLIPPED.ijk_to_ras_points([1, 0, 0]), [9.5, -20.0, 30.0])
    np.testing.assert_array_equal(FLIPPED.ijk_to_ras_points([0, 1, 0]), [10.0, -19.2, 30.0])
    np.testing.assert_array_equal(FLIPPED.ijk_to_ras_points([0, 0, 1]), [10.0, -20.0, 27.0])
    np.testing.assert_allclose(FLIPPED.ijk_to_ras_points([3, 4, 5]), [8.5, -16.8, 15.0])
    np.testing.assert_allclose(FLIPPED.ras_to_ijk_points([8.5, -16.8, 15.0]), [3, 4, 5], atol=1e-12)
    assert FLIPPED.array_shape == (6, 5, 4)
    # extent is voxel edges: -0.5 .. size-0.5 in index space
    assert FLIPPED.contains_ras(FLIPPED.ijk_to_ras_points([-0.49, 4.49, 0]))[0]
    assert not FLIPPED.contains_ras(FLIPPED.ijk_to_ras_points([-0.51, 0, 0]))[0]


def oblique_geometry(rng, handedness: int = 1) -> VolumeGeometry:
    """Random oblique anisotropic grid; handedness -1 makes the index axes left-handed (det < 0)."""
    direction = Rotation.random(random_state=rng).as_matrix() @ np.diag([1.0, 1.0, float(handedness)])
    return VolumeGeometry((7, 6, 5), np.array([0.6, 0.9, 2.5]), rng.uniform(-50, 50, 3), direction)


def write_sitk(path, geometry: VolumeGeometry, array_kji):
    img = sitk.GetImageFromArray(array_kji)
    geometry.apply_to_sitk_image(img)
    sitk.WriteImage(img, str(path))
    return img


def assert_same_physical_volume(node, img):
    """Every voxel of the SimpleITK image has the same value at the same physical point in the node."""
    import slicer

    geometry = VolumeGeometry.from_volume_node(node)
    array = slicer.util.arrayFromVolume(node)
    reference = sitk.GetArrayFromImage(img)
    for idx in np.ndindex(*img.GetSize()):
        ras = lps_to_ras(img.TransformIndexToPhysicalPoint([int(v) for v in idx]))
        ijk = geometry.ras_to_ijk_points(ras)
        np.testing.assert_allclose(ijk, np.round(ijk), atol=1e-4)  # lands on a voxel centre
        i, j, k = np.round(ijk).astype(int)
        assert array[k, j, i] == reference[idx[2], idx[1], idx[0]]


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
def test_right_handed_volume_loads_with_its_exact_geometry(context, tmp_path, rng, suffix):
    import slicer

    geom = oblique_geometry(rng)
    data = rng.normal(size=geom.array_shape).astype(np.float32)
    img = write_sitk(tmp_path / f"vol{suffix}", geom, data)
    node = load_volume(context, tmp_path / f"vol{suffix}")
    loaded = VolumeGeometry.from_volume_node(node)
    assert loaded.size_ijk == geom.size_ijk
    np.testing.assert_allclose(loaded.ijk_to_ras, geom.ijk_to_ras, atol=1e-5)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), data)
    np.testing.assert_allclose(VolumeGeometry.from_sitk_image(img).ijk_to_ras, geom.ijk_to_ras, atol=1e-12)
    assert_same_physical_volume(node, img)


def test_left_handed_volume_keeps_every_voxel_at_its_physical_position(context, tmp_path, rng):
    """Slicer's archetype reader makes IJK-to-RAS right-handed by reversing the K axis of a left-handed
    file. Index space then differs from the file's, RAS positions do not: never carry IJK across readers."""
    geom = oblique_geometry(rng, handedness=-1)
    assert np.linalg.det(geom.direction_ras) < 0
    img = write_sitk(tmp_path / "left.nrrd", geom, rng.normal(size=geom.array_shape).astype(np.float32))
    node = load_volume(context, tmp_path / "left.nrrd")
    loaded = VolumeGeometry.from_volume_node(node)
    assert np.linalg.det(loaded.direction_ras) > 0
    np.testing.assert_allclose(loaded.direction_ras[:, :2], geom.direction_ras[:, :2], atol=1e-6)
    np.testing.assert_allclose(loaded.direction_ras[:, 2], -geom.direction_ras[:, 2], atol=1e-6)
    assert_same_physical_volume(node, img)


def test_save_volume_round_trip_keeps_voxels_in_place_and_refuses_overwrite(context, tmp_path, rng):
    geom = oblique_geometry(rng)
    img = write_sitk(tmp_path / "in.nrrd", geom, rng.normal(size=geom.array_shape).astype(np.float32))
    node = load_volume(context, tmp_path / "in.nrrd")
    out = save_volume(context, node, tmp_path / "out.nrrd")
    again = load_volume(context, out)
    np.testing.assert_allclose(VolumeGeometry.from_volume_node(again).ijk_to_ras, geom.ijk_to_ras, atol=1e-5)
    assert_same_physical_volume(again, img)
    assert_same_physical_volume(load_volume(context, out), sitk.ReadImage(str(out)))
    with pytest.raises(LandmarkFileError, match="already exists"):
        save_volume(context, node, out)
    for detached in ("out.nhdr", "out.mhd"):  # the data file beside the header would keep a temporary name
        with pytest.raises(LandmarkFileError, match="written as one file"):
            save_volume(context, node, tmp_path / detached)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nrrd", "out.nrrd"]


def test_volume_errors(context, tmp_path):
    with pytest.raises(LandmarkFileError, match="does not exist"):
        load_volume(context, tmp_path / "missing.nrrd")
    (tmp_path / "v.xyz").write_text("x")
    with pytest.raises(LandmarkFileError, match="unsupported volume format"):
        load_volume(context, tmp_path / "v.xyz")
    (tmp_path / "broken.nrrd").write_text("NRRD0004\ngarbage\n")
    with pytest.raises(LandmarkFileError, match="could not be read"):
        load_volume(context, tmp_path / "broken.nrrd")
    sitk.WriteImage(sitk.Image(8, 8, sitk.sitkFloat32), str(tmp_path / "flat.nrrd"))
    with pytest.raises(LandmarkFileError, match="3-D"):
        load_volume(context, tmp_path / "flat.nrrd")
