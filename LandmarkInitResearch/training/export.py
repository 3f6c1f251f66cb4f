"""`landmarkinit export`: a training run -> ONNX + TorchScript + model card, checked against each other."""

from __future__ import annotations

import copy
import datetime
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

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


ONNX_GRAPH = "3x3x3 convolutions as 2-D convolutions over (H, W) with the three depth neighbours folded into channels"


class DepthFoldedConv3d(torch.nn.Module):
    """A 3x3x3 Conv3d (padding 1, stride 1 or 2) computed as one Conv2d over (H, W) whose input channels are the
    three depth neighbours of every output slice: the same weights and sums, in another order (1e-6 relative).
    Why: onnxruntime's CPU kernels run 2-D convolutions in a blocked (NCHWc) layout, and 3-D ones as im2col + GEMM;
    on the shipped local networks the folded graph runs in about 0.6 of the time (docs/benchmarks.md)."""

    def __init__(self, conv: torch.nn.Conv3d):
        super().__init__()
        out_channels, in_channels = conv.weight.shape[:2]
        self.stride = conv.stride[0]
        self.conv = torch.nn.Conv2d(
            3 * in_channels, out_channels, 3, stride=self.stride, padding=1, bias=conv.bias is not None
        )
        with torch.no_grad():
            self.conv.weight.copy_(conv.weight.permute(0, 2, 1, 3, 4).reshape(out_channels, 3 * in_channels, 3, 3))
            if conv.bias is not None:
                self.conv.bias.copy_(conv.bias)

    def forward(self, x):
        n, c, d, h, w = x.shape
        depth = (d - 1) // self.stride + 1
        padded = F.pad(x, (0, 0, 0, 0, 1, 1))
        last = self.stride * (depth - 1) + 1
        neighbours = torch.stack([padded[:, :, k : k + last : self.stride] for k in range(3)], 1)  # B, 3, C, D', H, W
        y = self.conv(neighbours.permute(0, 3, 1, 2, 4, 5).reshape(n * depth, 3 * c, h, w))
        return y.reshape(n, depth, self.conv.out_channels, y.shape[2], y.shape[3]).permute(0, 2, 1, 3, 4)


