"""``landmarkinit`` command line: thin sub-commands over the library.

Exit status: 0 success, 2 bad usage or bad input (the message says what and what to do), 1 unexpected
failure (for `run --cases`: at least one case failed), 3 `run` finished but a result is flagged for review.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from . import __version__
from .errors import LandmarkInitError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_REVIEW = 0, 1, 2, 3


def _quiet_vtk() -> None:
    """VTK/MRML log their own multi-line errors to stderr; the CLI reports problems itself."""
    import vtk

    vtk.vtkObject.GlobalWarningDisplayOff()
    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_OFF)


def cmd_register(args) -> int:
    from .landmark_set import match_landmarks
    from .landmarks import LANDMARK_LABELS
    from .markups_io import read_landmarks_file
    from .output_files import check_writable
    from .registration import fit_transform
    from .report import fit_report, format_fit, write_json
    from .scene import create_context
    from .transform_io import create_transform_node, save_transform

    # Check every output before computing anything, so that a refusal leaves no partial result.
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


def cmd_phantom(args) -> int:
    if args.preview is not None:
        from .output_files import check_writable
        from .phantom.preview import write_preview

        if args.output is None or args.output.suffix.lower() != ".png":
            raise LandmarkInitError("--preview needs --output FILE.png")
        check_writable(args.output, args.force)
        print(f"wrote {write_preview(args.preview, args.output)}")
        return EXIT_OK
    if args.output is None:
        raise LandmarkInitError("--output DIR is required")
    from .phantom.anatomy import RECTUM_LATERAL_MAX_MM
    from .phantom.case import PhantomOptions
    from .phantom.generator import generate_dataset

    if not 0.0 <= args.partial_fraction <= 1.0:
        raise LandmarkInitError("--partial-fraction must be between 0 and 1")
    if not 0.0 <= args.rectum_lateral <= RECTUM_LATERAL_MAX_MM:
        raise LandmarkInitError(f"--rectum-lateral must be between 0 and {RECTUM_LATERAL_MAX_MM:g} mm")
    summary = generate_dataset(
        args.output,
        args.count,
        args.seed,
        workers=args.workers,
        start=args.start,
        options=PhantomOptions(
            probe=args.probe, partial_fraction=args.partial_fraction, rectum_lateral_mm=args.rectum_lateral
        ),
        force=args.force,
        progress=not args.quiet,
    )
    times = summary["seconds_per_case"]
    mean = f", {sum(times) / len(times):.1f} s per case" if times else ""
    print(
        f"{args.output}: {len(summary['written'])} cases written, {summary['skipped_existing']} already present{mean}"
    )
    return EXIT_OK


def cmd_train(args) -> int:
    try:
        from .training.train import TrainConfig, train
    except ImportError as e:
        raise LandmarkInitError(f"training needs torch and MONAI ({e}); run `make setup` in the repository") from None
    cfg = TrainConfig(
        data=str(args.data[0]) if len(args.data) == 1 else [str(d) for d in args.data],
        modality=args.modality,
        method=args.method,
        output=str(args.output),
        val_data=str(args.val_data) if args.val_data else None,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        seed=args.seed,
        channels=args.channels,
        reg_weight=args.reg_weight,
        augment=not args.no_augment,
        max_cases=args.max_cases,
        max_offset_mm=args.max_offset,
        init_weights=str(args.init_weights) if args.init_weights else None,
        threads=args.threads,
        grid_shape=args.grid_shape,
        grid_spacing_mm=args.grid_spacing,
    )
    result = train(cfg, resume=args.resume, progress=not args.quiet)
    print(f"{args.output}: best validation MRE {result['best_val_mre_mm']:.2f} mm")
    return EXIT_OK


def cmd_export(args) -> int:
    try:
        from .training.export import export_run
    except ImportError as e:
        raise LandmarkInitError(f"export needs torch and onnx ({e}); run `make setup` in the repository") from None
    card = export_run(args.run, args.output, name=args.name, force=args.force)
    print(f"wrote {card} with {card.with_suffix('.onnx').name} and {card.with_suffix('.pt').name}")
    return EXIT_OK


def cmd_run(args) -> int:
    from .batch import RunOptions, run_batch, summary_text

    if (args.cases is None) == (args.mr is None or args.us is None):
        raise LandmarkInitError("give either --mr and --us (one pair) or --cases (a folder or CSV of pairs)")
    options = RunOptions(
        mr_model=str(args.mr_model) if args.mr_model else None,
        us_model=str(args.us_model) if args.us_model else None,
        weighting=args.weighting,
        refine=args.refine,
        qa_thresholds=str(args.qa_thresholds) if args.qa_thresholds else None,
        force=args.force,
        threads=args.threads,
    )
    if args.cases is not None:
        summary = run_batch(
            args.cases, args.output_dir, options, workers=args.workers, dask=args.dask, progress=not args.quiet
        )
        print(summary_text(summary))
        print(f"wrote {args.output_dir}/<case>/ and {args.output_dir}/batch_summary.json")
        if summary["counts"]["failed"]:
            return EXIT_FAILURE
        return EXIT_REVIEW if summary["counts"]["review"] else EXIT_OK
    from .initialization import Detectors
    from .pipeline import check_output_dir, run_case
    from .quality import load_thresholds

    check_output_dir(args.output_dir, args.force)  # before any work
    result = run_case(
        args.mr,
        args.us,
        args.output_dir,
        detectors=Detectors.open(options.mr_model, options.us_model, threads=args.threads),
        weighting=args.weighting,
        refine=args.refine,
        qa_thresholds=load_thresholds(options.qa_thresholds),
        force=args.force,
    )
    report = result.report
    for modality in ("mr", "us"):
        for lm in report[modality]["landmarks"]:
            p = lm["ras"]
            print(f"{modality.upper()} {lm['label']:<18s} RAS {p[0]:8.2f} {p[1]:8.2f} {p[2]:8.2f}")
    print(f"fit RMS {report['fit']['rms_mm']:.2f} mm, {report['seconds']['total_with_files']:.2f} s")
    for flag in result.quality.flags:
        print(f"review: {flag}", file=sys.stderr)
    print(f"wrote {', '.join(report['files'])} to {args.output_dir}")
    return EXIT_REVIEW if result.quality.review else EXIT_OK


def cmd_evaluate(args) -> int:
    from .evaluation.registration import calibrate_qa, evaluate, write_report
    from .quality import load_thresholds

    rows = evaluate(
        args.data, mr_card=args.mr_model, us_card=args.us_model, workers=args.workers, progress=not args.quiet
    )
    if args.calibrate_qa:
        thresholds = calibrate_qa(rows, args.calibrate_qa, source=str(args.data))
        source = f"thresholds calibrated on these cases, written to {args.calibrate_qa}"
    else:
        thresholds = load_thresholds(args.qa_thresholds)
        source = f"thresholds from {args.qa_thresholds or 'the shipped Resources/Models/qa_thresholds.json'}"
    report = write_report(
        rows, args.output_dir, description=args.description or "", qa_thresholds=thresholds, qa_source=source
    )
    print(report.read_text())
    return EXIT_OK


def cmd_two_stage(args) -> int:
    from .detection.model_card import write_two_stage_card

    card = write_two_stage_card(
        args.global_card,
        args.local_cards,
        args.output,
        iterations=args.iterations,
        mid_gland_weight=args.mid_gland,
        axis_plane_weight=args.axis_plane,
        mirror_average=args.mirror_average,
        name=args.name,
        force=args.force,
    )
    print(f"wrote {card}")
    return EXIT_OK


def cmd_detect(args) -> int:

    from .detection.runtime import open_detector
    from .landmark_set import LandmarkSet
    from .markups_io import create_landmarks_node, write_landmarks_file
    from .output_files import check_writable
    from .resources import default_model_card
    from .scene import create_context

    if not str(args.output).lower().endswith(".mrk.json"):
        raise LandmarkInitError(f"{args.output}: write detected landmarks as Slicer markups, a .mrk.json name")
    sidecar = Path(str(args.output)[: -len(".mrk.json")] + ".detection.json")
    check_writable(args.output, args.force)
    check_writable(sidecar, args.force)
    card = args.model or default_model_card(args.modality)
    detector = open_detector(card, backend=args.backend)
    if detector.card.modality != args.modality:
        raise LandmarkInitError(
            f"model {card} is a {detector.card.modality.upper()} model but --modality is {args.modality}; "
            "give a model of the volume's modality"
        )
    detection = detector.detect_file(args.volume)
    context = create_context()
    node = create_landmarks_node(context.scene, LandmarkSet(detection.labels, detection.points_ras), args.modality)
    for i, spread in enumerate(detection.spread_mm):
        if not math.isnan(spread):  # direct regression models give no spread
            node.SetNthControlPointDescription(i, f"{node.GetNthControlPointDescription(i)}; spread {spread:.1f} mm")
    write_landmarks_file(context, node, args.output, force=args.force)
    from .report import write_json

    write_json({**detection.as_dict(), "volume": str(args.volume), "model_card": str(card)}, sidecar, force=args.force)
    for label, p, s in zip(detection.labels, detection.points_ras, detection.spread_mm, strict=True):
        print(f"{label:<18s} RAS {p[0]:8.2f} {p[1]:8.2f} {p[2]:8.2f}   spread {s:5.1f} mm")
    for flag in detection.flags:
        print(f"warning: {flag}", file=sys.stderr)
    print(f"wrote {args.output} and {sidecar.name} ({detection.backend}, {detection.seconds['total']:.2f} s)")
    return EXIT_OK


def cmd_app(args) -> int:
    from .app.server import serve  # trame is needed by this sub-command only

    serve(
        args.mr,
        args.us,
        host=args.host,
        port=args.port,
        output_dir=args.output_dir,
        open_browser=args.open,
        backend=args.backend,
    )
    return EXIT_OK


def cmd_evaluate_detectors(args) -> int:
    from .evaluation.detectors import evaluate_cards, write_report

    results = evaluate_cards(args.models, args.data, progress=not args.quiet, backend=args.backend)
    report = write_report(results, args.output_dir, data_description=args.description or "")
    print(report.read_text())
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="landmarkinit",
        description="Landmark-based initialization of MR-to-ultrasound prostate registration.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "register",
        help="fit the rigid MR-to-US transform to matched landmark files",
        description=(
            "Fit the least-squares transform that maps the moving (MR) landmarks onto the fixed (US) "
            "landmarks, matched by label, and write it as a Slicer transform file whose 'to parent' maps "
            "MR RAS points to US RAS points (load it in Slicer and put the MR volume under it)."
        ),
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
        "--mode",
        choices=("rigid", "similarity"),
        default="rigid",
        help="rigid (default) or similarity (rigid + isotropic scale)",
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
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.set_defaults(func=cmd_register)

    p = sub.add_parser(
        "phantom",
        help="generate synthetic paired prostate MR/TRUS cases with exact ground truth",
        description=(
            "Generate synthetic (not patient) paired prostate MR and transrectal US volumes with gland masks, "
            "the three landmarks and the ground-truth MR-to-US transform, one folder per case "
            "(mr.nrrd, us.nrrd, mr_gland.nrrd, us_gland.nrrd, mr_landmarks.mrk.json, us_landmarks.mrk.json, "
            "mr_to_us.h5, case.json). The same seed gives the same cases, whatever --workers. "
            "With --preview CASE_DIR, write a montage PNG of a case instead."
        ),
    )
    p.add_argument("--count", type=int, default=1, help="number of cases to generate (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the dataset (default 0)")
    p.add_argument(
        "--start",
        type=int,
        default=0,
        metavar="INDEX",
        help="index of the first case (case_<INDEX>); to extend a dataset (default 0)",
    )
    p.add_argument(
        "--output", "-o", type=Path, metavar="PATH", help="output folder for the cases, or the PNG file with --preview"
    )
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument(
        "--probe",
        choices=("mixed", "end-fire", "side-fire"),
        default="mixed",
        help="TRUS probe type: end-fire, side-fire, or mixed (half each, default)",
    )
    p.add_argument(
        "--partial-fraction",
        type=float,
        default=0.15,
        metavar="F",
        help="fraction of cases with the probe aimed off the gland, so that part of it "
        "(often a landmark) is outside the US field of view (default 0.15)",
    )
    p.add_argument(
        "--rectum-lateral",
        type=float,
        default=4.0,
        metavar="MM",
        help="largest lateral offset of the rectum (and the TRUS probe in it) from the gland's mid-sagittal plane "
        "(default 4, the anatomical range; wider ranges make training data in which the rectum does not predict "
        "the posterior median)",
    )
    p.add_argument(
        "--preview",
        type=Path,
        metavar="CASE_DIR",
        help="write a montage of MR and US slices through each landmark of CASE_DIR to --output PNG",
    )
    p.add_argument("--force", action="store_true", help="regenerate cases (or the PNG) that already exist")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_phantom)

    p = sub.add_parser(
        "train",
        help="train a landmark detector (torch, MONAI) on a phantom dataset",
        description=(
            "Train one detector for one modality. Methods (Fang et al. 2023, Table 1): dsnt (U-Net + DSNT), "
            "dsnt-var (+ variance regularization), dsnt-dist (+ distance-map regularization), regression "
            "(fully connected coordinate head), heatmap (Gaussian heatmap matching). Runs on CPU or GPU; launch "
            "with torchrun for DistributedDataParallel on several processes or nodes. Global-to-local "
            "(Noothout et al. 2020): g2l-global (patch regression + classification FCNN on the whole volume); "
            "local refinement on fine patches around each landmark: g2l-local (the same FCNN) or dsnt-local "
            "(U-Net + DSNT with distance-map regularization). Combine a global and a local model with "
            "`landmarkinit two-stage`."
        ),
    )
    p.add_argument(
        "--data",
        required=True,
        type=Path,
        nargs="+",
        help="training dataset folder(s) (landmarkinit phantom layout); the cases of several folders are pooled",
    )
    p.add_argument("--val-data", type=Path, help="validation dataset folder (default: the last 15%% of --data)")
    p.add_argument("--modality", required=True, choices=("mr", "us"))
    p.add_argument(
        "--method",
        required=True,
        choices=("dsnt", "dsnt-var", "dsnt-dist", "regression", "heatmap", "g2l-global", "g2l-local", "dsnt-local"),
    )
    p.add_argument("--output", required=True, type=Path, metavar="RUN", help="run folder (checkpoints, curve, config)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (paper: 1e-4; default 1e-3)")
    p.add_argument(
        "--lr-schedule",
        choices=("constant", "cosine"),
        default="constant",
        help="constant (default) or cosine annealing to zero over the epochs",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64, 128], help="U-Net / encoder widths")
    p.add_argument("--reg-weight", type=float, help="lambda_2 of the regularizer (default: the paper's value)")
    p.add_argument("--grid-shape", type=int, nargs=3, metavar=("I", "J", "K"), help="model grid size in voxels")
    p.add_argument("--grid-spacing", type=float, metavar="MM", help="model grid spacing in mm")
    p.add_argument("--max-cases", type=int, help="use only the first N training cases")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    p.add_argument(
        "--max-offset",
        type=float,
        default=10.0,
        metavar="MM",
        help="local methods: largest distance of a training patch centre from its landmark (default 10)",
    )
    p.add_argument("--no-augment", action="store_true", help="no spatial or intensity augmentation")
    p.add_argument(
        "--init-weights",
        type=Path,
        metavar="RUN_PT_OR_CARD",
        help="fine-tune: start from the weights of another run (its best.pt), a checkpoint, or an exported model "
        "card (.json, e.g. a shipped stage: its TorchScript file), with a fresh optimizer and schedule; the network "
        "(method, grid, channels) must be the same",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in RUN from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "export",
        help="export a training run to ONNX + TorchScript + model card",
        description="Write OUTPUT.onnx, OUTPUT.pt (TorchScript) and OUTPUT.json (model card with "
        "checksums, grid, normalization, training data and validation metrics) from the "
        "best checkpoint of RUN; checks that both exports agree with torch.",
    )
    p.add_argument("run", type=Path, help="training run folder")
    p.add_argument(
        "--output", required=True, type=Path, help="output path without extension, e.g. Resources/Models/us_landmarks"
    )
    p.add_argument("--name", help="model name recorded in the card (default: the output name)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "run",
        help="MR + US in: landmarks, rigid MR-to-US transform, quality check and report out (one pair or many)",
        description="Detect the three landmarks on the MR and the US volume, fit the rigid MR-to-US transform, "
        "check its quality and write OUTPUT_DIR/{mr,us}_landmarks.mrk.json, mr_to_us.h5, report.json, report.html "
        "and report.png. With --cases, do it for every pair of a folder (dataset layout) or CSV (case,mr,us), one "
        "sub-folder per case, resuming where an interrupted batch stopped. Exit status 3: a result is flagged "
        "for review.",
    )
    p.add_argument("--mr", type=Path, help="MR volume (moving)")
    p.add_argument("--us", type=Path, help="US volume (fixed)")
    p.add_argument("--cases", type=Path, metavar="DIR_OR_CSV", help="many pairs: a dataset folder or a CSV")
    p.add_argument("--output-dir", "-o", required=True, type=Path)
    p.add_argument("--mr-model", type=Path, metavar="CARD", help="MR model card (default: the shipped one)")
    p.add_argument("--us-model", type=Path, metavar="CARD", help="US model card (default: the shipped one)")
    p.add_argument(
        "--weighting",
        choices=("none", "spread"),
        default="spread",
        help="landmark weights of the fit: spread (default; 1 / (s_MR^2 + s_US^2)) or none",
    )
    p.add_argument("--refine", action="store_true", help="refine with intensity-based rigid registration (MI)")
    p.add_argument("--qa-thresholds", type=Path, metavar="JSON", help="QA thresholds (default: the shipped ones)")
    p.add_argument("--workers", type=int, default=1, help="--cases: parallel worker processes (default 1)")
    p.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="--cases: run on a Dask distributed cluster (scheduler address, or 'local' to start one here)",
    )
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads per worker (default 1)")
    p.add_argument("--force", action="store_true", help="overwrite existing results")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "evaluate",
        help="Tables 2-4: initialization methods compared on held-out cases (SRE, Dice, rotation, TRE, QA rates)",
        description="On a dataset with ground truth (phantom layout), run identity, moments, MI registration, "
        "ground-truth landmarks, detected landmarks (plain, spread-weighted, + MI refinement) on every case and "
        "write registration.md / .json and box plots to OUTPUT_DIR. --calibrate-qa chooses the quality-control "
        "thresholds on these cases (use validation data) and writes them to JSON.",
    )
    p.add_argument("--data", required=True, type=Path, help="dataset folder (phantom layout)")
    p.add_argument("--output-dir", "-o", required=True, type=Path)
    p.add_argument("--mr-model", type=Path, metavar="CARD", help="MR model card (default: the shipped one)")
    p.add_argument("--us-model", type=Path, metavar="CARD", help="US model card (default: the shipped one)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument("--calibrate-qa", type=Path, metavar="JSON", help="choose QA thresholds on these cases, write them")
    p.add_argument("--qa-thresholds", type=Path, metavar="JSON", help="QA thresholds to assess (default: shipped)")
    p.add_argument("--description", help="data description for the report")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "two-stage",
        help="combine a global detector and a local refinement model into one two-stage model card",
        description="Write a model card that runs GLOBAL on the whole volume, then LOCAL on fine patches around "
        "each landmark's estimate (--iterations passes; several LOCAL cards are an ensemble whose answers are "
        "averaged). `landmarkinit detect --model CARD` runs it.",
    )
    p.add_argument("--global", dest="global_card", required=True, type=Path, help="model card of the global stage")
    p.add_argument(
        "--local", dest="local_cards", required=True, type=Path, nargs="+", help="model card(s) of the local stage"
    )
    p.add_argument("--output", required=True, type=Path, help="two-stage model card to write (.json)")
    p.add_argument("--iterations", type=int, default=2, help="local refinement passes (default 2)")
    p.add_argument(
        "--mid-gland",
        type=float,
        default=0.0,
        metavar="W",
        help="pull the posterior median W (0-1) of the way to mid-gland height, halfway between the detected apex "
        "and bladder neck (default 0: off)",
    )
    p.add_argument(
        "--axis-plane",
        type=float,
        default=0.0,
        metavar="W",
        help="then move the posterior median W (0-1) of its distance toward the plane through the detected apex -> "
        "bladder-neck axis parallel to the volume's sagittal (J-K) direction: shrinks its left-right offset "
        "(default 0: off)",
    )
    p.add_argument(
        "--mirror-average",
        action="store_true",
        help="also detect on the volume's left-right mirror image (first index axis) and average the two answers: "
        "twice the detection time, exactly mirror-symmetric results",
    )
    p.add_argument("--name", help="model name recorded in the card (default: the output name)")
    p.add_argument("--force", action="store_true", help="overwrite an existing card")
    p.set_defaults(func=cmd_two_stage)

    p = sub.add_parser(
        "detect",
        help="detect the three landmarks on one volume",
        description="Detect apex, bladder neck and posterior median on an MR or US volume and write "
        "them as Slicer markups (.mrk.json, spread in each point's description) plus a "
        "sidecar OUTPUT.detection.json (spreads, quality flags, backend, timing).",
    )
    p.add_argument("--volume", required=True, type=Path, help="volume file (.nrrd, .nii, .nii.gz, .mha)")
    p.add_argument("--modality", required=True, choices=("mr", "us"))
    p.add_argument("--model", type=Path, help="model card JSON (default: the shipped model of the modality)")
    p.add_argument("--output", required=True, type=Path, help="landmarks file to write (.mrk.json)")
    p.add_argument(
        "--backend",
        choices=("onnx", "torchscript", "auto"),
        default="onnx",
        help="onnx (default), torchscript (needs torch), or auto",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser(
        "evaluate-detectors",
        help="Table 1: detector accuracy on held-out cases",
        description="Run exported detectors (model cards) on a held-out dataset and write MRE +- SD "
        "per modality and landmark, SDR at 2/2.5/3/4 mm, Wilcoxon tests, box plots and a "
        "markdown table to OUTPUT_DIR.",
    )
    p.add_argument("--models", required=True, nargs="+", type=Path, help="model cards to evaluate")
    p.add_argument("--data", required=True, type=Path, help="held-out dataset folder")
    p.add_argument("--output-dir", required=True, type=Path)
    p.add_argument("--backend", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("--description", help="a line describing the data, put in the report")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluate_detectors)
    p = sub.add_parser(
        "app",
        help="the detect / nudge / save workflow in the browser (local web server; prints its URL)",
        description="Start the LandmarkInit browser app (trame-slicer): US, MR and fused slice views, Detect, drag "
        "points with a live re-fit, Save. Without --mr/--us it opens the shipped synthetic sample pair; volumes "
        "(NRRD, NIfTI, MetaImage or a DICOM folder) can also be loaded from the page.",
    )
    p.add_argument("--mr", type=Path, help="MR volume file or DICOM folder (moving)")
    p.add_argument("--us", type=Path, help="US volume file or DICOM folder (fixed)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free port, printed at start)")
    p.add_argument(
        "--output-dir", "-o", default="landmarkinit-output", help="folder proposed for Save (editable in the page)"
    )
    p.add_argument("--open", action="store_true", help="open the page in the system's web browser")
    p.add_argument(
        "--backend",
        choices=("auto", "onnx", "torchscript"),
        default="auto",
        help="detector runtime (default auto: TorchScript when torch is installed, else ONNX; the page says which ran)",
    )
    p.set_defaults(func=cmd_app)

    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_vtk()
    try:
        return args.func(args)
    except LandmarkInitError as e:
        print(f"landmarkinit {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
