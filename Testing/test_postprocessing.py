"""The post-processing registry (detection/postprocessing.py): cards naming unknown steps, bad parameters or the
settings of older cards are refused with what to do; steps run in the card's order, those after mirror_average on
the averaged answer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from LandmarkInitLib.detection.detectors import open_detector
from LandmarkInitLib.detection.mid_gland import pull_posterior_median_to_mid_gland
from LandmarkInitLib.detection.model_card import ModelCardError, load_card
from LandmarkInitLib.detection.postprocessing import STEPS, describe, split_at_mirror
from LandmarkInitLib.resources import default_model_card, sample_case_dir
from LandmarkInitResearch.training.two_stage_card import write_two_stage_card


def _card(tmp_path, name, steps):
    shipped = load_card(default_model_card("us"))
    return write_two_stage_card(
        shipped.stage_card("global").path,
        [c.path for c in shipped.stage_cards("local")],
        tmp_path / name,
        iterations=1,
        postprocessing=steps,
    )


def _rewritten(tmp_path, **changes):
    card = json.loads(default_model_card("us").read_text()) | changes
    card["stages"]["global"]["card"] = str(default_model_card("us").parent / card["stages"]["global"]["card"])
    card["stages"]["local"]["cards"] = [
        str(default_model_card("us").parent / c) for c in card["stages"]["local"]["cards"]
    ]
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card))
    return path


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{"step": "smooth"}], r"step 1 is 'smooth', which this version of LandmarkInit does not know \(known steps: "),
        ([{"step": "mid_gland"}], r"step 1 \(mid_gland\) takes weight, not none"),
        ([{"step": "mid_gland", "weight": 0.5, "iterations": 2}], r"takes weight, not weight, iterations"),
        ([{"step": "axis_plane", "weight": True}], r"must be a number between 0 and 1, not True"),
        ([{"step": "mirror_average"}, {"step": "mirror_average"}], "mirror_average may appear once"),
        ({"step": "mid_gland"}, "postprocessing must be a list of steps, not dict"),
    ],
)
def test_cards_with_bad_steps_are_refused(tmp_path, steps, message):
    with pytest.raises(ModelCardError, match=message):
        load_card(_rewritten(tmp_path, postprocessing=steps))


def test_the_settings_of_older_cards_are_refused_with_the_new_form(tmp_path):
    with pytest.raises(
        ModelCardError, match=r'sets posterior_median_mid_gland, .* as an ordered "postprocessing" list'
    ):
        load_card(_rewritten(tmp_path, posterior_median_mid_gland=0.5))


def test_steps_after_mirror_average_act_on_the_average(tmp_path):
    volume = sample_case_dir() / "us.nrrd"
    averaged = open_detector(_card(tmp_path, "a.json", [{"step": "mirror_average"}])).detect_file(volume)
    then_pulled = open_detector(
        _card(tmp_path, "b.json", [{"step": "mirror_average"}, {"step": "mid_gland", "weight": 0.6}])
    ).detect_file(volume)
    expected = pull_posterior_median_to_mid_gland(averaged.points_ras, 0.6)
    np.testing.assert_allclose(then_pulled.points_ras, expected, atol=1e-9)
    assert np.linalg.norm(then_pulled.points_ras[2] - averaged.points_ras[2]) > 1e-3  # the step did something


def test_registry_split_and_description():
    steps = [{"step": "mid_gland", "weight": 0.5}, {"step": "mirror_average"}, {"step": "axis_plane", "weight": 0.2}]
    assert split_at_mirror(steps) == (steps[:1], steps[2:], True)
    assert split_at_mirror(steps[:1]) == (steps[:1], [], False)
    text = describe(steps)
    assert text.index("mid-gland") < text.index("mirror image") < text.index("toward the plane")
    assert set(STEPS) == {"mid_gland", "axis_plane", "mirror_average"}


def test_release_0_1_options_stand_for_the_steps_in_their_fixed_order(tmp_path):
    from LandmarkInitLib.cli import EXIT_BAD_INPUT, EXIT_OK, main

    shipped = load_card(default_model_card("us"))
    args = ["two-stage", "--global", str(shipped.stage_card("global").path)]
    args += ["--local", str(shipped.stage_cards("local")[0].path), "--output", str(tmp_path / "c.json")]
    assert main([*args, "--mirror-average", "--axis-plane", "0.2", "--mid-gland", "0.5"]) == EXIT_OK
    assert load_card(tmp_path / "c.json").postprocessing == [
        {"step": "mid_gland", "weight": 0.5},
        {"step": "axis_plane", "weight": 0.2},
        {"step": "mirror_average"},
    ]
    assert main([*args, "--force", "--mid-gland", "0.5", "--step", "mirror_average"]) == EXIT_BAD_INPUT
