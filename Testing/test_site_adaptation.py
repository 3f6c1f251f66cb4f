"""The simulated site of `site-learning-curve` (LandmarkInitResearch/evaluation/site_adaptation.py): the arrival
order, the site it writes, and its report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from LandmarkInitLib.detection.detectors import open_detector
from LandmarkInitLib.detection.model_card import load_card
from LandmarkInitLib.io.datasets import open_dataset
from LandmarkInitLib.landmarks import LANDMARK_LABELS
from LandmarkInitLib.resources import default_model_card, sample_case_dir
from LandmarkInitResearch.evaluation.site_adaptation import (
    arrival_order,
    pool_and_test,
    target_line,
    write_report,
    write_site,
)


def test_arrival_order_is_a_fixed_permutation_whatever_the_listing_order():
    names = [f"c{i}" for i in range(12)]
    order = arrival_order(names, seed=23)
    assert sorted(order) == sorted(names) and order != sorted(names)
    assert arrival_order(list(reversed(names)), seed=23) == order
    assert arrival_order(names, seed=24) != order


def test_the_simulated_site_holds_the_prediction_and_the_correction(tmp_path):
    sample = sample_case_dir()
    pool, test = pool_and_test("phantom", "us", sample, test=sample)
    assert list(pool) == list(test) == [sample.name]
    card = load_card(default_model_card("us"))
    write_site(tmp_path / "site", [sample.name], pool, open_detector(card), card, progress=False)
    (case,) = open_dataset(tmp_path / "site")
    assert case.meta["source"] == "simulated" and case.meta["models"]["us"]["name"] == card.name
    truth = open_dataset(sample)[0].landmarks("us").ordered(LANDMARK_LABELS)
    np.testing.assert_allclose(case.landmarks("us").ordered(LANDMARK_LABELS), truth, atol=1e-4)
    moved = [case.meta["correction_mm"]["us"][label] for label in LANDMARK_LABELS]
    assert 0.1 < max(moved) < 3.0  # the detector is about 1 mm off on this case: a real correction


def test_report_tables_the_decisions_exactly(tmp_path):
    result = {
        "base": {"card": "base.json", "name": "b", "sha256": "0" * 64, "modality": "mr"},
        "kind": "real-mr",
        "test": "held-out",
        "arrival_seed": 23,
        "finetune_settings": {"epochs": 5, "lr": 1e-4},
        "rows": [
            {"corrected_cases": 0, "decision": "base", "test_case_mm": {"a": 10.0, "b": 6.0}},
            {"corrected_cases": 5, "decision": "refused", "reason": "too few", "test_case_mm": {"a": 10.0, "b": 6.0}},
            {
                "corrected_cases": 20,
                "decision": "accepted",
                "guard": {"base_case_mm": [9.0, 7.0], "finetuned_case_mm": [5.0, 3.0], "wilcoxon_p": 0.03125},
                "test_case_mm": {"a": 6.0, "b": 3.0},
            },
        ],
    }
    for row in result["rows"]:
        values = list(row["test_case_mm"].values())
        row["test_mean_mm"], row["test_median_mm"] = float(np.mean(values)), float(np.median(values))
    path = write_report(result, tmp_path, description="d", target=lambda rows: target_line(rows, 20, 0.3, 5.0))
    table = [line for line in path.read_text().splitlines() if line.startswith("| ")][2:]
    assert table == [
        "| 0 | base | - | 8.00 | 8.00 | +0% |",
        "| 5 | refused | too few | 8.00 | 8.00 | +0% |",
        "| 20 | accepted | 8.00 -> 4.00, p = 0.0312 | 4.50 | 4.50 | -44% |",
    ]
    assert "**met** (8.00 -> 4.50 mm, -44%)" in path.read_text()
    assert target_line(result["rows"], 5, 0.3, 5.0).endswith("**not met** (8.00 -> 8.00 mm, +0%).")
    assert target_line(result["rows"], 10, 0.3, 5.0).endswith("not measured (no site of 10 cases).")
    assert json.loads((tmp_path / "learning_curve.json").read_text())["rows"][2]["test_mean_mm"] == pytest.approx(4.5)
    assert (tmp_path / "learning_curve.png").stat().st_size > 1000
