"""The site dataset: the corrections log. Every case a clinician corrected and saved, in the layout ``train`` reads
(io/datasets.py opens it), so that a site's models can learn from its own corrections::

    <site>/case_<key12>/mr.nrrd  us.nrrd                              volumes (Slicer's writer: voxels + geometry)
    <site>/case_<key12>/mr_landmarks.mrk.json  us_landmarks.mrk.json  the corrected landmarks
    <site>/case_<key12>/mr_landmarks_predicted.mrk.json  us_...       what the detector said
    <site>/case_<key12>/case.json                                     schema, kind, time, source, key, models,
                                                                      correction per landmark (mm)

``key`` is the sha256 of the volumes' voxels and geometry: the same volumes saved again update their case (never a
second folder). A case may hold one modality only. Cases are written whole into a hidden temporary folder and
renamed into place, so a crash never leaves a half case. The volumes are written from their voxels and geometry
alone: no patient name, ID, date or DICOM tag reaches the NRRD files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from LandmarkInitLib.errors import LandmarkFileError, LandmarkInitError, LandmarkLabelError
from LandmarkInitLib.io.output_files import MR_LANDMARKS_FILE, US_LANDMARKS_FILE, check_folder_writable
from LandmarkInitLib.landmarks import LANDMARK_LABELS, MODALITIES, MODALITY_DISPLAY_NAMES, LandmarkSet, validate_labels

SITE_CASE_SCHEMA = "landmarkinit-site-case/1"
SITE_CASE_KIND = "site-correction"
SOURCES = ("slicer", "app", "cli", "simulated")  # simulated: research experiments (site_adaptation.py)
VOLUME_FILES = {"mr": "mr.nrrd", "us": "us.nrrd"}
CORRECTED_FILES = {"mr": MR_LANDMARKS_FILE, "us": US_LANDMARKS_FILE}
PREDICTED_FILES = {"mr": "mr_landmarks_predicted.mrk.json", "us": "us_landmarks_predicted.mrk.json"}
CASE_JSON = "case.json"
# A corrected point further than this from its prediction counts as moved (as session.EDIT_TOLERANCE_MM, with
# room for the rounding of a .mrk.json round trip).
MOVED_TOLERANCE_MM = 1e-3
_GEOMETRY_DECIMALS = 5  # geometry in the key: to 10 nm, so that a reader's float noise does not change the key


@dataclass(frozen=True)
class AddedCase:
    """A case written to the site dataset."""

    folder: Path
    key: str
    updated: bool  # the same volumes were in the dataset already: their case was replaced
    correction_mm: dict

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def message(self) -> str:
        site = self.folder.parent
        return (
            f"updated {self.name} in site dataset {site}"
            if self.updated
            else f"added to site dataset {site} as {self.name}"
        )


def is_site_case(folder) -> bool:
    """Whether ``folder`` is a site-dataset case (its case.json says so)."""
    try:
        meta = json.loads((Path(folder) / CASE_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("kind") == SITE_CASE_KIND


def open_site_case(folder):
    """A site case as a datasets.PairedCase: the modalities present, their corrected landmarks, no gland masks
    (``glands`` None) and no ground-truth transform (``mr_to_us`` None)."""
    from LandmarkInitLib.io.datasets import PairedCase, read_mrk_json

    folder = Path(folder)
    try:
        meta = json.loads((folder / CASE_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise LandmarkFileError(f"{folder / CASE_JSON} is not readable ({e})") from None
    present = [m for m in MODALITIES if (folder / VOLUME_FILES[m]).is_file()]
    if not present:
        raise LandmarkFileError(f"site case {folder} holds no volume ({' or '.join(VOLUME_FILES.values())})")
    missing = [CORRECTED_FILES[m] for m in present if not (folder / CORRECTED_FILES[m]).is_file()]
    if missing:
        raise LandmarkFileError(f"site case {folder}: missing {', '.join(missing)}")
    return PairedCase(
        name=folder.name,
        folder=folder,
        images={m: folder / VOLUME_FILES[m] for m in present},
        glands=None,
        _landmarks=lambda modality: _site_landmarks(folder, present, modality, read_mrk_json),
        mr_to_us=None,
        meta=meta,
    )


def _site_landmarks(folder: Path, present, modality: str, read) -> LandmarkSet:
    if modality not in present:
        raise LandmarkFileError(f"site case {folder.name} holds no {MODALITY_DISPLAY_NAMES[modality]} volume")
    return read(folder / CORRECTED_FILES[modality])


def predicted_landmarks(case, modality: str) -> LandmarkSet:
    """The detector's landmarks recorded in a site case (``case``: a PairedCase or a case folder)."""
    from LandmarkInitLib.io.datasets import read_mrk_json

    folder = Path(getattr(case, "folder", case))
    return read_mrk_json(folder / PREDICTED_FILES[modality])


