"""US detection independent of the file's axis order: the shipped US detector runs in the probe's frame found from
the imaged fan (detection/probe_frame.py); and the training augmentation that shows a network the anatomy in every
orientation (training/data.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk

from LandmarkInitLib.detection.detectors import open_detector
from LandmarkInitLib.detection.model_card import load_card
from LandmarkInitLib.detection.model_grid import ModelGrid
from LandmarkInitLib.errors import LandmarkInitError
from LandmarkInitLib.geometry import VolumeGeometry
from LandmarkInitLib.resources import default_model_card, sample_case_dir
from LandmarkInitResearch.evaluation.reacquire import (
    FIELD_OF_VIEW_EXTENSIONS,
    field_of_view_name,
    larger_field_of_view,
    permute_flip,
)
from LandmarkInitResearch.training.data import (
    LandmarkDataset,
    LoadedVolume,
    LocalPatchDataset,
    random_orientation,
    random_rotation,
    us_appearance,
)


def test_any_orientation_covers_rotations_and_reflections():
    rng = np.random.default_rng(0)
    poses = np.array([random_orientation(rng)[:3, :3] for _ in range(400)])
    np.testing.assert_allclose(poses @ poses.transpose(0, 2, 1), np.broadcast_to(np.eye(3), poses.shape), atol=1e-12)
    # Haar measure on O(3): the mean matrix is 0 (the identity's trace would be 3), half are reflections
    assert abs(np.trace(poses.mean(axis=0))) < 0.3 and np.abs(poses.mean(axis=0)).max() < 0.15
    assert 0.4 < np.mean(np.linalg.det(poses) < 0) < 0.6
    small = np.array([random_rotation(rng, 8.0)[:3, :3] for _ in range(50)])
    assert np.trace(small.mean(axis=0)) > 2.95  # the default stays near the identity


def _blobs_volume():
    """A 48 mm cube holding three Gaussian blobs at the three landmarks."""
    spacing, n = 1.2, 40
    direction = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])  # a permuted, flipped storage
    geometry = VolumeGeometry((n, n, n), np.full(3, spacing), np.array([5.0, -20.0, 30.0]), direction)
    landmarks = geometry.ijk_to_ras_points([[12.0, 14.0, 20.0], [27.0, 22.0, 15.0], [18.0, 28.0, 26.0]])
    kji = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), axis=-1)
    ras = geometry.ijk_to_ras_points(kji[..., ::-1].reshape(-1, 3)).reshape(n, n, n, 3)
    array = sum(200.0 * np.exp(-np.sum((ras - p) ** 2, axis=-1) / (2 * 4.0**2)) for p in landmarks)
    image = sitk.GetImageFromArray(array.astype(np.float32))
    geometry.apply_to_sitk_image(image)
    return LoadedVolume("blobs", image, geometry, landmarks)


def _value_at(x: np.ndarray, grid: ModelGrid, point_mm) -> float:
    """The network input at a grid-mm point (linear interpolation)."""
    from scipy.ndimage import map_coordinates

    ijk = np.asarray(point_mm) / grid.spacing_mm + (np.asarray(grid.shape_ijk) - 1) / 2.0
    return float(map_coordinates(x[0], ijk[::-1, None], order=1)[0])


def test_targets_follow_the_sampled_orientation_exactly():
    volume = _blobs_volume()
    peak = 200.0 / 255.0
    whole, patch = ModelGrid((24, 24, 24), 2.5, "RAS"), ModelGrid((12, 12, 12), 1.0, "RAS")
    for grid, dataset in [
        (whole, LandmarkDataset([volume], whole, "us", orientation="any")),
        (patch, LocalPatchDataset([volume], patch, "us", orientation="any", max_offset_mm=2.0)),
    ]:
        dataset.augment = True  # orientation only: the intensities stay as resampled
        dataset._intensity = None
        seen = []
        for epoch, index in itertools.product(range(6), range(len(dataset))):
            dataset.set_epoch(epoch)
            x, target, channel = dataset[index]
            x = x.numpy()
            for landmark in [channel] if channel >= 0 else range(3):
                # each target sits on its blob's centre in the rotated (or reflected) grid
                assert _value_at(x, grid, target[landmark].numpy()) > 0.8 * peak, (epoch, index, landmark)
            seen.append(target.numpy())
        assert np.ptp(np.array(seen), axis=0).max() > 5.0  # the grid did turn


def test_us_appearance_keeps_the_background_and_the_range():
    rng = np.random.default_rng(1)
    x = np.zeros((1, 16, 16, 16), dtype=np.float32)
    x[:, 4:12, 3:13, 5:15] = rng.uniform(0.05, 0.9, (1, 8, 10, 10))
    for _ in range(5):
        y = us_appearance(x, rng)
        assert y.shape == x.shape and y.dtype == np.float32
        assert np.all(y[x == 0] == 0) and np.all((y >= 0) & (y <= 1)) and not np.allclose(y, x)


def test_shipped_us_detector_gives_the_same_points_however_the_image_is_stored():
    """The same physical image with its voxel axes permuted or flipped (header updated): the probe frame is found
    from the same fan voxels, so the points agree to floating-point precision."""
    _same_points_however_stored(load_card(default_model_card("us")))


def test_shipped_us_detector_finds_the_anatomy_whatever_the_vendors_axis_order():
    """Another vendor's axis order with the header left as it was (a different physical image: the anatomy turned
    by a rotation of the voxel axes): the detector follows the anatomy. Compared in voxel indices."""
    image = sitk.ReadImage(str(sample_case_dir() / "us.nrrd"))
    detector = open_detector(load_card(default_model_card("us")))
    reference = detector.detect_image(image)
    assert not reference.flags
    reference_ijk = VolumeGeometry.from_sitk_image(image).ras_to_ijk_points(reference.points_ras)
    for order, flips in [((1, 2, 0), (False, False, False)), ((2, 1, 0), (True, False, False))]:
        turned = permute_flip(image, order, flips)
        turned.SetDirection(image.GetDirection())  # the header does not follow: the anatomy turns
        turned.SetOrigin(image.GetOrigin())
        detection = detector.detect_image(turned)
        ijk = VolumeGeometry.from_sitk_image(turned).ras_to_ijk_points(detection.points_ras)
        size = np.array(image.GetSize())[list(order)]
        back = np.empty_like(ijk)  # new index n -> old index m: m[order[a]] = n[a], or size - 1 - n[a] where flipped
        for a, (o, f) in enumerate(zip(order, flips, strict=True)):
            back[:, o] = size[a] - 1 - ijk[:, a] if f else ijk[:, a]
        np.testing.assert_allclose(back * image.GetSpacing()[0], reference_ijk * image.GetSpacing()[0], atol=0.05)
        assert not detection.flags, detection.flags


def test_shipped_us_detector_gives_the_same_points_in_a_larger_field_of_view():
    """The same US voxels in a box 40 mm larger on one side (zero outside the fan, as a converter may write it):
    the grid is centred on the imaged fan, so the network sees the same input and the points do not move."""
    image = sitk.ReadImage(str(sample_case_dir() / "us.nrrd"))
    detector = open_detector(load_card(default_model_card("us")))
    reference = detector.detect_image(image).points_ras
    for axis, after in FIELD_OF_VIEW_EXTENSIONS:
        moved = detector.detect_image(larger_field_of_view(image, axis, after)).points_ras
        np.testing.assert_allclose(moved, reference, atol=0.1, err_msg=field_of_view_name(axis, after))


def _same_points_however_stored(card):
    image = sitk.ReadImage(str(sample_case_dir() / "us.nrrd"))
    detector = open_detector(card)
    reference = detector.detect_image(image).points_ras
    for order, flips in [((2, 0, 1), (False, True, False)), ((1, 2, 0), (True, True, True)), ((0, 1, 2), (1, 0, 0))]:
        moved = detector.detect_image(permute_flip(image, order, flips)).points_ras
        np.testing.assert_allclose(moved, reference, atol=1e-3, err_msg=f"axes {order}, flips {flips}")


def test_physical_frame_and_orientation_options_reach_the_card(tiny_dataset, tmp_path):
    """A US stage trained in a physical frame with any orientation: the card names the grid axes, the
    augmentation, and a training command that repeats the options (what `export` writes is what was run)."""
    from LandmarkInitResearch.training.export import export_run
    from LandmarkInitResearch.training.train import TrainConfig, train

    cfg = TrainConfig(
        data=str(tiny_dataset),
        modality="us",
        method="g2l-global",
        output=str(tmp_path / "run"),
        epochs=1,
        val_fraction=0.25,
        grid_shape=[16, 16, 16],
        grid_spacing_mm=6.0,
        channels=[4, 8, 16],
        batch_size=2,
        threads=1,
        grid_axes="RAS",
        augment_orientation="any",
        augment_appearance="us",
    )
    train(cfg, progress=False)
    card = load_card(export_run(tmp_path / "run", tmp_path / "us_model"))
    assert card.grid.axes == "RAS" and card.data["input_grid"]["axes"] == "RAS"
    training = card.data["training"]
    assert training["augment_orientation"] == "any" and training["augment_appearance"] == "us"
    assert "--grid-axes RAS --augment-orientation any --augment-appearance us" in training["command"]
    with pytest.raises(LandmarkInitError, match="--grid-axes"):
        train(TrainConfig(**{**cfg.__dict__, "grid_axes": "RAX", "output": str(tmp_path / "bad")}), progress=False)
