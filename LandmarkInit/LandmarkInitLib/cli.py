"""``landmarkinit`` command line: thin sub-commands over the library.

Exit status: 0 success, 2 bad usage or bad input (the message says what and what to do), 1 unexpected
failure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .errors import LandmarkInitError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


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
    from .phantom.case import PhantomOptions
    from .phantom.generator import generate_dataset

    if not 0.0 <= args.partial_fraction <= 1.0:
        raise LandmarkInitError("--partial-fraction must be between 0 and 1")
    summary = generate_dataset(
        args.output,
        args.count,
        args.seed,
        workers=args.workers,
        start=args.start,
        options=PhantomOptions(probe=args.probe, partial_fraction=args.partial_fraction),
        force=args.force,
        progress=not args.quiet,
    )
    times = summary["seconds_per_case"]
    mean = f", {sum(times) / len(times):.1f} s per case" if times else ""
    print(
        f"{args.output}: {len(summary['written'])} cases written, {summary['skipped_existing']} already present{mean}"
    )
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
        "--preview",
        type=Path,
        metavar="CASE_DIR",
        help="write a montage of MR and US slices through each landmark of CASE_DIR to --output PNG",
    )
    p.add_argument("--force", action="store_true", help="regenerate cases (or the PNG) that already exist")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_phantom)
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
