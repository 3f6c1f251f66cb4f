"""`landmarkinit quantize-onnx` (LandmarkInitResearch/training/quantize.py): int8 ONNX files for the local networks
of a two-stage card, on a copy of the shipped MR detector and four phantom cases."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pytest

from LandmarkInitLib.detection.detectors import open_detector
from LandmarkInitLib.detection.model_card import load_card, sha256_of
from LandmarkInitLib.errors import LandmarkInitError
from LandmarkInitLib.resources import default_model_card, sample_case_dir

pytest.importorskip("onnx")


@pytest.fixture
def mr_models(tmp_path):
    """A copy of the shipped MR detector's files, float local networks (as exported), in a folder of its own."""
    source = default_model_card("mr").parent
    folder = tmp_path / "models"
    folder.mkdir()
    for path in source.glob("mr_landmarks*"):
        shutil.copy(path, folder)
    for card in load_card(folder / "mr_landmarks.json").stage_cards("local"):
        if "quantization" in card.data["files"]["onnx"]:  # shipped int8: back to the float network first
            pytest.importorskip("torch")
            from LandmarkInitResearch.training.export import reexport_onnx

            reexport_onnx(card.path, tolerance_mm=1e-3)
    return folder


def contents(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_quantized_local_networks_are_int8_convolutions_and_keep_the_points(mr_models, tiny_dataset):
    import onnx

    from LandmarkInitResearch.training.quantize import quantize_two_stage

    card_path = mr_models / "mr_landmarks.json"
    float_points = open_detector(card_path).detect_file(sample_case_dir() / "mr.nrrd").points_ras
    before = {c.path.name: c.data["files"]["onnx"]["sha256"] for c in load_card(card_path).stage_cards("local")}
    global_before = (mr_models / "mr_landmarks_g2l-global.onnx").read_bytes()

    measured = quantize_two_stage(card_path, tiny_dataset, cases=2, check_cases=2, command="landmarkinit ...")

    assert set(measured) == set(before)
    for card in load_card(card_path).stage_cards("local"):
        record = card.data["files"]["onnx"]["quantization"]
        assert card.verified_weights("onnx")  # the card's checksum is the new file's
        assert record["float_onnx_sha256"] == before[card.path.name] != card.data["files"]["onnx"]["sha256"]
        assert record["ops"] == ["Conv"] and record["command"] == "landmarkinit ..."
        assert record["points_max_mm"] == measured[card.path.name]["points_max_mm"] <= 0.5
        assert "2 case(s) of" in record["calibration"] and "next 2 case(s)" in record["check"]
        graph = onnx.load(str(card.weights_path("onnx"))).graph
        # every convolution reads int8 weights and quantized inputs; the weights of nothing else are int8
        made_by = {o: n for n in graph.node for o in n.output}
        int8 = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.INT8}
        convs = [n for n in graph.node if n.op_type == "Conv"]
        assert convs and all(made_by[n.input[0]].op_type == "DequantizeLinear" for n in convs)
        weight_dq = [made_by[n.input[1]] for n in convs]
        assert {d.input[0] for d in weight_dq} | {d.input[2] for d in weight_dq} == int8  # weights, zero points
        assert len({d.input[0] for d in weight_dq}) == len(convs)
        assert Counter(n.op_type for n in graph.node)["QuantizeLinear"] > 0
        assert load_card(card.path).data["files"]["torchscript"] == card.data["files"]["torchscript"]
    assert (mr_models / "mr_landmarks_g2l-global.onnx").read_bytes() == global_before  # the global stage stays float

    int8_points = open_detector(card_path).detect_file(sample_case_dir() / "mr.nrrd").points_ras
    shift = np.linalg.norm(int8_points - float_points, axis=1)
    assert 0 < shift.max() < 0.5, shift  # int8 really runs, and keeps the points

    snapshot = contents(mr_models)
    with pytest.raises(LandmarkInitError, match=r"already hold\(s\) an int8 ONNX file; nothing to do"):
        quantize_two_stage(card_path, tiny_dataset, cases=2, check_cases=2)
    assert contents(mr_models) == snapshot

    # re-exporting from TorchScript gives the float network back, the quantization record gone
    pytest.importorskip("torch")
    from LandmarkInitResearch.training.export import reexport_onnx

    for card in load_card(card_path).stage_cards("local"):
        reexport_onnx(card.path, tolerance_mm=1e-3)
        restored = load_card(card.path).data
        assert "quantization" not in restored["files"]["onnx"] and restored["export"]["onnx_reexported"]["replaced"]
    back = open_detector(card_path).detect_file(sample_case_dir() / "mr.nrrd").points_ras
    np.testing.assert_allclose(back, float_points, atol=1e-3)

    # a tolerance between the two networks' differences: the first may pass, the second is refused, and nothing
    # is replaced, not even the first network's file
    locals_ = load_card(card_path).stage_cards("local")
    first, second = (max(measured[c.path.name].values()) for c in locals_)
    assert first < second  # on these cases the first network is the closer one: it passes, the second does not
    snapshot = contents(mr_models)
    with pytest.raises(LandmarkInitError, match=rf"^{locals_[1].path.name}: the int8 network differs"):
        quantize_two_stage(card_path, tiny_dataset, cases=2, check_cases=2, tolerance_mm=(first + second) / 2)
    assert contents(mr_models) == snapshot


def test_quantization_refusals_change_nothing(mr_models, tiny_dataset):
    from LandmarkInitResearch.training.quantize import quantize_two_stage

    snapshot = contents(mr_models)
    with pytest.raises(LandmarkInitError, match=r"differs from the float network by up to .* \(tolerance 1e-06 mm\)"):
        quantize_two_stage(mr_models / "mr_landmarks.json", tiny_dataset, cases=2, check_cases=2, tolerance_mm=1e-6)
    with pytest.raises(LandmarkInitError, match=r"holds 4 case\(s\); quantization needs 3 calibration \+ 2 check"):
        quantize_two_stage(mr_models / "mr_landmarks.json", tiny_dataset, cases=3, check_cases=2)
    with pytest.raises(LandmarkInitError, match="is a global card; give a two-stage card"):
        quantize_two_stage(mr_models / "mr_landmarks_g2l-global.json", tiny_dataset)
    assert contents(mr_models) == snapshot  # the staged int8 file beside the float one is gone too
    assert json.loads((mr_models / "mr_landmarks_g2l-local.json").read_text())["files"]["onnx"]["sha256"] == sha256_of(
        mr_models / "mr_landmarks_g2l-local.onnx"
    )
