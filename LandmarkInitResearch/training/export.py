"""`landmarkinit export`: a training run -> ONNX + TorchScript + model card, checked against each other."""

from __future__ import annotations

import datetime
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from LandmarkInitLib import __version__
from LandmarkInitLib.detection.model_card import CARD_SCHEMA, load_card, sha256_of
from LandmarkInitLib.detection.preprocess import NORMALIZATION
from LandmarkInitLib.errors import LandmarkInitError
from LandmarkInitLib.landmarks import LANDMARK_LABELS
from LandmarkInitResearch.training.methods import LOCAL_METHODS
from LandmarkInitResearch.training.networks import ExportWrapper, LocalExportWrapper, build_model

OPSET = 17
AGREEMENT_TOLERANCE_MM = 1e-3  # ONNX vs TorchScript vs eager, on the coordinates
ARCHITECTURES = {
    "regression": "MONAI Regressor",
    "heatmap": "MONAI UNet, heatmap matching",
    "g2l-global": "patch regression + classification FCNN (Noothout 2020), MONAI ResidualUnits, cells of 8 voxels",
    "g2l-local": "patch regression + classification FCNN (Noothout 2020), MONAI ResidualUnits, cells of 4 voxels",
} | {m: "MONAI UNet + DSNT" for m in ("dsnt", "dsnt-var", "dsnt-dist", "dsnt-local")}
SPREAD = (
    "RMS radius in mm of the heatmap mass (DSNT: whole heatmap; heatmap matching: window around the peak) or of "
    "the posterior-weighted patch votes (g2l); NaN for direct regression"
)
ORIENTATION_ANY = (
    "grids turned to every orientation and handedness relative to the volume (uniform random rotations, reflected "
    "half the time: --augment-orientation any), so that the network finds the anatomy whatever the probe's "
    "orientation in the grid's frame"
)
OUTPUTS_GLOBAL = {
    "coords_mm": "(1, 3, 3): landmark x, y, z in grid mm (see input_grid.coordinates), landmark order as 'landmarks'",
    "spread_mm": "(1, 3): " + SPREAD,
}
OUTPUTS_LOCAL = {
    "input": "(3, 1, D, H, W): patch i on the input grid centred on the current estimate of landmark i",
    "coords_mm": "(3, 3): landmark i's x, y, z in patch i's grid mm (relative to the patch centre)",
    "spread_mm": "(3,): " + SPREAD,
}


def training_command(cfg: dict) -> str:
    """The `landmarkinit train` command line that reproduces a run, rebuilt from its config.json."""
    data = cfg["data"] if isinstance(cfg["data"], str) else " ".join(cfg["data"])
    parts = ["landmarkinit train", f"--data {data}"]
    if cfg.get("val_data"):
        parts.append(f"--val-data {cfg['val_data']}")
    parts += [
        f"--modality {cfg['modality']}",
        f"--method {cfg['method']}",
        f"--epochs {cfg['epochs']}",
        f"--batch-size {cfg['batch_size']}",
        f"--lr {cfg['lr']:g}",
        f"--seed {cfg['seed']}",
        f"--lr-schedule {cfg.get('lr_schedule', 'constant')}",
        "--channels " + " ".join(str(c) for c in cfg["channels"]),
    ]
    if cfg.get("reg_weight") is not None:
        parts.append(f"--reg-weight {cfg['reg_weight']:g}")
    if cfg.get("grid_shape"):
        parts.append("--grid-shape " + " ".join(str(v) for v in cfg["grid_shape"]))
    if cfg.get("grid_spacing_mm"):
        parts.append(f"--grid-spacing {cfg['grid_spacing_mm']:g}")
    if not cfg.get("augment", True):
        parts.append("--no-augment")
    if cfg.get("max_cases"):
        parts.append(f"--max-cases {cfg['max_cases']}")
    if cfg["method"] in LOCAL_METHODS:
        parts.append(f"--max-offset {cfg.get('max_offset_mm', 10.0):g}")
    if cfg.get("grid_axes"):
        parts.append(f"--grid-axes {cfg['grid_axes']}")
    if cfg.get("augment_orientation", "small") != "small":
        parts.append(f"--augment-orientation {cfg['augment_orientation']}")
    if cfg.get("augment_appearance", "basic") != "basic":
        parts.append(f"--augment-appearance {cfg['augment_appearance']}")
    if cfg.get("init_weights"):
        parts.append(f"--init-weights {cfg['init_weights']}")
    return " ".join(parts) + " --output RUN"


