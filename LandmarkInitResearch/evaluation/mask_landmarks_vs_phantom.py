"""How far the landmarks derived from a gland mask (LandmarkInitLib.mask_landmarks, issue 22's definition) lie from
a phantom's own landmarks (LandmarkInitResearch.phantom.anatomy: apex and bladder neck where the urethra leaves the
gland, posterior median on the gland's tilted mid-sagittal plane). The two definitions differ on purpose: this
measures by how much, per landmark, so that landmarks derived from real expert masks can be read against the
phantom's.

Frames compared:
- MR: the MR gland in the MR volume's RAS, whose S is the patient's superior axis (the phantom's patient lies at
  most 4 degrees off the scanner axes), against the MR landmarks;
- US, file frame: the US gland in the US volume's own RAS. In the phantom that frame is the anatomy turned by a
  random rigid rotation of up to 30 degrees (the probe's view), so its S is not the patient's: the definition does
  not hold there, and the figures show what using it anyway costs;
- US, patient frame: the US gland moved into the MR (patient) frame by the inverse of the ground-truth rigid
  MR-to-US transform (the probe's deformation stays), landmarks derived there, moved back and compared with the
  US landmarks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from LandmarkInitLib.geometry import VolumeGeometry
from LandmarkInitLib.io.datasets import gland_mask, open_dataset
from LandmarkInitLib.landmarks import LANDMARK_LABELS, landmark_by_label
from LandmarkInitLib.mask_landmarks import landmarks_from_mask
from LandmarkInitResearch.evaluation.error_components import COMPONENTS, error_components

FRAMES = {
    "mr": "MR (volume RAS = patient frame)",
    "us_file": "US, file frame (S tilted from the patient's S)",
    "us_patient": "US, patient frame (ground-truth rigid inverse)",
}


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def case_landmarks(case) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{frame: (mask-derived points, phantom points)}, rows in LANDMARK_LABELS order, RAS mm of the modality's
    volume."""
    out = {}
    mask, geometry = gland_mask(case, "mr")
    out["mr"] = (landmarks_from_mask(mask, geometry).ordered(LANDMARK_LABELS), case.landmarks("mr"))
    mask, geometry = gland_mask(case, "us")
    us_truth = case.landmarks("us")
    out["us_file"] = (landmarks_from_mask(mask, geometry).ordered(LANDMARK_LABELS), us_truth)
    to_patient = np.linalg.inv(case.mr_to_us)
    patient = VolumeGeometry.from_ijk_to_ras(to_patient @ geometry.ijk_to_ras, geometry.size_ijk)
    derived = landmarks_from_mask(mask, patient).ordered(LANDMARK_LABELS)
    out["us_patient"] = (_apply(case.mr_to_us, derived), us_truth)
    return {k: (p, truth.ordered(LANDMARK_LABELS)) for k, (p, truth) in out.items()}


def evaluate(data, progress: bool = False) -> dict:
    """Per frame: distances (cases x landmarks, mm) and signed components along the gland's axis, posterior and
    lateral directions (cases x landmarks x 3), plus the US tilt of each case."""
    cases = open_dataset(data)
    distances = {f: [] for f in FRAMES}
    components = {f: [] for f in FRAMES}
    tilts = []
    for n, case in enumerate(cases, 1):
        for frame, (derived, truth) in case_landmarks(case).items():
            distances[frame].append(np.linalg.norm(derived - truth, axis=1))
            components[frame].append(error_components(derived, truth))
        patient_s_in_us = case.mr_to_us[:3, :3] @ [0.0, 0.0, 1.0]
        tilts.append(float(np.degrees(np.arccos(np.clip(patient_s_in_us[2], -1.0, 1.0)))))
        if progress:
            print(f"\r{n}/{len(cases)} cases", end="", flush=True)
    if progress:
        print()
    return {
        "cases": [c.name for c in cases],
        "distances": {f: np.array(v) for f, v in distances.items()},
        "components": {f: np.array(v) for f, v in components.items()},
        "us_tilt_deg": np.array(tilts),
    }


