"""Synthetic MR/TRUS phantom: anatomy-derived landmarks, determinism, ground-truth consistency, realism
statistics, and that every file loads through Slicer's own readers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from LandmarkInitLib.fit.landmark_fit import apply_transform
from LandmarkInitLib.geometry import VolumeGeometry
from LandmarkInitLib.io.datasets import CASE_FILES, gland_mask, open_case, open_dataset, read_rigid_transform_ras
from LandmarkInitLib.io.markups import read_landmarks_file
from LandmarkInitLib.io.transforms import load_transform, transform_matrix
from LandmarkInitLib.io.volumes import load_volume
from LandmarkInitLib.landmarks import LANDMARK_LABELS
from LandmarkInitResearch.phantom.anatomy import Anatomy, sample_parameters
from LandmarkInitResearch.phantom.case import PhantomOptions, generate_case
from LandmarkInitResearch.phantom.generator import generate_dataset
from LandmarkInitResearch.phantom.mr import MRParameters, mr_geometry
from LandmarkInitResearch.phantom.tissues import GLAND_TISSUES, TISSUES_FILE, Tissue

SEED = 7
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Three cases: end-fire, side-fire, and one with the probe aimed off the gland."""
    out = tmp_path_factory.mktemp("phantom")
    options = [
        PhantomOptions(probe="end-fire", partial_fraction=0.0),
        PhantomOptions(probe="side-fire", partial_fraction=0.0),
        PhantomOptions(partial_fraction=1.0),
    ]
    # one case per option set, in parallel on the 2 cores, each in a folder of its own (a folder holds one run),
    # then the three together without a dataset.json (no one run describes them)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for done in [
            pool.submit(generate_dataset, out / f"part{i}", 1, SEED, start=i, options=o, progress=False)
            for i, o in enumerate(options)
        ]:
            done.result()
    (out / "a").mkdir()
    for i in range(len(options)):
        (out / f"part{i}" / f"case_{i:04d}").rename(out / "a" / f"case_{i:04d}")
    return out / "a"


def anatomies(n=60, seed=3):
    return [Anatomy(sample_parameters(np.random.default_rng([seed, i]))) for i in range(n)]


def test_landmarks_follow_their_anatomical_definitions():
    for an in anatomies():
        lm = an.landmarks
        for label in LANDMARK_LABELS:
            assert abs(an.gland_sdf(lm[label][None])[0]) < 1e-6  # all three on the gland surface
        g = {k: an.to_gland(v[None])[0] for k, v in lm.items()}
        assert g["bladder_neck"][2] > 0 > g["apex"][2]  # base above, apex below the centre (gland frame)
        assert g["posterior_median"][0] == pytest.approx(0.0, abs=1e-9)  # mid-sagittal plane
        assert g["posterior_median"][2] == pytest.approx((g["apex"][2] + g["bladder_neck"][2]) / 2, abs=1e-9)
        assert g["posterior_median"][1] < min(g["apex"][1], g["bladder_neck"][1])  # posterior surface
        # the urethra passes through both ends, the bladder lies just above the bladder neck
        labels = an.labels_at(
            np.array(
                [
                    lm["bladder_neck"] + an.rotation @ [0, 0, -2.0],
                    lm["apex"] + an.rotation @ [0, 0, 2.0],
                    lm["bladder_neck"] + [0, 0, 6.0],
                ]
            )
        )
        assert labels[0] == labels[1] == Tissue.URETHRA
        assert labels[2] in (Tissue.URINE, Tissue.BLADDER_WALL, Tissue.URETHRA)


def test_anatomy_varies_so_no_fixed_position_or_size_identifies_a_landmark():
    ans = anatomies()
    sizes = np.array([an.params.gland_semi_axes for an in ans])
    assert np.all(sizes.std(axis=0) > 1.5)  # semi-axes uniform over 10, 7, 9 mm ranges
    # landmark position in the MR voxel grid varies across cases by several mm on every axis
    rng = np.random.default_rng(0)
    ijk = []
    for an in ans:
        params = MRParameters.sample(rng)
        world = apply_transform(params.anatomy_to_world(), an.landmarks["posterior_median"])
        ijk.append(mr_geometry(params).ras_to_ijk_points(world))
    assert np.all(np.std(ijk, axis=0) * 0.8 > 4.0)


