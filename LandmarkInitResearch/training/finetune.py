"""`landmarkinit finetune`: adapt a shipped detector (its global stage and every local member) to a site's corrected
cases, and write the new card only if it beats the base on a fixed held-out part of those cases.

Site dataset: one folder per case holding ``<modality>.nrrd`` and the corrected ``<modality>_landmarks.mrk.json``
(the corrections log; a case may hold one modality only). The held-out part is fixed by the case keys (sorted;
every 4th case, at least 5), so that every run on the same cases tests on the same ones.

Guard: on the held-out cases, the fine-tuned two-stage detector (the product's ONNX runtime, exactly what users
run) must have a lower mean error than the base AND a one-sided paired Wilcoxon signed-rank test on the per-case
mean errors must give p <= alpha. Otherwise nothing is written (the work happens in a temporary folder, moved into
place only on success) and the command exits 1 with the figures.
"""

from __future__ import annotations

import datetime
import json
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from LandmarkInitLib.detection.model_card import ModelCard, ModelCardError, load_card, sha256_of
from LandmarkInitLib.errors import LandmarkFileError, LandmarkInitError
from LandmarkInitLib.landmarks import LANDMARK_LABELS

MIN_CASES = 10
MIN_HELD_OUT = 5
HOLD_OUT_EVERY = 4
DEFAULT_EPOCHS = 20
DEFAULT_LR = 3e-4
DEFAULT_ALPHA = 0.05
SITE_SCHEMA_KIND = "site-correction"


class FinetuneRefused(LandmarkInitError):
    """The guard's refusal: the fine-tuned detector did not beat the base on the held-out site cases."""


@dataclass
class SiteCase:
    key: str  # the case key (case.json "key"; the folder name when there is none): fixes the split
    name: str
    image: Path
    landmarks_ras: np.ndarray  # L x 3, LANDMARK_LABELS order: the corrected landmarks


def read_site_cases(root, modality: str) -> tuple[list[SiteCase], list[str], dict[str, int]]:
    """The usable cases of ``modality`` in a site dataset: (cases, skipped "name: why", count of cases per modality).
    Not io.datasets.open_dataset, which refuses the whole folder for one broken case: a site dataset grows case by
    case, and one unreadable case is skipped (and listed) rather than stopping the site's fine-tuning."""
    from LandmarkInitLib.io.datasets import CASE_FILES, read_mrk_json

    root = Path(root)
    if not root.is_dir():
        raise LandmarkFileError(f"site dataset {root} does not exist (give the folder of the corrected cases)")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    present = {m: 0 for m in ("mr", "us")}
    cases, skipped = [], []
    for folder in folders:
        for m in present:
            present[m] += (folder / CASE_FILES[m]).is_file() and (folder / CASE_FILES[f"{m}_landmarks"]).is_file()
        image, landmarks = folder / CASE_FILES[modality], folder / CASE_FILES[f"{modality}_landmarks"]
        if not image.is_file() or not landmarks.is_file():
            continue
        try:
            meta = (
                json.loads((folder / "case.json").read_text(encoding="utf-8"))
                if (folder / "case.json").is_file()
                else {}
            )
            points = read_mrk_json(landmarks).ordered(LANDMARK_LABELS)
        except (LandmarkInitError, ValueError) as e:
            skipped.append(f"{folder.name}: {e}")
            continue
        key = meta.get("key") if isinstance(meta, dict) and isinstance(meta.get("key"), str) else folder.name
        cases.append(SiteCase(key, folder.name, image, points))
    return cases, skipped, present


