"""`landmarkinit run` for one MR/US pair: read -> initialize (detect both, fit) -> QA -> (optional intensity
refinement) -> the files of io.output_files.RUN_FILES in the output folder: both landmark sets (Slicer markups),
MR_to_US (with --refine, the refined one, and the landmark transform beside it), the review figure and HTML page,
and report.json last, whose presence marks a complete result.

Every file is written under a temporary name and renamed, so an interrupted run leaves no half-written file,
and an existing result is refused unless ``force``. Input files are only read.
"""

from __future__ import annotations

import html
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from LandmarkInitLib import __version__
from LandmarkInitLib.errors import LandmarkFileError, LandmarkInitError
from LandmarkInitLib.io.images import check_distinct_volumes, read_image, volume_fingerprint
from LandmarkInitLib.io.output_files import (
    LANDMARK_TRANSFORM_FILE,
    MR_LANDMARKS_FILE,
    REPORT_HTML_FILE,
    REPORT_JSON_FILE,
    REPORT_PNG_FILE,
    RUN_FILES,
    TRANSFORM_FILE,
    US_LANDMARKS_FILE,
)
from LandmarkInitLib.pipeline.initialize import DEFAULT_WEIGHTING, Detectors, initialize
from LandmarkInitLib.pipeline.quality import QualityReport, assess, features, load_thresholds
from LandmarkInitLib.pipeline.report import CONVENTION


@dataclass
class RunResult:
    output_dir: Path
    matrix: np.ndarray
    landmark_matrix: np.ndarray
    quality: QualityReport
    report: dict


def check_output_dir(output_dir: Path, force: bool, inputs=None) -> None:
    """Refuse, before any work and creating nothing, an output folder that cannot take the result (a file, a
    read-only or full file system, earlier results without ``force``) or whose files would overwrite one of
    ``inputs`` ({what: path}, e.g. {"--mr": ...})."""
    from LandmarkInitLib.io.output_files import check_distinct_paths, check_folder_writable

    output_dir = Path(output_dir)
    check_folder_writable(output_dir)
    existing = [name for name in RUN_FILES if (output_dir / name).exists()]
    if existing and not force:
        raise LandmarkFileError(
            f"{output_dir} already holds results ({', '.join(existing)}); choose another --output-dir or pass --force"
        )
    if inputs:
        check_distinct_paths(inputs, [("--output-dir", output_dir / name) for name in RUN_FILES])


def _model_info(detector) -> dict:
    """Which models ran: card (its name, the sha256 of the card file, the folder it came from: "shipped" or a models
    folder), method, and the sha256 of every weights file behind it (both stages), int8 ONNX files marked."""
    from LandmarkInitLib.detection.models_folder import model_identity, model_weights

    card = detector.card
    return {
        "card": str(card.path),
        **model_identity(card),
        "method": card.data.get("method"),
        "backend": detector.backend,
        "postprocessing": card.postprocessing,
        "weights": model_weights(card),
    }


def overlap_fraction(matrix, mr_image, us_image, step: int = 4) -> float:
    """Fraction of the US fan (every ``step``-th voxel) that the MR volume covers once mapped by ``matrix``."""
    import SimpleITK as sitk

    from LandmarkInitLib.fit.landmark_fit import apply_transform
    from LandmarkInitLib.geometry import VolumeGeometry

    us = sitk.GetArrayFromImage(us_image)[::step, ::step, ::step]
    k, j, i = np.nonzero(us > 0)
    if k.size == 0:
        return 0.0
    points = VolumeGeometry.from_sitk_image(us_image).ijk_to_ras_points(np.stack([i, j, k], axis=1) * step)
    in_mr = apply_transform(np.linalg.inv(matrix), points)
    return float(VolumeGeometry.from_sitk_image(mr_image).contains_ras(in_mr).mean())