def test_wider_rectum_range_changes_only_the_rectum_offset():
    # the same random draws: the default range reproduces every earlier dataset, a wider one scales the offset
    for i in range(5):
        default = sample_parameters(np.random.default_rng([SEED, i])).describe()
        explicit = sample_parameters(np.random.default_rng([SEED, i]), rectum_lateral_mm=4.0).describe()
        wide = sample_parameters(np.random.default_rng([SEED, i]), rectum_lateral_mm=12.0).describe()
        assert explicit == default
        assert wide["rectum_lateral"] == pytest.approx(3.0 * default["rectum_lateral"], abs=2e-4)
        assert {k for k in default if default[k] != wide[k]} <= {"rectum_lateral"}
    with pytest.raises(ValueError, match="0-15 mm"):
        sample_parameters(np.random.default_rng(0), rectum_lateral_mm=20.0)
    an = Anatomy(sample_parameters(np.random.default_rng([SEED, 1]), rectum_lateral_mm=12.0))
    # the rectum sits behind the posterior median, offset by the drawn amount along the anatomy's x (RAS R)
    offset = an.rectum_centre - an.landmarks["posterior_median"]
    assert offset[0] == pytest.approx(an.params.rectum_lateral, abs=1e-9) and offset[1] < 0


def test_same_seed_gives_identical_files_whatever_the_workers(dataset, tmp_path):
    generate_dataset(
        tmp_path / "b",
        2,
        SEED,
        workers=2,
        options=PhantomOptions(probe="end-fire", partial_fraction=0.0),
        progress=False,
    )
    case_a, case_b = dataset / "case_0000", tmp_path / "b" / "case_0000"
    for name in CASE_FILES.values():
        if name.endswith(".h5"):
            # HDF5 records write times: same content, not the same bytes
            np.testing.assert_array_equal(
                read_rigid_transform_ras(case_a / name), read_rigid_transform_ras(case_b / name)
            )
        else:
            assert (case_a / name).read_bytes() == (case_b / name).read_bytes(), name
    # another seed draws another case (case i depends only on (seed, i))
    assert (
        sample_parameters(np.random.default_rng([SEED + 1, 0])).describe()
        != sample_parameters(np.random.default_rng([SEED, 0])).describe()
    )


def test_generation_resumes_and_refuses_foreign_cases(dataset, tmp_path):
    out = tmp_path / "d"
    generate_dataset(out, 1, SEED, progress=False)
    again = generate_dataset(out, 1, SEED, progress=False)
    assert again["written"] == [] and again["skipped_existing"] == 1
    from LandmarkInitLib.errors import LandmarkFileError

    with pytest.raises(LandmarkFileError, match="another run"):
        generate_dataset(out, 1, SEED + 5, progress=False)


def test_an_existing_dataset_is_described_truly_and_never_replaced_without_force(dataset, tmp_path, capsys):
    """`phantom --count 1 -o EXISTING` rewrote dataset.json in place to say "count": 1. Now dataset.json describes
    the cases in the folder, and a run into a folder of another run is refused (one line, exit 2), even with --force
    when that would leave cases of both runs."""
    from LandmarkInitLib.cli import main

    out = tmp_path / "existing"
    out.mkdir()
    for name in ("case_0000", "case_0001"):
        shutil.copytree(dataset / name, out / name)
    # a resumed run of one case: both cases are there, and dataset.json says so
    options = PhantomOptions(probe="end-fire", partial_fraction=0.0)
    summary = generate_dataset(out, 1, SEED, options=options, progress=False)
    assert summary["written"] == [] and summary["skipped_existing"] == 1
    described = json.loads((out / "dataset.json").read_text())
    assert (described["count"], described["first_index"], described["last_index"], described["seed"]) == (2, 0, 1, 7)
    assert described["options"] == {
        "probe": "end-fire",
        "partial_fraction": 0.0,
        "rectum_lateral_mm": 4.0,
        "us_scanner": "standard",
        "endorectal_coil_fraction": 0.0,
        "us_artifacts_fraction": 0.0,
        "gland_mask_fraction": 0.0,
        "gland_masks": [],
    }
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    same = ["phantom", "-o", str(out), "--count", "1", "--seed", str(SEED), "--probe", "end-fire"]
    assert main([*same, "--partial-fraction", "0", "--quiet"]) == 0
    assert "0 cases written, 1 already present" in capsys.readouterr().out
    refusals = [
        (
            ["--count", "1"],
            "holds a dataset of another run (seed 7, generator 1.0, endorectal_coil_fraction 0.0, "
            "gland_mask_fraction 0.0, gland_masks [], partial_fraction 0.0, probe end-fire",
        ),
        ([*same[3:], "--quiet"], "holds a dataset of another run"),  # the same seed, other options
        (
            ["--count", "1", "--seed", "3", "--force"],
            "also holds 1 case(s) of another run that --force would not replace (case_0001); remove them or use "
            "another --output folder",
        ),
    ]
    for args, message in refusals:
        assert main(["phantom", "-o", str(out), *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing rewritten


def test_files_load_through_slicer_readers_with_consistent_geometry(dataset, context):
    import slicer

    case = open_case(dataset / "case_0001")
    for key in ("mr", "us", "mr_gland", "us_gland", "mr_tissues"):
        path = dataset / "case_0001" / (TISSUES_FILE if key == "mr_tissues" else CASE_FILES[key])
        node = load_volume(context, path, labelmap=key != "mr" and key != "us")
        reference = sitk.ReadImage(str(path))
        np.testing.assert_allclose(
            VolumeGeometry.from_volume_node(node).ijk_to_ras,
            VolumeGeometry.from_sitk_image(reference).ijk_to_ras,
            atol=1e-5,
        )
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), sitk.GetArrayFromImage(reference))
    for modality in ("mr", "us"):
        _, points = read_landmarks_file(context, dataset / "case_0001" / CASE_FILES[f"{modality}_landmarks"])
        np.testing.assert_allclose(
            points.ordered(LANDMARK_LABELS), case.landmarks(modality).ordered(LANDMARK_LABELS), atol=1e-9
        )
    slicer_matrix = transform_matrix(load_transform(context, dataset / "case_0001" / CASE_FILES["mr_to_us"]))
    np.testing.assert_allclose(slicer_matrix, case.mr_to_us, atol=1e-9)
    rotation = slicer_matrix[:3, :3]
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-9)