def fold_depth(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``module`` with every 3x3x3 Conv3d (padding 1, stride 1 or 2 on every axis) depth-folded."""
    module = copy.deepcopy(module)
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if (
                isinstance(child, torch.nn.Conv3d)
                and child.kernel_size == (3, 3, 3)
                and child.padding == (1, 1, 1)
                and child.dilation == (1, 1, 1)
                and child.groups == 1
                and child.padding_mode == "zeros"
                and child.stride in ((1, 1, 1), (2, 2, 2))
            ):
                setattr(parent, name, DepthFoldedConv3d(child))
    return module


def export_onnx(wrapper: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """The ONNX file users get: the wrapper with its convolutions depth-folded (DepthFoldedConv3d)."""
    # The legacy (TorchScript-based) exporter is chosen on purpose: it exports MONAI's UNet and the DSNT head
    # as plain opset-17 graphs that onnxruntime runs to 1e-6 of torch (checked by the callers); torch flags it.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings(
            "ignore", message="You are using the legacy TorchScript-based ONNX export", category=DeprecationWarning
        )
        torch.onnx.export(
            fold_depth(wrapper),
            (example,),
            str(path),
            input_names=["volume"],
            output_names=["coords_mm", "spread_mm"],
            opset_version=OPSET,
            dynamo=False,
        )


def onnx_outputs(path, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"volume": x})


def write_card(path: Path, card: dict) -> None:
    path.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")


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
    if cfg.get("domain_randomization"):
        parts.append("--domain-randomization")
    if cfg.get("tissue_intensities"):
        parts.append(f"--tissue-intensities {cfg['tissue_intensities']:g}")
    if cfg.get("real_mr"):
        parts.append(f"--real-mr {cfg['real_mr']}")
        parts.append("--real-mr-folds " + " ".join(str(f) for f in cfg["real_mr_folds"]))
        if cfg.get("real_mr_val_folds"):
            parts.append("--real-mr-val-folds " + " ".join(str(f) for f in cfg["real_mr_val_folds"]))
        if cfg.get("real_mr_split"):
            parts.append(f"--real-mr-split {cfg['real_mr_split']}")
        if cfg.get("real_mr_repeat", 1) != 1:
            parts.append(f"--real-mr-repeat {cfg['real_mr_repeat']}")
    if cfg.get("grid_axes"):
        parts.append(f"--grid-axes {cfg['grid_axes']}")
    if cfg.get("augment_orientation", "small") != "small":
        parts.append(f"--augment-orientation {cfg['augment_orientation']}")
    if cfg.get("augment_appearance", "basic") != "basic":
        parts.append(f"--augment-appearance {cfg['augment_appearance']}")
    if cfg.get("init_weights"):
        parts.append(f"--init-weights {cfg['init_weights']}")
    if cfg.get("keep", "best") != "best":
        parts.append(f"--keep {cfg['keep']}")
    return " ".join(parts) + " --output RUN"


def real_gland_shapes(description) -> bool:
    """Did any training dataset (its dataset.json description, or a list of them) build glands on real masks?"""
    entries = description if isinstance(description, list) else [description]
    return any((d or {}).get("options", {}).get("gland_mask_fraction", 0) > 0 for d in entries if isinstance(d, dict))


def training_data(cfg: dict) -> dict:
    """The card's plain statement of what the network was trained on, and the real cases if any."""
    shapes = (
        ", some glands in the shape of real expert gland masks (PROMISE12, listed in the dataset options)"
        if real_gland_shapes(cfg.get("data_description"))
        else ""
    )
    if not cfg.get("real_mr"):
        return {"data": f"SYNTHETIC phantom (landmarkinit phantom{shapes}), not patient data"}
    return {
        "data": "REAL patient images (PROMISE12 T2 MR, research-use terms: promise12.grand-challenge.org; Litjens "
        f"et al. 2014) plus SYNTHETIC phantom data (landmarkinit phantom{shapes})",
        "real_mr": {
            "dataset": "PROMISE12 training set, T2-weighted prostate MR with expert gland masks, nominal geometry "
            "(about +-25 % scale); landmarks derived from the masks (LandmarkInitLib/mask_landmarks.py)",
            "split": cfg.get("real_mr_split") or "LandmarkInitResearch/evaluation/real_mr_split.json",
            "train_folds": cfg["real_mr_folds"],
            "train_cases": sorted(set(cfg.get("real_mr_train_cases", []))),
            "validation_folds": cfg.get("real_mr_val_folds", []),
            "validation_cases": cfg.get("real_mr_val_cases", []),
            "held_out_test": "never used for training or model selection",
        },
    }


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
        cfg = json.loads(config.read_text(encoding="utf-8"))
        origin["command"] = training_command(cfg)
        if cfg.get("init_weights"):  # the whole chain, back to random weights
            origin["fine_tuned_from"] = fine_tuned_from(cfg["init_weights"])
    return origin


def export_run(
    run, output, *, name: str | None = None, validation: dict | None = None, force: bool = False, validate: bool = True
) -> Path:
    """Write ``<output>.onnx``, ``<output>.pt`` and ``<output>.json`` (the card); returns the card path.
    ``validate=False``: no ONNX validation on the run's validation cases (finetune measures the whole detector)."""
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
    export_onnx(wrapper, example, onnx_path)
    onnx_out = onnx_outputs(onnx_path, example.numpy())
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
            **training_data(cfg),
            "dataset": cfg.get("data_description"),
            **({"domain_randomization": True} if cfg.get("domain_randomization") else {}),
            **({"tissue_intensities": cfg["tissue_intensities"]} if cfg.get("tissue_intensities") else {}),
            "train_cases": len(cfg["train_cases"]),
            "validation_cases": len(cfg["val_cases"]),
            "epochs": cfg["epochs"],
            **(
                {"kept_epoch": best["epoch"], "kept": "last epoch (epoch count chosen beforehand)"}
                if cfg.get("keep") == "last"
                else {"best_epoch": best["epoch"]}
            ),
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
        "validation": {
            "mre_mm": best["val_mre_mm"],
            **({"dataset": cfg["val_data_description"]} if cfg.get("val_data_description") else {}),
            **(validation or {}),
        },
        "files": {
            "onnx": {"path": onnx_path.name, "sha256": sha256_of(onnx_path), "opset": OPSET, "graph": ONNX_GRAPH},
            "torchscript": {"path": ts_path.name, "sha256": sha256_of(ts_path), "torch": torch.__version__},
        },
        "export": {
            "landmarkinit": __version__,
            "date": datetime.date.today().isoformat(),
            "max_abs_diff_mm": {"onnx_vs_eager": diff_onnx, "torchscript_vs_eager": diff_ts},
            "tolerance_mm": AGREEMENT_TOLERANCE_MM,
        },
    }
    write_card(card_path, card)
    measured = validate_exported(card_path, cfg) if validate else None
    if measured:
        card["validation"].update(measured["validation"])
        card["qa"] = measured["qa"]
        write_card(card_path, card)
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


