"""Landmarks derived from a gland mask (issue 22): exact answers on synthetic masks stored with anisotropic spacing,
flipped, permuted (sagittal) and oblique axes; the nearest-slice fallback and the 2 mm R band; every refusal;
`landmarkinit landmarks-from-mask` end to end, its output read back by Slicer's markups reader."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import SimpleITK as sitk

from LandmarkInitLib.cli import main
from LandmarkInitLib.geometry import VolumeGeometry
from LandmarkInitLib.io.markups import read_landmarks_file
from LandmarkInitLib.landmarks import LANDMARK_LABELS, MODALITY_COLORS
from LandmarkInitLib.mask_landmarks import (
    MaskError,
    derive_mask_landmarks,
    landmarks_from_mask,
    landmarks_from_mask_file,
    landmarks_from_mask_image,
)

# Index axes flipped in R and A (as an axial DICOM series: i to the left, j to posterior), anisotropic spacing.
# Voxel centres: R = 10 - 0.5 i (i 0..40: -10..10), A = 7 - 0.7 j (j 0..20: -7..7), S = -12 + 3 k (k 0..10).
AXIAL = VolumeGeometry((41, 21, 11), np.array([0.5, 0.7, 3.0]), np.array([10.0, 7.0, -12.0]), np.diag([-1.0, -1, 1]))


def box(geometry=AXIAL, i=(10, 30), j=(5, 15), k=(1, 8)) -> np.ndarray:
    """A box of voxels (inclusive index ranges); on AXIAL: R -5..5, A 3.5..-3.5, S -9..12."""
    a = np.zeros(geometry.array_shape, np.uint8)
    a[k[0] : k[1] + 1, j[0] : j[1] + 1, i[0] : i[1] + 1] = 1
    return a


def points(landmarks) -> np.ndarray:
    assert landmarks.labels == LANDMARK_LABELS
    return landmarks.points_ras


def reoriented(array_kji, geometry, perm, flips):
    """The same physical voxels stored with index axes permuted (new axis n = old axis perm[n]) and flipped."""
    a = array_kji.transpose(2, 1, 0).transpose(perm)  # [i, j, k] order, then permuted
    size = np.array(geometry.size_ijk)[list(perm)]
    spacing = geometry.spacing[list(perm)]
    direction = geometry.direction_ras[:, list(perm)].copy()
    first = np.zeros(3)  # old index of the new voxel (0, 0, 0)
    for n, flip in enumerate(flips):
        if flip:
            a = np.flip(a, axis=n)
            direction[:, n] *= -1
            first[perm[n]] = geometry.size_ijk[perm[n]] - 1
    origin = geometry.ijk_to_ras_points(first)
    return np.ascontiguousarray(a.transpose(2, 1, 0)), VolumeGeometry(tuple(size), spacing, origin, direction)


def rotation(axis, degrees) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    t = np.radians(degrees)
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


def ellipsoid(geometry, centre, semi_axes) -> np.ndarray:
    k, j, i = np.indices(geometry.array_shape)
    ras = geometry.ijk_to_ras_points(np.stack([i, j, k], axis=-1).reshape(-1, 3))
    inside = np.sum(((ras - centre) / semi_axes) ** 2, axis=1) <= 1.0
    return inside.reshape(geometry.array_shape).astype(np.uint8)


# --- the definition, exact values --------------------------------------------------------------------------------


def test_box_on_flipped_anisotropic_axes():
    """Apex and bladder neck: centroids of the lowest and highest slice (3 mm apart: one slice each). Mid-height
    1.5 mm lies 1.5 mm from the slices S = 0 and S = 3: both are in; the most posterior voxels (A = -3.5) of the
    R band |R| <= 2 have the centroid R = 0, S = 1.5."""
    np.testing.assert_allclose(
        points(landmarks_from_mask(box(), AXIAL)), [[0, 0, -9], [0, 0, 12], [0, -3.5, 1.5]], atol=1e-9
    )


def test_bands_hold_every_voxel_within_1_6_mm_in_s():
    """0.8 mm slices, voxels at S = 1.6 .. 15.2 (k 2..19), R and A 2..6: the apex band holds the slices 1.6, 2.4
    and 3.2 (exactly 1.6 mm above the lowest: in), not 4.0. The lowest slice lacks its row at R = 2 (20 voxels,
    mean R 4.5; the others 25 voxels, mean R 4)."""
    g = VolumeGeometry((9, 9, 30), np.array([1.0, 1.0, 0.8]), np.zeros(3), np.eye(3))
    a = np.zeros(g.array_shape, np.uint8)
    a[2:20, 2:7, 2:7] = 1
    a[2, 2:7, 2] = 0
    lm = points(landmarks_from_mask(a, g))
    np.testing.assert_allclose(lm[0], [(20 * 4.5 + 50 * 4) / 70, 4, (20 * 1.6 + 25 * 2.4 + 25 * 3.2) / 70], atol=1e-9)
    np.testing.assert_allclose(lm[1], [4, 4, 14.4], atol=1e-9)  # slices 13.6, 14.4, 15.2


def test_mid_height_is_between_the_apex_and_bladder_neck_landmarks():
    """0.5 mm slices; a single voxel at the bottom (S 0) pulls the apex band's centroid up to S 75/76; the bladder
    neck is at S 19.25. Mid-height 10.118: its band (8.518..11.718) leaves out the slice S 8.5 and the posterior
    bump there (it would be in with the mid of the extremes, 10)."""
    g = VolumeGeometry((9, 9, 44), np.array([1.0, 1.0, 0.5]), np.zeros(3), np.eye(3))
    a = np.zeros(g.array_shape, np.uint8)
    a[0, 4, 4] = 1
    a[1:41, 2:7, 2:7] = 1  # S 0.5 .. 20, R and A 2..6
    a[17, 1, 4] = 1  # S 8.5, A 1
    lm = points(landmarks_from_mask(a, g))
    np.testing.assert_allclose(lm, [[4, 4, 75 / 76], [4, 4, 19.25], [4, 2, 10.25]], atol=1e-9)


def test_the_r_band_keeps_posterior_bumps_off_the_midline_out():
    """Posterior bumps at R = +-4.5..5 (outside the 2 mm band around the mean R 0) reach A = -6.3: without the band
    the posterior median would be there; with it, it stays at the midline's most posterior A = -3.5."""
    a = box()
    a[3:7, 15:20, 10:12] = 1  # R 5, 4.5; A -3.5 .. -6.3
    a[3:7, 15:20, 29:31] = 1  # R -4.5, -5
    lm = points(landmarks_from_mask(a, AXIAL))
    np.testing.assert_allclose(lm[2], [0, -3.5, 1.5], atol=1e-9)
    a[4, 16, [16, 24]] = 1  # R 2 and -2 (exactly 2 mm from the mean R: in), A -4.2, S 0
    np.testing.assert_allclose(points(landmarks_from_mask(a, AXIAL))[2], [0, -4.2, 0], atol=1e-9)