def format_report(results: dict, data: str, description: str = "") -> str:
    n = len(results["cases"])
    tilt = results["us_tilt_deg"]
    lines = [
        "# Landmarks from the gland mask vs the phantom's own landmarks",
        "",
        f"Data: `{data}`, {n} cases" + (f" ({description})" if description else "") + ". Synthetic data: the "
        "LandmarkInit phantom, not patient images. Produced by `landmarkinit evaluate-mask-landmarks`.",
        "",
        "Mask-derived landmarks: `landmarkinit landmarks-from-mask` (LandmarkInitLib/mask_landmarks.py; apex and "
        "bladder neck: centroids of the voxels within 1.6 mm in S of the lowest and highest; posterior median: the "
        "most posterior voxel within 1.6 mm of mid-height and 2 mm in R of the section's mean R). Phantom landmarks "
        "(docs/phantom.md): apex and bladder neck where the urethra centreline leaves the gland, posterior median on "
        "the gland's own mid-sagittal plane, whose axis leans 5-25 degrees from S. The definitions differ; the "
        "distances below say by how much.",
        "",
        "Signed components: mask-derived minus phantom, along the phantom landmarks' gland axis (apex to bladder "
        "neck), posterior and lateral directions (LandmarkInitResearch/evaluation/error_components.py).",
        "",
    ]
    for frame, title in FRAMES.items():
        d = results["distances"][frame]
        c = results["components"][frame]
        lines += [
            f"## {title}",
            "",
            "| landmark | mean (mm) | median (mm) | max (mm) | "
            + " | ".join(f"mean {name} (mm)" for name in COMPONENTS)
            + " |",
            "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in COMPONENTS) + " |",
        ]
        for i, label in enumerate(LANDMARK_LABELS):
            signed = " | ".join(f"{v:+.2f}" for v in c[:, i].mean(axis=0))
            lines.append(
                f"| {landmark_by_label(label).display_name} | {d[:, i].mean():.2f} | {np.median(d[:, i]):.2f} | "
                f"{d[:, i].max():.2f} | {signed} |"
            )
        lines.append(
            f"| all | {d.mean():.2f} | {np.median(d):.2f} | {d.max():.2f} | "
            + " | ".join("" for _ in COMPONENTS)
            + " |"
        )
        lines.append("")
    us_file, us_patient = results["distances"]["us_file"], results["distances"]["us_patient"]
    correlation = f"{np.corrcoef(us_file.mean(axis=1), tilt)[0, 1]:.2f}" if n >= 3 else "n/a, too few cases"
    lines += [
        "## Why two US rows",
        "",
        "The definition needs S to be the patient's superior axis. The phantom's US volume frame is the anatomy "
        "turned by the probe's rigid pose: its S is tilted from the patient's S by "
        f"{np.median(tilt):.1f} degrees (median; {tilt.min():.1f}-{tilt.max():.1f}). In the file frame the "
        f"mask-derived landmarks therefore move with the tilt (mean {us_file.mean():.2f} mm over all landmarks, "
        f"correlation of the per-case mean with the tilt {correlation}); "
        "this is not a meaningful use of the definition. In the patient frame (the US gland moved by the inverse of "
        f"the ground-truth rigid transform, its deformation kept) the mean is {us_patient.mean():.2f} mm (MR: "
        f"{results['distances']['mr'].mean():.2f} mm). On real TRUS the volume's axes are whatever the scanner or "
        "converter recorded, often the probe's: derive US landmarks from a mask only when the volume's S is the "
        "patient's superior axis.",
        "",
    ]
    return "\n".join(lines)


def write_report(results: dict, path, data: str, description: str = "", force: bool = False) -> Path:
    from LandmarkInitLib.io.output_files import check_writable

    path = check_writable(path, force)
    path.write_text(format_report(results, data, description), encoding="utf-8")
    return path