def fine_tuned_from(init: str) -> dict:
    """For a fine-tuned run: the weights it started from and how they were made, so that a card's commands
    reproduce the model from scratch: the source run's command when its config.json is still there, or, for a
    model card, its checksum and its own training record (the card's file may be replaced when the new model ships)."""
    source = Path(init)
    origin = {"weights": str(init)}
    if source.suffix == ".json" and source.is_file():
        card = load_card(source)
        training = card.data.get("training") or {}
        origin["card"] = card.name
        origin["sha256"] = card.data["files"]["torchscript"]["sha256"]
        for key in ("command", "fine_tuned_from"):
            if key in training:
                origin[key] = training[key]
        return origin
    config = (source if source.is_dir() else source.parent) / "config.json"
    if config.is_file():
        origin["command"] = training_command(json.loads(config.read_text(encoding="utf-8")))
    return origin


def export_run(run, output, *, name: str | None = None, validation: dict | None = None, force: bool = False) -> Path:
    """Write ``<output>.onnx``, ``<output>.pt`` and ``<output>.json`` (the card); returns the card path."""
    run, output = Path(run), Path(output)
    cfg = json.loads((run / "config.json").read_text(encoding="utf-8"))
    if not (run / "best.pt").is_file():
        raise LandmarkInitError(f"{run} has no best.pt: train first")
    card_path = output.with_suffix(".json")
    onnx_path, ts_path = output.with_suffix(".onnx"), output.with_suffix(".pt")
    for p in (card_path, onnx_path, ts_path):
        if p.exists() and not force:
            raise LandmarkInitError(f"{p} already exists; pass --force to overwrite it")
    output.parent.mkdir(parents=True, exist_ok=True)

    from LandmarkInitLib.detection.model_grid import ModelGrid

    grid = ModelGrid.from_dict(cfg["grid"])
    model = build_model(cfg["method"], grid, len(LANDMARK_LABELS), cfg["channels"])
    best = torch.load(run / "best.pt", weights_only=True)
    model.load_state_dict(best["model"])
    local = cfg["method"] in LOCAL_METHODS
    wrapper = (LocalExportWrapper(model, len(LANDMARK_LABELS)) if local else ExportWrapper(model)).eval()
    batch = len(LANDMARK_LABELS) if local else 1
    example = torch.from_numpy(np.random.default_rng(0).random((batch, 1, *grid.array_shape), dtype=np.float32))
    with torch.no_grad():
        eager = [t.numpy() for t in wrapper(example)]
        traced = torch.jit.trace(wrapper, example)
        traced.save(str(ts_path))
        # The legacy (TorchScript-based) exporter is chosen on purpose: it exports MONAI's UNet and the DSNT head
        # as plain opset-17 graphs that onnxruntime runs to 1e-6 of torch (checked below); torch flags it as legacy.
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="You are using the legacy TorchScript-based ONNX export", category=DeprecationWarning
            )
            torch.onnx.export(
                wrapper,
                (example,),
                str(onnx_path),
                input_names=["volume"],
                output_names=["coords_mm", "spread_mm"],
                opset_version=OPSET,
                dynamo=False,
            )
    import onnxruntime as ort

    onnx_out = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(
        None, {"volume": example.numpy()}
    )
    with torch.inference_mode():
        ts_out = [t.numpy() for t in torch.jit.load(str(ts_path))(example)]
    diff_onnx = float(np.max(np.abs(onnx_out[0] - eager[0])))
    diff_ts = float(np.max(np.abs(ts_out[0] - eager[0])))
    if max(diff_onnx, diff_ts) > AGREEMENT_TOLERANCE_MM:
        raise LandmarkInitError(f"exported models disagree with eager torch by {max(diff_onnx, diff_ts):.2g} mm")

    card = {
        "schema": CARD_SCHEMA,
        "name": name or output.name,
        "modality": cfg["modality"],
        "method": cfg["method"],
        "stage": "local" if local else "global",
        "landmarks": list(LANDMARK_LABELS),
        "input_grid": grid.to_dict()
        | ({"centre": "each patch i is centred on the current estimate of landmark i"} if local else {})
        | ({"trained_on": ORIENTATION_ANY} if cfg.get("augment_orientation") == "any" else {}),
        "intensity_normalization": NORMALIZATION[cfg["modality"]],
        "outputs": OUTPUTS_LOCAL if local else OUTPUTS_GLOBAL,
        "network": {
            "architecture": ARCHITECTURES[cfg["method"]],
            "channels": cfg["channels"],
            "activation": "LeakyReLU(0.2)",
            "parameters": int(sum(p.numel() for p in model.parameters())),
        },
        "training": {
            "data": "SYNTHETIC phantom (landmarkinit phantom), not patient data",
            "dataset": cfg.get("data_description"),
            "train_cases": len(cfg["train_cases"]),
            "validation_cases": len(cfg["val_cases"]),
            "epochs": cfg["epochs"],
            "best_epoch": best["epoch"],
            "batch_size": cfg["batch_size"],
            "lr": cfg["lr"],
            "lr_schedule": cfg.get("lr_schedule", "constant"),
            "lambda2": cfg["lambda2"],
            "augment": cfg["augment"],
            "augment_orientation": cfg.get("augment_orientation", "small"),
            "augment_appearance": cfg.get("augment_appearance", "basic"),
            "seed": cfg["seed"],
            **({"max_offset_mm": cfg.get("max_offset_mm", 10.0)} if local else {}),
            "command": training_command(cfg),
            **({"fine_tuned_from": fine_tuned_from(cfg["init_weights"])} if cfg.get("init_weights") else {}),
        },
        "validation": {"mre_mm": best["val_mre_mm"], **(validation or {})},
        "files": {
            "onnx": {"path": onnx_path.name, "sha256": sha256_of(onnx_path), "opset": OPSET},
            "torchscript": {"path": ts_path.name, "sha256": sha256_of(ts_path), "torch": torch.__version__},
        },
        "export": {
            "landmarkinit": __version__,
            "date": datetime.date.today().isoformat(),
            "max_abs_diff_mm": {"onnx_vs_eager": diff_onnx, "torchscript_vs_eager": diff_ts},
            "tolerance_mm": AGREEMENT_TOLERANCE_MM,
        },
    }
    card_path.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    measured = validate_exported(card_path, cfg)
    if measured:
        card["validation"].update(measured["validation"])
        card["qa"] = measured["qa"]
        card_path.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    return card_path