def test_ground_truth_transform_maps_mr_landmarks_within_the_deformation_bound(dataset):
    for case in open_dataset(dataset):
        mr = case.landmarks("mr").ordered(LANDMARK_LABELS)
        us = case.landmarks("us").ordered(LANDMARK_LABELS)
        distance = np.linalg.norm(apply_transform(case.mr_to_us, mr) - us, axis=1)
        assert np.all(distance <= 10.0)
        np.testing.assert_allclose(
            distance, [case.meta["landmark_deformation_mm"][lb] for lb in LANDMARK_LABELS], atol=1e-3
        )
        assert case.meta["rigid_rotation_deg"] <= 30.0 + 6.0  # US rotation up to 30, patient tilt up to ~7
        assert case.meta["synthetic"] is True


def test_landmarks_lie_on_the_gland_masks_and_inside_the_fields_of_view(dataset):
    for case in open_dataset(dataset):
        for modality in ("mr", "us"):
            mask, geometry = gland_mask(case, modality)
            image = sitk.GetArrayFromImage(sitk.ReadImage(str(case.images[modality])))
            for label in LANDMARK_LABELS:
                p = case.landmarks(modality).point(label)
                assert geometry.contains_ras(p, margin_voxels=2)[0] or case.meta["partial_view"]
                i, j, k = np.round(geometry.ras_to_ijk_points(p)).astype(int)
                if not geometry.contains_ras(p, margin_voxels=2)[0]:
                    continue
                patch = mask[k - 2 : k + 3, j - 2 : j + 3, i - 2 : i + 3]
                assert patch.min() == 0 and patch.max() == 1, (
                    f"{case.name} {modality} {label} not on the gland boundary"
                )
                in_view = modality == "mr" or case.meta["landmarks_in_us_field_of_view"][label]
                if in_view:
                    assert image[k - 2 : k + 3, j - 2 : j + 3, i - 2 : i + 3].max() > 0
        if not case.meta["partial_view"]:
            assert all(case.meta["landmarks_in_us_field_of_view"].values())
            assert case.meta["gland_fraction_in_us_field_of_view"] > 0.95
    assert [c.meta["probe"] for c in open_dataset(dataset)][:2] == ["end-fire", "side-fire"]
    assert open_case(dataset / "case_0002").meta["partial_view"] is True


