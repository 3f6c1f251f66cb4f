"""int8 ONNX files for the local refinement networks of a two-stage card (issue 22: ONNX, the Slicer path, faster
than TorchScript).

The local networks take most of a two-stage detection's time, almost all of it in convolutions. Their ONNX files
are quantized statically (onnxruntime.quantization, QDQ format): convolution weights to int8 per output channel,
in 7 bits (``reduce_range``: x86 CPUs without VNNI would otherwise saturate uint8 x int8 products), their inputs to
uint8 with ranges calibrated (min/max) on the patches the card itself feeds each network on calibration cases.
Only convolutions are quantized: normalization, activations and the DSNT decoding stay float, which keeps the
points within a fraction of a voxel of the float network. The TorchScript files stay float.

The files are replaced only after every int8 network's points and spreads on other cases' patches (check cases)
stay within ``tolerance_mm`` of the float network's; the card records the float file's checksum, the calibration
and check data and the differences measured."""

from __future__ import annotations

import datetime
import json
import tempfile
from pathlib import Path

import numpy as np

from LandmarkInitLib import __version__
from LandmarkInitLib.detection.detectors import TwoStageDetector
from LandmarkInitLib.detection.model_card import load_card, sha256_of
from LandmarkInitLib.errors import LandmarkInitError
from LandmarkInitLib.io.datasets import open_dataset

QUANTIZED_OPS = ["Conv"]


def local_inputs(detector: TwoStageDetector, volumes: list[Path]) -> dict[Path, list[list[np.ndarray]]]:
    """Per local card (path), per volume: the input batches the two-stage detector feeds it (float ONNX)."""
    batches: dict[Path, list[list[np.ndarray]]] = {m.card.path: [] for m in detector.local_stage.members}
    for member in detector.local_stage.members:
        run = member.refine_patches

        def recorded(x, patches, run=run, into=batches[member.card.path]):
            into[-1].append(np.array(x, dtype=np.float32))
            return run(x, patches)

        member.refine_patches = recorded  # this detector instance only
    for volume in volumes:
        for per_volume in batches.values():
            per_volume.append([])
        detector.detect_file(volume)
    return batches


def dataset_name(data) -> str:
    """The dataset as a card can name it: its folder and, for a phantom dataset, the command that makes it."""
    record = Path(data) / "dataset.json"
    if record.is_file():
        d = json.loads(record.read_text(encoding="utf-8"))
        if "seed" in d and "count" in d:
            return f"{data} (`landmarkinit phantom --count {d['count']} --seed {d['seed']}`)"
    return str(data)


