"""Run a detector described by a model card: volume -> three landmarks in RAS, with a spread per landmark.

Detectors: LandmarkDetector (one whole-volume network), TwoStageDetector (a global detector followed by local
refinement: LocalRefiner, or LocalEnsemble of several); open_detector() picks the one a card describes.

Backends: onnxruntime (default, what Slicer users get) or TorchScript (when torch is importable, e.g. from
Slicer's PyTorch extension). ``backend="auto"`` prefers ONNX, the fast path, and takes TorchScript only when
onnxruntime is not importable but torch is and the card has a TorchScript file; the result says which ran.
Weights are checksum-verified before loading; nothing is unpickled.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from LandmarkInitLib.detection.mirror_average import Reflection, combine_views
from LandmarkInitLib.detection.model_card import ModelCard, ModelCardError, load_card
from LandmarkInitLib.detection.postprocessing import apply_point_steps, split_at_mirror
from LandmarkInitLib.detection.preprocess import (
    InvalidVolumeError,
    check_volume,
    prepare_input,
    prepare_patches,
    sitk_image,
)
from LandmarkInitLib.detection.probe_frame import (
    FLAG_NO_FAN,
    candidate_frames,
    choose_frame,
    fan_centre_ras,
    fan_corner_candidates_ras,
    shows_fan,
)
from LandmarkInitLib.geometry import VolumeGeometry

BACKENDS = ("onnx", "torchscript")
BACKEND_CHOICES = ("auto", *BACKENDS)  # what users may ask for: "auto" = TorchScript if torch is importable, else ONNX
# Wrong-modality flags (pipeline/initialize.py refuses a pair when both volumes raise the other modality's flag).
FLAG_NOT_ULTRASOUND = (
    "volume does not look like B-mode ultrasound (values outside 0-255 or no zero background): "
    "is this an MR volume given to the US model?"
)
FLAG_LOOKS_LIKE_ULTRASOUND = (
    "volume looks like 8-bit ultrasound (0-255 with a zero background): is this a US volume given to the MR model?"
)

FLAG_NO_ORIENTATION = (
    "orientation unknown: the volume has 1 mm voxels, an identity direction and origin 0, as a file saved without "
    "its scanner geometry; the detector took its voxel axes as the patient's left, posterior and superior, which may "
    "be wrong: load the volume from a file that keeps the geometry (DICOM, NRRD, NIfTI from the scanner)"
)


@dataclass
class Detection:
    labels: tuple[str, ...]
    points_ras: np.ndarray  # L x 3
    spread_mm: np.ndarray  # L (NaN where the method gives none)
    modality: str
    model: str
    backend: str
    seconds: dict = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    global_points_ras: np.ndarray | None = None  # two-stage detectors: the global stage's points

    def as_dict(self) -> dict:
        return {
            "modality": self.modality,
            "model": self.model,
            "backend": self.backend,
            "landmarks": [
                {"label": lb, "ras": [float(v) for v in p], "spread_mm": None if np.isnan(s) else float(s)}
                for lb, p, s in zip(self.labels, self.points_ras, self.spread_mm, strict=True)
            ],
            "flags": list(self.flags),
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
        } | (
            {}
            if self.global_points_ras is None
            else {"global_stage_ras": [[float(v) for v in p] for p in self.global_points_ras]}
        )


def auto_backend(card: ModelCard) -> str:
    """ "auto" (dependencies.available_backend), for a card: TorchScript only if the card has a TorchScript file;
    ONNX otherwise, whose absence the session then reports."""
    from LandmarkInitLib.dependencies import available_backend

    backend = available_backend()
    return "torchscript" if backend == "torchscript" and "torchscript" in card.data["files"] else "onnx"


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


class NetworkSession:
    """One exported network file (checksum-verified) on onnxruntime or TorchScript."""

    def __init__(self, card: ModelCard, backend: str = "onnx", threads: int | None = None):
        if backend == "auto":
            backend = auto_backend(card)
        if backend not in BACKENDS:
            raise ModelCardError(f"unknown backend {backend!r}: use onnx, torchscript or auto")
        self.card, self.backend = card, backend
        path = card.verified_weights(backend)
        if backend == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # incl. NCHWc 2-D convs
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            if threads:
                options.intra_op_num_threads = threads
            # A detector alternates several sessions with resampling; threads that spin after a run would take the
            # cores from the next stage (measured: two-stage US 345 -> 258 ms with spinning off).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            # Without an arena each session frees its buffers after a run instead of holding its largest run's
            # (a pair's detectors hold 5 sessions): peak memory of detecting both volumes 397 -> 260 MB, same speed.
            options.enable_cpu_mem_arena = False
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self._input = self._session.get_inputs()[0].name
        else:
            if not torch_available():
                raise ModelCardError("the TorchScript backend needs torch; install it or use the ONNX backend")
            import torch

            if threads:
                torch.set_num_threads(threads)
            self._module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Network input -> (coords, spread) as float64, batch dimension kept."""
        if self.backend == "onnx":
            coords, spread = self._session.run(None, {self._input: x})
        else:
            import torch

            with torch.inference_mode():
                coords, spread = (t.numpy() for t in self._module(torch.from_numpy(x)))
        return np.asarray(coords, dtype=np.float64), np.asarray(spread, dtype=np.float64)