def moved_points(predicted: dict, corrected: dict, tolerance_mm: float = MOVED_TOLERANCE_MM) -> list[tuple[str, str]]:
    """(modality, label) of every corrected point that is not where the detector put it."""
    distances = correction_mm(predicted, corrected)
    return [(m, label) for m, d in distances.items() for label, mm in d.items() if mm > tolerance_mm]


def correction_mm(predicted: dict, corrected: dict) -> dict:
    """{modality: {label: distance (mm) between the predicted and the corrected point}}."""
    return {
        m: {
            label: float(np.linalg.norm(corrected[m].point(label) - predicted[m].point(label)))
            for label in LANDMARK_LABELS
        }
        for m in corrected
    }


def model_record(card) -> dict:
    """What case.json records of a model: its name, the sha256 of its card file, and its weights files' sha256
    (``card``: a detection.model_card.ModelCard)."""
    from LandmarkInitLib.detection.model_card import sha256_of

    cards = card.stage_cards("global") + card.stage_cards("local") if card.stage == "two-stage" else [card]
    return {
        "name": card.name,
        "sha256": sha256_of(card.path),
        "weights": [
            {"card": c.name, "file": f["path"], "sha256": f["sha256"]} for c in cards for f in c.data["files"].values()
        ],
    }


def add_case(
    site_dir,
    volumes: dict,
    predicted: dict,
    corrected: dict,
    models: dict | None = None,
    source: str = "cli",
    *,
    context=None,
) -> AddedCase:
    """Add (or update) one corrected case in the site dataset ``site_dir`` (created if missing).

    ``volumes``: {modality: a scalar volume node, a volume file or DICOM folder, or a SimpleITK image}, one or both
    modalities; ``predicted`` and ``corrected``: {modality: LandmarkSet} for the same modalities, exactly the three
    landmarks; ``models``: {modality: model_record(...) or None}; ``source``: "slicer", "app" or "cli".
    ``context``: the scene to write through (a standalone one is made if None). The inputs are only read."""
    from LandmarkInitLib.io.scene import create_context

    site_dir = Path(site_dir).expanduser()
    modalities = _check_inputs(site_dir, volumes, predicted, corrected, source)
    own_context = context is None
    context = context or create_context()
    made = []  # nodes made here from files or images, removed at the end
    try:
        nodes = {}
        for m in modalities:
            nodes[m], fresh = _volume_node(context, volumes[m], m)
            if fresh:
                made.append(nodes[m])
        key = volumes_key(nodes)
        return _write_case(context, site_dir, key, nodes, predicted, corrected, models or {}, source)
    finally:
        for node in made:
            context.scene.RemoveNode(node)
        if own_context:
            context.clear()