def test_posterior_median_is_the_centroid_of_the_most_posterior_voxels_only():
    """One voxel further back at R = 1.5 (in the band) in slice S = 3: it alone is the landmark."""
    a = box()
    a[4, 16, 17] = 1  # R 1.5, A -4.2, S 0
    np.testing.assert_allclose(points(landmarks_from_mask(a, AXIAL))[2], [1.5, -4.2, 0.0], atol=1e-9)


def test_nearest_slice_when_no_voxel_is_within_1_6_mm_of_mid_height():
    """4 mm slices at S = -8, -4, 0, 4: mid-height -2 is 2 mm from two slices, both taken; the more posterior
    voxels (A = -3.5) are in S = -4."""
    g = VolumeGeometry((21, 11, 6), np.array([0.5, 0.7, 4.0]), np.array([5.0, 3.5, -12.0]), np.diag([-1.0, -1, 1]))
    a = np.zeros(g.array_shape, np.uint8)
    a[1:5, 0:10, :] = 1  # A 3.5 .. -2.8
    a[2, 10, :] = 1  # slice S = -4 reaches A = -3.5
    result = derive_mask_landmarks(a, g)
    assert result.nearest_slice
    np.testing.assert_allclose(points(result.landmarks)[2], [0, -3.5, -4], atol=1e-9)
    assert not derive_mask_landmarks(box(), AXIAL).nearest_slice


# --- storage order: the same physical voxels give the same points --------------------------------------------------


@pytest.mark.parametrize("oblique", [False, True], ids=["axial", "oblique"])
def test_every_axis_order_and_flip_gives_the_same_points(oblique):
    """All 48 storage orders (6 permutations x 8 flips: axial, sagittal, coronal, mirrored) of an ellipsoid, on an
    axial and on an oblique grid, give identical landmarks."""
    direction = rotation([1, 0.4, 0.2], 25) @ np.diag([-1.0, -1, 1]) if oblique else np.diag([-1.0, -1, 1])
    g = VolumeGeometry((40, 34, 16), np.array([0.5, 0.7, 3.0]), np.zeros(3), direction)
    centre = g.ijk_to_ras_points([19.5, 16.5, 7.5]) + [0.3, -0.2, 0.4]
    a = ellipsoid(g, centre, np.array([8.0, 6.0, 17.0]))
    reference = points(landmarks_from_mask(a, g))
    for perm, flips in itertools.product(itertools.permutations(range(3)), itertools.product([False, True], repeat=3)):
        b, h = reoriented(a, g, perm, flips)
        np.testing.assert_allclose(points(landmarks_from_mask(b, h)), reference, atol=1e-9, err_msg=f"{perm} {flips}")