class VolumeDetector:
    """Entry points shared by the detectors: numpy + geometry, SimpleITK image, file, Slicer node."""

    card: ModelCard
    backend: str

    def detection(self, points_ras, spread_mm, seconds: dict) -> Detection:
        card = self.card
        return Detection(card.landmarks, points_ras, spread_mm, card.modality, card.name, self.backend, seconds)

    def detect_array(self, array: np.ndarray, geometry: VolumeGeometry) -> Detection:
        raise NotImplementedError

    def detect(self, volume) -> Detection:
        """Detect in a SimpleITK image, a Slicer scalar volume node, or a volume file (path)."""
        if hasattr(volume, "GetImageData"):
            return self.detect_node(volume)
        if hasattr(volume, "GetDimension"):
            return self.detect_image(volume)
        if isinstance(volume, (str, os.PathLike)):
            return self.detect_file(volume)
        raise InvalidVolumeError(f"cannot detect landmarks in a {type(volume).__name__}: give an image or a volume")

    def detect_image(self, image) -> Detection:
        """Detect in a SimpleITK image (LPS geometry converted to RAS)."""
        import SimpleITK as sitk

        if image.GetDimension() != 3:
            raise InvalidVolumeError(f"the image is {image.GetDimension()}-D; landmark detection needs a 3-D volume")
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise InvalidVolumeError("the image has several components per voxel; give a scalar volume")
        return self.detect_array(
            sitk.GetArrayFromImage(image).astype(np.float32), VolumeGeometry.from_sitk_image(image)
        )

    def detect_file(self, path) -> Detection:
        """Detect in a volume file or a folder holding one DICOM series."""
        from LandmarkInitLib.io.images import read_image

        return self.detect_image(read_image(path, "volume"))

    def detect_node(self, volume_node) -> Detection:
        """Detect in a Slicer scalar volume node (its own IJK-to-RAS; parent transforms are not applied)."""
        import slicer

        try:
            return self.detect_array(
                slicer.util.arrayFromVolume(volume_node).astype(np.float32),
                VolumeGeometry.from_volume_node(volume_node),
            )
        except InvalidVolumeError as e:
            raise InvalidVolumeError(f"{e} (volume {volume_node.GetName()!r})") from None


class StageNetwork:
    """A network of one stage ("global" or "local"), opened from a card of that stage."""

    stage = ""

    def __init__(self, card: ModelCard, backend: str = "onnx", threads: int | None = None):
        if card.stage != self.stage:
            raise ModelCardError(
                f"{card.path} is a {card.stage} model card, not a {self.stage} one; open_detector() opens any card"
            )
        self.network = NetworkSession(card, backend, threads)
        self.card, self.backend = card, self.network.backend