def _check_inputs(site_dir: Path, volumes, predicted, corrected, source) -> list[str]:
    if source not in SOURCES:
        raise LandmarkInitError(f"unknown source {source!r}: use one of {', '.join(SOURCES)}")
    if os.path.lexists(site_dir) and not site_dir.is_dir():
        raise LandmarkFileError(f"site dataset folder {site_dir} is a file, not a folder; give a folder")
    modalities = [m for m in MODALITIES if volumes.get(m) is not None]
    unknown = sorted(set(volumes) - set(MODALITIES))
    if unknown or not modalities:
        raise LandmarkInitError(
            f"a site case needs an MR and/or a US volume (got {', '.join(map(str, volumes)) or 'none'})"
        )
    for what, sets in (("predicted", predicted), ("corrected", corrected)):
        for m in modalities:
            if sets.get(m) is None:
                raise LandmarkLabelError(
                    f"no {what} {MODALITY_DISPLAY_NAMES[m]} landmarks given for the {MODALITY_DISPLAY_NAMES[m]} volume"
                )
            validate_labels(sets[m].labels, LANDMARK_LABELS, f"{what} {MODALITY_DISPLAY_NAMES[m]} landmarks")
            if not np.all(np.isfinite(sets[m].points_ras)):
                raise LandmarkLabelError(
                    f"{what} {MODALITY_DISPLAY_NAMES[m]} landmarks: a point has no finite position"
                )
    check_folder_writable(site_dir)
    return modalities


def _volume_node(context, volume, modality: str):
    """(node, made here) for a volume node, a file or DICOM folder, or a SimpleITK image."""
    if hasattr(volume, "GetImageData"):
        if volume.GetImageData() is None:
            raise LandmarkFileError(f"the {MODALITY_DISPLAY_NAMES[modality]} volume node has no image data")
        return volume, False
    if isinstance(volume, (str, os.PathLike)):
        from LandmarkInitLib.io.volumes import VOLUME_SUFFIXES, load_volume

        path = Path(volume)
        if path.is_file() and path.name.lower().endswith(VOLUME_SUFFIXES):
            return load_volume(context, path, f"site {modality}"), True
        from LandmarkInitLib.io.images import read_image

        volume = read_image(path, MODALITY_DISPLAY_NAMES[modality])  # a DICOM folder (or the reason it is not)
    return _node_from_image(context, volume, f"site {modality}"), True


def _node_from_image(context, image, name: str):
    """A scalar volume node holding a SimpleITK image's voxels and geometry (nothing of its metadata)."""
    import SimpleITK as sitk
    import slicer

    from LandmarkInitLib.geometry import VolumeGeometry

    node = context.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    slicer.util.updateVolumeFromArray(node, sitk.GetArrayFromImage(image))
    _set_ijk_to_ras(node, VolumeGeometry.from_sitk_image(image).ijk_to_ras)
    return node


def _set_ijk_to_ras(node, matrix) -> None:
    import vtk

    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(matrix[r][c]))
    node.SetIJKToRASMatrix(m)


def volumes_key(nodes: dict) -> str:
    """sha256 of the volumes' voxels (type, shape, values) and geometry (IJK-to-RAS), modality by modality."""
    import slicer

    from LandmarkInitLib.geometry import VolumeGeometry

    digest = hashlib.sha256()
    for m in MODALITIES:
        if m not in nodes:
            continue
        voxels = np.ascontiguousarray(slicer.util.arrayFromVolume(nodes[m]))
        geometry = np.round(VolumeGeometry.from_volume_node(nodes[m]).ijk_to_ras, _GEOMETRY_DECIMALS) + 0.0  # no -0
        digest.update(f"{m}|{voxels.dtype.str}|{voxels.shape}|".encode())
        digest.update(voxels.tobytes())
        digest.update(("|" + ",".join(f"{v:.{_GEOMETRY_DECIMALS}f}" for v in geometry.ravel())).encode())
    return digest.hexdigest()


