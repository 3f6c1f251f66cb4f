"""Clinical ``landmarkinit`` commands: ``register`` (landmarks you already have -> transform), ``detect`` (one
volume -> landmarks), ``run`` (MR + US -> landmarks, transform, quality check, report; one pair or many),
``landmarks-from-mask`` (a gland segmentation -> landmarks), ``app`` (the browser app) and ``add-correction`` (a
corrected ``run`` output -> the site dataset). Thin: each collects its
inputs and calls the library."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from LandmarkInitLib.cli import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_REVIEW, CommandGroup
from LandmarkInitLib.cli import options as shared
from LandmarkInitLib.errors import LandmarkInitError
from LandmarkInitLib.fit.landmark_fit import FIT_MODES
from LandmarkInitLib.io.output_files import LANDMARK_TRANSFORM_FILE, RUN_FILES
from LandmarkInitLib.landmarks import MODALITIES
from LandmarkInitLib.pipeline.initialize import DEFAULT_WEIGHTING, WEIGHTINGS


def cmd_register(args) -> int:
    from LandmarkInitLib.fit.landmark_fit import fit_transform
    from LandmarkInitLib.io.markups import read_landmarks_file
    from LandmarkInitLib.io.output_files import check_distinct_paths, check_writable
    from LandmarkInitLib.io.scene import create_context
    from LandmarkInitLib.io.transforms import check_transform_suffix, create_transform_node, save_transform
    from LandmarkInitLib.landmarks import LANDMARK_LABELS, match_landmarks
    from LandmarkInitLib.pipeline.report import fit_report, format_fit, write_json

    # Check every output before computing anything, so that a refusal leaves no partial result.
    check_distinct_paths(
        {"--moving-landmarks": args.moving_landmarks, "--fixed-landmarks": args.fixed_landmarks},
        {"--output": args.output, "--report": args.report},
    )
    check_transform_suffix(args.output)
    check_writable(args.output, args.force)
    if args.report:
        check_writable(args.report, args.force)
    expected = None if args.any_labels else LANDMARK_LABELS

    context = create_context()
    _, moving = read_landmarks_file(
        context,
        args.moving_landmarks,
        modality="mr",
        csv_coordinate_system=args.csv_coordinate_system,
        expected_labels=expected,
    )
    _, fixed = read_landmarks_file(
        context,
        args.fixed_landmarks,
        modality="us",
        csv_coordinate_system=args.csv_coordinate_system,
        expected_labels=expected,
    )
    labels, x, y = match_landmarks(moving, fixed, expected)
    fit = fit_transform(x, y, mode=args.mode)
    node = create_transform_node(context.scene, fit.matrix)
    save_transform(context, node, args.output, force=args.force)
    if args.report:
        report = fit_report(
            labels,
            x,
            y,
            fit,
            moving_file=str(args.moving_landmarks),
            fixed_file=str(args.fixed_landmarks),
            transform_file=str(args.output),
        )
        write_json(report, args.report, force=args.force)
    print(format_fit(labels, fit))
    print(f"wrote {args.output}" + (f" and {args.report}" if args.report else ""))
    return EXIT_OK


def cmd_detect(args) -> int:
    import SimpleITK as sitk

    from LandmarkInitLib.detection.detectors import modality_mismatch, open_detector
    from LandmarkInitLib.detection.models_folder import describe_model, model_identity, resolve_cards
    from LandmarkInitLib.io.images import read_image
    from LandmarkInitLib.io.markups import create_landmarks_node, write_landmarks_file
    from LandmarkInitLib.io.output_files import DETECTION_SIDECAR_SUFFIX, check_distinct_paths, check_writable
    from LandmarkInitLib.io.scene import create_context
    from LandmarkInitLib.landmarks import LandmarkSet
    from LandmarkInitLib.pipeline.report import write_json
    from LandmarkInitLib.resources import default_model_card

    if not str(args.output).lower().endswith(".mrk.json"):
        raise LandmarkInitError(f"{args.output}: write detected landmarks as Slicer markups, a .mrk.json name")
    sidecar = Path(str(args.output)[: -len(".mrk.json")] + DETECTION_SIDECAR_SUFFIX)
    check_distinct_paths(
        {"--volume": args.volume, "--model": args.model}, [("--output", args.output), ("--output", sidecar)]
    )
    check_writable(args.output, args.force)
    check_writable(sidecar, args.force)
    card = args.model or resolve_cards(args.models)[args.modality] or default_model_card(args.modality)
    detector = open_detector(card, backend=args.backend, threads=args.threads)
    if detector.card.modality != args.modality:
        raise LandmarkInitError(
            f"model {card} is a {detector.card.modality.upper()} model but --modality is {args.modality}; "
            "give a model of the volume's modality"
        )
    image = read_image(args.volume, args.modality.upper())
    mismatch = modality_mismatch(sitk.GetArrayViewFromImage(image), args.modality)
    if mismatch and not args.modality_mismatch_ok:
        raise LandmarkInitError(
            f"{args.volume} was given as --modality {args.modality} but {mismatch}; check the volume and "
            "--modality, or pass --modality-mismatch-ok to detect anyway"
        )
    detection = detector.detect_image(image)
    context = create_context()
    node = create_landmarks_node(context.scene, LandmarkSet(detection.labels, detection.points_ras), args.modality)
    for i, spread in enumerate(detection.spread_mm):
        if not math.isnan(spread):  # direct regression models give no spread
            node.SetNthControlPointDescription(i, f"{node.GetNthControlPointDescription(i)}; spread {spread:.1f} mm")
    write_landmarks_file(context, node, args.output, force=args.force)
    identity = model_identity(detector.card)
    sidecar_data = {**detection.as_dict(), "volume": str(args.volume), "model_card": str(card)}
    sidecar_data |= {"model_card_sha256": identity["card_sha256"], "model_folder": identity["folder"]}
    write_json(sidecar_data, sidecar, force=args.force)
    for label, p, s in zip(detection.labels, detection.points_ras, detection.spread_mm, strict=True):
        print(f"{label:<18s} RAS {p[0]:8.2f} {p[1]:8.2f} {p[2]:8.2f}   spread {s:5.1f} mm")
    for flag in detection.flags:
        print(f"warning: {flag}", file=sys.stderr)
    print(describe_model(args.modality, identity))
    print(f"wrote {args.output} and {sidecar.name} ({detection.backend}, {detection.seconds['total']:.2f} s)")
    return EXIT_OK


def cmd_landmarks_from_mask(args) -> int:
    from LandmarkInitLib.io.markups import write_landmarks
    from LandmarkInitLib.io.output_files import check_distinct_paths, check_writable
    from LandmarkInitLib.io.scene import create_context
    from LandmarkInitLib.mask_landmarks import read_mask_landmarks

    if not str(args.output).lower().endswith(".mrk.json"):
        raise LandmarkInitError(f"{args.output}: write the landmarks as Slicer markups, a .mrk.json name")
    check_distinct_paths({"--mask": args.mask}, {"--output": args.output})
    check_writable(args.output, args.force)
    result = read_mask_landmarks(args.mask, args.label)
    write_landmarks(create_context(), result.landmarks, args.output, args.modality, force=args.force)
    for label, p in zip(result.landmarks.labels, result.landmarks.points_ras.round(2) + 0.0, strict=True):  # no -0.00
        print(f"{label:<18s} RAS {p[0]:8.2f} {p[1]:8.2f} {p[2]:8.2f}")
    if result.ignored_voxels:
        print(
            f"note: {result.pieces - 1} stray piece(s) of the mask ({result.ignored_voxels} voxels) were ignored; "
            f"the landmarks are those of the gland's piece ({result.voxels} voxels)",
            file=sys.stderr,
        )
    if result.nearest_slice:
        print(
            "note: no voxel lies within 1.6 mm of mid-gland height: the posterior median is on the nearest slice",
            file=sys.stderr,
        )
    print(f"wrote {args.output}")
    return EXIT_OK


def cmd_run(args) -> int:
    from LandmarkInitLib.io.output_files import BATCH_SUMMARY_FILE
    from LandmarkInitLib.pipeline.batch import RunOptions, run_batch, summary_text

    if (args.cases is None) == (args.mr is None or args.us is None):
        raise LandmarkInitError("give either --mr and --us (one pair) or --cases (a folder or CSV of pairs)")
    options = RunOptions(
        mr_model=str(args.mr_model) if args.mr_model else None,
        us_model=str(args.us_model) if args.us_model else None,
        models=str(args.models) if args.models else None,
        weighting=args.weighting,
        refine=args.refine,
        qa_thresholds=str(args.qa_thresholds) if args.qa_thresholds else None,
        force=args.force,
        threads=args.threads,
        backend=args.backend,
    )
    from LandmarkInitLib.detection.models_folder import check_models_folder
    from LandmarkInitLib.io.output_files import check_folder_writable
    from LandmarkInitLib.pipeline.quality import load_thresholds

    # Before any work: a bad thresholds file or models folder, or an output folder that cannot be written fails
    # here, once.
    qa_thresholds = load_thresholds(options.qa_thresholds)
    check_models_folder(options.models)
    check_folder_writable(args.output_dir)
    if args.cases is not None:
        try:
            summary = run_batch(
                args.cases, args.output_dir, options, workers=args.workers, dask=args.dask, progress=not args.quiet
            )
        except KeyboardInterrupt:  # run_batch has stopped the workers and removed what the unfinished cases left
            print(
                "landmarkinit run: interrupted; finished cases are kept, run the same command again to do the rest",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
        print(summary_text(summary))
        print(f"wrote {args.output_dir}/<case>/ and {args.output_dir / BATCH_SUMMARY_FILE}")
        if summary["counts"]["failed"]:
            return EXIT_FAILURE
        return EXIT_REVIEW if summary["counts"]["review"] else EXIT_OK
    from LandmarkInitLib.detection.models_folder import describe_detectors
    from LandmarkInitLib.pipeline.initialize import Detectors
    from LandmarkInitLib.pipeline.run import check_output_dir, run_case

    inputs = {"--mr": args.mr, "--us": args.us, "--qa-thresholds": args.qa_thresholds}
    inputs.update({"--mr-model": args.mr_model, "--us-model": args.us_model})
    check_output_dir(args.output_dir, args.force, inputs)  # before any work; creates nothing
    detectors = Detectors.open(options.mr_model, options.us_model, options.backend, options.threads, options.models)
    result = run_case(
        args.mr,
        args.us,
        args.output_dir,
        detectors=detectors,
        weighting=args.weighting,
        refine=args.refine,
        qa_thresholds=qa_thresholds,
        force=args.force,
    )
    report = result.report
    for modality in ("mr", "us"):
        for lm in report[modality]["landmarks"]:
            p = lm["ras"]
            print(f"{modality.upper()} {lm['label']:<18s} RAS {p[0]:8.2f} {p[1]:8.2f} {p[2]:8.2f}")
    print(f"fit RMS {report['fit']['rms_mm']:.2f} mm, {report['seconds']['total_with_files']:.2f} s")
    print(describe_detectors(detectors))
    for flag in result.quality.flags:
        print(f"review: {flag}", file=sys.stderr)
    print(f"wrote {', '.join(report['files'])} to {args.output_dir}")
    return EXIT_REVIEW if result.quality.review else EXIT_OK


def cmd_add_correction(args) -> int:
    from LandmarkInitLib.io.site_dataset import add_run_output

    added = add_run_output(args.case, args.site_dataset)
    if added is None:  # not an error: nothing to learn from, and nothing written
        print(
            f"nothing added: no landmark in {args.case} was moved from its detected position (edit "
            "mr_landmarks.mrk.json or us_landmarks.mrk.json, e.g. in Slicer, and save them first)"
        )
        return EXIT_OK
    moved = [
        f"{m.upper()} {label} {mm:.1f} mm"
        for m, d in added.correction_mm.items()
        for label, mm in d.items()
        if mm > 1e-3
    ]
    print(f"{added.message} (corrected: {', '.join(moved)})")
    return EXIT_OK


def cmd_calibrate_flags(args) -> int:
    from tqdm import tqdm

    from LandmarkInitLib.io.output_files import check_distinct_paths, check_writable
    from LandmarkInitLib.pipeline.calibrate_flags import calibrate_flags, case_folders, summary_lines, write_thresholds
    from LandmarkInitLib.pipeline.initialize import Detectors

    check_distinct_paths({"--data": args.data}, {"--output": args.output})
    check_writable(args.output, args.force)  # before any work
    detectors = []

    def open_detectors():  # only when a case has no recorded predictions
        if not detectors:
            detectors.append(Detectors.open(args.mr_model, args.us_model, args.backend, args.threads))
        return detectors[0]

    bar = tqdm(total=len(case_folders(args.data)), unit="case", disable=args.quiet)
    result = calibrate_flags(
        args.data,
        false_alarm_rate=args.false_alarm_rate,
        detectors_factory=open_detectors,
        progress=lambda i, name: bar.update(1),
    )
    bar.close()
    write_thresholds(result, args.output, force=args.force)
    print("\n".join(summary_lines(result)))
    print(f"wrote {args.output}; use it with `landmarkinit run --qa-thresholds {args.output}`")
    return EXIT_OK


def cmd_app(args) -> int:
    from LandmarkInitLib.app.server import serve  # trame is needed by this sub-command only

    serve(
        args.mr,
        args.us,
        host=args.host,
        port=args.port,
        output_dir=args.output_dir,
        open_browser=args.open,
        backend=args.backend,
        threads=args.threads,
        models=args.models,
        site_dataset=args.site_dataset,
    )
    return EXIT_OK


def add_commands(sub) -> list[tuple[str, str]]:
    listed = []

    def command(name, summary, description, parents=()):
        listed.append((name, summary))
        return sub.add_parser(name, description=description, parents=list(parents))

    p = command(
        "run",
        "MR + US in: landmarks, rigid MR-to-US transform, quality check and report out (one pair or many)",
        "Detect the three landmarks on the MR and the US volume, fit the rigid MR-to-US transform, check its quality "
        f"and write {', '.join(name for name in RUN_FILES if name != LANDMARK_TRANSFORM_FILE)} to OUTPUT_DIR. "
        "With --cases, do it for every pair of a folder (dataset layout) or CSV (case,mr,us), one sub-folder per "
        "case, resuming where an interrupted batch stopped. Exit status 3: a result is flagged for review.",
        [shared.output_dir(), shared.models(), shared.runtime(default_threads=1), shared.workers()]
        + [shared.force(), shared.quiet()],
    )
    p.add_argument("--mr", type=Path, help="MR volume: a file or a folder holding one DICOM series (moving)")
    p.add_argument("--us", type=Path, help="US volume (fixed)")
    p.add_argument("--cases", type=Path, metavar="DIR_OR_CSV", help="many pairs: a dataset folder or a CSV")
    p.add_argument(
        "--weighting",
        choices=WEIGHTINGS,
        default=DEFAULT_WEIGHTING,
        help=f"landmark weights of the fit: spread (1 / (s_MR^2 + s_US^2)) or none (default {DEFAULT_WEIGHTING})",
    )
    p.add_argument("--refine", action="store_true", help="refine with intensity-based rigid registration (MI)")
    p.add_argument("--qa-thresholds", type=Path, metavar="JSON", help="QA thresholds (default: the shipped ones)")
    p.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="--cases: run on a Dask distributed cluster (scheduler address, or 'local' to start one here)",
    )
    p.set_defaults(func=cmd_run)

    p = command(
        "register",
        "fit the rigid MR-to-US transform to matched landmark files",
        "Fit the least-squares transform that maps the moving (MR) landmarks onto the fixed (US) landmarks, matched "
        "by label, and write it as a Slicer transform file whose 'to parent' maps MR RAS points to US RAS points "
        "(load it in Slicer and put the MR volume under it).",
        [shared.force()],
    )
    p.add_argument(
        "--fixed-landmarks",
        required=True,
        type=Path,
        metavar="US_FILE",
        help="landmarks on the fixed (US) volume: .mrk.json, .fcsv or .csv",
    )
    p.add_argument(
        "--moving-landmarks",
        required=True,
        type=Path,
        metavar="MR_FILE",
        help="landmarks on the moving (MR) volume: .mrk.json, .fcsv or .csv",
    )
    p.add_argument(
        "--output",
        required=True,
        type=Path,
        metavar="MR_TO_US",
        help="transform file to write: .h5 (recommended), .tfm or .txt",
    )
    p.add_argument(
        "--mode", choices=FIT_MODES, default="rigid", help="rigid (default) or similarity (rigid + isotropic scale)"
    )
    p.add_argument(
        "--report", type=Path, metavar="JSON", help="also write a JSON report: matrix, per-landmark residuals, RMS"
    )
    p.add_argument(
        "--csv-coordinate-system",
        choices=("RAS", "LPS"),
        type=str.upper,
        help="coordinate system of .csv inputs that do not state it in a '# coordinateSystem = ' line",
    )
    p.add_argument(
        "--any-labels",
        action="store_true",
        help="accept any labels (identical in both files) instead of exactly apex, bladder_neck, posterior_median",
    )
    p.set_defaults(func=cmd_register)

    p = command(
        "detect",
        "detect the three landmarks on one volume",
        "Detect apex, bladder neck and posterior median on an MR or US volume and write them as Slicer markups "
        "(.mrk.json, spread in each point's description) plus a sidecar OUTPUT.detection.json (spreads, quality "
        "flags, backend, timing).",
        [shared.runtime(), shared.models_folder(), shared.force()],
    )
    p.add_argument(
        "--volume", required=True, type=Path, help="volume file (.nrrd, .nii, .nii.gz, .mha) or DICOM series folder"
    )
    p.add_argument("--modality", required=True, choices=MODALITIES)
    p.add_argument(
        "--modality-mismatch-ok",
        action="store_true",
        help="detect even if the volume's intensities look like the other modality (flagged in the output)",
    )
    p.add_argument(
        "--model",
        type=Path,
        help="model card JSON (default: the --models folder's or the shipped model of the modality)",
    )
    p.add_argument("--output", required=True, type=Path, help="landmarks file to write (.mrk.json)")
    p.set_defaults(func=cmd_detect)

    p = command(
        "landmarks-from-mask",
        "derive the three landmarks from a gland segmentation",
        "Derive apex, bladder neck and posterior median from a gland segmentation (label map: NRRD, NIfTI, "
        "MetaImage or a DICOM folder), with a fixed definition on the voxel centres in RAS (S: the patient's "
        "superior axis): apex and bladder neck are the centroids of the voxels within 1.6 mm (in S) of the lowest "
        "and the highest one; the posterior median is the most posterior voxel within 1.6 mm of mid-height and "
        "2 mm (in R) of the mid-gland section's mean R. Empty, fragmented or multi-label masks (without --label) "
        "are refused. Writes Slicer markups (.mrk.json).",
        [shared.force()],
    )
    p.add_argument("--mask", required=True, type=Path, metavar="FILE_OR_DICOM_DIR", help="gland segmentation")
    p.add_argument("--output", required=True, type=Path, help="landmarks file to write (.mrk.json)")
    p.add_argument("--label", type=int, metavar="N", help="the gland's label in a multi-label map")
    p.add_argument(
        "--modality",
        choices=MODALITIES,
        default="mr",
        help="modality of the segmented volume, for the points' colour in Slicer (default mr)",
    )
    p.set_defaults(func=cmd_landmarks_from_mask)

    p = command(
        "calibrate-flags",
        "choose the quality-flag thresholds on a site's own corrected cases",
        "Run the current models on every case of DATA (a site dataset of corrected cases, or an evaluation set; "
        "recorded predictions are used as they are), take the distance between predicted and corrected landmarks as "
        "the detector's error, choose the smallest set of quality features and thresholds that flags every failed "
        "initialization at the stated false-alarm rate, print the figures and write the thresholds file for "
        "`run --qa-thresholds`.",
        [shared.models(), shared.runtime(default_threads=1), shared.force(), shared.quiet()],
    )
    p.add_argument("--data", required=True, type=Path, metavar="DIR", help="site dataset or evaluation set folder")
    p.add_argument("--output", required=True, type=Path, metavar="JSON", help="thresholds file to write")
    p.add_argument(
        "--false-alarm-rate",
        type=float,
        default=0.1,
        metavar="RATE",
        help="expected share of good cases flagged on new cases (default 0.1)",
    )
    p.set_defaults(func=cmd_calibrate_flags)

    p = command(
        "app",
        "the detect / nudge / save workflow in the browser (local web server; prints its URL)",
        "Start the LandmarkInit browser app (trame-slicer): US, MR and fused slice views, Detect, drag points with a "
        "live re-fit, Save. Without --mr/--us it opens the shipped synthetic sample pair; volumes (NRRD, NIfTI, "
        "MetaImage or a DICOM folder) can also be loaded from the page.",
        [
            shared.runtime(default_backend="auto"),
            shared.models_folder(),
            shared.output_dir(
                required=False, default="landmarkinit-output", help="folder Save writes into (or a subfolder)"
            ),
        ],
    )
    p.add_argument("--mr", type=Path, help="MR volume file or DICOM folder (moving)")
    p.add_argument("--us", type=Path, help="US volume file or DICOM folder (fixed)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free port, printed at start)")
    p.add_argument("--open", action="store_true", help="open the page in the system's web browser")
    p.add_argument(
        "--site-dataset",
        type=Path,
        metavar="DIR",
        help="site dataset folder that Save adds corrected cases to when the page's setting is on (default: "
        "OUTPUT_DIR/site-dataset)",
    )
    p.set_defaults(func=cmd_app)

    p = command(
        "add-correction",
        "add a `run` output whose landmarks you corrected to a site dataset (the corrections log)",
        "Add the case of a `landmarkinit run` output folder whose mr_landmarks.mrk.json / us_landmarks.mrk.json you "
        "edited and saved again to a site dataset folder (created if missing), in the layout `train` reads: both "
        "input volumes (NRRD: voxels and geometry only, no patient metadata), the detected and the corrected "
        "landmarks, the models' names and checksums, and the time. The same volumes again update their case. The "
        "inputs named in report.json must be unchanged. Nothing moved: nothing is added (exit 0).",
    )
    p.add_argument("--case", required=True, type=Path, metavar="OUTPUT_DIR", help="output folder of `landmarkinit run`")
    p.add_argument("--site-dataset", required=True, type=Path, metavar="DIR", help="site dataset folder")
    p.set_defaults(func=cmd_add_correction)
    return listed


COMMANDS = CommandGroup("clinical commands", add_commands)
