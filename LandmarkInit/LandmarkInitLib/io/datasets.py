"""Dataset layouts on disk and their readers (no MRML scene needed; SimpleITK and json only).

LandmarkInit layout, one folder per case (what ``landmarkinit phantom`` writes; later steps rely on it)::

    <case>/mr.nrrd  us.nrrd  mr_gland.nrrd  us_gland.nrrd        (label maps: 1 = gland)
    <case>/mr_landmarks.mrk.json  us_landmarks.mrk.json          (labels apex, bladder_neck, posterior_median)
    <case>/mr_to_us.h5                                           (ground-truth rigid part; "to parent" MR RAS -> US RAS)
    <case>/case.json                                             (generator parameters)

mu-RegPro layout (MICCAI 2023 challenge): NIfTI folders ``mr_images/ us_images/ mr_labels/ us_labels/`` with the
same file name per pair; labels are 4-D [x, y, z, k] with channel 0 the gland and further channels landmark
regions, whose centroids are the landmarks.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from LandmarkInitLib.errors import LandmarkFileError
from LandmarkInitLib.geometry import VolumeGeometry, lps_to_ras, to_parent_ras_from_sitk_transform
from LandmarkInitLib.io.output_files import MR_LANDMARKS_FILE, TRANSFORM_FILE, US_LANDMARKS_FILE
from LandmarkInitLib.landmarks import LANDMARK_LABELS, LandmarkSet, validate_labels

CASE_FILES = {
    "mr": "mr.nrrd",
    "us": "us.nrrd",
    "mr_gland": "mr_gland.nrrd",
    "us_gland": "us_gland.nrrd",
    "mr_landmarks": MR_LANDMARKS_FILE,
    "us_landmarks": US_LANDMARKS_FILE,
    "mr_to_us": TRANSFORM_FILE,
    "case": "case.json",
}
MUREGPRO_FOLDERS = ("mr_images", "us_images", "mr_labels", "us_labels")


@dataclass
class PairedCase:
    """One MR/US pair with its annotations, whatever the layout it was read from."""

    name: str
    folder: Path
    images: dict[str, Path]  # "mr", "us"
    glands: dict[str, Path | None] | None  # None: no gland masks (site cases)
    _landmarks: Callable[[str], LandmarkSet] = field(repr=False)
    mr_to_us: np.ndarray | None = None  # 4x4 RAS "to parent", when known
    meta: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, repr=False)

    def landmarks(self, modality: str) -> LandmarkSet:
        if modality not in self._cache:
            self._cache[modality] = self._landmarks(modality)
        return self._cache[modality]


def read_mrk_json(path, expected_labels=LANDMARK_LABELS) -> LandmarkSet:
    """Control points of a Slicer markups JSON file, in RAS (converting from LPS when the file says so)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        markup = doc["markups"][0]
        points = markup["controlPoints"]
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise LandmarkFileError(f"{path} is not a readable Slicer markups file ({e})") from None
    system = markup.get("coordinateSystem", "LPS").upper()
    labels = tuple(p.get("label", "") for p in points)
    xyz = np.array([p["position"] for p in points], dtype=float).reshape(-1, 3)
    if system == "LPS":
        xyz = lps_to_ras(xyz)
    elif system != "RAS":
        raise LandmarkFileError(f"{path}: unknown coordinate system {system!r}")
    validate_labels(labels, expected_labels, str(path))
    return LandmarkSet(labels, xyz)


def read_rigid_transform_ras(path) -> np.ndarray:
    """A linear ITK transform file as the RAS "to parent" matrix Slicer shows for it.

    ITK stores the resampling transform (parent -> child) in LPS; Slicer's "to parent" is its inverse in RAS.
    """
    import SimpleITK as sitk

    try:
        tx = sitk.ReadTransform(str(path))
    except RuntimeError as e:
        raise LandmarkFileError(f"{path} could not be read as a transform ({str(e).splitlines()[0]})") from None
    if tx.GetDimension() != 3:
        raise LandmarkFileError(f"{path} is not a 3-D transform")
    try:
        return to_parent_ras_from_sitk_transform(tx)
    except ValueError:
        raise LandmarkFileError(f"{path} is not a linear transform") from None