def _write_case(context, site_dir: Path, key: str, nodes, predicted, corrected, models, source) -> AddedCase:
    from LandmarkInitLib.io.markups import write_landmarks
    from LandmarkInitLib.io.output_files import atomic_output
    from LandmarkInitLib.io.volumes import save_volume

    site_dir.mkdir(parents=True, exist_ok=True)
    _recover(site_dir)
    final = site_dir / f"case_{key[:12]}"
    earlier = _earlier_meta(final)
    if earlier is not None and earlier.get("key") != key:
        raise LandmarkFileError(
            f"{final} holds another case (key {earlier.get('key')}); move that folder out of the site dataset"
        )
    if final.exists() and earlier is None:
        raise LandmarkFileError(f"{final} exists but is not a site case; move it out of the site dataset")
    modalities = [m for m in MODALITIES if m in nodes]
    now = datetime.now(UTC).isoformat(timespec="seconds")
    distances = correction_mm({m: predicted[m] for m in modalities}, {m: corrected[m] for m in modalities})
    meta = {
        "schema": SITE_CASE_SCHEMA,
        "kind": SITE_CASE_KIND,
        "saved": now,
        "first_saved": (earlier or {}).get("first_saved") or (earlier or {}).get("saved") or now,
        "source": source,
        "key": key,
        "modalities": modalities,
        "models": {m: models.get(m) for m in modalities},
        "correction_mm": {m: {label: round(d, 4) for label, d in distances[m].items()} for m in modalities},
    }
    tmp = site_dir / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        for m in modalities:
            save_volume(context, nodes[m], tmp / VOLUME_FILES[m])
            write_landmarks(context, corrected[m], tmp / CORRECTED_FILES[m], m)
            write_landmarks(context, predicted[m], tmp / PREDICTED_FILES[m], m)
        with atomic_output(tmp / CASE_JSON) as out:
            out.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _replace_folder(tmp, final)
    except OSError as e:
        if isinstance(e, LandmarkInitError):
            raise
        from LandmarkInitLib.io.output_files import os_error_message

        raise LandmarkFileError(os_error_message(e)) from e
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    return AddedCase(final, key, earlier is not None, distances)


