"""Research ``landmarkinit`` commands: ``phantom`` (synthetic data), ``train`` / ``export`` / ``two-stage`` (building
detectors), ``finetune`` (a detector adapted to a site's corrected cases, under a held-out guard),
``evaluate-detectors`` / ``evaluate`` (the paper's Tables 1-4), ``evaluate-mask-landmarks`` (mask-derived vs phantom
landmarks) and ``experiment`` (a recorded recipe of those steps). Registered with the ``landmarkinit`` command through
the ``landmarkinit.commands`` entry point (pyproject.toml); torch and MONAI are imported only by the commands that
need them."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from LandmarkInitLib.cli import EXIT_FAILURE, EXIT_OK, CommandGroup
from LandmarkInitLib.cli import options as shared
from LandmarkInitLib.detection.postprocessing import STEPS
from LandmarkInitLib.errors import LandmarkInitError
from LandmarkInitLib.landmarks import MODALITIES
from LandmarkInitResearch.training.methods import METHODS


def cmd_phantom(args) -> int:
    if args.preview is not None:
        from LandmarkInitLib.io.output_files import check_writable
        from LandmarkInitResearch.phantom.preview import write_preview

        if args.output is None or args.output.suffix.lower() != ".png":
            raise LandmarkInitError("--preview needs --output FILE.png")
        check_writable(args.output, args.force)
        print(f"wrote {write_preview(args.preview, args.output)}")
        return EXIT_OK
    if args.output is None:
        raise LandmarkInitError("--output DIR is required")
    from LandmarkInitResearch.phantom.anatomy import RECTUM_LATERAL_MAX_MM
    from LandmarkInitResearch.phantom.case import PhantomOptions
    from LandmarkInitResearch.phantom.generator import generate_dataset

    if not 0.0 <= args.partial_fraction <= 1.0:
        raise LandmarkInitError("--partial-fraction must be between 0 and 1")
    if not 0.0 <= args.rectum_lateral <= RECTUM_LATERAL_MAX_MM:
        raise LandmarkInitError(f"--rectum-lateral must be between 0 and {RECTUM_LATERAL_MAX_MM:g} mm")
    if not 0.0 <= args.endorectal_coil <= 1.0:
        raise LandmarkInitError("--endorectal-coil must be between 0 and 1")
    if not 0.0 <= args.us_artifacts <= 1.0:
        raise LandmarkInitError("--us-artifacts must be between 0 and 1")
    if not 0.0 <= args.gland_mask_fraction <= 1.0:
        raise LandmarkInitError("--gland-mask-fraction must be between 0 and 1")
    # fraction 0 reads no mask: a recipe can pass the options and switch real shapes off with one variable
    masks = (
        gland_mask_files(args.gland_masks, args.gland_mask_folds, args.gland_mask_split)
        if args.gland_mask_fraction > 0
        else []
    )
    summary = generate_dataset(
        args.output,
        args.count,
        args.seed,
        workers=args.workers,
        start=args.start,
        options=PhantomOptions(
            probe=args.probe,
            partial_fraction=args.partial_fraction,
            rectum_lateral_mm=args.rectum_lateral,
            us_scanner=args.us_scanner,
            endorectal_coil_fraction=args.endorectal_coil,
            us_artifacts_fraction=args.us_artifacts,
            gland_mask_fraction=args.gland_mask_fraction if masks else 0.0,
            gland_masks=masks,
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


def gland_mask_files(data: Path | None, folds, split_path) -> list[str]:
    """The gland masks (absolute paths) of the real cross-validation folds ``folds`` under ``data`` (PROMISE12
    layout); a held-out test case is never among them."""
    if data is None:
        if folds or split_path:
            raise LandmarkInitError("--gland-mask-folds and --gland-mask-split need --gland-masks DIR")
        return []
    from LandmarkInitResearch.evaluation.real_mr import MASK_FILE, fold_cases, load_split

    if not folds:
        raise LandmarkInitError(
            "--gland-masks needs --gland-mask-folds K [K ...]: the cross-validation folds whose masks may shape the "
            "phantom's glands (the held-out real test cases never do)"
        )
    cases = list(dict.fromkeys(fold_cases(load_split(split_path), folds)))
    held_out = sorted(set(cases) & set(load_split()["held_out_test"]))
    if held_out:
        raise LandmarkInitError(
            f"--gland-mask-split {split_path}: {', '.join(held_out)} belong(s) to the held-out real test set of the "
            "committed split, which never shapes training data"
        )
    files = [(data / case / MASK_FILE).resolve() for case in cases]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise LandmarkInitError(
            f"--gland-masks {data}: no gland mask {missing[0]}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + f"; give the folder that holds <case>/{MASK_FILE} for the cases of the split"
        )
    from LandmarkInitResearch.phantom.gland_shapes import read_gland_shape

    for f in files:  # every mask checked now, not when (or if) a case draws it
        read_gland_shape(str(f))
    return [str(f) for f in files]


def cmd_train(args) -> int:
    try:
        from LandmarkInitResearch.training.train import TrainConfig, train
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
        domain_randomization=args.domain_randomization,
        tissue_intensities=args.tissue_intensities,
        real_mr=str(args.real_mr) if args.real_mr else None,
        real_mr_folds=args.real_mr_folds,
        real_mr_val_folds=args.real_mr_val_folds,
        real_mr_split=str(args.real_mr_split) if args.real_mr_split else None,
        real_mr_repeat=args.real_mr_repeat,
        grid_axes=args.grid_axes,
        augment_orientation=args.augment_orientation,
        augment_appearance=args.augment_appearance,
        keep=args.keep,
    )
    result = train(cfg, resume=args.resume, progress=not args.quiet)
    print(f"{args.output}: best validation MRE {result['best_val_mre_mm']:.2f} mm")
    return EXIT_OK


def cmd_export(args) -> int:
    try:
        from LandmarkInitResearch.training.export import export_run
    except ImportError as e:
        raise LandmarkInitError(f"export needs torch and onnx ({e}); run `make setup` in the repository") from None
    card = export_run(args.run, args.output, name=args.name, force=args.force)
    print(f"wrote {card} with {card.with_suffix('.onnx').name} and {card.with_suffix('.pt').name}")
    return EXIT_OK


def cmd_two_stage(args) -> int:
    from LandmarkInitResearch.training.two_stage_card import write_two_stage_card

    card = write_two_stage_card(
        args.global_card,
        args.local_cards,
        args.output,
        iterations=args.iterations,
        global_passes=args.global_passes,
        postprocessing=_two_stage_steps(args),
        name=args.name,
        force=args.force,
        note=args.note,
    )
    print(f"wrote {card}")
    return EXIT_OK


def cmd_quantize_onnx(args) -> int:
    try:
        from LandmarkInitResearch.training.quantize import quantize_two_stage
    except ImportError as e:
        raise LandmarkInitError(f"quantize-onnx needs onnx ({e}); run `make setup` in the repository") from None
    command = ["landmarkinit", "quantize-onnx", str(args.card), "--data", str(args.data)]
    command += ["--cases", str(args.cases), "--check-cases", str(args.check_cases)]
    command += ["--tolerance-mm", f"{args.tolerance_mm:g}"]
    measured = quantize_two_stage(
        args.card,
        args.data,
        cases=args.cases,
        check_cases=args.check_cases,
        tolerance_mm=args.tolerance_mm,
        command=shlex.join(command),
    )
    for name, f in measured.items():
        print(
            f"{name}: int8 ONNX written; points differ from the float network's by {f['points_p95_mm']:.3f} mm "
            f"(95th percentile), {f['points_max_mm']:.3f} mm at most, on the check cases"
        )
    if args.summary:  # an experiment step's output: the card's files are replaced in place
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(measured, indent=1) + "\n", encoding="utf-8")
    return EXIT_OK


def cmd_finetune(args) -> int:
    try:
        from LandmarkInitResearch.training.finetune import finetune
    except ImportError as e:
        raise LandmarkInitError(f"finetune needs torch and MONAI ({e}); run `make setup` in the repository") from None
    command = ["landmarkinit", "finetune", "--base", str(args.base), "--data", str(args.data)]
    command += ["--output", str(args.output), "--epochs", str(args.epochs), "--lr", f"{args.lr:g}"]
    command += ["--batch-size", str(args.batch_size), "--seed", str(args.seed), "--alpha", f"{args.alpha:g}"]
    command += ["--name", args.name] if args.name else []
    result = finetune(
        args.base,
        args.data,
        args.output,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        alpha=args.alpha,
        seed=args.seed,
        threads=args.threads,
        name=args.name,
        force=args.force,
        progress=not args.quiet,
        command=shlex.join(command),
    )
    if result["written"] is None:
        print(
            f"landmarkinit finetune: refused: the fine-tuned detector does not beat the base on the "
            f"{len(result['held_out'])} held-out site cases ({result['reason']}); no card written",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    print(f"wrote {result['written']} (with its stage cards and weights in {Path(result['written']).parent})")
    return EXIT_OK


def cmd_evaluate_detectors(args) -> int:
    from LandmarkInitResearch.evaluation.detector_accuracy import evaluate_cards, write_report

    results = evaluate_cards(
        args.models, args.data, progress=not args.quiet, backend=args.backend, threads=args.threads
    )
    report = write_report(results, args.output_dir, data_description=args.description or "")
    print(report.read_text(encoding="utf-8"))
    return EXIT_OK


def cmd_evaluate_robustness(args) -> int:
    from LandmarkInitResearch.evaluation.robustness import evaluate_robustness, write_report

    results = evaluate_robustness(
        args.models, args.data, n_cases=args.cases, progress=not args.quiet, backend=args.backend, threads=args.threads
    )
    report = write_report(results, args.output_dir, data_description=args.description or "")
    print(report.read_text(encoding="utf-8"))
    return EXIT_OK


def cmd_evaluate_real_mr(args) -> int:
    from LandmarkInitResearch.evaluation.real_mr import evaluate_real_mr, load_split, write_report

    if not args.models and not args.cross_validation:
        raise LandmarkInitError(
            "evaluate-real-mr needs --models CARD ... or --cross-validation CARD ... (one per fold)"
        )
    split = load_split(args.split)
    results = evaluate_real_mr(
        args.models,
        args.data,
        split,
        cross_validation=args.cross_validation,
        progress=not args.quiet,
        backend=args.backend,
        threads=args.threads,
    )
    report = write_report(results, args.output_dir, split=split)
    print(report.read_text(encoding="utf-8"))
    return EXIT_OK


def cmd_site_learning_curve(args) -> int:
    from LandmarkInitResearch.evaluation.site_adaptation import learning_curve, target_line, write_report

    result = learning_curve(
        args.base,
        args.kind,
        args.data,
        args.counts,
        args.work_dir,
        test=args.test,
        split_path=args.split,
        seed=args.seed,
        epochs=args.epochs,
        lr=args.lr,
        threads=args.threads,
        progress=not args.quiet,
    )
    target = None
    if args.target_cases:
        cases, drop, mm = args.target_cases, args.target_drop, args.target_mm

        def target(rows):
            return target_line(rows, cases, drop, mm)

    report = write_report(result, args.output_dir, description=args.description or "", target=target)
    print(report.read_text(encoding="utf-8"))
    return EXIT_OK


def cmd_evaluate_quality_flags(args) -> int:
    from LandmarkInitResearch.evaluation import quality_flags as qf

    if args.action == "rows":
        if not (args.kind and args.data and args.output):
            raise LandmarkInitError("evaluate-quality-flags rows needs --kind, --data and --output")
        print(f"wrote {qf.write_rows(args.kind, args.data, args.output)}")
        return EXIT_OK
    if not (args.calibration and args.held_out and args.thresholds and args.report_dir):
        raise LandmarkInitError(
            "evaluate-quality-flags ship needs --calibration, --held-out, --thresholds and --report-dir"
        )
    qf.write_shipped(args.calibration, args.held_out, args.real, args.thresholds, args.report_dir, args.rate)
    print(f"wrote {args.thresholds} and {args.report_dir / 'report.md'}")
    return EXIT_OK


def cmd_evaluate(args) -> int:
    from LandmarkInitLib.pipeline.quality import load_thresholds
    from LandmarkInitResearch.evaluation.initialization_accuracy import calibrate_qa, evaluate, write_report

    rows = evaluate(
        args.data,
        mr_card=args.mr_model,
        us_card=args.us_model,
        workers=args.workers,
        progress=not args.quiet,
        backend=args.backend,
        threads=args.threads,
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
    print(report.read_text(encoding="utf-8"))
    return EXIT_OK


def cmd_evaluate_mask_landmarks(args) -> int:
    from LandmarkInitLib.io.output_files import check_writable
    from LandmarkInitResearch.evaluation.mask_landmarks_vs_phantom import evaluate, write_report

    if args.output.suffix.lower() != ".md":
        raise LandmarkInitError(f"{args.output}: the report is markdown; give a .md name")
    check_writable(args.output, args.force)
    results = evaluate(args.data, progress=not args.quiet)
    report = write_report(results, args.output, str(args.data), args.description or "", force=args.force)
    print(report.read_text(encoding="utf-8"))
    return EXIT_OK


def cmd_experiment(args) -> int:
    from LandmarkInitResearch.experiments.runner import load_experiment, run_experiment

    experiment = load_experiment(args.file, args.work_dir, dict(args.set or []))
    if args.dry_run:
        for step in experiment.steps:
            print(f"{step.name}: {shlex.join(['landmarkinit', *step.argv])}")
        return EXIT_OK
    log = run_experiment(experiment, only=args.only, progress=not args.quiet)
    print(f"{experiment.name}: {len(log['steps'])} steps done in {args.work_dir} (log: experiment_log.json)")
    return EXIT_OK


def _two_stage_steps(args) -> list[dict]:
    """--step options in order, or the release-0.1 options as the steps they stood for (in their fixed order)."""
    legacy = [
        *([{"step": "mid_gland", "weight": args.mid_gland}] if args.mid_gland else []),
        *([{"step": "axis_plane", "weight": args.axis_plane}] if args.axis_plane else []),
        *([{"step": "mirror_average"}] if args.mirror_average else []),
    ]
    if legacy and args.steps:
        raise LandmarkInitError(
            "give the post-processing either as --step options (in order) or with --mid-gland / --axis-plane / "
            "--mirror-average, not both"
        )
    return legacy or args.steps


def _postprocessing_step(text: str) -> dict:
    """--step mid_gland:weight=0.5 -> {"step": "mid_gland", "weight": 0.5} (checked when the card is written)."""
    name, _, params = text.partition(":")
    step = {"step": name}
    for item in filter(None, params.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"{text!r}: parameters are KEY=VALUE, e.g. mid_gland:weight=0.5")
        try:
            step[key] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: {key} must be a number, not {value!r}") from None
    return step


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=VALUE")
    return key, value


def add_commands(sub) -> list[tuple[str, str]]:
    listed = []

    def command(name, summary, description, parents=()):
        listed.append((name, summary))
        return sub.add_parser(name, description=description, parents=list(parents))

    p = command(
        "phantom",
        "generate synthetic paired prostate MR/TRUS cases with exact ground truth",
        "Generate synthetic (not patient) paired prostate MR and transrectal US volumes with gland masks, the three "
        "landmarks and the ground-truth MR-to-US transform, one folder per case (mr.nrrd, us.nrrd, mr_gland.nrrd, "
        "us_gland.nrrd, mr_landmarks.mrk.json, us_landmarks.mrk.json, mr_to_us.h5, case.json). The same seed gives "
        "the same cases, whatever --workers. With --preview CASE_DIR, write a montage PNG of a case instead.",
        [shared.workers(), shared.force(), shared.quiet()],
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
        help="fraction of cases with the probe aimed off the gland, so that part of it (often a landmark) is outside "
        "the US field of view (default 0.15)",
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
        "--us-scanner",
        choices=("standard", "site-b"),
        default="standard",
        help="TRUS acquisition settings: standard (the ranges the shipped models were trained on, default) or site-b "
        "(end-fire, wider and deeper cone, more gain and dynamic range, coarser resolution: another site's scanner; "
        "overrides --probe)",
    )
    p.add_argument(
        "--endorectal-coil",
        type=float,
        default=0.0,
        metavar="F",
        help="fraction of cases whose MR is acquired with an inflated endorectal coil: a wide air- or fluid-filled "
        "balloon in the rectum and the coil's bright posterior flare (default 0; the gland is not compressed)",
    )
    p.add_argument(
        "--us-artifacts",
        type=float,
        default=0.0,
        metavar="F",
        help="fraction of cases whose US has side lobes and reverberation (default 0)",
    )
    p.add_argument(
        "--gland-masks",
        type=Path,
        metavar="DIR",
        help="real gland shapes: a folder of real cases with expert gland masks (PROMISE12 layout, "
        "<case>/gland.nii.gz); "
        "a fraction of the cases (--gland-mask-fraction) take the shape of one of the masks of --gland-mask-folds, "
        "scaled to the phantom's gland size (docs/phantom.md)",
    )
    p.add_argument(
        "--gland-mask-folds",
        type=int,
        nargs="+",
        metavar="K",
        help="with --gland-masks: the cross-validation folds of --gland-mask-split whose masks may be used (held-out "
        "test cases never are; leave out the folds a model is validated on)",
    )
    p.add_argument(
        "--gland-mask-split",
        type=Path,
        metavar="FILE",
        help="with --gland-masks: the real-MR split file (default: the committed evaluation/real_mr_split.json)",
    )
    p.add_argument(
        "--gland-mask-fraction",
        type=float,
        default=0.5,
        metavar="F",
        help="with --gland-masks: fraction of cases with a real gland shape (default 0.5)",
    )
    p.add_argument(
        "--preview",
        type=Path,
        metavar="CASE_DIR",
        help="write a montage of MR and US slices through each landmark of CASE_DIR to --output PNG",
    )
    p.set_defaults(func=cmd_phantom)

    p = command(
        "train",
        "train a landmark detector (torch, MONAI) on a phantom dataset",
        "Train one detector for one modality. Methods (Fang et al. 2023, Table 1): dsnt (U-Net + DSNT), dsnt-var "
        "(+ variance regularization), dsnt-dist (+ distance-map regularization), regression (fully connected "
        "coordinate head), heatmap (Gaussian heatmap matching). Runs on CPU or GPU; launch with torchrun for "
        "DistributedDataParallel on several processes or nodes. Global-to-local (Noothout et al. 2020): g2l-global "
        "(patch regression + classification FCNN on the whole volume); local refinement on fine patches around each "
        "landmark: g2l-local (the same FCNN) or dsnt-local (U-Net + DSNT with distance-map regularization). Combine "
        "a global and a local model with `landmarkinit two-stage`.",
        [shared.threads(), shared.quiet()],
    )
    p.add_argument(
        "--data",
        required=True,
        type=Path,
        nargs="+",
        help="training dataset folder(s) (landmarkinit phantom layout); the cases of several folders are pooled",
    )
    p.add_argument("--val-data", type=Path, help="validation dataset folder (default: the last 15%% of --data)")
    p.add_argument("--modality", required=True, choices=MODALITIES)
    p.add_argument("--method", required=True, choices=METHODS)
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
    p.add_argument(
        "--grid-axes",
        metavar="AXES",
        help="run the model grid in a fixed patient frame, e.g. RAS (grid I, J, K point to R, A, S whatever the "
        "volume's storage; recorded in the card), or, for US, 'probe': the probe's frame, which the detectors find "
        "from the fan and which phantom files are stored in (training uses their index axes); default: the volume's "
        "own index axes",
    )
    p.add_argument(
        "--augment-orientation",
        choices=("small", "any"),
        default="small",
        help="grid orientation relative to the volume: small (rotations up to 8 degrees, default) or any (uniform "
        "over all rotations, reflected half the time: the anatomy in every orientation)",
    )
    p.add_argument(
        "--augment-appearance",
        choices=("basic", "us"),
        default="basic",
        help="intensity augmentation: basic (default) or us (+ gain, TGC ramp, dynamic range, speckle, blur)",
    )
    p.add_argument(
        "--keep",
        choices=("best", "last"),
        default="best",
        help="weights exported as best.pt: best (lowest validation MRE, default) or last (the last epoch: a final "
        "model trained on all the data, its epoch count chosen beforehand on a validation fold)",
    )
    p.add_argument("--max-cases", type=int, help="use only the first N training cases")
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
    p.add_argument(
        "--domain-randomization",
        action="store_true",
        help="MR: randomize acquisition and contrast widely (resolution, bias, intensity curves, noise, blur, field "
        "of view, bit depth) instead of the mild intensity augmentation",
    )
    p.add_argument(
        "--tissue-intensities",
        type=float,
        default=0.0,
        metavar="P",
        help="with --domain-randomization: with probability P, re-render a phantom case from its tissue labels "
        "(mr_tissues.nrrd) with random per-tissue intensities first, after SynthSeg (default 0: off)",
    )
    p.add_argument(
        "--real-mr",
        type=Path,
        metavar="DIR",
        help="also train on real T2 MR: a PROMISE12-layout folder (<case>/t2.nii.gz, gland.nii.gz; landmarks derived "
        "from the gland mask); only cross-validation folds of the split are read, held-out test cases are refused",
    )
    p.add_argument("--real-mr-folds", type=int, nargs="+", default=[], metavar="F", help="folds to train on (0-4)")
    p.add_argument(
        "--real-mr-val-folds", type=int, nargs="+", default=[], metavar="F", help="folds added to validation"
    )
    p.add_argument("--real-mr-split", type=Path, help="split file (default: the committed real_mr_split.json)")
    p.add_argument(
        "--real-mr-repeat", type=int, default=1, metavar="N", help="use each real training case N times per epoch"
    )
    p.add_argument("--resume", action="store_true", help="continue the run in RUN from its last checkpoint")
    p.set_defaults(func=cmd_train)

    p = command(
        "export",
        "export a training run to ONNX + TorchScript + model card",
        "Write OUTPUT.onnx, OUTPUT.pt (TorchScript) and OUTPUT.json (model card with checksums, grid, normalization, "
        "training data and validation metrics) from the best checkpoint of RUN; checks that both exports agree with "
        "torch.",
        [shared.force()],
    )
    p.add_argument("run", type=Path, help="training run folder")
    p.add_argument(
        "--output", required=True, type=Path, help="output path without extension, e.g. Resources/Models/us_landmarks"
    )
    p.add_argument("--name", help="model name recorded in the card (default: the output name)")
    p.set_defaults(func=cmd_export)

    p = command(
        "two-stage",
        "combine a global detector and local refinement models into one two-stage model card",
        "Write a model card that runs GLOBAL on the whole volume, then LOCAL on fine patches around each landmark's "
        "estimate (--iterations passes; several LOCAL cards are an ensemble whose answers are averaged). "
        "`landmarkinit detect --model CARD` runs it.",
        [shared.force()],
    )
    p.add_argument("--global", dest="global_card", required=True, type=Path, help="model card of the global stage")
    p.add_argument(
        "--local", dest="local_cards", required=True, type=Path, nargs="+", help="model card(s) of the local stage"
    )
    p.add_argument("--output", required=True, type=Path, help="two-stage model card to write (.json)")
    p.add_argument("--iterations", type=int, default=2, help="local refinement passes (default 2)")
    p.add_argument(
        "--global-passes",
        type=int,
        default=1,
        metavar="N",
        help="global passes: the first on a grid centred on the volume, each further one on a grid centred on the "
        "last answer, so that a gland off the volume's centre is seen whole (default 1)",
    )
    p.add_argument(
        "--step",
        dest="steps",
        action="append",
        default=[],
        type=_postprocessing_step,
        metavar="NAME[:PARAM=VALUE,...]",
        help="a post-processing step, run in the order given (repeat the option): "
        + ", ".join(name + "".join(f":{k}=W" for k in step.parameters) for name, step in STEPS.items())
        + " (detection/postprocessing.py; weights 0-1)",
    )
    legacy = "; the same as --step in the fixed order mid_gland, axis_plane, mirror_average (release 0.1)"
    p.add_argument("--mid-gland", type=float, default=0.0, metavar="W", help="--step mid_gland:weight=W" + legacy)
    p.add_argument("--axis-plane", type=float, default=0.0, metavar="W", help="--step axis_plane:weight=W" + legacy)
    p.add_argument("--mirror-average", action="store_true", help="--step mirror_average" + legacy)
    p.add_argument("--name", help="model name recorded in the card (default: the output name)")
    p.add_argument("--note", help="a sentence appended to the card's description (e.g. what it was validated on)")
    p.set_defaults(func=cmd_two_stage)

    p = command(
        "quantize-onnx",
        "int8 ONNX files for the local networks of a two-stage card (faster on CPU)",
        "Quantize the ONNX file of every local card of CARD in place: convolution weights int8 (7 bits) per "
        "channel, their inputs uint8 with ranges calibrated on the patches CARD feeds each network on the first "
        "--cases cases of DATA; the files are replaced only if, on the next --check-cases cases, every int8 "
        "network's points and spreads stay within --tolerance-mm of the float network's. The cards record the float "
        "file's checksum, the data and the differences. The TorchScript files stay float (training/quantize.py).",
    )
    p.add_argument("card", type=Path, help="two-stage model card")
    p.add_argument("--data", required=True, type=Path, help="dataset of cases of the card's modality (phantom layout)")
    p.add_argument("--cases", type=shared.positive_int, default=10, help="calibration cases (default 10)")
    p.add_argument("--check-cases", type=shared.positive_int, default=5, help="check cases (default 5)")
    p.add_argument(
        "--tolerance-mm", type=float, default=0.5, help="largest point or spread difference allowed (default 0.5 mm)"
    )
    p.add_argument("--summary", type=Path, help="also write each network's measured differences to this JSON file")
    p.set_defaults(func=cmd_quantize_onnx)

    p = command(
        "finetune",
        "adapt a detector to a site's corrected cases; written only if it beats the base on held-out cases",
        "Fine-tune every stage of BASE (a two-stage or global model card) on the site dataset's corrected cases "
        "(<case>/<modality>.nrrd + <modality>_landmarks.mrk.json), starting from its weights, with its grids, "
        "normalization, refinement passes and post-processing. A fixed part of the cases is held out (sorted by case "
        "key, every 4th, at least 5); the new card is written (with its stage cards and weights, in OUTPUT's folder: a "
        "models folder) only if on those cases its mean error is lower than the base's and a one-sided paired "
        "Wilcoxon signed-rank test gives p <= --alpha. Otherwise nothing is written and the command exits 1. The "
        "per-case figures are printed either way; the card records its base, split and figures.",
        [shared.threads(), shared.force(), shared.quiet()],
    )
    p.add_argument("--base", required=True, type=Path, metavar="CARD", help="model card to adapt (two-stage or global)")
    p.add_argument("--data", required=True, type=Path, metavar="SITE_DATASET", help="site dataset folder (corrections)")
    p.add_argument(
        "--output", required=True, type=Path, metavar="CARD", help="card to write, e.g. site_models/mr_landmarks.json"
    )
    # defaults chosen on the site's own held-out cases of the real-MR site simulation (site-learning-curve)
    p.add_argument("--epochs", type=shared.positive_int, default=20, help="passes over the training cases (default 20)")
    p.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate (default 3e-4)")
    p.add_argument("--batch-size", type=shared.positive_int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--alpha", type=float, default=0.05, help="significance level of the guard's one-sided test (default 0.05)"
    )
    p.add_argument("--name", help="model name recorded in the card (default: the base's name + _site)")
    p.set_defaults(func=cmd_finetune)

    p = command(
        "evaluate-detectors",
        "Table 1: detector accuracy on held-out cases",
        "Run exported detectors (model cards) on a held-out dataset and write MRE +- SD per modality and landmark, "
        "SDR at 2/2.5/3/4 mm, Wilcoxon tests, box plots and a markdown table to OUTPUT_DIR.",
        [shared.output_dir(), shared.runtime(), shared.quiet()],
    )
    p.add_argument("--models", required=True, nargs="+", type=Path, help="model cards to evaluate")
    p.add_argument("--data", required=True, type=Path, help="held-out dataset folder")
    p.add_argument("--description", help="a line describing the data, put in the report")
    p.set_defaults(func=cmd_evaluate_detectors)

    p = command(
        "evaluate-robustness",
        "detectors on phantom cases re-acquired in other axis orders, orientations and resolutions",
        "Re-acquire held-out phantom cases as other scanners and converters store them (every voxel axis order and "
        "flip of the same physical image, an oblique reslice; MR: axial, sagittal and coronal series at 0.55 x 0.55 "
        "x 3 mm; US: 0.3 and 1.0 mm spacing), run each model card on each variant and write report.md and "
        "results.json to OUTPUT_DIR: mean error against the ground truth and the largest displacement from the "
        "native detection, per variant, side by side per card.",
        [shared.output_dir(), shared.runtime(), shared.quiet()],
    )
    p.add_argument("--models", required=True, nargs="+", type=Path, help="model cards to evaluate (MR and/or US)")
    p.add_argument("--data", required=True, type=Path, help="held-out dataset folder (phantom layout)")
    p.add_argument("--cases", type=shared.positive_int, metavar="N", help="only the first N cases (default: all)")
    p.add_argument("--description", help="a line describing the data, put in the report")
    p.set_defaults(func=cmd_evaluate_robustness)

    p = command(
        "evaluate-real-mr",
        "MR detectors on real T2 MR (PROMISE12) against landmarks derived from the expert gland masks",
        "Run MR model cards on the real T2 volumes of a PROMISE12-like folder (<case>/t2.nii.gz, <case>/gland.nii.gz) "
        "and compare with the landmarks derived from each gland mask (the landmarks-from-mask definition): errors "
        "per landmark in mm (nominal geometry) and in %% of the case's apex-to-bladder-neck distance, %% within 5 "
        "and 10 mm, and how many landmarks more than 10 mm off were flagged; the held-out test cases and the "
        "cross-validation pool of --split reported apart. Writes report.md and results.json (errors only, no "
        "coordinates) to OUTPUT_DIR.",
        [shared.output_dir(), shared.runtime(), shared.quiet()],
    )
    p.add_argument("--models", nargs="+", type=Path, default=[], help="MR model cards to evaluate on every case")
    p.add_argument(
        "--cross-validation",
        nargs="+",
        type=Path,
        metavar="CARD",
        help="one MR card per cross-validation fold of --split, in fold order, each trained without its fold: "
        "every pool case is detected by its own fold's card, pooled as the 'cross-validated' row",
    )
    p.add_argument("--data", required=True, type=Path, help="folder of real cases (<case>/t2.nii.gz, gland.nii.gz)")
    p.add_argument(
        "--split",
        type=Path,
        metavar="FILE",
        help="JSON naming the held_out_test cases and the cross_validation folds (default: "
        "LandmarkInitResearch/evaluation/real_mr_split.json)",
    )
    p.set_defaults(func=cmd_evaluate_real_mr)

    p = command(
        "evaluate-quality-flags",
        "the evidence for the quality flags, and the shipped thresholds chosen from it",
        "rows: per case (phantom: --data DIR with known transforms) the QA features of the shipped pipeline with the "
        "initialization error and each landmark's detector error, spread and global-vs-refined disagreement; or per "
        "real MR case (--kind real-mr, PROMISE12 layout) the MR detector's per-landmark evidence against the "
        "landmarks-from-mask points; written to --output (errors and features only). ship: thresholds chosen on "
        "the --calibration rows (the fewest features that flag every failed initialization, SRE > 5 mm, each at "
        "the split-conformal threshold for --rate of the good cases), measured on the --held-out rows, written to "
        "--thresholds with report.md / results.json in --report-dir.",
        [],
    )
    p.add_argument("action", choices=("rows", "ship"))
    p.add_argument("--kind", choices=("phantom", "real-mr"), help="rows: phantom cases or real MR")
    p.add_argument("--data", type=Path, help="rows: the dataset")
    p.add_argument("--output", type=Path, help="rows: the rows file to write (JSON)")
    p.add_argument("--calibration", type=Path, nargs="+", help="ship: phantom rows to choose the thresholds on")
    p.add_argument("--held-out", type=Path, nargs="+", help="ship: phantom rows to measure them on (pooled)")
    p.add_argument("--real", type=Path, help="ship: real-MR rows (the MR detector's per-landmark flags)")
    p.add_argument("--rate", type=float, default=0.1, help="ship: stated false-alarm rate (default 0.1)")
    p.add_argument("--thresholds", type=Path, help="ship: thresholds file to write")
    p.add_argument("--report-dir", type=Path, help="ship: folder for report.md and results.json")
    p.set_defaults(func=cmd_evaluate_quality_flags)

    p = command(
        "site-learning-curve",
        "a simulated site: finetune on its first N corrected cases, the held-out error against N",
        "Cases of a pool arrive at a simulated site in a fixed order, each with the base detector's prediction and a "
        "correction (real MR, --kind real-mr: the landmarks-from-mask points of the expert gland mask, pool = the "
        "cross-validation cases of --split, test = its held-out cases; --kind phantom: the ground truth, pool = "
        "--data, test = --test). For each N of --counts the first N cases become a site dataset in WORK_DIR and "
        "`finetune` runs on it under its guard; the detector the site would then use (the new card, or the base "
        "when finetune refused) is measured on the held-out test. Writes learning_curve.md / .json / .png to "
        "OUTPUT_DIR; site datasets and cards stay in WORK_DIR.",
        [shared.output_dir(), shared.threads(), shared.quiet()],
    )
    p.add_argument("--base", required=True, type=Path, metavar="CARD", help="the detector the site starts with")
    p.add_argument("--kind", required=True, choices=("real-mr", "phantom"), help="where the cases come from")
    p.add_argument("--data", required=True, type=Path, help="PROMISE12-like folder (real-mr) or phantom dataset")
    p.add_argument("--test", type=Path, help="held-out phantom dataset (--kind phantom)")
    p.add_argument("--split", type=Path, metavar="FILE", help="real-MR split file (default: the committed one)")
    p.add_argument("--counts", type=int, nargs="+", default=[5, 10, 20, 25], help="site sizes (default 5 10 20 25)")
    p.add_argument("--work-dir", required=True, type=Path, help="folder for the site datasets and their cards")
    p.add_argument("--seed", type=int, default=23, help="seed of the cases' arrival order (default 23)")
    p.add_argument("--epochs", type=shared.positive_int, help="finetune epochs (default: finetune's)")
    p.add_argument("--lr", type=float, help="finetune learning rate (default: finetune's)")
    p.add_argument("--description", default="", help="text for the report")
    p.add_argument("--target-cases", type=int, metavar="N", help="state in the report whether the target is met at N")
    p.add_argument("--target-drop", type=float, default=0.3, help="target: fall of the mean error (default 0.3)")
    p.add_argument("--target-mm", type=float, default=5.0, help="target: or a mean error this low (default 5)")
    p.set_defaults(func=cmd_site_learning_curve)

    p = command(
        "evaluate",
        "Tables 2-4: initialization methods compared on held-out cases (SRE, Dice, rotation, TRE, QA rates)",
        "On a dataset with ground truth (phantom layout), run identity, moments, MI registration, ground-truth "
        "landmarks, detected landmarks (plain, spread-weighted, + MI refinement) on every case and write "
        "registration.md / .json and box plots to OUTPUT_DIR. --calibrate-qa chooses the quality-control thresholds "
        "on these cases (use validation data) and writes them to JSON.",
        [shared.output_dir(), shared.models(), shared.runtime(default_threads=1), shared.workers(), shared.quiet()],
    )
    p.add_argument("--data", required=True, type=Path, help="dataset folder (phantom layout)")
    p.add_argument("--calibrate-qa", type=Path, metavar="JSON", help="choose QA thresholds on these cases, write them")
    p.add_argument("--qa-thresholds", type=Path, metavar="JSON", help="QA thresholds to assess (default: shipped)")
    p.add_argument("--description", help="data description for the report")
    p.set_defaults(func=cmd_evaluate)

    p = command(
        "evaluate-mask-landmarks",
        "landmarks derived from the gland masks vs the phantom's own landmarks",
        "Derive the landmarks from every case's MR and US gland mask (landmarkinit landmarks-from-mask's definition) "
        "and write their distance to the dataset's own landmarks per landmark (mean, median, max; MR, US in the "
        "file frame and US in the patient frame) as a markdown table.",
        [shared.force(), shared.quiet()],
    )
    p.add_argument("--data", required=True, type=Path, help="dataset folder (phantom layout)")
    p.add_argument("--output", required=True, type=Path, metavar="FILE.md", help="markdown report to write")
    p.add_argument("--description", help="data description for the report")
    p.set_defaults(func=cmd_evaluate_mask_landmarks)

    p = command(
        "experiment",
        "run a recorded experiment: its data, training, model cards and evaluations, resumable",
        "Run the steps of an experiment file (JSON, see docs/research.md) in WORK_DIR: each step is a landmarkinit "
        "command; a step whose outputs exist is skipped, so an interrupted experiment resumes. --set NAME=VALUE "
        "overrides a variable of the file (e.g. epochs for a quick run).",
        [shared.quiet()],
    )
    p.add_argument("file", type=Path, help="experiment file (.json)")
    p.add_argument("--work-dir", required=True, type=Path, help="folder for the experiment's data, runs and results")
    p.add_argument("--set", type=_key_value, action="append", metavar="NAME=VALUE", help="override a variable")
    p.add_argument("--only", nargs="+", metavar="STEP", help="run only these steps (and nothing they need is rerun)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.set_defaults(func=cmd_experiment)
    return listed


COMMANDS = CommandGroup("research commands (outside Slicer; training needs torch and MONAI)", add_commands)