def run_case(
    mr_path,
    us_path,
    output_dir,
    *,
    detectors: Detectors | None = None,
    weighting: str = DEFAULT_WEIGHTING,
    refine: bool = False,
    qa_thresholds: dict | None = None,
    force: bool = False,
    figure: bool = True,
    resume: bool = False,
) -> RunResult:
    """``resume``: the folder holds an earlier, unfinished or outdated result of this batch case, ours to replace."""
    from LandmarkInitLib.fit.intensity import register_rigid_mi
    from LandmarkInitLib.io.markups import write_landmarks
    from LandmarkInitLib.io.output_files import atomic_output, temporary_files
    from LandmarkInitLib.io.scene import create_context
    from LandmarkInitLib.io.transforms import create_transform_node, save_transform
    from LandmarkInitLib.landmarks import LandmarkSet
    from LandmarkInitLib.pipeline.overlay_figure import write_overlay_png
    from LandmarkInitLib.pipeline.report import write_json

    check_distinct_volumes(mr_path, us_path)  # before anything is created
    t0 = time.perf_counter()
    output_dir = Path(output_dir)
    check_output_dir(output_dir, force or resume, {"MR volume": mr_path, "US volume": us_path})  # creates nothing
    mr_image, us_image = read_image(mr_path, "MR"), read_image(us_path, "US")
    fingerprints = {"mr": volume_fingerprint(mr_path), "us": volume_fingerprint(us_path)}
    detectors = detectors or Detectors.open()
    thresholds = load_thresholds() if qa_thresholds is None else qa_thresholds

    init = initialize(mr_image, us_image, detectors, weighting=weighting)
    quality = assess(
        features(init, us_image),
        thresholds,
        [f"MR: {f}" for f in init.mr.flags] + [f"US: {f}" for f in init.us.flags],
    )
    if overlap_fraction(init.matrix, mr_image, us_image) == 0.0:
        raise LandmarkInitError(
            "after the fit the MR volume does not overlap the US field of view at all: the detections are wrong "
            "or the two volumes do not belong to the same patient/session; check the inputs (nothing was written)"
        )
    matrix, refinement = init.matrix, None
    if refine:
        refinement = register_rigid_mi(mr_image, us_image, init.matrix)
        matrix = refinement.matrix
    t_compute = time.perf_counter() - t0

    # Only now, with a result to write: a refusal or a failure before this point leaves no folder behind.
    output_dir.mkdir(parents=True, exist_ok=True)
    # An earlier result goes first: its report.json, so that an interrupted rewrite never looks complete, the
    # temporaries a killed run left, and its files that this run does not write (mr_to_us_landmarks.h5 of an
    # earlier --refine), which would otherwise sit beside the new result as if they belonged to it.
    not_written = ([] if refine else [LANDMARK_TRANSFORM_FILE]) + ([] if figure else [REPORT_PNG_FILE])
    for stale in [REPORT_JSON_FILE, *not_written]:
        (output_dir / stale).unlink(missing_ok=True)
    for stale in temporary_files(output_dir, RUN_FILES):
        stale.unlink(missing_ok=True)
    context = create_context()
    try:
        write_landmarks(
            context, LandmarkSet(init.mr.labels, init.mr.points_ras), output_dir / MR_LANDMARKS_FILE, "mr", force=True
        )
        write_landmarks(
            context, LandmarkSet(init.us.labels, init.us.points_ras), output_dir / US_LANDMARKS_FILE, "us", force=True
        )
        save_transform(context, create_transform_node(context.scene, matrix), output_dir / TRANSFORM_FILE, force=True)
        if refine:
            node = create_transform_node(context.scene, init.matrix, name="MR_to_US_landmarks")
            save_transform(context, node, output_dir / LANDMARK_TRANSFORM_FILE, force=True)
    finally:
        context.clear()
    rows = {"After landmark fit": init.matrix} | ({"After landmark fit + MI refinement": matrix} if refine else {})
    if figure:
        with atomic_output(output_dir / REPORT_PNG_FILE, force=True) as tmp:
            write_overlay_png(tmp, us_image, mr_image, init.us.points_ras, init.mr.points_ras, rows, init.us.labels)
    report = {
        "software": {"landmarkinit": __version__, "python": platform.python_version()},
        "inputs": {"mr": str(mr_path), "us": str(us_path), "fingerprints": fingerprints},
        "convention": CONVENTION,
        "matrix": np.round(matrix, 12).tolist(),
        "landmark_matrix": np.round(init.matrix, 12).tolist(),
        "fit": {
            "weighting": weighting,
            "weights": [float(w) for w in init.weights],
            "residuals_mm": [float(r) for r in init.fit.residuals],
            "rms_mm": float(init.fit.rms),
            "conditioning": float(init.fit.conditioning),
        },
        "refinement": None
        if refinement is None
        else {
            "method": "SimpleITK rigid, Mattes mutual information, US fan mask, 2 levels",
            "metric": refinement.metric,
            "iterations": refinement.iterations,
            "stop": refinement.stop,
            "seconds": refinement.seconds,
        },
        "mr": init.mr.as_dict(),
        "us": init.us.as_dict(),
        "models": {"mr": _model_info(detectors.mr), "us": _model_info(detectors.us)},
        "quality": quality.as_dict(),
        "seconds": {**{k: round(v, 4) for k, v in init.seconds.items()}, "compute_total": round(t_compute, 4)},
        "files": [name for name in RUN_FILES if name not in not_written],
        "synthetic_models": "detectors trained on a synthetic phantom; check every result",
    }
    with atomic_output(output_dir / REPORT_HTML_FILE, force=True) as tmp:
        tmp.write_bytes(render_html(report, figure).encode("utf-8"))  # UTF-8, as the page declares
    report["seconds"]["total_with_files"] = round(time.perf_counter() - t0, 4)
    write_json(report, output_dir / REPORT_JSON_FILE, force=True)
    return RunResult(output_dir, matrix, init.matrix, quality, report)


