"""The site dataset (the corrections log): corrected cases written through Slicer's writers in the layout `train`
reads, one folder per pair of volumes (the same volumes again update their case), no patient metadata in the
volumes, and `landmarkinit add-correction` for a `run` output whose landmark files were edited."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from LandmarkInitLib.cli import main
from LandmarkInitLib.errors import LandmarkFileError, LandmarkLabelError
from LandmarkInitLib.io.datasets import open_dataset, read_mrk_json
from LandmarkInitLib.io.markups import read_landmarks_file, write_landmarks_file
from LandmarkInitLib.io.site_dataset import add_case, predicted_landmarks
from LandmarkInitLib.io.volumes import load_volume
from LandmarkInitLib.landmarks import LandmarkSet
from LandmarkInitLib.resources import sample_case_dir

CASE = sample_case_dir()
CASE_FILES = {
    "case.json",
    "mr.nrrd",
    "us.nrrd",
    "mr_landmarks.mrk.json",
    "us_landmarks.mrk.json",
    "mr_landmarks_predicted.mrk.json",
    "us_landmarks_predicted.mrk.json",
}


def sample_points():
    return {m: read_mrk_json(CASE / f"{m}_landmarks.mrk.json") for m in ("mr", "us")}


def moved(points: LandmarkSet, row: int, offset) -> LandmarkSet:
    p = points.points_ras.copy()
    p[row] += offset
    return LandmarkSet(points.labels, p)


def files_of(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_the_same_volumes_again_update_their_case(context, tmp_path):
    site = tmp_path / "site"
    inputs = files_of(CASE)
    predicted = sample_points()
    corrected = {"mr": predicted["mr"], "us": moved(predicted["us"], 0, [3.0, 0.0, 0.0])}
    volumes = {m: load_volume(context, CASE / f"{m}.nrrd") for m in ("mr", "us")}  # nodes, as the app gives them
    first = add_case(site, volumes, predicted, corrected, None, "app", context=context)
    assert not first.updated and first.message == f"added to site dataset {site} as {first.name}"
    assert [p.name for p in site.iterdir()] == [first.name] and first.name == f"case_{first.key[:12]}"
    assert {p.name for p in first.folder.iterdir()} == CASE_FILES
    meta = json.loads((first.folder / "case.json").read_text())
    assert meta["kind"] == "site-correction" and meta["source"] == "app" and meta["key"] == first.key
    assert meta["correction_mm"]["us"]["apex"] == pytest.approx(3.0) and meta["correction_mm"]["mr"]["apex"] == 0.0
    meta["saved"] = meta["first_saved"] = "2000-01-01T00:00:00+00:00"
    (first.folder / "case.json").write_text(json.dumps(meta))

    # The same voxels and geometry, now from the files (as `add-correction` gives them), corrected further.
    corrected["us"] = moved(predicted["us"], 1, [0.0, -2.0, 0.0])
    again = add_case(site, {m: CASE / f"{m}.nrrd" for m in ("mr", "us")}, predicted, corrected, None, "cli")
    assert again.updated and again.folder == first.folder and again.key == first.key
    assert again.message == f"updated {first.name} in site dataset {site}"
    assert [p.name for p in site.iterdir()] == [first.name]  # no second folder, no temporary left
    meta = json.loads((first.folder / "case.json").read_text())
    assert meta["saved"] > "2000" and meta["saved"] != "2000-01-01T00:00:00+00:00"
    assert meta["first_saved"] == "2000-01-01T00:00:00+00:00" and meta["source"] == "cli"
    assert np.allclose(read_mrk_json(first.folder / "us_landmarks.mrk.json").points_ras, corrected["us"].points_ras)
    assert files_of(CASE) == inputs  # the inputs are only read
    assert context.scene.GetNodeByID(volumes["mr"].GetID()) is volumes["mr"]


def test_written_files_load_back_through_slicers_readers_without_patient_metadata(context, tmp_path):
    # An input NRRD whose header carries patient fields, as a converter from DICOM may leave them.
    image = sitk.ReadImage(str(CASE / "us.nrrd"))
    for key, value in {"PatientName": "DOE^JANE", "PatientID": "123456", "StudyDate": "20240102"}.items():
        image.SetMetaData(key, value)
    us = tmp_path / "us_with_patient.nrrd"
    sitk.WriteImage(image, str(us))
    assert b"DOE^JANE" in us.read_bytes()[:2000]
    predicted = sample_points()
    corrected = {"mr": moved(predicted["mr"], 2, [0.0, 0.0, 1.5]), "us": predicted["us"]}
    added = add_case(tmp_path / "site", {"mr": CASE / "mr.nrrd", "us": us}, predicted, corrected, context=context)

    for m, source in (("mr", CASE / "mr.nrrd"), ("us", us)):
        written = added.folder / f"{m}.nrrd"
        header = written.read_bytes()[:2000]
        assert b"DOE^JANE" not in header and b"123456" not in header and b"20240102" not in header
        back, original = load_volume(context, written), load_volume(context, source)
        assert np.array_equal(_array(back), _array(original))
        assert np.allclose(_ijk_to_ras(back), _ijk_to_ras(original), atol=1e-9)
        for name, expected in ((f"{m}_landmarks", corrected[m]), (f"{m}_landmarks_predicted", predicted[m])):
            _, points = read_landmarks_file(context, added.folder / f"{name}.mrk.json", modality=m)
            assert points.labels == expected.labels and np.allclose(points.points_ras, expected.points_ras, atol=1e-6)


def _array(node):
    import slicer

    return slicer.util.arrayFromVolume(node)


def _ijk_to_ras(node):
    from LandmarkInitLib.geometry import VolumeGeometry

    return VolumeGeometry.from_volume_node(node).ijk_to_ras


def test_site_cases_open_as_a_dataset_with_the_corrected_landmarks(context, tmp_path):
    site = tmp_path / "site"
    predicted = sample_points()
    corrected = {m: moved(predicted[m], 0, [1.0, 2.0, 0.0]) for m in ("mr", "us")}
    both = add_case(site, {m: CASE / f"{m}.nrrd" for m in ("mr", "us")}, predicted, corrected, context=context)
    mr_only = add_case(site, {"mr": CASE / "mr_gland.nrrd"}, predicted, corrected, context=context)  # other voxels
    assert mr_only.name != both.name and {p.name for p in mr_only.folder.iterdir()} == {
        "case.json",
        "mr.nrrd",
        "mr_landmarks.mrk.json",
        "mr_landmarks_predicted.mrk.json",
    }
    cases = {case.name: case for case in open_dataset(site)}
    assert set(cases) == {both.name, mr_only.name}
    case = cases[both.name]
    assert case.glands is None and case.mr_to_us is None and set(case.images) == {"mr", "us"}
    for m in ("mr", "us"):
        assert np.allclose(case.landmarks(m).points_ras, corrected[m].points_ras, atol=1e-6)
        assert np.allclose(predicted_landmarks(case, m).points_ras, predicted[m].points_ras, atol=1e-6)
    assert set(cases[mr_only.name].images) == {"mr"}
    with pytest.raises(LandmarkFileError, match="holds no US volume"):
        cases[mr_only.name].landmarks("us")

    # Training one modality on a site dataset skips the cases without it.
    pytest.importorskip("torch")
    from LandmarkInitResearch.training.data import load_volumes

    assert [v.name for v in load_volumes(list(cases.values()), "us")] == [both.name]
    assert len(load_volumes(list(cases.values()), "mr")) == 2


def test_bad_site_folders_and_landmarks_are_refused(context, tmp_path):
    predicted = sample_points()
    volumes = {m: CASE / f"{m}.nrrd" for m in ("mr", "us")}
    a_file = tmp_path / "site.txt"
    a_file.write_text("not a folder\n")
    with pytest.raises(
        LandmarkFileError, match=r"site dataset folder .*site.txt is a file, not a folder; give a folder"
    ):
        add_case(a_file, volumes, predicted, predicted, context=context)
    wrong = {"mr": predicted["mr"], "us": LandmarkSet(("apex", "bladder_neck", "tip"), predicted["us"].points_ras)}
    with pytest.raises(
        LandmarkLabelError, match="corrected US landmarks: unknown label.s. tip; missing posterior_median"
    ):
        add_case(tmp_path / "site", volumes, predicted, wrong, context=context)
    with pytest.raises(LandmarkLabelError, match="no predicted US landmarks given"):
        add_case(tmp_path / "site", volumes, {"mr": predicted["mr"]}, predicted, context=context)
    assert not (tmp_path / "site").exists() and a_file.read_text() == "not a folder\n"


def test_a_case_that_cannot_be_written_leaves_nothing_behind(context, tmp_path):
    """A full disk while the case is written (tmpfs smaller than the MR volume): one clear error, no half case, no
    temporary folder, the earlier case of the same volumes untouched."""
    import subprocess

    site = tmp_path / "site"
    site.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(site)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        predicted = sample_points()
        earlier = add_case(site, {"us": CASE / "us.nrrd"}, predicted, predicted, context=context)  # fits (455 KiB)
        before = files_of(earlier.folder)
        with pytest.raises(LandmarkFileError, match="not enough space"):
            add_case(site, {"us": CASE / "us.nrrd"}, predicted, sample_points() | {"us": moved(predicted["us"], 0, 1)})
        assert [p.name for p in site.iterdir()] == [earlier.name] and files_of(earlier.folder) == before
        with pytest.raises(LandmarkFileError, match="not enough space"):
            add_case(site, {"mr": CASE / "mr.nrrd"}, predicted, predicted, context=context)
        assert [p.name for p in site.iterdir()] == [earlier.name]
    finally:
        subprocess.run(["umount", str(site)], check=True)


@pytest.fixture(scope="module")
def run_output(tmp_path_factory):
    """`landmarkinit run` on copies of the sample pair (so that a test may change an input)."""
    root = tmp_path_factory.mktemp("add-correction")
    inputs = root / "inputs"
    inputs.mkdir()
    for m in ("mr", "us"):
        shutil.copy(CASE / f"{m}.nrrd", inputs / f"{m}.nrrd")
    out = root / "run"
    status = main(["run", "--mr", str(inputs / "mr.nrrd"), "--us", str(inputs / "us.nrrd"), "-o", str(out)])
    assert status in (0, 3)
    return out, inputs


def test_add_correction_adds_an_edited_run_output(run_output, context, tmp_path, capsys):
    out, inputs = run_output
    case = shutil.copytree(out, tmp_path / "run")  # the shared run output stays unedited
    site = tmp_path / "site"
    capsys.readouterr()
    assert main(["add-correction", "--case", str(case), "--site-dataset", str(site)]) == 0
    assert capsys.readouterr().out == (
        f"nothing added: no landmark in {case} was moved from its detected position (edit mr_landmarks.mrk.json or "
        "us_landmarks.mrk.json, e.g. in Slicer, and save them first)\n"
    )
    assert not site.exists()

    # The user moves the US apex 4 mm in Slicer and saves the file again.
    node, detected = read_landmarks_file(context, case / "us_landmarks.mrk.json", modality="us")
    node.SetNthControlPointPosition(0, *(detected.points_ras[0] + [0.0, 4.0, 0.0]))
    write_landmarks_file(context, node, case / "us_landmarks.mrk.json", force=True)
    edited = files_of(case)
    assert main(["add-correction", "--case", str(case), "--site-dataset", str(site)]) == 0
    (folder,) = site.iterdir()
    assert capsys.readouterr().out == f"added to site dataset {site} as {folder.name} (corrected: US apex 4.0 mm)\n"
    assert files_of(case) == edited
    site_case = open_dataset(site)[0]
    assert np.allclose(site_case.landmarks("us").point("apex"), detected.points_ras[0] + [0.0, 4.0, 0.0], atol=1e-6)
    assert np.allclose(predicted_landmarks(site_case, "us").points_ras, detected.points_ras, atol=1e-6)
    report = json.loads((case / "report.json").read_text())
    meta = site_case.meta
    assert meta["source"] == "cli" and meta["correction_mm"]["us"]["apex"] == pytest.approx(4.0, abs=1e-4)
    for m in ("mr", "us"):
        assert meta["models"][m]["name"] == report["models"][m]["name"]
        assert meta["models"][m]["sha256"] == report["models"][m]["card_sha256"]
        assert len(meta["models"][m]["sha256"]) == 64
    assert main(["add-correction", "--case", str(case), "--site-dataset", str(site)]) == 0
    assert capsys.readouterr().out.startswith(f"updated {folder.name} in site dataset {site} ")
    assert [p.name for p in site.iterdir()] == [folder.name]


def test_add_correction_refuses_changed_or_missing_inputs_and_other_folders(run_output, tmp_path, capsys):
    out, inputs = run_output
    report = json.loads((out / "report.json").read_text())
    moved_report = tmp_path / "run"
    shutil.copytree(out, moved_report)
    site = tmp_path / "site"

    def refused(case) -> str:
        capsys.readouterr()
        assert main(["add-correction", "--case", str(case), "--site-dataset", str(site)]) == 2
        assert not site.exists()
        return capsys.readouterr().err

    changed = json.loads(json.dumps(report))
    changed["inputs"]["fingerprints"]["us"]["sha256"] = "0" * 64  # as if us.nrrd had been replaced since the run
    (moved_report / "report.json").write_text(json.dumps(changed))
    assert refused(moved_report) == (
        f"landmarkinit add-correction: error: the US volume {inputs / 'us.nrrd'} changed since the run (its sha256 "
        f"differs from {moved_report / 'report.json'}): its landmarks may not match it any more; nothing was added\n"
    )
    changed["inputs"]["mr"] = str(tmp_path / "gone.nrrd")
    (moved_report / "report.json").write_text(json.dumps(changed))
    assert refused(moved_report) == (
        f"landmarkinit add-correction: error: the MR volume {tmp_path / 'gone.nrrd'} that "
        f"{moved_report / 'report.json'} names no longer exists: put it back (from the folder the run was started "
        "in) to add this case\n"
    )
    (moved_report / "report.json").unlink()
    assert refused(moved_report) == (
        f"landmarkinit add-correction: error: {moved_report} holds no report.json: give an output folder of "
        "`landmarkinit run` (an unfinished run has none)\n"
    )
    (moved_report / "report.json").write_text(json.dumps({"matrix": report["matrix"]}))  # as `register --report`
    assert "only `landmarkinit run` writes them; `register` does not" in refused(moved_report)