def open_case(folder) -> PairedCase:
    """Open one case folder of the LandmarkInit layout, or a site-dataset case (io/site_dataset.py: the modalities
    it holds, no gland masks, no ground-truth transform); a clear error lists whatever is missing."""
    from LandmarkInitLib.io.site_dataset import is_site_case, open_site_case

    folder = Path(folder)
    if not folder.is_dir():
        raise LandmarkFileError(f"case folder {folder} does not exist")
    if is_site_case(folder):  # a corrected case of a site dataset (io/site_dataset.py)
        return open_site_case(folder)
    missing = [name for name in CASE_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise LandmarkFileError(
            f"{folder} is not a LandmarkInit case: missing {', '.join(missing)} "
            f"(a case folder holds {', '.join(CASE_FILES.values())})"
        )
    return PairedCase(
        name=folder.name,
        folder=folder,
        images={m: folder / CASE_FILES[m] for m in ("mr", "us")},
        glands={m: folder / CASE_FILES[f"{m}_gland"] for m in ("mr", "us")},
        _landmarks=lambda modality: read_mrk_json(folder / CASE_FILES[f"{modality}_landmarks"]),
        mr_to_us=read_rigid_transform_ras(folder / CASE_FILES["mr_to_us"]),
        meta=json.loads((folder / CASE_FILES["case"]).read_text(encoding="utf-8")),
    )


def open_dataset(root) -> list[PairedCase]:
    """All cases below ``root``: a LandmarkInit dataset (case folders), a single case folder, or a mu-RegPro
    folder. Raises a clear error when ``root`` matches no layout."""
    root = Path(root)
    if not root.is_dir():
        raise LandmarkFileError(f"dataset folder {root} does not exist")
    if all((root / f).is_dir() for f in MUREGPRO_FOLDERS):
        return open_muregpro(root)
    if (root / CASE_FILES["case"]).is_file() or (root / CASE_FILES["mr"]).is_file():
        return [open_case(root)]
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    candidates = [p for p in folders if any((p / f).exists() for f in CASE_FILES.values())]
    if not candidates:
        raise LandmarkFileError(
            f"{root} matches no dataset layout: expected case folders holding {', '.join(CASE_FILES.values())}, "
            f"or the mu-RegPro folders {', '.join(MUREGPRO_FOLDERS)}"
        )
    return [open_case(p) for p in candidates]


def open_muregpro(root, channel_labels: Mapping[int, str] | None = None) -> list[PairedCase]:
    """Cases of the mu-RegPro layout. ``channel_labels`` names the landmark channels of the 4-D label maps
    (e.g. {1: "apex", 2: "bladder_neck"}); unnamed channels are called ``channel_<k>``."""
    root = Path(root)
    missing = [f for f in MUREGPRO_FOLDERS if not (root / f).is_dir()]
    if missing:
        raise LandmarkFileError(f"{root} is not a mu-RegPro folder: missing {', '.join(missing)}/")
    names = sorted(p.name for p in (root / "mr_images").glob("*.nii*"))
    if not names:
        raise LandmarkFileError(f"{root / 'mr_images'} holds no NIfTI images")
    cases = []
    for name in names:
        lacking = [f"{f}/{name}" for f in MUREGPRO_FOLDERS if not (root / f / name).is_file()]
        if lacking:
            raise LandmarkFileError(f"mu-RegPro case {name}: missing {', '.join(lacking)}")
        stem = name.split(".")[0]
        cases.append(
            PairedCase(
                name=stem,
                folder=root,
                images={m: root / f"{m}_images" / name for m in ("mr", "us")},
                glands={m: root / f"{m}_labels" / name for m in ("mr", "us")},
                _landmarks=_muregpro_landmarks(root, name, channel_labels),
            )
        )
    return cases


def _muregpro_landmarks(root: Path, name: str, channel_labels):
    def load(modality: str) -> LandmarkSet:
        labels, points = [], []
        for k, mask, geometry in _label_channels(root / f"{modality}_labels" / name):
            if k == 0:
                continue  # the gland
            idx = np.argwhere(mask > 0)
            if len(idx) == 0:
                raise LandmarkFileError(f"{root / f'{modality}_labels' / name}: landmark channel {k} is empty")
            labels.append((channel_labels or {}).get(k, f"channel_{k}"))
            points.append(geometry.ijk_to_ras_points(idx[:, ::-1].mean(axis=0)))
        return LandmarkSet(tuple(labels), np.array(points))

    return load


def _label_channels(path: Path):
    """Yield (channel, mask array [k, j, i], geometry) of a 4-D (or 3-D) label image."""
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    if img.GetDimension() == 3:
        yield 0, sitk.GetArrayFromImage(img), VolumeGeometry.from_sitk_image(img)
        return
    if img.GetDimension() != 4:
        raise LandmarkFileError(f"{path}: expected a 3-D or 4-D label image, got {img.GetDimension()}-D")
    size = list(img.GetSize())
    for k in range(size[3]):
        channel = sitk.Extract(img, size[:3] + [0], [0, 0, 0, k])
        yield k, sitk.GetArrayFromImage(channel), VolumeGeometry.from_sitk_image(channel)


def gland_mask(case: PairedCase, modality: str):
    """(mask array [k, j, i], geometry) of the gland in one modality (channel 0 of a 4-D label map)."""
    path = (case.glands or {}).get(modality)
    if path is None:
        raise LandmarkFileError(f"case {case.name} has no {modality} gland mask")
    for _, mask, geometry in _label_channels(Path(path)):
        return (mask > 0).astype(np.uint8), geometry
    raise LandmarkFileError(f"{path} holds no label channel")