def test_us_speckle_and_contrast_statistics(dataset):
    for case in open_dataset(dataset):
        us = sitk.GetArrayFromImage(sitk.ReadImage(str(case.images["us"]))).astype(float)
        mask, _ = gland_mask(case, "us")
        inside = us[(mask == 1) & (us > 0)]
        assert inside.size > 1000
        assert inside.std() > 10.0  # speckle, not a flat region
        # fully developed speckle: neighbouring voxels correlated (PSF), but not identical
        gland_voxels = (mask[:, :, :-1] == 1) & (us[:, :, :-1] > 0) & (us[:, :, 1:] > 0)
        corr = np.corrcoef(us[:, :, :-1][gland_voxels], us[:, :, 1:][gland_voxels])[0, 1]
        assert 0.2 < corr < 0.98
        mr = sitk.GetArrayFromImage(sitk.ReadImage(str(case.images["mr"]))).astype(float)
        mr_mask, _ = gland_mask(case, "mr")
        # the gland is not the brightest structure in MR (urine and fat are): no 'brightest blob' shortcut
        assert np.percentile(mr[mr_mask == 1], 50) < np.percentile(mr, 99)


def test_dataset_reader_errors(dataset, tmp_path):
    from LandmarkInitLib.errors import LandmarkFileError

    broken = tmp_path / "case_x"
    broken.mkdir()
    (broken / "mr.nrrd").write_bytes((dataset / "case_0000" / "mr.nrrd").read_bytes())
    with pytest.raises(LandmarkFileError, match="missing us.nrrd, mr_gland.nrrd"):
        open_case(broken)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LandmarkFileError, match="matches no dataset layout"):
        open_dataset(tmp_path / "empty")
    with pytest.raises(LandmarkFileError, match="does not exist"):
        open_dataset(tmp_path / "nowhere")


def write_muregpro(root: Path, rng):
    """A two-case folder in the mu-RegPro layout: 4-D label maps [x, y, z, k], k=0 gland, k>=1 regions."""
    for folder in ("mr_images", "us_images", "mr_labels", "us_labels"):
        (root / folder).mkdir(parents=True)
    truth = {}
    geometry = VolumeGeometry(
        (20, 22, 18), np.array([0.8, 0.8, 0.8]), np.array([5.0, -3.0, 2.0]), np.diag([-1.0, -1.0, 1.0])
    )
    for name in ("case000000.nii.gz", "case000001.nii.gz"):
        for modality in ("mr", "us"):
            img = sitk.GetImageFromArray(rng.normal(size=geometry.array_shape).astype(np.float32))
            geometry.apply_to_sitk_image(img)
            sitk.WriteImage(img, str(root / f"{modality}_images" / name))
            channels = [np.zeros(geometry.array_shape, np.uint8) for _ in range(3)]
            channels[0][4:14, 5:17, 4:16] = 1
            centres = []
            for k in (1, 2):
                c = rng.integers(4, 12, 3)  # (i, j, k) corner of a 2x2x2 blob -> centroid at c + 0.5
                channels[k][c[2] : c[2] + 2, c[1] : c[1] + 2, c[0] : c[0] + 2] = 1
                centres.append(geometry.ijk_to_ras_points(c + 0.5))
            truth[(name.split(".")[0], modality)] = np.array(centres)
            images = []
            for ch in channels:
                im = sitk.GetImageFromArray(ch)
                geometry.apply_to_sitk_image(im)
                images.append(im)
            sitk.WriteImage(sitk.JoinSeries(images), str(root / f"{modality}_labels" / name))
    return truth


def test_muregpro_layout_reader(tmp_path, rng):
    from LandmarkInitLib.errors import LandmarkFileError
    from LandmarkInitLib.io.datasets import open_muregpro

    truth = write_muregpro(tmp_path / "mu", rng)
    cases = open_dataset(tmp_path / "mu")
    assert [c.name for c in cases] == ["case000000", "case000001"]
    for case in cases:
        for modality in ("mr", "us"):
            points = case.landmarks(modality)
            assert points.labels == ("channel_1", "channel_2")
            np.testing.assert_allclose(points.points_ras, truth[(case.name, modality)], atol=1e-4)
            mask, _ = gland_mask(case, modality)
            assert mask.sum() == 10 * 12 * 12
        assert case.mr_to_us is None
    named = open_muregpro(tmp_path / "mu", channel_labels={1: "apex", 2: "bladder_neck"})
    assert named[0].landmarks("us").labels == ("apex", "bladder_neck")
    (tmp_path / "mu" / "us_labels" / "case000001.nii.gz").unlink()
    with pytest.raises(LandmarkFileError, match="missing us_labels/case000001.nii.gz"):
        open_dataset(tmp_path / "mu")


