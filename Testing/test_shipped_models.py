"""The pretrained detectors shipped in Resources/Models: cards valid, files intact, and they find the landmarks
of the shipped sample case (a phantom case that none of them was trained on)."""

from __future__ import annotations

import numpy as np
import pytest

from LandmarkInitLib.dataset import open_case
from LandmarkInitLib.detection.model_card import load_card
from LandmarkInitLib.detection.runtime import LandmarkDetector
from LandmarkInitLib.landmarks import LANDMARK_LABELS
from LandmarkInitLib.resources import default_model_card, sample_case_dir


@pytest.mark.parametrize("modality", ["mr", "us"])
def test_shipped_model_card_and_files(modality):
    card = load_card(default_model_card(modality))
    assert card.modality == modality and card.landmarks == LANDMARK_LABELS
    assert card.data["training"]["data"].startswith("SYNTHETIC")
    assert "landmarkinit train" in card.data["training"]["command"]
    for backend in ("onnx", "torchscript"):
        card.verified_weights(backend)  # sha256 matches
    assert card.data["qa"]["spread_limit_mm"] > 0


@pytest.mark.parametrize("modality", ["mr", "us"])
def test_shipped_model_finds_the_sample_case_landmarks(modality):
    case = open_case(sample_case_dir())
    detection = LandmarkDetector.from_card(default_model_card(modality), "onnx").detect_file(case.images[modality])
    errors = np.linalg.norm(detection.points_ras - case.landmarks(modality).ordered(LANDMARK_LABELS), axis=1)
    # a loose bound: this guards against broken files or conventions (a flipped axis, LPS/RAS, a wrong grid
    # centre give errors of centimetres), not the accuracy, which docs/detection.md reports on 50 test cases
    assert np.all(errors < 10.0), errors
    assert not detection.flags