def validate_exported(card_path: Path, cfg: dict) -> dict | None:
    """Run the exported ONNX model on the run's validation cases: MRE of the file users get, and the spread
    limit above which the runtime flags a detection (the largest validation spread, plus 25%). Local models are
    measured as one refinement pass from the truth plus random offsets up to the trained ``max_offset_mm``."""
    from LandmarkInitResearch.evaluation.detector_accuracy import evaluate_cards, evaluate_refiner, summarize

    source = cfg.get("val_data") or (cfg["data"] if isinstance(cfg["data"], str) else cfg["data"][-1])
    try:
        if cfg["method"] in LOCAL_METHODS:
            result = evaluate_refiner(
                card_path, source, case_names=cfg["val_cases"], max_offset_mm=cfg.get("max_offset_mm", 10.0)
            )
        else:
            (result,) = evaluate_cards([card_path], source, progress=False, case_names=cfg["val_cases"]).values()
    except LandmarkInitError:
        return None
    if len(result["cases"]) == 0:
        return None
    stats = summarize(result["errors_mm"])
    finite = result["spread_mm"][np.isfinite(result["spread_mm"])]
    return {
        "validation": {
            "onnx_mre_mm": stats["mre_mm"],
            "onnx_sd_mm": stats["sd_mm"],
            "cases": stats["n_cases"],
            "data": str(source),
        },
        "qa": {
            "spread_limit_mm": float(finite.max() * 1.25) if finite.size else None,
            "spread_limit_rule": "1.25 x the largest spread on the validation cases",
        },
    }