def render_html(report: dict, figure: bool) -> str:
    from LandmarkInitLib.detection.models_folder import describe_model
    from LandmarkInitLib.pipeline.overlay_figure import PLANE_MM, SCALE_MM

    esc = html.escape
    q = report["quality"]
    status = "REVIEW RECOMMENDED" if q["review_recommended"] else "no quality flag raised"
    rows = []
    for modality in ("mr", "us"):
        for lm in report[modality]["landmarks"]:
            spread = "-" if lm["spread_mm"] is None else f"{lm['spread_mm']:.1f}"
            ras = ", ".join(f"{v:.1f}" for v in lm["ras"])
            rows.append(
                f"<tr><td>{modality.upper()}</td><td>{esc(lm['label'])}</td><td>{ras}</td><td>{spread}</td></tr>"
            )
    residuals = ", ".join(f"{r:.2f}" for r in report["fit"]["residuals_mm"])
    flags = "".join(f"<li>{esc(f)}</li>" for f in q["flags"]) or "<li>none</li>"
    matrix = "<br>".join(" ".join(f"{v:9.4f}" for v in row) for row in report["matrix"])
    picture = (
        f'<p><img src="{REPORT_PNG_FILE}" alt="MR edges mapped onto the US, before and after the fit"><br>Rows: before '
        "(MR as acquired, no transform), after the landmark fit"
        + (", after the landmark fit + MI refinement" if report["refinement"] else "")
        + ". Columns: axial, sagittal and coronal planes (as Slicer shows them) through the centre of the US "
        "landmarks. Green: edges of the MR mapped into the US; orange rings: US landmarks; cyan crosses: MR landmarks "
        f"mapped into the US (A apex, BN bladder neck, PM posterior median; shown within {PLANE_MM:g} mm of a plane). "
        f"Bar: {SCALE_MM} mm.</p>"
        if figure
        else ""
    )
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>LandmarkInit report</title></head><body>
<h1>LandmarkInit: MR-to-US initialization</h1>
<p>MR: {esc(report["inputs"]["mr"])}<br>US: {esc(report["inputs"]["us"])}</p>
<p>{"<br>".join(esc(describe_model(m, report["models"][m])) for m in ("mr", "us"))}</p>
<h2>Quality: {status}</h2><ul>{flags}</ul>
<h2>Landmarks (RAS mm)</h2>
<table border="1" cellpadding="3"><tr><th>volume</th><th>landmark</th><th>RAS</th><th>spread (mm)</th></tr>
{"".join(rows)}</table>
<p>Fit residuals (mm): {residuals}; RMS {report["fit"]["rms_mm"]:.2f} mm; conditioning
{report["fit"]["conditioning"]:.2f}; weighting {esc(report["fit"]["weighting"])}.</p>
<h2>MR_to_US (MR RAS to US RAS)</h2><pre>{matrix}</pre>
{picture}
<p><small>{esc(report["synthetic_models"])}. LandmarkInit {esc(report["software"]["landmarkinit"])}.</small></p>
</body></html>
"""
