"""Real T2 MR as training and validation data: PROMISE12-layout cases (``<case>/t2.nii.gz`` + the expert gland mask
``<case>/gland.nii.gz``) with the landmarks-from-mask reference points (LandmarkInitLib/mask_landmarks.py).

Only the cross-validation folds of the split file (evaluation/real_mr_split.json) can be read: a held-out test case
is refused, so that it never reaches training or model selection. Nothing is written: images are read and the
landmarks derived in memory (the data's terms forbid copies in the repository).
"""

from __future__ import annotations

from pathlib import Path

from LandmarkInitLib.errors import LandmarkInitError
from LandmarkInitLib.landmarks import LANDMARK_LABELS
from LandmarkInitResearch.evaluation.real_mr import IMAGE_FILE, MASK_FILE, fold_cases, load_split
from LandmarkInitResearch.training.data import LoadedVolume


def load_real_mr_volumes(data, cases: list[str], split: dict, progress: bool = False) -> list[LoadedVolume]:
    """The T2 images of ``cases`` with their mask-derived landmarks; refuses held-out test cases."""
    import SimpleITK as sitk
    from tqdm import tqdm

    from LandmarkInitLib.geometry import VolumeGeometry
    from LandmarkInitLib.mask_landmarks import landmarks_from_mask_file

    held_out = sorted(set(cases) & set(split["held_out_test"]))
    if held_out:
        raise LandmarkInitError(
            f"{', '.join(held_out)} belong(s) to the held-out real test set of {split['path']}: never used for "
            "training or model selection; choose cross-validation folds"
        )
    data = Path(data)
    missing = [f"{c}/{n}" for c in cases for n in (IMAGE_FILE, MASK_FILE) if not (data / c / n).is_file()]
    if missing:
        raise LandmarkInitError(
            f"real-MR folder {data} lacks {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; give the "
            f"folder holding <case>/{IMAGE_FILE} and {MASK_FILE}"
        )
    out = []
    for case in tqdm(cases, desc="loading real MR", disable=not progress, unit="case"):
        image = sitk.Cast(sitk.ReadImage(str(data / case / IMAGE_FILE)), sitk.sitkFloat32)
        landmarks = landmarks_from_mask_file(data / case / MASK_FILE).ordered(LANDMARK_LABELS)
        out.append(LoadedVolume(f"real:{case}", image, VolumeGeometry.from_sitk_image(image), landmarks))
    return out


def real_mr_volumes(data, folds, split_path=None, progress: bool = False) -> tuple[list[LoadedVolume], dict]:
    split = load_split(split_path)
    return load_real_mr_volumes(data, fold_cases(split, list(folds)), split, progress), split