def test_cli_phantom_and_preview(dataset, tmp_path):
    exe = [sys.executable, "-m", "LandmarkInitLib.cli"]
    r = subprocess.run([*exe, "phantom", "--help"], capture_output=True, text=True, timeout=60)
    for option in (
        "--count",
        "--seed",
        "--output",
        "--workers",
        "--probe",
        "--partial-fraction",
        "--rectum-lateral",
        "--preview",
        "--force",
    ):
        assert option in r.stdout
    png = tmp_path / "preview.png"
    r = subprocess.run(
        [*exe, "phantom", "--preview", str(dataset / "case_0000"), "-o", str(png)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 50_000
    r = subprocess.run([*exe, "phantom", "--count", "0", "-o", str(tmp_path / "x")], capture_output=True, text=True)
    assert r.returncode == 2 and "--count must be at least 1" in r.stderr
    r = subprocess.run(
        [*exe, "phantom", "--rectum-lateral", "20", "-o", str(tmp_path / "x")], capture_output=True, text=True
    )
    assert r.returncode == 2 and "--rectum-lateral must be between 0 and 15 mm" in r.stderr
    assert not (tmp_path / "x").exists()
    r = subprocess.run([*exe, "phantom", "--preview", str(tmp_path), "-o", str(png)], capture_output=True, text=True)
    assert r.returncode == 2 and "error" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_shipped_sample_case_is_a_complete_case():
    sample = ROOT / "Resources" / "SampleData" / "phantom" / "case_0000"
    case = open_case(sample)
    assert case.meta["synthetic"] is True and not case.meta["partial_view"]
    assert all(case.meta["landmarks_in_us_field_of_view"].values())
    meta = json.loads((sample.parent / "dataset.json").read_text())
    assert (meta["seed"], meta["count"]) == (2026, 1)
    assert sum(p.stat().st_size for p in sample.iterdir()) < 5_000_000


def test_another_sites_scanner_draws_settings_outside_the_standard_ranges():
    """``--us-scanner site-b`` (a new site's scanner for the site-adaptation experiments): an end-fire probe with a
    wider, deeper cone, more gain and dynamic range and a coarser PSF than any standard draw; the standard draws
    are unchanged by its existence (same generator state, same values)."""
    from LandmarkInitResearch.phantom.ultrasound import USParameters

    standard = [USParameters.sample(np.random.default_rng(s)) for s in range(20)]
    again = [USParameters.sample(np.random.default_rng(s), scanner="standard") for s in range(20)]
    assert standard == again
    for s in range(20):
        p = USParameters.sample(np.random.default_rng(s), scanner="site-b")
        assert p.probe == "end-fire" and 90 <= p.depth_mm <= 100 and 55 <= p.half_angle_deg <= 60
        assert 8 <= p.gain_db <= 12 and 65 <= p.dynamic_range_db <= 75 and 1.5 <= p.psf_lateral_deg <= 2.0
    assert max(p.depth_mm for p in standard) <= 80 and max(p.half_angle_deg for p in standard) <= 70
    assert max(p.gain_db for p in standard) <= 4 and max(p.dynamic_range_db for p in standard) <= 60


def test_mr_tissue_labels_are_written_on_the_mr_grid_and_agree_with_the_gland_mask(dataset):
    for case in open_dataset(dataset):
        mr = sitk.ReadImage(str(case.images["mr"]))
        tissues = sitk.ReadImage(str(case.folder / TISSUES_FILE))
        assert tissues.GetPixelID() == sitk.sitkUInt8
        np.testing.assert_allclose(
            VolumeGeometry.from_sitk_image(tissues).ijk_to_ras, VolumeGeometry.from_sitk_image(mr).ijk_to_ras
        )
        labels = sitk.GetArrayFromImage(tissues)
        gland = sitk.GetArrayFromImage(sitk.ReadImage(str(case.glands["mr"]))).astype(bool)
        assert set(np.unique(labels)) <= {int(t) for t in Tissue}
        assert np.isin(labels[gland], [int(t) for t in GLAND_TISSUES]).all()
        assert not np.isin(labels[~gland], [int(t) for t in GLAND_TISSUES if t != Tissue.URETHRA]).any()
        # the image follows its labels: urine (bladder) brighter than muscle, on the same grid
        image = sitk.GetArrayFromImage(mr).astype(float)
        assert np.median(image[labels == Tissue.URINE]) > 2 * np.median(image[labels == Tissue.MUSCLE])


def test_an_endorectal_coil_widens_the_rectum_and_brightens_the_posterior_gland_in_mr_only():
    plain = generate_case(SEED, 4)
    coil = generate_case(SEED, 4, PhantomOptions(endorectal_coil_fraction=1.0))
    assert plain.meta["endorectal_coil"] is None
    balloon = coil.meta["endorectal_coil"]
    assert 12 <= balloon["balloon_radius_mm"] <= 18
    # the US, the landmarks and the ground truth do not change; the gland is not compressed
    np.testing.assert_array_equal(plain.us_image, coil.us_image)
    np.testing.assert_array_equal(plain.mr_gland, coil.mr_gland)
    np.testing.assert_allclose(plain.mr_landmarks, coil.mr_landmarks, atol=0)
    np.testing.assert_allclose(plain.mr_to_us, coil.mr_to_us, atol=0)
    lumen = int(Tissue.RECTAL_LUMEN)
    assert (coil.mr_tissues == lumen).sum() > 1.5 * (plain.mr_tissues == lumen).sum()
    # the coil's flare: the gland's posterior half gains more signal than its anterior half
    gland = plain.mr_gland.astype(bool)
    ijk = np.argwhere(gland)[:, ::-1].astype(float)
    anterior = plain.mr_geometry.ijk_to_ras_points(ijk)[:, 1] > np.median(
        plain.mr_geometry.ijk_to_ras_points(ijk)[:, 1]
    )
    gain = coil.mr_image[gland].astype(float) / np.maximum(plain.mr_image[gland].astype(float), 1.0)
    assert np.median(gain[~anterior]) > np.median(gain[anterior]) > 1.0
    # a fraction of 0 draws nothing from the coil's stream: the default reproduces the shipped sample case
    sample = ROOT / "Resources" / "SampleData" / "phantom" / "case_0000"
    shipped = generate_case(2026, 0)
    np.testing.assert_array_equal(shipped.mr_image, sitk.GetArrayFromImage(sitk.ReadImage(str(sample / "mr.nrrd"))))


def test_side_lobes_and_reverberation_copy_the_field_where_and_as_strong_as_stated():
    from LandmarkInitResearch.phantom.ultrasound import USArtifacts, add_artifacts

    field = np.zeros((40, 30, 5), complex)
    field[2, 15, 2] = 1.0 + 1.0j  # a strong echo just below the probe face
    field[20, 10, 2] = 2.0  # one deeper echo
    art = USArtifacts(side_lobe_db=20.0, side_lobe_offset=6.0, reverb_db=6.0, reverb_depth_mm=1.5)
    out = add_artifacts(field, art, depth_step_mm=0.3, lateral_axis=1, lateral_step=0.75)
    lobe, bounce, k, m = 0.1, 10 ** (-6.0 / 20), 8, 5  # 6 degrees / 0.75 = 8 bins; 1.5 mm / 0.3 = 5 bins
    expected = field.copy()
    for (r, a), v in (((2, 15), 1.0 + 1.0j), ((20, 10), 2.0)):
        expected[r, a + k, 2] += lobe * v
        expected[r, a - k, 2] += lobe * v
    for n in (1, 2, 3):  # only the near field (depth < 1.5 mm) reverberates, without its side lobes
        expected[2 + n * m, 15, 2] += bounce**n * (1.0 + 1.0j)
    np.testing.assert_allclose(out, expected, atol=1e-12)
    np.testing.assert_array_equal(field[2, 15, 2], 1.0 + 1.0j)  # the input is left alone


def test_coil_and_artifact_fractions_outside_0_to_1_are_refused(tmp_path, capsys):
    from LandmarkInitLib.cli import EXIT_BAD_INPUT, main

    for option in ("--endorectal-coil", "--us-artifacts"):
        assert main(["phantom", "-o", str(tmp_path / "d"), "--count", "1", option, "1.5"]) == EXIT_BAD_INPUT
        assert f"{option} must be between 0 and 1" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_us_artifacts_change_only_the_us_image_and_are_recorded():
    plain = generate_case(SEED, 5)
    art = generate_case(SEED, 5, PhantomOptions(us_artifacts_fraction=1.0))
    assert plain.meta["us_artifacts"] is None and art.meta["us_artifacts"]["reverb_depth_mm"] >= 2.0
    np.testing.assert_array_equal(plain.mr_image, art.mr_image)
    np.testing.assert_array_equal(plain.us_gland, art.us_gland)
    np.testing.assert_allclose(plain.us_landmarks, art.us_landmarks, atol=0)
    fan = plain.us_image > 0
    assert not np.array_equal(plain.us_image, art.us_image)
    # side lobes and reverberation add energy: the fan is brighter on average, never darker by much
    assert art.us_image[fan].astype(float).mean() > plain.us_image[fan].astype(float).mean()