def _outputs(path: Path, batches: list[np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return [session.run(None, {name: x}) for x in batches]


def quantize_file(source: Path, target: Path, batches: list[np.ndarray]) -> None:
    """Static int8 quantization (QDQ) of the convolutions of ``source``, calibrated on ``batches``."""
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.items = iter(batches)

        def get_next(self):
            x = next(self.items, None)
            return None if x is None else {name: x}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared))  # shape inference and graph clean-up first, as ORT advises
        quantize_static(
            str(prepared),
            str(target),
            Batches(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=QUANTIZED_OPS,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            reduce_range=True,
        )


def quantize_two_stage(
    card_path,
    data,
    *,
    cases: int = 10,
    check_cases: int = 5,
    tolerance_mm: float = 0.5,
    command: str | None = None,
) -> dict:
    """Quantize the ONNX files of every local card of the two-stage card ``card_path``: calibrated on the first
    ``cases`` cases of the dataset ``data``, checked on the next ``check_cases``. Returns, per local card, the
    largest and the 95th-percentile difference of the points and the largest of the spreads (mm) on the check
    cases. Refuses (changing nothing) a card that is not two-stage, a local card already quantized, too few cases,
    or a difference above ``tolerance_mm`` for any network."""
    import onnxruntime as ort

    card = load_card(card_path)
    if card.stage != "two-stage":
        raise LandmarkInitError(f"{card.path} is a {card.stage} card; give a two-stage card (its local stages)")
    locals_ = card.stage_cards("local")
    done = [c.path.name for c in locals_ if c.onnx_quantization]
    if done:
        raise LandmarkInitError(f"{', '.join(done)} already hold(s) an int8 ONNX file; nothing to do")
    dataset = open_dataset(data)
    if len(dataset) < cases + check_cases:
        raise LandmarkInitError(
            f"{data} holds {len(dataset)} case(s); quantization needs {cases} calibration + {check_cases} check "
            f"cases (lower --cases / --check-cases)"
        )
    volumes = [c.images[card.modality] for c in dataset[: cases + check_cases]]
    inputs = local_inputs(TwoStageDetector(card, backend="onnx"), volumes)
    named = dataset_name(data)
    measured, staged = {}, []
    try:
        for local in locals_:
            calibration = [x for per_volume in inputs[local.path][:cases] for x in per_volume]
            check = [x for per_volume in inputs[local.path][cases:] for x in per_volume]
            source = local.verified_weights("onnx")
            # staged beside the file it replaces: the final rename stays on one file system
            target = source.with_name(f".{source.stem}.int8-staged.onnx")
            staged.append((local, source, target))
            quantize_file(source, target, calibration)
            before, after = _outputs(source, check), _outputs(target, check)
            pairs = list(zip(before, after, strict=True))  # per batch: (coords_mm, spread_mm) of each network
            points = np.concatenate([np.linalg.norm(a[0] - b[0], axis=-1).ravel() for a, b in pairs])
            spreads = np.concatenate([np.abs(a[1] - b[1]).ravel() for a, b in pairs])
            figures = {
                "points_max_mm": float(points.max()),
                "points_p95_mm": float(np.percentile(points, 95)),
                "spread_max_mm": float(spreads.max()),
            }
            measured[local.path.name] = figures
            worst = max(figures["points_max_mm"], figures["spread_max_mm"])
            if worst > tolerance_mm:
                raise LandmarkInitError(
                    f"{local.path.name}: the int8 network differs from the float network by up to {worst:.2f} mm "
                    f"(points {figures['points_max_mm']:.2f} mm, spreads {figures['spread_max_mm']:.2f} mm) on the "
                    f"check cases (tolerance {tolerance_mm:g} mm); nothing was changed"
                )
        for local, source, target in staged:  # every network checked: now replace, file then card
            record = local.data
            float_sha = record["files"]["onnx"]["sha256"]
            record["files"]["onnx"]["sha256"] = sha256_of(target)
            record["files"]["onnx"]["quantization"] = {
                "weights": "int8 in 7 bits (reduce_range: no saturation on CPUs without VNNI), per output channel, "
                "symmetric",
                "activations": "uint8, ranges calibrated by min/max",
                "ops": QUANTIZED_OPS,
                "format": "QDQ (onnxruntime.quantization.quantize_static)",
                "onnxruntime": ort.__version__,
                "float_onnx_sha256": float_sha,
                "calibration": f"the patches {card.path.name} feeds this network on the first {cases} case(s) of "
                f"{named}",
                "check": f"the next {check_cases} case(s) of {named}: difference from the float network",
                **measured[local.path.name],
                "tolerance_mm": tolerance_mm,
                "landmarkinit": __version__,
                "date": datetime.date.today().isoformat(),
                **({"command": command} if command else {}),
            }
            card_staged = local.path.with_name(f".{local.path.stem}.int8-staged.json")
            card_staged.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
            target.replace(source)  # two renames: an interruption between them leaves a checksum mismatch the
            card_staged.replace(local.path)  # runtime refuses to load, never a silent mix
    finally:
        for _, _, target in staged:
            target.unlink(missing_ok=True)
            target.with_suffix(".json").unlink(missing_ok=True)
    return measured