def reexport_onnx(card_path, tolerance_mm: float = 1e-4) -> dict:
    """Re-export a shipped card's ONNX file from its TorchScript file (the same weights) with the current ONNX
    graph (export_onnx), after checking that the new file gives the old ONNX file's outputs within
    ``tolerance_mm``; the card's sha256 and export record follow. Returns the differences measured.
    An int8 ONNX file (training/quantize.py) is replaced by the float network: it is checked against eager torch
    only, and the card's quantization record goes."""
    from LandmarkInitLib.detection.model_card import load_card

    card = load_card(card_path)
    if card.stage not in ("global", "local"):
        raise LandmarkInitError(f"{card.path} is a {card.stage} card: re-export its global and local cards")
    state = torch.jit.load(str(card.verified_weights("torchscript")), map_location="cpu").state_dict()
    old_onnx = card.verified_weights("onnx")
    quantized = card.data["files"]["onnx"].pop("quantization", None)
    model = build_model(card.data["method"], card.grid, len(LANDMARK_LABELS), card.data["network"]["channels"])
    local = card.stage == "local"
    wrapper = (LocalExportWrapper(model, len(LANDMARK_LABELS)) if local else ExportWrapper(model)).eval()
    wrapper.load_state_dict(state, strict=False)  # the traced module also holds the fixed grid axes
    missing = [k for k in wrapper.state_dict() if k not in state]
    if missing:
        raise LandmarkInitError(f"{card.path}: its TorchScript file lacks {', '.join(missing)}")
    batch = len(LANDMARK_LABELS) if local else 1
    example = torch.from_numpy(np.random.default_rng(0).random((batch, 1, *card.grid.array_shape), dtype=np.float32))
    with torch.no_grad():
        eager = wrapper(example)[0].numpy()
    with tempfile.TemporaryDirectory(dir=old_onnx.parent) as tmp:
        new_onnx = Path(tmp) / old_onnx.name
        export_onnx(wrapper, example, new_onnx)
        new_out = onnx_outputs(new_onnx, example.numpy())[0]
        diffs = {
            "vs_previous_onnx": float(np.max(np.abs(new_out - onnx_outputs(old_onnx, example.numpy())[0]))),
            "onnx_vs_eager": float(np.max(np.abs(new_out - eager))),
        }
        checked = {"onnx_vs_eager": diffs["onnx_vs_eager"]} if quantized else diffs
        if max(checked.values()) > tolerance_mm:
            raise LandmarkInitError(
                f"{card.path}: the re-exported ONNX file differs by {max(checked.values()):.2g} mm "
                f"({', '.join(f'{k} {v:.2g} mm' for k, v in checked.items())}; tolerance {tolerance_mm:g} mm)"
            )
        new_onnx.replace(old_onnx)
    data = card.data
    data["files"]["onnx"].update(sha256=sha256_of(old_onnx), opset=OPSET, graph=ONNX_GRAPH)
    data["export"]["max_abs_diff_mm"]["onnx_vs_eager"] = diffs["onnx_vs_eager"]
    data["export"]["onnx_reexported"] = {
        "from": "the card's TorchScript file",
        "landmarkinit": __version__,
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
        "max_abs_diff_mm_vs_previous_onnx": diffs["vs_previous_onnx"],
        **({"replaced": "an int8 ONNX file (its quantization record removed)"} if quantized else {}),
    }
    write_card(card.path, data)
    return diffs


if __name__ == "__main__":
    import sys

    for path in sys.argv[1:]:  # python -m LandmarkInitResearch.training.export CARD.json ...: re-export ONNX files
        print(path, reexport_onnx(path))