class LandmarkDetector(StageNetwork, VolumeDetector):
    """A global (whole-volume) detector."""

    stage = "global"

    @classmethod
    def from_card(cls, card_path, backend: str = "onnx", threads: int | None = None) -> LandmarkDetector:
        return cls(load_card(card_path), backend, threads)

    def run_network(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        coords, spread = self.network.run(x)
        return coords[0], spread[0]

    def detect_array(
        self, array: np.ndarray, geometry: VolumeGeometry, frame: np.ndarray | None = None, image=None
    ) -> Detection:
        """Detect in a volume given as numpy [k, j, i] with its geometry (RAS); ``frame``: the model grid's axes
        (default: the card's choice for this volume, ModelGrid.frame_for); ``image``: the same volume as a
        SimpleITK image, when the caller has made it already."""
        if frame is None and self.card.grid.in_probe_frame:
            detection, _, orientation_flags = self.detect_in_probe_frame(array, geometry, image)
            detection.flags += orientation_flags
            return detection
        check_volume(array, f"the {self.card.modality.upper()} volume")
        return self._detect_in_frame(array, geometry, frame, image)

    def _detect_in_frame(
        self, array, geometry: VolumeGeometry, frame, image, with_flags: bool = True, centre_ras=None
    ) -> Detection:
        """detect_array on a volume already checked (``with_flags``: compute its quality flags too; ``centre_ras``:
        the grid's centre, default the imaged fan's centre for a probe-frame grid (probe_frame.fan_centre_ras: a
        larger box around the same fan changes nothing), else the centre of the volume's extent)."""
        t0 = time.perf_counter()
        card = self.card
        image = sitk_image(array, geometry) if image is None else image
        if centre_ras is None and card.grid.in_probe_frame and shows_fan(array):
            centre_ras = fan_centre_ras(fan_corner_candidates_ras(array, geometry), frame)
        x, grid_geometry = prepare_input(
            image, geometry, card.grid, card.modality, card.normalization, frame=frame, centre_ras=centre_ras
        )
        t1 = time.perf_counter()
        coords, spread = self.run_network(x)
        t2 = time.perf_counter()
        points = self.card.grid.grid_mm_to_ras(grid_geometry, coords)
        detection = self.detection(
            points, spread, {"preprocess": t1 - t0, "inference": t2 - t1, "total": time.perf_counter() - t0}
        )
        if with_flags:
            detection.flags = quality_flags(self.card, array, geometry, detection)
        return detection

    def detect_in_probe_frame(
        self, array: np.ndarray, geometry: VolumeGeometry, image=None
    ) -> tuple[Detection, np.ndarray, list[str]]:
        """(detection, frame, orientation flags) in the probe frame that the fan's shape and this network's
        confidence choose (detection/probe_frame.py); the volume's own axes, flagged, when it shows no fan."""
        check_volume(array, f"the {self.card.modality.upper()} volume")
        t0 = time.perf_counter()
        fan = fan_corner_candidates_ras(array, geometry) if shows_fan(array) else None
        frames = None if fan is None else candidate_frames(array, geometry, fan)
        if frames is None:
            frame = self.card.grid.frame_for(geometry)
            return self._detect_in_frame(array, geometry, frame, image), frame, [FLAG_NO_FAN]
        image = sitk_image(array, geometry) if image is None else image
        detections = [
            self._detect_in_frame(array, geometry, f, image, with_flags=False, centre_ras=fan_centre_ras(fan, f))
            for f in frames
        ]
        own_axes = geometry.direction_ras
        best, flag = choose_frame(
            [np.mean(d.spread_mm) for d in detections], [np.trace(f.T @ own_axes) for f in frames]
        )
        detection = detections[best]
        detection.flags = quality_flags(self.card, array, geometry, detection)  # of the chosen frame only
        detection.seconds["total"] = time.perf_counter() - t0
        return detection, frames[best], [flag] if flag else []


class LocalRefiner(StageNetwork):
    """A local refinement stage: one patch per landmark on the card's fine grid, centred on the landmark's
    current estimate; the network's answer for landmark i in patch i (patch grid mm) is mapped back to RAS."""

    stage = "local"

    @property
    def trained_offset_mm(self) -> float:
        return float(self.card.data.get("training", {}).get("max_offset_mm", np.inf))

    def refine(self, image, geometry: VolumeGeometry, points_ras, frame=None) -> tuple[np.ndarray, np.ndarray]:
        """(SimpleITK image, its RAS geometry, L x 3 starting points) -> (L x 3 refined RAS points, L spreads);
        ``frame``: the patches' axes (default: the card's choice for this volume)."""
        return self.refine_patches(*self.patches(image, geometry, points_ras, frame))

    @property
    def patch_key(self):
        """Refiners with equal keys read the same patches from the same starting points."""
        return self.card.grid, self.card.modality, repr(self.card.normalization)

    def patches(self, image, geometry: VolumeGeometry, points_ras, frame=None):
        """(network input [L, 1, D, H, W], L patch geometries) around the starting points."""
        card = self.card
        return prepare_patches(image, geometry, card.grid, points_ras, card.modality, card.normalization, frame=frame)

    def refine_patches(self, x: np.ndarray, patches) -> tuple[np.ndarray, np.ndarray]:
        coords, spread = self.network.run(x)
        grid = self.card.grid
        refined = np.array([grid.grid_mm_to_ras(g, c[None])[0] for g, c in zip(patches, coords, strict=True)])
        return refined, spread


class LocalEnsemble:
    """Several local refiners run on the same starting points; the answer is their mean. The spread is the RMS
    radius of the pooled answers: members' spreads and their disagreement both count."""

    def __init__(self, cards: list[ModelCard], backend: str = "onnx", threads: int | None = None):
        self.members = [LocalRefiner(card, backend, threads) for card in cards]
        self.backend = self.members[0].backend

    @property
    def trained_offset_mm(self) -> float:
        """The largest start-to-landmark distance any member was trained for (a specialist trained on small
        offsets may sit beside a generalist: beyond the generalist's range no member has seen such a start)."""
        return max(m.trained_offset_mm for m in self.members)

    @property
    def spread_limit_card(self) -> ModelCard:
        """The member card whose QA spread limit applies (the most tolerant one: the pooled spread is larger)."""
        return max(self.members, key=lambda m: m.card.data.get("qa", {}).get("spread_limit_mm", 0.0)).card

    def refine(self, image, geometry: VolumeGeometry, points_ras, frame=None) -> tuple[np.ndarray, np.ndarray]:
        patches = {}  # members on the same grid share the resampling
        for m in self.members:
            if m.patch_key not in patches:
                patches[m.patch_key] = m.patches(image, geometry, points_ras, frame)
        answers = [m.refine_patches(*patches[m.patch_key]) for m in self.members]
        return combine_views([p for p, _ in answers], [s for _, s in answers])


class TwoStageDetector(VolumeDetector):
    """Global detector (``passes`` times: the first on a grid centred on the volume's extent, each further one on a
    grid centred on the last answer's centroid, so that a gland off the volume's centre is seen whole), then
    ``iterations`` passes of local refinement (one model or an ensemble), each
    re-centred on the last answer; then the card's post-processing steps in order (detection/postprocessing.py),
    the steps before ``mirror_average`` on the volume and on its left-right mirror image, those after it on the
    average. The model grids' frame (detection/model_grid.py) is chosen once, on the volume, and kept for its
    mirror image."""

    def __init__(self, card: ModelCard, backend: str = "onnx", threads: int | None = None):
        if card.stage != "two-stage":
            raise ModelCardError(f"{card.path} is a {card.stage} model card, not a two-stage detector")
        self.card = card
        self.global_stage = LandmarkDetector(card.stage_card("global"), backend, threads)
        self.local_stage = LocalEnsemble(card.stage_cards("local"), backend, threads)
        axes = {m.card.grid.axes for m in (self.global_stage, *self.local_stage.members)}
        if len(axes) > 1:
            raise ModelCardError(
                f"two-stage model card {card.path}: its stages' grids use different axes "
                f"({', '.join(sorted(str(a) for a in axes))}); all stages must share one frame"
            )
        self.iterations = int(card.data["stages"]["local"].get("iterations", 1))
        self.global_passes = card.global_passes
        self.view_steps, self.final_steps, self.mirror_average = split_at_mirror(card.postprocessing)
        self.backend = self.global_stage.backend

    def run_stages(self, array: np.ndarray, geometry: VolumeGeometry, frame: np.ndarray, coarse=None, image=None):
        """One view: (global Detection, refined L x 3 RAS points after the per-view steps, their spreads, seconds
        in global, in local); ``coarse``: the global detection in ``frame`` when the caller has it already."""
        t0 = time.perf_counter()
        image = sitk_image(array, geometry) if image is None else image  # one image for both stages
        if coarse is None:
            coarse = self.global_stage.detect_array(array, geometry, frame, image)
        for _ in range(self.global_passes - 1):
            coarse = self.global_stage._detect_in_frame(
                array, geometry, frame, image, centre_ras=coarse.points_ras.mean(axis=0)
            )
        t1 = time.perf_counter()
        points, spread = coarse.points_ras, coarse.spread_mm
        for _ in range(self.iterations):
            points, spread = self.local_stage.refine(image, geometry, points, frame)
        points = apply_point_steps(self.view_steps, points, self.global_stage.card.grid.lateral_direction_ras(frame))
        return coarse, points, spread, t1 - t0, time.perf_counter() - t1

    def detect_array(self, array: np.ndarray, geometry: VolumeGeometry) -> Detection:
        grid = self.global_stage.card.grid
        coarse, orientation_flags, image = None, [], None
        if grid.in_probe_frame:
            image = sitk_image(array, geometry)
            coarse, frame, orientation_flags = self.global_stage.detect_in_probe_frame(array, geometry, image)
        else:
            frame = grid.frame_for(geometry)
        coarse, points, spread, t_global, t_local = self.run_stages(array, geometry, frame, coarse, image)
        if self.mirror_average:
            mirror = Reflection.about_centre(geometry, grid.lateral_direction_ras(frame))
            coarse_m, points_m, spread_m, tg, tl = self.run_stages(array, mirror.geometry(geometry), frame)
            points, spread = combine_views([points, mirror.points(points_m)], [spread, spread_m])
            coarse = self.global_stage.detection(
                *combine_views(
                    [coarse.points_ras, mirror.points(coarse_m.points_ras)], [coarse.spread_mm, coarse_m.spread_mm]
                ),
                {},
            )
            coarse.flags = quality_flags(self.global_stage.card, array, geometry, coarse)
            t_global, t_local = t_global + tg, t_local + tl
        points = apply_point_steps(self.final_steps, points, grid.lateral_direction_ras(frame))
        coarse_points, coarse_flags = coarse.points_ras, coarse.flags
        detection = self.detection(points, spread, {"global": t_global, "local": t_local, "total": t_global + t_local})
        detection.global_points_ras = coarse_points
        detection.flags = quality_flags(self.local_stage.spread_limit_card, array, geometry, detection)
        detection.flags += [f"global stage: {f}" for f in coarse_flags if "spread" in f] + orientation_flags
        moved = np.linalg.norm(points - coarse_points, axis=1)
        for label, distance in zip(self.card.landmarks, moved, strict=True):
            if distance > self.local_stage.trained_offset_mm:
                detection.flags.append(
                    f"{label}: local refinement moved the global estimate by {distance:.1f} mm, more than the "
                    f"{self.local_stage.trained_offset_mm:g} mm it was trained for (unreliable global estimate)"
                )
        return detection


def open_detector(card, backend: str = "onnx", threads: int | None = None) -> VolumeDetector:
    """The detector a model card (path or ModelCard) describes: global or two-stage."""
    card = card if isinstance(card, ModelCard) else load_card(card)
    if card.stage == "two-stage":
        return TwoStageDetector(card, backend, threads)
    if card.stage == "local":
        raise ModelCardError(
            f"{card.path} is a local refinement model: it needs starting points; use the two-stage card that names it"
        )
    return LandmarkDetector(card, backend, threads)


def quality_flags(card: ModelCard, array: np.ndarray, geometry: VolumeGeometry, detection: Detection) -> list[str]:
    """Reasons not to trust a detection: a spread beyond what validation cases showed, a point outside the
    volume, or a volume whose intensities do not look like the model's modality."""
    flags = []
    limit = card.data.get("qa", {}).get("spread_limit_mm")
    for label, s, inside in zip(
        detection.labels, detection.spread_mm, geometry.contains_ras(detection.points_ras), strict=True
    ):
        if limit is not None and not np.isnan(s) and s > limit:
            flags.append(f"{label}: heatmap spread {s:.1f} mm exceeds {limit:.1f} mm (low confidence)")
        if not inside:
            flags.append(f"{label}: detected outside the volume")
    if card.grid.axes is not None and not card.grid.in_probe_frame and lacks_geometry(geometry):
        flags.append(FLAG_NO_ORIENTATION)
    if modality_mismatch(array, card.modality):
        flags.append(FLAG_NOT_ULTRASOUND if card.modality == "us" else FLAG_LOOKS_LIKE_ULTRASOUND)
    return flags


def lacks_geometry(geometry: VolumeGeometry) -> bool:
    """True for a volume whose geometry is the writers' default (1 mm voxels, identity LPS direction, origin 0):
    its orientation in the patient cannot be known."""
    return (
        np.all(geometry.spacing == 1.0)
        and np.all(geometry.origin_ras == 0.0)
        and np.array_equal(geometry.direction_ras, np.diag([-1.0, -1.0, 1.0]))
    )


def modality_mismatch(array: np.ndarray, modality: str) -> str | None:
    """Why a volume's intensities do not look like ``modality``, or None. B-mode US is display-scaled to 0-255
    with exact zeros around the fan; MR has no such range and no zero background that large."""
    low, high = float(array.min()), float(array.max())
    zeros = float(np.mean(array == 0))
    eight_bit = low >= 0.0 and high <= 255.0
    if modality == "us" and not (eight_bit and zeros > 0.05):
        why = f"values from {low:g} to {high:g}, not 0-255" if not eight_bit else f"only {zeros:.1%} of voxels are 0"
        return f"it does not look like B-mode ultrasound ({why}; ultrasound is 0-255 with a zero background)"
    if modality == "mr" and eight_bit and zeros > 0.2:
        return (
            f"it looks like 8-bit ultrasound (values {low:g} to {high:g}, {zeros:.0%} of voxels exactly 0: the "
            "background around an ultrasound fan)"
        )
    return None