def split_cases(cases: list[SiteCase]) -> tuple[list[SiteCase], list[SiteCase]]:
    """(training, held out): cases sorted by key, every 4th held out, or every 2nd or 3rd when that is needed to
    hold out at least 5 (10 cases: 5 held out)."""
    cases = sorted(cases, key=lambda c: c.key)
    step = max(1, min(HOLD_OUT_EVERY, len(cases) // MIN_HELD_OUT))
    held = set(range(0, len(cases), step))
    return [c for i, c in enumerate(cases) if i not in held], [c for i, c in enumerate(cases) if i in held]


def guard_decision(base_mm, tuned_mm, alpha: float = DEFAULT_ALPHA) -> dict:
    """Accept the fine-tuned detector only if its mean per-case error is lower than the base's and a one-sided
    paired Wilcoxon signed-rank test (tuned < base) gives p <= alpha."""
    from scipy.stats import wilcoxon

    base, tuned = np.asarray(base_mm, dtype=float), np.asarray(tuned_mm, dtype=float)
    if np.all(tuned == base):
        p = 1.0  # no change at all: nothing to test (scipy refuses all-zero differences)
    else:
        p = float(wilcoxon(tuned, base, alternative="less").pvalue)
    lower = bool(tuned.mean() < base.mean())
    accepted = lower and p <= alpha
    if accepted:
        reason = f"the fine-tuned mean error is lower and p = {p:.3g} <= alpha {alpha:g}"
    elif not lower:
        reason = (
            f"the fine-tuned mean error ({tuned.mean():.2f} mm) is not lower than the base's ({base.mean():.2f} mm)"
        )
    else:
        reason = f"the improvement is not significant (p = {p:.3g} > alpha {alpha:g})"
    return {
        "base_mean_mm": float(base.mean()),
        "finetuned_mean_mm": float(tuned.mean()),
        "wilcoxon_p": p,
        "alpha": float(alpha),
        "test": "one-sided paired Wilcoxon signed-rank on per-case mean errors (fine-tuned < base)",
        "accepted": accepted,
        "reason": reason,
    }


def check_base(base) -> tuple[ModelCard, list[tuple[str, ModelCard]]]:
    """The base card and its stages as (role, card): a two-stage card's global and local cards, or a global card."""
    card = load_card(base)
    if card.stage == "two-stage":
        return card, [("global", card.stage_card("global"))] + [("local", c) for c in card.stage_cards("local")]
    if card.stage == "global":
        return card, [("global", card)]
    raise ModelCardError(
        f"--base {base} is a {card.stage} model card: give a two-stage card (e.g. Resources/Models/"
        f"{card.modality}_landmarks.json) or a global card"
    )


def finetune(
    base,
    data,
    output,
    *,
    epochs: int = DEFAULT_EPOCHS,
    lr: float = DEFAULT_LR,
    batch_size: int = 4,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    threads: int | None = None,
    name: str | None = None,
    force: bool = False,
    progress: bool = True,
    command: str = "",
    report=print,
) -> dict:
    """Fine-tune ``base`` on the site dataset ``data`` and write ``output`` (a card .json, with its stage cards and
    weights beside it) if the guard accepts; the result holds the figures and ``written`` (the card or None)."""
    output = Path(output)
    if output.suffix.lower() != ".json":
        raise LandmarkInitError(f"--output {output}: a model card is a .json file, e.g. site_models/mr_landmarks.json")
    if epochs < 1 or lr <= 0 or batch_size < 1 or not 0 < alpha < 1:
        raise LandmarkInitError("--epochs and --batch-size must be at least 1, --lr above 0 and --alpha in (0, 1)")
    card, stages = check_base(base)
    modality = card.modality
    stems = _stage_stems(output, card, stages)
    existing = [str(p) for p in _output_files(output, stems) if p.exists()]
    if existing and not force:
        raise LandmarkInitError(f"{', '.join(existing)} already exist(s); pass --force to overwrite")
    cases, skipped, present = read_site_cases(data, modality)
    other = "us" if modality == "mr" else "mr"
    if not cases and present[other]:
        raise LandmarkInitError(
            f"--base {base} is {'an' if modality == 'mr' else 'a'} {modality.upper()} detector but the site dataset "
            f"{data} holds no {modality.upper()} "
            f"cases ({present[other]} {other.upper()} case(s)); give a {other.upper()} base card "
            f"(Resources/Models/{other}_landmarks.json) or a site dataset with {modality.upper()} cases"
        )
    if len(cases) < MIN_CASES:
        why = f"; skipped: {'; '.join(skipped)}" if skipped else ""
        raise LandmarkInitError(
            f"the site dataset {data} has {len(cases)} usable {modality.upper()} case(s) ({modality}.nrrd with "
            f"corrected {modality}_landmarks.mrk.json); fine-tuning needs at least {MIN_CASES} ({MIN_HELD_OUT} are "
            f"held out to test the result){why}"
        )
    for line in skipped:
        report(f"skipped {line}")
    train_cases, held_out = split_cases(cases)
    report(
        f"{card.name} ({modality.upper()}): {len(cases)} site cases, {len(train_cases)} for fine-tuning, "
        f"{len(held_out)} held out ({', '.join(c.name for c in held_out)})"
    )

    import torch

    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="landmarkinit-finetune-") as tmp:
        tmp = Path(tmp)
        volumes = _load(train_cases)
        names = [name or f"{card.name}_site"] if card.stage == "global" else [f"{s.name}_site" for _, s in stages]
        new_stages = _finetune_stages(
            stages,
            volumes,
            [tmp / stem for stem in stems],
            names,
            tmp,
            progress=progress,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            site=str(data),
            train_keys=[c.key for c in train_cases],
            command=command,
        )
        new_card = _write_card(card, new_stages, tmp / output.name, name, len(train_cases), data)
        base_errors = _errors(card, held_out, threads, progress, "base")
        tuned_errors = _errors(load_card(new_card), held_out, threads, progress, "fine-tuned")
        decision = guard_decision(base_errors.mean(axis=1), tuned_errors.mean(axis=1), alpha)
        result = {
            "held_out": [c.name for c in held_out],
            "base_case_mm": base_errors.mean(axis=1).tolist(),
            "finetuned_case_mm": tuned_errors.mean(axis=1).tolist(),
            **decision,
            "written": None,
        }
        _print_figures(result, report)
        if not decision["accepted"]:
            return result
        provenance = {
            "base": {"card": card.name, "path": str(card.path), "sha256": sha256_of(card.path)},
            "site_dataset": str(data),
            "site_cases": len(cases),
            "split": {
                "rule": "cases sorted by key; every 4th held out (every 2nd or 3rd to hold out at least 5)",
                "train_cases": [c.key for c in train_cases],
                "held_out_cases": [c.key for c in held_out],
            },
            "guard": {k: v for k, v in result.items() if k not in ("written", "held_out")},
            "training": {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed},
            "command": command,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        data_ = json.loads(new_card.read_text(encoding="utf-8"))
        data_["site_adaptation"] = provenance
        new_card.write_text(json.dumps(data_, indent=1) + "\n", encoding="utf-8")
        output.parent.mkdir(parents=True, exist_ok=True)
        # the top card last: the folder never names stage files that are not there yet
        for path in sorted((p for p in tmp.iterdir() if p.is_file()), key=lambda p: p.name == output.name):
            shutil.move(str(path), str(output.parent / path.name))
        result["written"] = str(output)
    load_card(output)  # checked again where it landed: stage cards and checksums
    return result


def _stage_stems(output: Path, card: ModelCard, stages) -> list[str]:
    """File stems of the new stage cards: a global base's card is the output itself; a two-stage card's stages are
    named as the base's stage files, so that a models folder looks like Resources/Models."""
    if card.stage == "global":
        return [output.stem]
    return [s.path.stem if s.path.stem != output.stem else f"{s.path.stem}_stage" for _, s in stages]


def _output_files(output: Path, stems: list[str]) -> list[Path]:
    """Every file the command writes: the card, and each stage's card and weights."""
    return sorted({output} | {output.parent / (stem + s) for stem in stems for s in (".json", ".onnx", ".pt")})


def _load(cases: list[SiteCase]):
    import SimpleITK as sitk

    from LandmarkInitLib.geometry import VolumeGeometry
    from LandmarkInitResearch.training.data import LoadedVolume

    out = []
    for c in cases:
        try:
            image = sitk.Cast(sitk.ReadImage(str(c.image)), sitk.sitkFloat32)
        except RuntimeError as e:
            raise LandmarkFileError(f"{c.image} could not be read ({str(e).strip().splitlines()[-1]})") from None
        out.append(LoadedVolume(c.key, image, VolumeGeometry.from_sitk_image(image), c.landmarks_ras))
    return out


def _finetune_stages(stages, volumes, outputs, names, tmp: Path, *, progress: bool, **settings):
    """Each stage fine-tuned from its own weights and exported to ``outputs`` (paths without suffix), one
    progress bar over all stages' batches: [(role, new stage card)]."""
    from tqdm import tqdm

    from LandmarkInitResearch.training.methods import LOCAL_METHODS

    per_case = [len(LANDMARK_LABELS) if c.data["method"] in LOCAL_METHODS else 1 for _, c in stages]
    total = settings["epochs"] * sum(-(-len(volumes) * n // settings["batch_size"]) for n in per_case)
    out = []
    with tqdm(total=total, disable=not progress, unit="batch") as bar:
        for i, ((role, stage), output, name) in enumerate(zip(stages, outputs, names, strict=True)):
            bar.set_description(f"fine-tuning {stage.name}")
            out.append((role, _finetune_stage(stage, volumes, tmp / f"run{i}", output, name, bar, **settings)))
    return out


def _finetune_stage(stage: ModelCard, volumes, run: Path, output: Path, name: str, bar, **s) -> Path:
    import torch

    from LandmarkInitResearch.training.data import LandmarkDataset, LocalPatchDataset
    from LandmarkInitResearch.training.export import export_run
    from LandmarkInitResearch.training.methods import LOCAL_METHODS
    from LandmarkInitResearch.training.networks import build_model
    from LandmarkInitResearch.training.train import TrainConfig, _load_initial_weights, optimisation_step

    method, grid, modality = stage.data["method"], stage.grid, stage.modality
    trained = stage.data.get("training") or {}
    channels = list(stage.data["network"]["channels"])
    local = method in LOCAL_METHODS
    from LandmarkInitLib.detection.preprocess import NORMALIZATION

    if stage.normalization != NORMALIZATION[modality]:
        raise ModelCardError(
            f"{stage.path}: its intensity normalization {stage.normalization} is not the one training uses "
            f"({NORMALIZATION[modality]}); fine-tuning it would train on other inputs than it runs on"
        )
    augmentation = {
        "augment": bool(trained.get("augment", True)),
        "domain_randomization": bool(trained.get("domain_randomization", False)),
        "orientation": trained.get("augment_orientation", "small"),
        "appearance": trained.get("augment_appearance", "basic"),
    }
    extra = {"max_offset_mm": float(trained.get("max_offset_mm", 10.0))} if local else {}
    dataset = (LocalPatchDataset if local else LandmarkDataset)(
        volumes, grid, modality, seed=s["seed"], **augmentation, **extra
    )
    cfg = TrainConfig(
        data=s["site"], modality=modality, method=method, output=str(run), reg_weight=trained.get("lambda2")
    )
    torch.manual_seed(s["seed"])
    model = build_model(method, grid, len(LANDMARK_LABELS), channels)
    try:
        _load_initial_weights(model, stage.path)
    except RuntimeError as e:
        raise ModelCardError(f"{stage.path}: its weights do not fit its own card ({str(e).splitlines()[0]})") from None
    axes = (
        (model.ax_x, model.ax_y, model.ax_z)
        if hasattr(model, "ax_x")
        else tuple(torch.tensor(grid.axis_mm(a), dtype=torch.float32) for a in range(3))
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=s["batch_size"], shuffle=True, generator=torch.Generator().manual_seed(s["seed"])
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=s["lr"])
    losses = []
    for epoch in range(s["epochs"]):
        dataset.set_epoch(epoch)
        model.train()
        for batch in loader:
            losses.append(optimisation_step(cfg, model, model, batch, optimizer, axes, grid))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            bar.update()
    run.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "epoch": s["epochs"], "val_mre_mm": float("nan")}, run / "best.pt")
    config = {
        "data": s["site"],
        "modality": modality,
        "method": method,
        "channels": channels,
        "grid": grid.to_dict(),
        "epochs": s["epochs"],
        "batch_size": s["batch_size"],
        "lr": s["lr"],
        "seed": s["seed"],
        "lambda2": cfg.lambda2(),
        "augment": augmentation["augment"],
        "augment_orientation": augmentation["orientation"],
        "augment_appearance": augmentation["appearance"],
        "train_cases": s["train_keys"],
        "val_cases": [],
        **extra,
    }
    (run / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    with warnings.catch_warnings():  # torch's exporter notes on constant folding and instance norm: not the user's
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        card_path = export_run(run, output, name=name, validate=False)
    card = json.loads(card_path.read_text(encoding="utf-8"))
    # What export cannot know: the base's grid notes and normalization, site training, and the QA spread limit,
    # carried over (a few held-out site cases cannot set a tail limit).
    card["input_grid"] = stage.data["input_grid"]
    card["intensity_normalization"] = stage.normalization
    card["training"] = {
        "data": f"SITE cases with clinicians' corrected landmarks ({len(volumes)} cases of {s['site']}), starting "
        f"from {stage.name}, trained on: {trained.get('data', 'see fine_tuned_from')}",
        **({"real_mr": trained["real_mr"]} if trained.get("real_mr") else {}),
        "site_dataset": s["site"],
        "train_cases": len(volumes),
        "site_train_cases": s["train_keys"],
        "epochs": s["epochs"],
        "batch_size": s["batch_size"],
        "lr": s["lr"],
        "lr_schedule": "constant",
        "lambda2": cfg.lambda2(),
        **{("augment_" + k if k in ("orientation", "appearance") else k): v for k, v in augmentation.items()},
        "seed": s["seed"],
        **extra,
        "final_train_loss": float(np.mean(losses[-max(1, len(losses) // s["epochs"]) :])),
        "command": s["command"],
        "fine_tuned_from": {
            "card": stage.name,
            "sha256": stage.data["files"]["torchscript"]["sha256"],
            "training": trained,
        },
    }
    card["validation"] = {
        "note": "measured as part of the fine-tuned detector on held-out site cases (site_adaptation)"
    }
    if "qa" in stage.data:
        card["qa"] = dict(stage.data["qa"]) | {
            "spread_limit_rule": f"carried over from {stage.name}: {stage.data['qa'].get('spread_limit_rule', '')}"
        }
    card_path.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    return card_path


def _write_card(base: ModelCard, stages, path: Path, name, n_train: int, data) -> Path:
    """The card the command writes: the two-stage card naming the new stages, or the new global card itself."""
    if base.stage == "global":
        return stages[0][1]
    note = f"Fine-tuned on {n_train} site case(s) of {data} from {base.name}"
    from LandmarkInitResearch.training.two_stage_card import write_two_stage_card

    return write_two_stage_card(
        next(c for role, c in stages if role == "global"),
        [c for role, c in stages if role == "local"],
        path,
        iterations=int(base.data["stages"]["local"].get("iterations", 1)),
        global_passes=base.global_passes,
        postprocessing=base.data.get("postprocessing", []),
        name=name or f"{base.name}_site",
        note=note,
    )


def _errors(card: ModelCard, cases: list[SiteCase], threads, progress: bool, what: str) -> np.ndarray:
    """cases x landmarks distances (mm) between the detector's points and the corrected landmarks."""
    from tqdm import tqdm

    from LandmarkInitLib.detection.detectors import open_detector

    detector = open_detector(card, backend="onnx", threads=threads)
    errors = []
    for c in tqdm(cases, desc=f"held-out cases, {what}", disable=not progress, unit="case", leave=False):
        errors.append(np.linalg.norm(detector.detect_file(c.image).points_ras - c.landmarks_ras, axis=1))
    return np.array(errors)


def _print_figures(result: dict, report) -> None:
    width = max(len("held-out case"), *(len(n) for n in result["held_out"]))
    report(f"{'held-out case':<{width}}  base (mm)  fine-tuned (mm)")
    for n, b, t in zip(result["held_out"], result["base_case_mm"], result["finetuned_case_mm"], strict=True):
        report(f"{n:<{width}}  {b:9.2f}  {t:15.2f}")
    report(f"{'mean':<{width}}  {result['base_mean_mm']:9.2f}  {result['finetuned_mean_mm']:15.2f}")
    report(
        f"one-sided paired Wilcoxon signed-rank test (fine-tuned < base): p = {result['wilcoxon_p']:.3g}, "
        f"alpha {result['alpha']:g}"
    )
    report(f"decision: {'accepted' if result['accepted'] else 'refused'}: {result['reason']}")
