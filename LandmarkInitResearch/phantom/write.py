"""Write a generated case in the dataset layout (see dataset.py): volumes with SimpleITK (compressed NRRD),
landmarks and the transform with Slicer's own storage nodes, so that Slicer reads them back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from LandmarkInitLib.errors import LandmarkFileError
from LandmarkInitLib.io.datasets import CASE_FILES
from LandmarkInitLib.io.markups import write_landmarks
from LandmarkInitLib.io.transforms import create_transform_node, save_transform
from LandmarkInitLib.landmarks import LANDMARK_LABELS, LandmarkSet
from LandmarkInitResearch.phantom.case import PhantomCase
from LandmarkInitResearch.phantom.tissues import TISSUES_FILE


def write_volume(array: np.ndarray, geometry, path: Path) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    geometry.apply_to_sitk_image(image)
    sitk.WriteImage(image, str(path), useCompression=True)


def write_case(case: PhantomCase, folder, context, *, force: bool = False) -> Path:
    """Write into ``folder`` via a temporary sibling folder renamed when complete (no half-written cases)."""
    folder = Path(folder)
    if folder.exists() and not force:
        raise LandmarkFileError(f"{folder} already exists; pass --force to overwrite it")
    tmp = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write_volume(case.mr_image, case.mr_geometry, tmp / CASE_FILES["mr"])
        write_volume(case.us_image, case.us_geometry, tmp / CASE_FILES["us"])
        write_volume(case.mr_gland, case.mr_geometry, tmp / CASE_FILES["mr_gland"])
        write_volume(case.mr_tissues, case.mr_geometry, tmp / TISSUES_FILE)
        write_volume(case.us_gland, case.us_geometry, tmp / CASE_FILES["us_gland"])
        for modality, points in (("mr", case.mr_landmarks), ("us", case.us_landmarks)):
            write_landmarks(
                context, LandmarkSet(LANDMARK_LABELS, points), tmp / CASE_FILES[f"{modality}_landmarks"], modality
            )
        node = create_transform_node(context.scene, case.mr_to_us)
        try:
            save_transform(context, node, tmp / CASE_FILES["mr_to_us"])
        finally:
            context.scene.RemoveNode(node)
        meta = {k: v for k, v in case.meta.items() if k != "generation_seconds"}  # keep files byte-identical
        (tmp / CASE_FILES["case"]).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