def _earlier_meta(folder: Path) -> dict | None:
    try:
        meta = json.loads((folder / CASE_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("kind") == SITE_CASE_KIND else None


def _replace_folder(new: Path, final: Path) -> None:
    """Put the complete case ``new`` in place of ``final``: an earlier case is renamed aside first (a crash between
    the two renames leaves it recoverable, see _recover), then removed."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
    try:
        os.replace(new, final)
    except OSError:
        if old is not None:
            os.replace(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _recover(site_dir: Path) -> None:
    """Clean up after a process killed while adding a case: its temporary folder goes, an earlier case renamed
    aside comes back if nothing replaced it."""
    for path in site_dir.glob(".case_*.*-*"):
        name, _, rest = path.name[1:].rpartition(".")
        final = site_dir / name
        if rest.startswith("old-") and not final.exists():
            with contextlib.suppress(OSError):
                os.replace(path, final)
                continue
        if rest.startswith(("tmp-", "old-")):
            shutil.rmtree(path, ignore_errors=True)


def add_session_case(session, site_dir, source: str) -> AddedCase | None:
    """Add a LandmarkSession's case (its volumes, the detector's and the current points) to the site dataset;
    None when no point was moved from where the detector put it (nothing to learn from)."""
    from LandmarkInitLib.io.markups import landmarks_from_node

    if site_dir is None or str(site_dir).strip() in ("", "."):  # "." is what an empty folder setting reads as
        raise LandmarkFileError("no site dataset folder chosen: choose the folder in the panel")
    if session.mr_node is None or session.us_node is None:
        raise LandmarkInitError("no landmarks yet: press Detect landmarks first")
    predicted, corrected = {}, {}
    for m in MODALITIES:
        labels = [label for label in LANDMARK_LABELS if session.prediction(m, label) is not None]
        if len(labels) != len(LANDMARK_LABELS):
            raise LandmarkInitError(
                f"the {MODALITY_DISPLAY_NAMES[m]} landmarks were not detected in this session (no prediction "
                "recorded): press Detect landmarks before adding the case to the site dataset"
            )
        predicted[m] = LandmarkSet(tuple(labels), np.array([session.prediction(m, label) for label in labels]))
        corrected[m] = landmarks_from_node(session.mr_node if m == "mr" else session.us_node)
    if not moved_points(predicted, corrected):
        return None
    detectors = getattr(session, "_detectors", None)  # None: a session re-opened on saved nodes
    models = {m: model_record(getattr(detectors, m).card) for m in MODALITIES} if detectors is not None else {}
    volumes = {"mr": session.mr_volume, "us": session.us_volume}
    return add_case(site_dir, volumes, predicted, corrected, models, source, context=session.context)


NOT_MOVED_MESSAGE = "no point was moved from its detected position, so the case was not added to the site dataset"


def add_run_output(output_dir, site_dir) -> AddedCase | None:
    """Add a ``landmarkinit run`` output folder whose landmark files the user edited and saved again: the detector's
    points recorded in its report.json, the edited .mrk.json files, and the input volumes report.json names (refused
    if one vanished or changed since the run). None when no point was moved."""
    from LandmarkInitLib.io.images import volume_fingerprint
    from LandmarkInitLib.io.markups import read_landmarks_file
    from LandmarkInitLib.io.output_files import REPORT_JSON_FILE
    from LandmarkInitLib.io.scene import create_context

    output_dir = Path(output_dir)
    report_path = output_dir / REPORT_JSON_FILE
    if not output_dir.is_dir():
        raise LandmarkFileError(f"--case {output_dir} is not a folder; give the output folder of `landmarkinit run`")
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
        inputs, fingerprints = report["inputs"], report["inputs"]["fingerprints"]
        predicted = {
            m: LandmarkSet(
                tuple(p["label"] for p in report[m]["landmarks"]), np.array([p["ras"] for p in report[m]["landmarks"]])
            )
            for m in MODALITIES
        }
    except FileNotFoundError:
        raise LandmarkFileError(
            f"{output_dir} holds no {REPORT_JSON_FILE}: give an output folder of `landmarkinit run` (an unfinished "
            "run has none)"
        ) from None
    except (OSError, ValueError, KeyError, TypeError):
        raise LandmarkFileError(
            f"{report_path} does not record the detected landmarks and the input volumes (only `landmarkinit run` "
            "writes them; `register` does not): give an output folder of `landmarkinit run`"
        ) from None
    volumes = {}
    for m in MODALITIES:
        path, what = Path(inputs[m]), MODALITY_DISPLAY_NAMES[m]
        if not path.exists():
            raise LandmarkFileError(
                f"the {what} volume {path} that {report_path} names no longer exists: put it back (from the folder "
                "the run was started in) to add this case"
            )
        if volume_fingerprint(path)["sha256"] != fingerprints[m]["sha256"]:
            raise LandmarkFileError(
                f"the {what} volume {path} changed since the run (its sha256 differs from {report_path}): its "
                "landmarks may not match it any more; nothing was added"
            )
        volumes[m] = path
    context = create_context()
    try:
        corrected = {
            m: read_landmarks_file(context, output_dir / CORRECTED_FILES[m], modality=m)[1] for m in MODALITIES
        }
        if not moved_points(predicted, corrected):
            return None
        models = {m: _reported_model(report.get("models", {}).get(m)) for m in MODALITIES}
        return add_case(site_dir, volumes, predicted, corrected, models, "cli", context=context)
    finally:
        context.clear()


def _reported_model(info) -> dict | None:
    if not isinstance(info, dict):
        return None
    return {"name": info.get("name"), "sha256": info.get("card_sha256"), "weights": info.get("weights", [])}