def test_sagittal_storage_of_a_box_gives_the_axial_answer():
    """The box stored as a sagittal series (index axes A, S, R) gives the exact axial answer."""
    b, h = reoriented(box(), AXIAL, (1, 2, 0), (True, False, True))
    assert np.allclose(np.abs(h.direction_ras), [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    np.testing.assert_allclose(points(landmarks_from_mask(b, h)), [[0, 0, -9], [0, 0, 12], [0, -3.5, 1.5]], atol=1e-9)


def test_oblique_grid_rotated_about_s():
    """A grid rotated by 30 degrees about S keeps the slices horizontal: apex and bladder neck are the rotated
    centres of the lowest and highest slices."""
    rot = rotation([0, 0, 1], 30)
    g = VolumeGeometry(AXIAL.size_ijk, AXIAL.spacing, AXIAL.origin_ras, rot @ AXIAL.direction_ras)
    lm = points(landmarks_from_mask(box(g), g))
    centre = AXIAL.ijk_to_ras_points([20, 10, 0])
    pivot = AXIAL.origin_ras
    expected = [rot @ (centre + [0, 0, s] - pivot) + pivot for s in (3.0, 24.0)]
    np.testing.assert_allclose(lm[:2], expected, atol=1e-9)


# --- refusals ------------------------------------------------------------------------------------------------------


def refusal(array, geometry=AXIAL, label=None) -> str:
    with pytest.raises(MaskError) as e:
        landmarks_from_mask(array, geometry, label)
    return str(e.value)


def test_empty_mask():
    assert refusal(np.zeros(AXIAL.array_shape, np.uint8)) == (
        "the mask is empty (no non-zero voxel); give the gland segmentation, or check the file"
    )


def test_two_separate_pieces_are_refused():
    a = box(k=(1, 4))
    a[7:10, 5:15, 10:30] = 1  # 3 x 10 x 20 voxels two slices above the 4 x 11 x 21: 924 + 600
    assert refusal(a) == (
        "the mask is in 2 separate pieces: the largest holds 60.6 % of the voxels, the second-largest 39.4 %; the "
        "gland must be one piece (the largest holding at least 99.0 %; smaller stray pieces are ignored): keep only "
        "the gland's piece, e.g. with Slicer's Segment Editor (Islands: keep largest island), and try again"
    )


def test_a_stray_voxel_is_ignored_and_pieces_touching_at_a_corner_are_one():
    a = box()
    a[0, 20, 0] = 1  # 1 voxel of 1849, far below: it would be the apex
    result = derive_mask_landmarks(a, AXIAL)
    assert (result.pieces, result.ignored_voxels, result.voxels) == (2, 1, 1848)
    np.testing.assert_allclose(points(result.landmarks), [[0, 0, -9], [0, 0, 12], [0, -3.5, 1.5]], atol=1e-9)
    a[9, 16, 9] = 1  # touches the box's corner (k 8, j 15, i 10) diagonally only: full connectivity joins it
    assert derive_mask_landmarks(a, AXIAL).pieces == 2


def test_multi_label_masks_need_a_label():
    a = box().astype(np.int16)
    a[1:4] *= 3  # label 3 at the bottom, 1 above
    assert refusal(a) == "the mask holds several labels (1, 3); say which one is the gland with --label N"
    assert refusal(a, label=2) == (
        "the mask has no voxel labelled 2: it holds label(s) 1, 3; give one of these with --label N"
    )
    assert refusal(a, label=0) == "label 0 is the background; give the gland's label (a non-zero value)"
    np.testing.assert_allclose(points(landmarks_from_mask(a, AXIAL, label=1))[:2], [[0, 0, 0], [0, 0, 12]], atol=1e-9)


def test_non_integer_values_and_images_are_refused():
    a = box().astype(np.float32)
    np.testing.assert_allclose(points(landmarks_from_mask(a, AXIAL))[0], [0, 0, -9], atol=1e-9)  # 0.0 / 1.0 is fine
    a[2, 6, 11] = 0.5
    assert refusal(a) == (
        "the mask holds non-integer values (e.g. 0.5): it is not a label map; give a gland segmentation (0 outside "
        "the gland, a whole number inside), not an image or a probability map"
    )
    image = np.arange(np.prod(AXIAL.array_shape), dtype=np.int16).reshape(AXIAL.array_shape) % 400
    assert refusal(image) == (
        "the mask holds 399 different non-zero values: it looks like an image, not a segmentation; give the gland "
        "segmentation (a label map)"
    )


def test_single_slice_and_flat_masks_are_refused():
    g = VolumeGeometry((41, 21, 1), AXIAL.spacing, AXIAL.origin_ras, AXIAL.direction_ras)
    assert refusal(np.ones(g.array_shape, np.uint8), g) == (
        "the mask is a single slice (size 41 x 21 x 1): the landmarks need the gland segmented in 3-D, on every "
        "slice it spans; give the whole segmentation volume"
    )
    assert refusal(box(k=(4, 4))) == (
        "the mask: the gland is segmented on a single slice (k = 4); the landmarks need it segmented in 3-D, on "
        "every slice it spans"
    )
    assert refusal(box(i=(20, 20))).startswith("the mask: the gland is segmented on a single slice (i = 20);")
    thin = VolumeGeometry((10, 10, 10), np.array([1.0, 1.0, 0.8]), np.zeros(3), np.eye(3))
    assert refusal(box(thin, (2, 6), (2, 6), (2, 6)), thin) == (
        "the mask: the gland is only 3.2 mm tall in S (the patient's superior axis), too little to tell apex from "
        "bladder neck (more than 3.2 mm needed); segment it on every slice it spans, and check the volume's "
        "orientation"
    )


def test_a_section_split_left_and_right_has_no_posterior_median():
    a = box(i=(4, 36))  # R -8..8
    a[4:9, :, 13:28] = 0  # from S 0 up, a gap at R -3.5..3.5: a U, one piece
    assert refusal(a) == (
        "the mask: no voxel of the mid-gland section lies within 2 mm (in R) of its mean R (the section is split "
        "left and right), so there is no posterior median; check the segmentation"
    )


def test_images_read_with_their_geometry_and_2d_images_are_refused(tmp_path):
    image = sitk.GetImageFromArray(box())
    AXIAL.apply_to_sitk_image(image)
    np.testing.assert_allclose(points(landmarks_from_mask_image(image))[0], [0, 0, -9], atol=1e-9)
    with pytest.raises(MaskError, match="^the mask is a 2-D image: give a 3-D label map"):
        landmarks_from_mask_image(sitk.GetImageFromArray(box()[3]))


def test_a_file_without_direction_information_has_the_identity_direction(tmp_path):
    """A NRRD with spacings but no space, origin or directions: ITK's identity (LPS), origin 0."""
    a = box(VolumeGeometry((41, 21, 11), np.ones(3), np.zeros(3), np.eye(3)))
    path = tmp_path / "bare.nrrd"
    header = "NRRD0004\ntype: uint8\ndimension: 3\nsizes: 41 21 11\nspacings: 0.5 0.7 3\nencoding: raw\n\n"
    path.write_bytes(header.encode() + a.tobytes())
    # LPS identity: R = -0.5 i, A = -0.7 j, S = 3 k; the box i 10..30, j 5..15, k 1..8
    np.testing.assert_allclose(
        points(landmarks_from_mask_file(path)), [[-10, -7, 3], [-10, -7, 24], [-10, -10.5, 13.5]], atol=1e-9
    )


# --- the command -----------------------------------------------------------------------------------------------------


def write_mask(path, array, geometry=AXIAL):
    image = sitk.GetImageFromArray(array)
    geometry.apply_to_sitk_image(image)
    sitk.WriteImage(image, str(path))
    return path


def test_command_writes_markups_that_slicer_reads_back(tmp_path, capsys, context):
    b, h = reoriented(box(), AXIAL, (1, 2, 0), (True, False, True))  # a sagittal series
    mask = write_mask(tmp_path / "gland.nii.gz", b, h)
    out = tmp_path / "lm.mrk.json"
    assert main(["landmarks-from-mask", "--mask", str(mask), "--output", str(out)]) == 0
    assert capsys.readouterr().out == (
        "apex               RAS     0.00     0.00    -9.00\n"
        "bladder_neck       RAS     0.00     0.00    12.00\n"
        "posterior_median   RAS     0.00    -3.50     1.50\n"
        f"wrote {out}\n"
    )
    node, landmarks = read_landmarks_file(context, out)  # Slicer's markups storage node
    assert node.GetNumberOfControlPoints() == 3
    np.testing.assert_allclose(points(landmarks), [[0, 0, -9], [0, 0, 12], [0, -3.5, 1.5]], atol=1e-6)
    assert tuple(json.loads(out.read_text())["markups"][0]["display"]["selectedColor"]) == pytest.approx(
        MODALITY_COLORS["mr"]
    )
    out_us = tmp_path / "us.mrk.json"
    argv = ["landmarks-from-mask", "--mask", str(mask), "--output", str(out_us), "--modality", "us"]
    assert main(argv) == 0
    assert tuple(json.loads(out_us.read_text())["markups"][0]["display"]["selectedColor"]) == pytest.approx(
        MODALITY_COLORS["us"]
    )


def test_command_notes_stray_pieces_and_takes_a_label(tmp_path, capsys):
    a = box().astype(np.int16)
    a[9, 20, 0] = 1
    a[1:4] *= 3
    mask = write_mask(tmp_path / "labels.nrrd", a)
    out = tmp_path / "lm.mrk.json"
    assert main(["landmarks-from-mask", "--mask", str(mask), "--output", str(out), "--label", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        "note: 1 stray piece(s) of the mask (1 voxels) were ignored; the landmarks are those of the gland's piece "
        "(1155 voxels)\n"
    )
    assert captured.out.startswith("apex               RAS     0.00     0.00     0.00\n")


def cli_error(argv, capsys) -> str:
    assert main(["landmarks-from-mask", *map(str, argv)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    return captured.err.rstrip("\n")


def test_command_refuses_bad_input_in_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "lm.mrk.json"
    empty = write_mask(tmp_path / "empty.nii.gz", np.zeros(AXIAL.array_shape, np.uint8))
    assert cli_error(["--mask", empty, "--output", out], capsys) == (
        f"landmarkinit landmarks-from-mask: error: mask {empty} is empty (no non-zero voxel); give the gland "
        "segmentation, or check the file"
    )
    a = box().astype(np.int16)
    a[1:4] *= 3
    labels = write_mask(tmp_path / "labels.nrrd", a)
    assert cli_error(["--mask", labels, "--output", out], capsys) == (
        f"landmarkinit landmarks-from-mask: error: mask {labels} holds several labels (1, 3); say which one is the "
        "gland with --label N"
    )
    missing = tmp_path / "nothing.nii.gz"
    assert cli_error(["--mask", missing, "--output", out], capsys) == (
        f"landmarkinit landmarks-from-mask: error: mask volume {missing} does not exist"
    )
    assert cli_error(["--mask", labels, "--output", tmp_path / "lm.json", "--label", "1"], capsys) == (
        f"landmarkinit landmarks-from-mask: error: {tmp_path / 'lm.json'}: write the landmarks as Slicer markups, a "
        ".mrk.json name"
    )
    assert not out.exists()
    out.write_text("mine")
    assert cli_error(["--mask", labels, "--output", out, "--label", "1"], capsys) == (
        f"landmarkinit landmarks-from-mask: error: {out} already exists; choose another name or pass --force to "
        "overwrite it"
    )
    assert out.read_text() == "mine"
    inside = tmp_path / "in.mrk.json"
    inside.write_text("{}")
    assert cli_error(["--mask", inside, "--output", inside, "--force"], capsys) == (
        f"landmarkinit landmarks-from-mask: error: --output {inside} is also the input --mask; inputs are never "
        "overwritten: choose another --output"
    )


def test_phantom_comparison_reports_the_distances_of_each_case(tmp_path, capsys):
    """`evaluate-mask-landmarks` on the shipped sample case: one case, so mean = median = max = the distance of the
    mask-derived landmark from the phantom's."""
    from pathlib import Path

    from LandmarkInitLib.io.datasets import read_mrk_json

    sample = Path(__file__).resolve().parents[1] / "Resources" / "SampleData" / "phantom" / "case_0000"
    out = tmp_path / "mask-landmarks.md"
    assert main(["evaluate-mask-landmarks", "--data", str(sample), "--output", str(out), "--quiet"]) == 0
    text = out.read_text(encoding="utf-8")
    assert "Synthetic data" in text and "## US, patient frame" in text
    derived = landmarks_from_mask_file(sample / "mr_gland.nrrd").ordered(LANDMARK_LABELS)
    d = np.linalg.norm(derived - read_mrk_json(sample / "mr_landmarks.mrk.json").ordered(LANDMARK_LABELS), axis=1)
    mr = text.split("## MR")[1].split("##")[0]
    for name, distance in zip(("Apex", "Bladder neck", "Posterior median"), d, strict=True):
        assert f"| {name} | {distance:.2f} | {distance:.2f} | {distance:.2f} |" in mr
    assert main(["evaluate-mask-landmarks", "--data", str(sample), "--output", str(out), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
