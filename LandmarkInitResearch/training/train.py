"""`landmarkinit train`: one detector per (modality, method), CPU or GPU, single process or torchrun (DDP).

Run folder: config.json (every setting and the data used), last.pt (resume: weights, optimizer, epoch, history),
best.pt (weights with the lowest validation MRE, or the last epoch's with --keep last), history.json, curve.png,
and, once every epoch has run, finished.json.
Checkpoints hold tensors and plain containers only and are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from LandmarkInitLib.detection.model_card import load_card
from LandmarkInitLib.detection.model_grid import PROBE_AXES, ModelGrid, patient_frame
from LandmarkInitLib.errors import LandmarkInitError
from LandmarkInitLib.io.datasets import open_dataset
from LandmarkInitLib.landmarks import LANDMARK_LABELS
from LandmarkInitResearch.training.data import (
    APPEARANCES,
    ORIENTATIONS,
    LandmarkDataset,
    LocalPatchDataset,
    load_volumes,
)
from LandmarkInitResearch.training.dsnt import (
    distance_map_regularization,
    dsnt,
    euclidean_loss,
    gaussian_targets,
    variance_regularization,
)
from LandmarkInitResearch.training.methods import LOCAL_METHODS, METHODS
from LandmarkInitResearch.training.networks import build_model
from LandmarkInitResearch.training.patch_votes import patch_vote_loss

# Model grids: coarse whole-volume grids sized for CPU training (see docs/research.md), and the fine patches of
# the local refinement (32 mm at the phantoms' native 0.8 mm). MR grids run in the patient frame (LPS), as the
# runtime does for the shipped MR cards.
DEFAULT_GRIDS = {"mr": ModelGrid((48, 48, 40), 2.0, "LPS"), "us": ModelGrid((48, 48, 48), 2.2)}
DEFAULT_LOCAL_GRIDS = {"mr": ModelGrid((40, 40, 40), 0.8, "LPS"), "us": ModelGrid((40, 40, 40), 0.8)}
HEATMAP_PEAK_WEIGHT = 100.0
FINISHED = "finished.json"  # a run folder's last file
# Fang et al. 2023, section 3.1: lambda_2 for the variance and the distance-map regularizers.
PAPER_LAMBDAS = {
    ("mr", "dsnt-var"): 5e-4,
    ("us", "dsnt-var"): 2e-3,
    ("mr", "dsnt-dist"): 5e-3,
    ("us", "dsnt-dist"): 1e-2,
    ("mr", "dsnt-local"): 5e-3,
    ("us", "dsnt-local"): 1e-2,
}


@dataclass
class TrainConfig:
    data: str | list[str]  # one dataset folder, or several whose cases are pooled for training
    modality: str
    method: str
    output: str
    val_data: str | None = None
    val_fraction: float = 0.15
    epochs: int = 30
    batch_size: int = 4
    lr: float = 1e-3
    lr_schedule: str = "constant"  # or "cosine": annealed to 0 over the epochs
    seed: int = 0
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    grid_shape: list[int] | None = None
    grid_spacing_mm: float | None = None
    reg_weight: float | None = None  # lambda_2; None = the paper's value for the method and modality
    sigma_t_voxels: float = 1.0
    heatmap_sigma_voxels: float = 2.0
    augment: bool = True
    max_cases: int | None = None
    threads: int | None = None
    max_offset_mm: float = 10.0  # local methods: largest distance of the patch centre from the landmark
    init_weights: str | None = None  # fine-tuning: start from these weights (run folder: its best.pt)
    domain_randomization: bool = False  # MR: wide acquisition / contrast randomization (data.MRDomainRandomization)
    real_mr: str | None = None  # PROMISE12-layout folder of real T2 MR (training/real_mr_data.py)
    real_mr_folds: list[int] = field(default_factory=list)  # cross-validation folds trained on
    real_mr_val_folds: list[int] = field(default_factory=list)  # folds added to validation (epoch choice)
    real_mr_split: str | None = None  # split file (default: evaluation/real_mr_split.json)
    real_mr_repeat: int = 1  # each real training case this many times per epoch (oversampling)
    grid_axes: str | None = None  # patient axes of the model grid ("RAS"), None: the volume's index axes
    augment_orientation: str = "small"  # "any": the grid's orientation drawn from all of O(3) (training/data.py)
    augment_appearance: str = "basic"  # "us": + US domain randomization (training/data.py, us_appearance)
    tissue_intensities: float = 0.0  # MR DR: probability of per-tissue random intensities (phantom tissue labels)
    keep: str = "best"  # "last": best.pt holds the last epoch (a final model whose epochs were chosen beforehand)

    @property
    def local(self) -> bool:
        return self.method in LOCAL_METHODS

    def grid(self) -> ModelGrid:
        default = (DEFAULT_LOCAL_GRIDS if self.local else DEFAULT_GRIDS)[self.modality]
        shape = tuple(self.grid_shape) if self.grid_shape else default.shape_ijk
        axes = self.grid_axes.upper() if self.grid_axes else default.axes
        if axes == PROBE_AXES:
            # a probe-frame grid takes the volume's own axes in training (ModelGrid.frame_for): the phantom's US
            # files are stored in the probe's frame, so its cards can say what the detectors will find
            if self.modality != "us":
                raise LandmarkInitError("--grid-axes probe is for US (the probe's frame); MR takes patient axes")
        elif axes is not None:
            try:
                patient_frame(axes)
            except ValueError as e:
                raise LandmarkInitError(f"--grid-axes: {e}") from None
        return ModelGrid(shape, self.grid_spacing_mm or default.spacing_mm, axes)

    def lambda2(self) -> float:
        if self.reg_weight is not None:
            return self.reg_weight
        return PAPER_LAMBDAS.get((self.modality, self.method), 0.0)


def _distributed():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return world, rank


def data_folders(cfg: TrainConfig) -> list[str]:
    return [cfg.data] if isinstance(cfg.data, str) else list(cfg.data)


def _check_tissue_intensities(cfg: TrainConfig, volumes) -> None:
    if not cfg.tissue_intensities:
        return
    if not 0.0 < cfg.tissue_intensities <= 1.0 or cfg.modality != "mr" or not cfg.domain_randomization:
        raise LandmarkInitError(
            "--tissue-intensities P (0 < P <= 1) is part of MR domain randomization: use it with --modality mr "
            "and --domain-randomization"
        )
    if not any(v.tissues is not None for v in volumes):
        raise LandmarkInitError(
            "--tissue-intensities: no training case has tissue labels (mr_tissues.nrrd); regenerate the phantom data "
            "with this version of `landmarkinit phantom`, which writes them"
        )


def _split(cfg: TrainConfig):
    train_cases = [case for folder in data_folders(cfg) for case in open_dataset(folder)]
    train_cases = [case for case in train_cases if cfg.modality in case.images]  # site cases may hold one modality
    if cfg.max_cases:
        train_cases = train_cases[: cfg.max_cases]
    if cfg.val_data:
        val_cases = open_dataset(cfg.val_data)
    else:
        n_val = max(1, int(round(len(train_cases) * cfg.val_fraction)))
        if len(train_cases) - n_val < 1:
            raise LandmarkInitError(f"{cfg.data} holds {len(train_cases)} case(s): too few to split off validation")
        train_cases, val_cases = train_cases[:-n_val], train_cases[-n_val:]
    return train_cases, val_cases


def select_channels(model_out, target, channel):
    """Local refinement: keep, per sample, only the output and target of the landmark its patch is centred near."""
    if channel is None or bool((channel < 0).all()):
        return model_out, target
    rows = torch.arange(len(channel))
    coords, spread, maps = model_out
    if isinstance(maps, tuple):
        maps = tuple(m[rows, channel][:, None] for m in maps)
    elif maps is not None:
        maps = maps[rows, channel][:, None]
    return (coords[rows, channel][:, None], spread[rows, channel][:, None], maps), target[rows, channel][:, None]


def compute_loss(cfg: TrainConfig, model_out, target, axes, grid: ModelGrid, model=None):
    coords, _, maps = model_out
    if cfg.method in ("g2l-global", "g2l-local"):
        return patch_vote_loss(model_out, target, model.centres, model.cell_mm)
    if cfg.method == "heatmap":
        # L2 to Gaussian targets (Payer 2016), weighted towards the peaks: a landmark's Gaussian covers ~0.03% of
        # the grid, and an unweighted L2 let the network settle on an all-zero map (docs/history.md).
        gauss = gaussian_targets(target, axes, cfg.heatmap_sigma_voxels * grid.spacing_mm)
        return ((maps - gauss) ** 2 * (1.0 + HEATMAP_PEAK_WEIGHT * gauss)).mean() * 100.0
    loss = euclidean_loss(coords, target)
    if cfg.method == "dsnt-var":
        _, var = dsnt(maps, axes)
        loss = loss + cfg.lambda2() * variance_regularization(var, grid, cfg.sigma_t_voxels)
    elif cfg.method in ("dsnt-dist", "dsnt-local"):
        loss = loss + cfg.lambda2() * distance_map_regularization(maps, target, axes)
    return loss


def optimisation_step(cfg: TrainConfig, net, model, batch, optimizer, axes, grid: ModelGrid) -> float:
    """One gradient step on a batch (x, target, channel) of a LandmarkDataset or LocalPatchDataset; ``net`` is the
    model or its DistributedDataParallel wrapper. Returns the loss."""
    x, target, channel = batch
    outputs, target = select_channels(net(x), target, channel)
    loss = compute_loss(cfg, outputs, target, axes, grid, model)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _initial_weights(path) -> dict:
    """Weights to fine-tune from: a checkpoint file, a run folder (its best.pt), or an exported model card (.json,
    e.g. a shipped stage in Resources/Models: the network inside its TorchScript file, checksum-checked). The
    architecture must match (same method, grid and channels): load_state_dict refuses anything else."""
    path = Path(path)
    path = path / "best.pt" if path.is_dir() else path
    if not path.is_file():
        raise LandmarkInitError(
            f"--init-weights: {path} does not exist (give a run folder, a .pt checkpoint or a model card .json)"
        )
    if path.suffix == ".json":
        return _card_weights(path)
    state = torch.load(path, weights_only=True)
    return state["model"] if "model" in state else state


def _card_weights(card_path: Path) -> dict:
    card = load_card(card_path)
    if card.stage == "two-stage":
        raise LandmarkInitError(
            f"--init-weights: {card_path} is a two-stage card; give the card of the stage to fine-tune"
        )
    ts_path = card.verified_weights("torchscript")
    # The exported module is ExportWrapper/LocalExportWrapper around the trained network (attribute "model").
    # TorchScript also saves the non-persistent buffers (grid axes), which a checkpoint leaves out: kept here,
    # they are checked against the new run's own in _load_initial_weights.
    state = torch.jit.load(str(ts_path), map_location="cpu").state_dict()
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}


def _load_initial_weights(model, path) -> None:
    state = _initial_weights(path)
    persistent = model.state_dict().keys()
    buffers = dict(model.named_buffers())
    for key in [k for k in state if k not in persistent and k in buffers]:
        if buffers[key].shape != state[key].shape or not torch.allclose(buffers[key], state[key]):
            raise RuntimeError(f"buffer {key} (the model grid) differs")
        del state[key]
    model.load_state_dict(state)


@torch.no_grad()
def evaluate_mre(model, loader) -> tuple[float, np.ndarray]:
    model.eval()
    errors = []
    for x, target, channel in loader:
        (coords, _, _), target = select_channels(model(x), target, channel)
        errors.append(torch.linalg.vector_norm(coords - target, dim=-1).numpy())
    errors = np.concatenate(errors)
    return float(errors.mean()), errors


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True) -> dict:
    from tqdm import tqdm

    if cfg.method not in METHODS:
        raise LandmarkInitError(f"unknown method {cfg.method!r}: use one of {', '.join(METHODS)}")
    if cfg.modality not in ("mr", "us"):
        raise LandmarkInitError(f"unknown modality {cfg.modality!r}: use mr or us")
    if cfg.augment_orientation not in ORIENTATIONS or cfg.augment_appearance not in APPEARANCES:
        raise LandmarkInitError(
            f"augmentation {cfg.augment_orientation!r} / {cfg.augment_appearance!r}: orientation is one of "
            f"{', '.join(ORIENTATIONS)}, appearance one of {', '.join(APPEARANCES)}"
        )
    if cfg.lr_schedule not in ("constant", "cosine"):
        raise LandmarkInitError(f"unknown learning-rate schedule {cfg.lr_schedule!r}: use constant or cosine")
    world, rank = _distributed()
    out = Path(cfg.output)
    _check_probe_frame_data(cfg)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if (out / "last.pt").exists() and not resume:
            raise LandmarkInitError(
                f"{out} already holds a training run; pass --resume to continue it or choose another --output"
            )
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)

    grid = cfg.grid()
    train_cases, val_cases = _split(cfg)
    dataset, extra = (LocalPatchDataset, {"max_offset_mm": cfg.max_offset_mm}) if cfg.local else (LandmarkDataset, {})
    train_volumes = load_volumes(train_cases, cfg.modality, progress and rank == 0)
    _check_tissue_intensities(cfg, train_volumes)
    val_volumes = load_volumes(val_cases, cfg.modality, progress and rank == 0)
    real_train, real_val = _real_mr(cfg, progress and rank == 0)
    extra |= {"orientation": cfg.augment_orientation, "appearance": cfg.augment_appearance}
    train_set = dataset(
        train_volumes + real_train * cfg.real_mr_repeat,
        grid,
        cfg.modality,
        augment=cfg.augment,
        seed=cfg.seed,
        domain_randomization=cfg.domain_randomization,
        tissue_intensities=cfg.tissue_intensities,
        **extra,
    )
    val_set = dataset(val_volumes + real_val, grid, cfg.modality, seed=cfg.seed, **extra)
    n_val_phantom = len(val_volumes) * (val_set.n_landmarks if cfg.local else 1)
    sampler = torch.utils.data.distributed.DistributedSampler(train_set, seed=cfg.seed) if world > 1 else None
    generator = torch.Generator().manual_seed(cfg.seed)
    train_loader = torch.utils.data.DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=generator,
        drop_last=len(train_set) > cfg.batch_size,
    )
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=cfg.batch_size)

    model = build_model(cfg.method, grid, len(LANDMARK_LABELS), cfg.channels)
    axes = (
        (model.ax_x, model.ax_y, model.ax_z)
        if hasattr(model, "ax_x")
        else tuple(torch.tensor(grid.axis_mm(a), dtype=torch.float32) for a in range(3))
    )
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    history, start_epoch, best = [], 0, float("inf")
    if cfg.init_weights and not (resume and (out / "last.pt").exists()):
        try:
            _load_initial_weights(model, cfg.init_weights)
        except RuntimeError as e:
            raise LandmarkInitError(
                f"--init-weights {cfg.init_weights}: that network does not match this run's method, grid and "
                f"channels ({str(e).splitlines()[0]})"
            ) from None
    if resume and (out / "last.pt").exists():
        state = torch.load(out / "last.pt", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history, start_epoch, best = state["history"], state["epoch"] + 1, state["best_mre"]
        generator.set_state(state["loader_rng"])
    if rank == 0:
        (out / "config.json").write_text(
            json.dumps(
                {
                    **asdict(cfg),
                    "grid": grid.to_dict(),
                    "lambda2": cfg.lambda2(),
                    "world_size": world,
                    "train_cases": [c.name for c in train_cases],
                    "val_cases": [c.name for c in val_cases],
                    "real_mr_train_cases": [v.name.removeprefix("real:") for v in real_train],
                    "real_mr_val_cases": [v.name.removeprefix("real:") for v in real_val],
                    "data_description": _describe_data(cfg.data)
                    if isinstance(cfg.data, str)
                    else [_describe_data(f) for f in cfg.data],
                    "val_data_description": _describe_data(cfg.val_data) if cfg.val_data else None,
                },
                indent=1,
            )
        )

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        if cfg.lr_schedule == "cosine":
            for group in optimizer.param_groups:
                # a Python float: a numpy scalar in the optimizer state would not load back with weights_only=True
                group["lr"] = float(cfg.lr * 0.5 * (1.0 + np.cos(np.pi * epoch / cfg.epochs)))
        train_set.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        net.train()
        losses = []
        bar = tqdm(
            train_loader,
            desc=f"{cfg.modality}/{cfg.method} epoch {epoch + 1}/{cfg.epochs}",
            disable=not progress or rank != 0,
            unit="batch",
            leave=False,
        )
        for batch in bar:
            losses.append(optimisation_step(cfg, net, model, batch, optimizer, axes, grid))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if rank == 0:
            val_mre, val_errors = evaluate_mre(model, val_loader)
            record = {
                "epoch": epoch + 1,
                "train_loss": float(np.mean(losses)),
                "train_batches": len(losses),  # on this process: each of world_size processes sees its share
                "val_mre_mm": val_mre,
                **(
                    {
                        "val_mre_phantom_mm": float(val_errors[:n_val_phantom].mean()),
                        "val_mre_real_mm": float(val_errors[n_val_phantom:].mean()),
                    }
                    if real_val and n_val_phantom
                    else {}
                ),
                "seconds": time.perf_counter() - t0,
            }
            history.append(record)
            if val_mre < best or cfg.keep == "last":
                best = val_mre
                torch.save({"model": model.state_dict(), "epoch": epoch + 1, "val_mre_mm": val_mre}, out / "best.pt")
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch,
                    "history": history,
                    "best_mre": best,
                    "loader_rng": generator.get_state(),
                },
                out / "last.pt",
            )
            (out / "history.json").write_text(json.dumps(history, indent=1), encoding="utf-8")
            plot_curve(history, out / "curve.png", f"{cfg.modality.upper()} {cfg.method}")
            if progress:
                split_mre = (
                    f" (phantom {record['val_mre_phantom_mm']:.2f}, real {record['val_mre_real_mm']:.2f})"
                    if "val_mre_real_mm" in record
                    else ""
                )
                print(
                    f"{cfg.modality}/{cfg.method} epoch {epoch + 1}: loss {record['train_loss']:.4f}, "
                    f"val MRE {val_mre:.2f} mm{split_mre} ({record['seconds']:.0f} s)",
                    flush=True,
                )
        if world > 1:
            torch.distributed.barrier()
    if world > 1:
        torch.distributed.destroy_process_group()
    if rank == 0:  # written last: an experiment step that lists it is done only when every epoch is
        finished = {"epochs": cfg.epochs, "best_val_mre_mm": best}
        (out / FINISHED).write_text(json.dumps(finished) + "\n", encoding="utf-8")
    return {"history": history, "best_val_mre_mm": best, "output": str(out)}


def _real_mr(cfg: TrainConfig, progress: bool):
    """Real MR training and validation volumes of the chosen cross-validation folds (none without --real-mr)."""
    if not cfg.real_mr:
        if cfg.real_mr_folds or cfg.real_mr_val_folds:
            raise LandmarkInitError("--real-mr-folds / --real-mr-val-folds need --real-mr DIR (the real MR cases)")
        return [], []
    if cfg.modality != "mr":
        raise LandmarkInitError("--real-mr holds MR images: use it with --modality mr")
    overlap = sorted(set(cfg.real_mr_folds) & set(cfg.real_mr_val_folds))
    if overlap:
        raise LandmarkInitError(f"real-MR fold(s) {overlap} are both trained on and validated on: keep them apart")
    from LandmarkInitResearch.training.real_mr_data import real_mr_volumes

    train_volumes, _ = real_mr_volumes(cfg.real_mr, cfg.real_mr_folds, cfg.real_mr_split, progress)
    val_volumes, _ = real_mr_volumes(cfg.real_mr, cfg.real_mr_val_folds, cfg.real_mr_split, progress)
    return train_volumes, val_volumes


def _check_probe_frame_data(cfg: TrainConfig) -> None:
    """A probe-frame grid trains in the files' index axes (ModelGrid.frame_for), which are the probe's frame only
    for the phantom's US files."""
    if cfg.grid().axes != PROBE_AXES:
        return
    folders = [cfg.data] if isinstance(cfg.data, str) else list(cfg.data)
    for folder in folders + ([cfg.val_data] if cfg.val_data else []):
        if not _describe_data(folder).get("synthetic"):
            raise LandmarkInitError(
                f"--grid-axes probe trains in the files' index axes, which are the probe's frame only for phantom "
                f"data (landmarkinit phantom); {folder} is not a phantom dataset. Train without --grid-axes."
            )


def _describe_data(path) -> dict:
    meta = Path(path) / "dataset.json"
    return json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else {"path": str(path)}


def plot_curve(history, path, title) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax1 = plt.subplots(figsize=(6, 3.5))
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", color="#1f77b4", label="training loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss", color="#1f77b4")
    ax2 = ax1.twinx()
    ax2.plot(epochs, [h["val_mre_mm"] for h in history], "s-", color="#ff7f0e", label="validation MRE")
    ax2.set_ylabel("validation MRE (mm)", color="#ff7f0e")
    ax1.set_title(f"{title} (synthetic phantom)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
